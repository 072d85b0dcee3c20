"""Onsets: where short sounds start, and what follows them (decay, a shower of shards)."""

from __future__ import annotations

import numpy as np
import pytest

from custom_components.guard_mode.engine.analyzer import to_db
from custom_components.guard_mode.engine.frontend import StreamingFrontend
from custom_components.guard_mode.engine.onset import Onset, OnsetTracker
from tests import synth

RATE = 16000


def onsets_of(audio: np.ndarray, chunk: int = 1280) -> tuple[list[int], list[Onset]]:
    """Stream audio through the frontend and the tracker; return new onset frames and measures."""
    frontend, tracker = StreamingFrontend(), OnsetTracker()
    new: list[int] = []
    measured: list[Onset] = []
    for start in range(0, len(audio), chunk):
        frames = frontend.push(audio[start : start + chunk])
        found, mature = tracker.push(to_db(frames.energy), frames.high_db)
        new += found
        measured += mature
    return new, measured


def room(seconds: float, seed: int = 1) -> np.ndarray:
    return synth.pink_noise(seconds, -62.0, synth.rng(seed))


def decaying(seconds: float, decay_s: float, peak_db: float, seed: int = 2) -> np.ndarray:
    """Broadband noise that dies away (a shot, a slam)."""
    n = synth.samples(seconds)
    noise = synth.rng(seed).standard_normal(n) * np.exp(-np.arange(n) / RATE / decay_s)
    return (noise / np.abs(noise).max() * synth.db_to_amp(peak_db)).astype(np.float32)


def at(total_s: float, *parts: tuple[float, np.ndarray]) -> np.ndarray:
    out = room(total_s)
    for when, sound in parts:
        out = synth.mix(out, synth.place(sound, when, total_s))
    return out


def test_a_sound_that_dies_away_has_one_onset_with_its_decay() -> None:
    new, measured = onsets_of(at(3.0, (1.0, decaying(1.0, 0.05, -12.0))))
    assert len(new) == 1 == len(measured)
    (onset,) = measured
    assert onset.frame == new[0]
    assert abs(onset.frame / 100 - 1.0) <= 0.03  # where it starts (10 ms frames)
    assert onset.peak_db > -25
    assert onset.decay_db >= 20  # gone half a second later


def test_a_noise_that_starts_and_goes_on_does_not_decay() -> None:
    engine = synth.pink_noise(2.0, -20.0, synth.rng(5))
    (onset,) = onsets_of(at(3.5, (1.0, engine)))[1]
    assert onset.decay_db < 6


def test_shards_after_an_impact_are_a_shower_a_ringing_knock_is_not() -> None:
    n = synth.samples(0.8)
    t = np.arange(n) / RATE
    ring = np.sin(2 * np.pi * 2400 * t) * np.exp(-t / 0.2)  # a knock on a pane: it rings
    knock = synth.mix(decaying(0.8, 0.01, -12.0), (0.25 * ring).astype(np.float32))
    shards = np.zeros(n, np.float32)
    gen = synth.rng(7)
    for start in gen.uniform(0.08, 0.6, 12):  # tinkles of falling glass, 3-7 kHz
        tink = synth.tone(gen.uniform(3000, 7000), 0.02, -16.0) * np.exp(-np.arange(320) / 60)
        shards = synth.mix(shards, synth.place(tink.astype(np.float32), float(start), 0.8))
    (knocked,) = onsets_of(at(2.5, (1.0, knock)))[1]
    (broken,) = onsets_of(at(2.5, (1.0, synth.mix(knock, shards))))[1]
    assert knocked.shower <= 1
    assert broken.shower >= 4


def test_a_rise_that_does_not_stand_out_of_the_background_is_no_onset() -> None:
    background = synth.pink_noise(4.0, -30.0, synth.rng(3))
    bump = decaying(0.5, 0.05, -26.0)  # 4 dB over a loud background's peaks
    assert onsets_of(synth.mix(background, synth.place(bump, 2.0, 4.0)))[0] == []


def test_onsets_closer_than_the_refractory_time_are_one() -> None:
    clicks = at(3.0, (1.0, decaying(0.5, 0.02, -12.0)), (1.1, decaying(0.5, 0.02, -12.0)))
    assert len(onsets_of(clicks)[0]) == 1


def test_a_much_louder_sound_right_after_a_start_is_an_onset_of_its_own() -> None:
    """A street's roar starts, a shot 0.2 s later: measured from its own peak, it dies away."""
    street = synth.pink_noise(2.0, -22.0, synth.rng(8))
    new, (roar, shot) = onsets_of(at(3.5, (1.0, street), (1.20, decaying(0.6, 0.08, 0.0))))
    assert len(new) == 2
    assert abs(shot.frame / 100 - 1.20) <= 0.03
    assert roar.decay_db < 6 <= shot.decay_db


@pytest.mark.parametrize("chunk", [160, 401, 1280, 16000, 10**6])
def test_onsets_do_not_depend_on_the_chunking(chunk: int) -> None:
    street = synth.pink_noise(1.0, -22.0, synth.rng(8))
    audio = at(
        4.0,
        (0.7, decaying(1.0, 0.05, -12.0)),
        (2.3, decaying(1.0, 0.1, -18.0)),
        (3.0, street),
        (3.15, decaying(0.6, 0.08, 0.0)),  # a precursor and its shot
    )
    assert onsets_of(audio, chunk) == onsets_of(audio, 1280)
