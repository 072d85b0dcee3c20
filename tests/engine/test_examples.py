"""Teaching a custom sound: which examples are taken, which refused and why (engine/examples.py).

The examples go through the real tagger; what is refused is refused for a reason a user is told
(the file's name and its levels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from custom_components.guard_mode.engine import WindowEvidence
from custom_components.guard_mode.engine.audio import AudioFormatError
from custom_components.guard_mode.engine.examples import (
    check_example,
    examples_from_files,
    split_examples,
)
from custom_components.guard_mode.engine.frontend import log_mel, patches, stft_magnitude
from custom_components.guard_mode.engine.learning import TeachError, teach, unit
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

from .. import synth


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    """The shipped model, loaded once for the module."""
    return load_tagger()


def hear(tagger: Tagger, audio: np.ndarray) -> np.ndarray:
    """The unit embedding of each window the engine hears in audio."""
    output = tagger.infer(patches(log_mel(stft_magnitude(audio))), embeddings=True)
    assert output.embeddings is not None
    return unit(output.embeddings)


def doorbells(folder: Path) -> list[Path]:
    """Three recordings of one doorbell at slightly different pitches and levels, in a room."""
    room = synth.pink_noise(4.0, -60.0, synth.rng(3))
    return [
        synth.write_wav(
            folder / f"doorbell_{n}.wav",
            synth.mix(room, synth.place(synth.chime(550 * s, 660 * s, peak_db=db), 1.0, 4.0)),
        )
        for n, (s, db) in enumerate([(1.0, -10.0), (1.01, -14.0), (0.99, -8.0)])
    ]


def test_three_doorbell_files_teach_a_sound_that_hears_the_doorbell(
    tmp_path: Path, tagger: Tagger
) -> None:
    examples = examples_from_files(doorbells(tmp_path), tagger)
    assert len(examples) == 3  # one example a file: the windows around its ring
    for example in examples:
        assert 1 <= len(example) <= 6  # of the file's 10: not the quiet room around the ring
        assert np.allclose(np.linalg.norm(example, axis=1), 1.0, atol=1e-3)

    talk = hear(tagger, synth.speech_like(6.0, synth.rng(4), level_db=-20.0))
    sound, figures = teach("custom_doorbell", "Doorbell", examples, talk)
    assert figures["examples"] == 3
    assert figures["weakest_example_match"] > figures["threshold"] > 0.6

    ringing = hear(tagger, synth.place(synth.chime(560.0, 672.0, peak_db=-12.0), 0.5, 2.0))
    assert sound.similarity(ringing).max() >= sound.threshold  # the doorbell again: heard
    music = hear(tagger, synth.music_like(6.0, synth.rng(5), level_db=-15.0))
    assert sound.similarity(music).max() < sound.threshold  # something else: not


def test_a_sound_taught_from_clean_files_is_heard_in_a_room(tmp_path: Path, tagger: Tagger) -> None:
    """Files of the doorbell alone (digital silence around it), then the doorbell in a room."""
    clean = [
        synth.write_wav(tmp_path / f"bell_{n}.wav", synth.chime(peak_db=db))
        for n, db in enumerate((-10.0, -13.0, -16.0))
    ]
    sound, _ = teach(
        "custom_bell", "Bell", examples_from_files(clean, tagger), np.zeros((0, 1024), np.float32)
    )
    heard = 0
    for k in range(6):
        room = synth.white_noise(6.0, -60.0, synth.rng(100 + k))
        ring = synth.mix(room, synth.place(synth.chime(), 2.0 + 0.037 * k, 6.0))
        heard += sound.similarity(hear(tagger, ring)).max() >= sound.threshold
    assert heard == 6


def test_a_silent_file_is_refused_saying_how_quiet_it_is(tmp_path: Path, tagger: Tagger) -> None:
    hush = synth.write_wav(tmp_path / "hush.wav", synth.pink_noise(3.0, -70.0, synth.rng(1)))
    with pytest.raises(
        TeachError, match=r"hush\.wav is silent: its loudest part is -[67]\d dBFS"
    ) as err:
        examples_from_files([hush], tagger)
    assert err.value.reason == "silent_example"
    assert "below the -55 dBFS Guard Mode listens to" in str(err.value)


def test_a_steady_hum_is_refused_as_no_sound_event(tmp_path: Path, tagger: Tagger) -> None:
    hum = synth.write_wav(tmp_path / "fridge.wav", synth.tone(120.0, 4.0, peak_db=-20.0))
    with pytest.raises(TeachError, match=r"fridge\.wav holds no sound that stands out") as err:
        examples_from_files([hum], tagger)
    assert err.value.reason == "not_an_event"
    assert "at least 10 dB" in str(err.value)


def test_a_sound_must_stand_out_10_db_from_the_quiet_part() -> None:
    quiet = synth.pink_noise(4.0, -40.0, synth.rng(2))
    beep = synth.tone(1000.0, 0.5, peak_db=-20.0)  # RMS -23 dBFS
    check_example(synth.mix(quiet, synth.place(beep, 2.0, 4.0)), "beep.wav")  # 17 dB: taken
    faint = synth.tone(1000.0, 0.5, peak_db=-32.0)  # RMS -35 dBFS: within 10 dB of the room
    with pytest.raises(TeachError, match=r"beep\.wav holds no sound that stands out"):
        check_example(synth.mix(quiet, synth.place(faint, 2.0, 4.0)), "beep.wav")


def test_a_sound_trimmed_with_a_moment_of_quiet_around_it_is_taken() -> None:
    """What the refusal asks for: the sound, with a moment of quiet before and after."""
    check_example(synth.place(synth.chime(), 0.9, 3.0), "trimmed.wav")


def test_a_sound_at_the_very_end_of_a_file_is_heard() -> None:
    check_example(synth.place(synth.tone(1000.0, 0.35, peak_db=-6.0), 1.0, 1.4), "bell.wav")


def test_a_short_click_is_as_loud_as_its_loudest_moment() -> None:
    """The engine listens to a sound whose loudest 25 ms reach its gate, however short."""
    check_example(synth.place(synth.tone(2000.0, 0.03, peak_db=-40.0), 0.5, 1.5), "click.wav")


def test_a_short_steady_sound_is_an_event() -> None:
    """Under 2 s there is no quiet part to compare with: a short beep is taken as it is."""
    check_example(synth.tone(1000.0, 1.5, peak_db=-20.0), "short-beep.wav")


def test_a_file_longer_than_an_example_is_refused(tmp_path: Path, tagger: Tagger) -> None:
    ring_then_quiet = synth.place(synth.chime(), 1.0, 31.0)
    long = synth.write_wav(tmp_path / "long.wav", ring_then_quiet)
    with pytest.raises(AudioFormatError, match=r"long\.wav.*longer than the limit of 30 s"):
        examples_from_files([long], tagger)


# --- from a live recording: the windows the engine heard while the user rang the doorbell


def heard(level_db: float, embedding: np.ndarray | None) -> WindowEvidence:
    """A window of a live recording at this level (too quiet to be tagged: no embedding)."""
    return WindowEvidence(
        0.0, 0.96, level_db, level_db + 3.0, {}, {}, {}, 0.0, 0.0, embedding=embedding
    )


def direction(n: int) -> np.ndarray:
    """A unit embedding told apart by n (float16, as the engine ships them)."""
    vector = np.zeros(1024, np.float16)
    vector[n] = 1.0
    return vector


def test_a_recording_is_cut_into_one_example_a_ring() -> None:
    quiet = [heard(-50.0, direction(0)) for _ in range(6)]  # the room, tagged
    ring = [heard(-20.0, direction(1)), heard(-22.0, direction(2))]  # one ring over two windows
    windows = [*quiet[:2], *ring, *quiet[2:4], *ring, *quiet[4:], ring[0]]
    examples, background = split_examples(windows)
    assert [len(e) for e in examples] == [2, 2, 1]  # three rings, each its windows together
    assert examples[0].dtype == np.float32
    assert np.array_equal(examples[0][1], direction(2).astype(np.float32))
    assert len(background) == 6  # the room: what the taught sound must not match


def test_a_room_too_quiet_to_be_tagged_still_sets_what_is_loud() -> None:
    """In a quiet room only the rings are tagged; the untagged quiet still counts as quiet."""
    silence = heard(-70.0, None)
    windows = [silence] * 4 + [heard(-30.0, direction(1))] + [silence] * 4
    windows += [heard(-30.0, direction(2)), heard(-31.0, direction(3))] + [silence] * 4
    examples, background = split_examples(windows)
    assert [len(e) for e in examples] == [1, 2]
    assert background.shape == (0, 1024)


def test_a_recording_of_nothing_has_no_examples() -> None:
    assert split_examples([])[0] == []
    examples, background = split_examples([heard(-40.0, direction(0))] * 5)
    assert examples == []  # nothing stood out: teaching then says too few examples
    assert len(background) == 5
