"""Examples for teaching a custom sound: from audio files, or cut from a live recording."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .decider import WindowEvidence
from .frontend import PATCH_SAMPLES, SAMPLE_RATE, log_mel, patches, stft_magnitude
from .learning import unit
from .pcm import read_audio
from .tagger import Tagger

Floats = npt.NDArray[np.float32]
EVENT_DB = 10.0  # a window this much louder than the quiet part of a recording holds the sound
MAX_SECONDS = 30.0  # an example file longer than this is not one example


def examples_from_files(paths: Sequence[str | Path], tagger: Tagger) -> list[Floats]:
    """Return each file's sound as the embeddings of its loudest windows (one example a file)."""
    examples = []
    for path in paths:
        samples = read_audio(path, max_seconds=MAX_SECONDS).samples
        padded = np.concatenate(
            [np.zeros(SAMPLE_RATE // 2, np.float32), samples, np.zeros(PATCH_SAMPLES, np.float32)]
        )
        features = log_mel(stft_magnitude(padded))
        windows = patches(features)
        if not len(windows):
            continue
        loudness = windows.max(axis=(1, 2))  # log-mel peak of each window
        keep = loudness >= loudness.max() - 1.2  # within ~5 dB of the loudest window
        output = tagger.infer(windows[keep], embeddings=True)
        assert output.embeddings is not None
        examples.append(unit(output.embeddings))
    return examples


def split_examples(windows: Sequence[WindowEvidence]) -> tuple[list[Floats], Floats]:
    """Cut a live recording into examples (bursts of loud windows) and background (the rest)."""
    usable = [w for w in windows if w.embedding is not None]
    if not usable:
        return [], np.zeros((0, 1024), np.float32)
    levels = np.array([w.level_db for w in usable])
    quiet = float(np.percentile(levels, 20))
    loud = levels >= quiet + EVENT_DB
    examples: list[list[Floats]] = []
    background: list[Floats] = []
    previous = False
    for window, is_loud in zip(usable, loud, strict=True):
        assert window.embedding is not None
        if is_loud:
            if not previous:
                examples.append([])
            examples[-1].append(window.embedding)
        else:
            background.append(window.embedding)
        previous = bool(is_loud)
    return (
        [np.stack(example) for example in examples],
        np.stack(background) if background else np.zeros((0, 1024), np.float32),
    )
