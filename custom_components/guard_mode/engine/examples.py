"""Examples for teaching a custom sound: from audio files, or cut from a live recording.

An example must hold a sound event: a file that is silent (its loudest part below the level the
engine listens to at all) or that holds no sound standing out of the rest (a steady hum or
noise) is refused with a TeachError that says which file and why, instead of becoming a
detector of silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .analyzer import DEFAULT_GATE_DB
from .audio import read_audio
from .evidence import WindowEvidence
from .frontend import (
    FRAME_LENGTH,
    PATCH_SAMPLES,
    SAMPLE_RATE,
    frame_view,
    log_mel,
    patches,
    stft_magnitude,
)
from .learning import TeachError, unit
from .tagger import Tagger

Floats = npt.NDArray[np.float32]
EVENT_DB = 10.0  # a window this much louder than the quiet part of a recording holds the sound
MAX_SECONDS = 30.0  # an example file longer than this is not one example
STEADY_SECONDS = 2.0  # a file this long must have a part that stands out
# A file's example is heard over this much room noise (white, dBFS RMS): a clean recording padded
# with digital silence matches the other clean examples far better than the same sound ever
# matches it in a room, and the threshold learned from such examples was seldom reached live
# (a chime taught from three clean files: heard 0-6 times in 10 over -70 to -50 dBFS of room
# noise; with this: 10 in 10).
ROOM_NOISE_DB = -70.0


def frame_levels(samples: Floats) -> Floats:
    """Return the level (dBFS) of each 25 ms frame of samples, 10 ms apart.

    As the engine's gate and onsets measure it: a short click counts at its loudest moment, and
    the end of a file is measured too.
    """
    frames = frame_view(samples)
    power = np.einsum("ij,ij->i", frames, frames) / np.float32(FRAME_LENGTH)
    return np.asarray(10 * np.log10(np.maximum(power, 1e-12)), np.float32)


def check_example(samples: Floats, name: str) -> None:
    """Raise TeachError when a file holds no sound event (silent, or steady throughout)."""
    levels = frame_levels(samples)
    peak = float(levels.max()) if len(levels) else -120.0
    if peak < DEFAULT_GATE_DB:
        raise TeachError(
            "silent_example",
            f"{name} is silent: its loudest part is {peak:.0f} dBFS, below the "
            f"{DEFAULT_GATE_DB:.0f} dBFS Guard Mode listens to",
        )
    quiet = float(np.percentile(levels, 20))
    if len(samples) >= STEADY_SECONDS * SAMPLE_RATE and peak - quiet < EVENT_DB:
        raise TeachError(
            "not_an_event",
            f"{name} holds no sound that stands out: its loudest part is only "
            f"{peak - quiet:.0f} dB above its quiet part (a steady hum or noise is not a sound "
            f"event; at least {EVENT_DB:.0f} dB)",
        )


def examples_from_files(paths: Sequence[str | Path], tagger: Tagger) -> list[Floats]:
    """Return each file's sound as the embeddings of its loudest windows (one example a file)."""
    examples = []
    noise = np.random.default_rng(0)  # the same examples teach the same sound
    for path in paths:
        samples = read_audio(path, max_seconds=MAX_SECONDS).samples
        check_example(samples, Path(path).name)
        padded = np.concatenate(
            [np.zeros(SAMPLE_RATE // 2, np.float32), samples, np.zeros(PATCH_SAMPLES, np.float32)]
        )
        room = noise.standard_normal(len(padded)).astype(np.float32)
        padded += room * np.float32(10.0 ** (ROOM_NOISE_DB / 20.0))
        features = log_mel(stft_magnitude(padded))
        windows = patches(features)  # at least one: the padding is longer than a patch
        loudness = windows.max(axis=(1, 2))  # log-mel peak of each window
        keep = loudness >= loudness.max() - 1.2  # within ~5 dB of the loudest window
        output = tagger.infer(windows[keep], embeddings=True)
        assert output.embeddings is not None
        examples.append(unit(output.embeddings))
    return examples


def split_examples(windows: Sequence[WindowEvidence]) -> tuple[list[Floats], Floats]:
    """Cut a live recording into examples (bursts of loud windows) and background (the rest).

    The room's quiet level counts every window, also those too quiet to be tagged (they have no
    embedding): in a room quieter than the gate only the sounds are tagged.
    """
    if not windows:
        return [], np.zeros((0, 1024), np.float32)
    quiet = float(np.percentile([w.level_db for w in windows], 20))
    examples: list[list[Floats]] = []
    background: list[Floats] = []
    previous = False
    for window in windows:
        is_loud = window.level_db >= quiet + EVENT_DB
        if window.embedding is not None:
            embedding = window.embedding.astype(np.float32)
            if not is_loud:
                background.append(embedding)
            elif previous:
                examples[-1].append(embedding)
            else:
                examples.append([embedding])
        previous = is_loud and window.embedding is not None
    return (
        [np.stack(example) for example in examples],
        np.stack(background) if background else np.zeros((0, 1024), np.float32),
    )
