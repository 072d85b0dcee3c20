"""Tests of the T3/T4 alarm-pattern detector on synthetic audio (no Home Assistant)."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from custom_components.guard_mode.engine.alarm_pattern import (
    AlarmHit,
    AlarmPatternDetector,
    detect_alarms,
)
from custom_components.guard_mode.engine.frontend import StreamingFrontend, stft_magnitude
from tests import synth

PATTERNS = ["T3", "T4"]
CARRIERS = ["piezo", "lf"]
NOMINAL_HZ = {"piezo": 3100.0, "lf": 520.0}
SOUND = {"T3": "smoke_alarm", "T4": "co_alarm"}
PER_CYCLE = {"T3": 3, "T4": 4}
LATENCY_S = {"T3": 4.5, "T4": 6.3}  # one full cycle + 0.5 s


def cycle_starts(alarm: synth.Synth, pattern: str) -> tuple[float, ...]:
    """Return the true onsets of the first pulse of every cycle."""
    return alarm.onsets[:: PER_CYCLE[pattern]]


def on_rms_db(alarm: synth.Synth) -> float:
    """Return the RMS level of an alarm while it sounds."""
    keep = np.zeros(len(alarm.audio), bool)
    for on, off in zip(alarm.onsets, alarm.offsets, strict=True):
        keep[synth.samples(on) : synth.samples(off)] = True
    return synth.rms_db(alarm.audio[keep])


def with_background(alarm: synth.Synth, background: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix a background under an alarm so the alarm is ``snr_db`` louder (RMS while on)."""
    bg = background[: len(alarm.audio)]
    bg = bg * synth.db_to_amp(on_rms_db(alarm) - snr_db - synth.rms_db(bg))
    return synth.mix(alarm.audio, bg)


def assert_first_cycle(
    hits: list[AlarmHit], alarm: synth.Synth, pattern: str, carrier_hz: float
) -> AlarmHit:
    """Assert the first cycle was confirmed in time, with the right labels and times."""
    assert hits, "no detection"
    first = hits[0]
    starts = cycle_starts(alarm, pattern)
    assert first.pattern == pattern
    assert first.sound == SOUND[pattern]
    assert abs(first.start_s - starts[0]) <= 0.2, (first, starts[0])
    assert first.end_s - starts[0] <= (starts[1] - starts[0]) + 0.5, (first, starts)
    assert abs(first.carrier_hz - carrier_hz) <= (40.0 if carrier_hz > 1000 else 15.0), first
    assert 0.0 <= first.confidence <= 1.0
    assert all(h.pattern == pattern and h.sound == SOUND[pattern] for h in hits)
    return first


@cache
def speech(seed: int, duration_s: float = 20.0) -> np.ndarray:
    return synth.speech_like(duration_s, synth.rng(seed), -30.0)


@cache
def music(seed: int, duration_s: float = 20.0, mid_note: bool = True) -> np.ndarray:
    return synth.music_like(
        duration_s, synth.rng(seed), -30.0, mid_note_hz=523.25 if mid_note else None
    )


# --- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_clean_alarm_is_confirmed_after_one_cycle(pattern: str, carrier: str) -> None:
    alarm = synth.alarm(pattern, carrier, cycles=4)
    hits = detect_alarms(alarm.audio)
    first = assert_first_cycle(hits, alarm, pattern, NOMINAL_HZ[carrier])
    assert first.end_s - alarm.onsets[0] <= LATENCY_S[pattern]
    assert first.confidence >= 0.8
    # one hit per further cycle, each starting at its cycle's first pulse
    starts = cycle_starts(alarm, pattern)
    assert [round(h.start_s, 1) for h in hits] == [round(s, 1) for s in starts[:-1]]


@pytest.mark.parametrize(
    ("pattern", "carrier", "freq_hz"),
    [
        ("T3", "piezo", 2850.0),
        ("T4", "piezo", 3550.0),
        ("T3", "lf", 565.0),
        ("T4", "lf", 475.0),
    ],
)
def test_carrier_range(pattern: str, carrier: str, freq_hz: float) -> None:
    alarm = synth.alarm(pattern, carrier, freq_hz=freq_hz)
    assert_first_cycle(detect_alarms(alarm.audio), alarm, pattern, freq_hz)


def test_sine_at_520_hz_counts_too() -> None:
    alarm = synth.alarm("T3", "piezo", freq_hz=520.0)  # a sine, no harmonics
    assert_first_cycle(detect_alarms(alarm.audio), alarm, "T3", 520.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_timing_jitter(pattern: str, carrier: str, seed: int) -> None:
    alarm = synth.alarm(pattern, carrier, jitter=0.2, gen=synth.rng(seed))
    assert_first_cycle(detect_alarms(alarm.audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize("scale", [0.8, 1.2])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_slow_and_fast_units(pattern: str, scale: float) -> None:
    alarm = synth.alarm(pattern, "piezo", scale=scale)
    assert_first_cycle(detect_alarms(alarm.audio), alarm, pattern, 3100.0)


@pytest.mark.parametrize(("rt60_s", "drr_db"), [(0.5, 0.0), (0.8, 0.0), (0.6, -6.0)])
@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_reverberation(pattern: str, carrier: str, rt60_s: float, drr_db: float) -> None:
    gen = synth.rng(100)
    alarm = synth.alarm(pattern, carrier, jitter=0.1, gen=gen)
    audio = synth.reverb(alarm.audio, gen, rt60_s, drr_db)
    assert_first_cycle(detect_alarms(audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize("peak_db", [-45.0, -20.0, 0.0, 12.0])
@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_levels_from_far_away_to_clipping(pattern: str, carrier: str, peak_db: float) -> None:
    """-45 dBFS over a -75 dBFS room noise floor, up to 12 dB of clipping, as 16-bit PCM."""
    alarm = synth.alarm(pattern, carrier, peak_db=peak_db)
    floor = synth.pink_noise(len(alarm.audio) / synth.SAMPLE_RATE, -75.0, synth.rng(7))
    audio = synth.to_pcm16(synth.mix(alarm.audio, floor))  # clips above full scale
    assert_first_cycle(detect_alarms(audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_faint_alarm_in_another_room_over_louder_room_noise(pattern: str, carrier: str) -> None:
    """-62 dBFS over a -66 dBFS pink room noise: broadband noise alone is no reason to look."""
    alarm = synth.alarm(pattern, carrier, peak_db=-62.0)
    floor = synth.pink_noise(len(alarm.audio) / synth.SAMPLE_RATE, -66.0, synth.rng(8))
    audio = synth.to_pcm16(synth.mix(alarm.audio, floor))
    assert_first_cycle(detect_alarms(audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize("snr_db", [6.0, 0.0])
@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_background_speech(pattern: str, carrier: str, snr_db: float) -> None:
    alarm = synth.alarm(pattern, carrier, jitter=0.1, gen=synth.rng(21))
    audio = with_background(alarm, speech(3), snr_db)
    assert_first_cycle(detect_alarms(audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize(
    ("carrier", "snr_db", "mid_note"),
    [
        ("piezo", 6.0, True),
        ("piezo", 0.0, True),  # music holding G7 (3136 Hz) notes at the alarm's level
        ("lf", 6.0, True),  # ... and C5 (523 Hz) notes
        ("lf", 6.0, False),
    ],
)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_background_music(pattern: str, carrier: str, snr_db: float, mid_note: bool) -> None:
    alarm = synth.alarm(pattern, carrier, jitter=0.1, gen=synth.rng(22))
    audio = with_background(alarm, music(4, mid_note=mid_note), snr_db)
    assert_first_cycle(detect_alarms(audio), alarm, pattern, NOMINAL_HZ[carrier])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_hits_continue_while_the_alarm_sounds_and_stop_after(pattern: str) -> None:
    alarm = synth.alarm(pattern, "piezo", cycles=5, jitter=0.1, gen=synth.rng(5), tail_s=20.0)
    noise = synth.pink_noise(len(alarm.audio) / synth.SAMPLE_RATE, -60.0, synth.rng(6))
    hits = detect_alarms(synth.mix(alarm.audio, noise))
    starts = cycle_starts(alarm, pattern)
    assert len(hits) == len(starts) - 1  # the last cycle has no next pulse to confirm it
    for hit, start, following in zip(hits, starts, starts[1:], strict=False):
        assert abs(hit.start_s - start) <= 0.2
        assert following <= hit.end_s <= following + 0.5  # on the next cycle's first pulse
    assert hits[-1].end_s < alarm.offsets[-1] + 0.5


def test_alarm_already_sounding_when_the_stream_starts() -> None:
    alarm = synth.alarm("T3", "piezo", cycles=4, lead_s=0.0)
    cut = synth.samples(2.2)  # from the middle of the first cycle's third pulse
    hits = detect_alarms(alarm.audio[cut:])
    assert hits
    assert abs(hits[0].start_s - (alarm.onsets[3] - 2.2)) <= 0.2


# --- not alarms ------------------------------------------------------------------------------


def _microwave(count: int, on_s: float, off_s: float, freq_hz: float) -> np.ndarray:
    return synth.beeps(count, on_s, off_s, freq_hz, -15.0).audio


NEGATIVES = {
    "speech": lambda: speech(11, 20.0),
    "speech, high voice": lambda: synth.speech_like(30.0, synth.rng(12), -25.0, f0_hz=230.0),
    "music": lambda: music(13, 30.0),
    "music, slow, sustained 3136/523 Hz notes": lambda: synth.music_like(
        30.0, synth.rng(14), -25.0, tempo_bpm=70.0
    ),
    "music, fast": lambda: synth.music_like(30.0, synth.rng(15), -25.0, tempo_bpm=160.0),
    "microwave 3 x 0.5/0.5 s at 3.1 kHz": lambda: _microwave(3, 0.5, 0.5, 3100.0),
    "microwave 5 x 0.5/0.5 s at 3.1 kHz": lambda: _microwave(5, 0.5, 0.5, 3100.0),
    "microwave 4 x 0.2/0.2 s at 3.1 kHz": lambda: _microwave(4, 0.2, 0.2, 3100.0),
    "microwave 3 x 0.4/0.4 s at 520 Hz": lambda: _microwave(3, 0.4, 0.4, 520.0),
    "oven timer 5 x 0.3/0.3 s at 2 kHz": lambda: _microwave(5, 0.3, 0.3, 2000.0),
    "microwaves (random)": lambda: np.concatenate(
        [synth.microwave_beeps(synth.rng(16 + i)).audio for i in range(6)]
    ),
    "phone ringing (US)": lambda: synth.phone_ring_us(30.0),
    "phone ringing (UK)": lambda: synth.phone_ring_uk(30.0),
    "ringtone": lambda: synth.ringtone(30.0, synth.rng(1)),
    "ringtone 2": lambda: synth.ringtone(30.0, synth.rng(2)),
    "kettle 1.5-3.5 kHz": lambda: synth.kettle_whistle(30.0, synth.rng(3)),
    "kettle 2.5-3.5 kHz": lambda: synth.kettle_whistle(
        30.0, synth.rng(4), f_start=2500.0, f_end=3500.0
    ),
    "tone 3.1 kHz": lambda: synth.tone(3100.0, 20.0),
    "tone 520 Hz": lambda: synth.tone(520.0, 20.0),
    "square 520 Hz": lambda: synth.square(520.0, 20.0),
    "white noise": lambda: synth.white_noise(30.0, -20.0, synth.rng(5)),
    "pink noise": lambda: synth.pink_noise(30.0, -20.0, synth.rng(6)),
    "clicks every second": lambda: synth.clicks(30.0, synth.rng(7)),
    "clicks in T3 rhythm": lambda: synth.gate(
        synth.clicks(30.0, synth.rng(8), interval_s=0.02), synth.pattern_segments(synth.T3_CYCLE, 7)
    ),
    "silence": lambda: synth.silence(30.0),
    "clipped speech": lambda: synth.clip(synth.speech_like(20.0, synth.rng(9), -3.0)),
    "clipped music": lambda: synth.clip(synth.music_like(20.0, synth.rng(10), 0.0)),
    "DC offset": lambda: synth.mix(
        np.full(synth.samples(20.0), 0.3, np.float32),
        synth.pink_noise(20.0, -50.0, synth.rng(11)),
    ),
}


@pytest.mark.parametrize("name", list(NEGATIVES))
def test_no_alarm_in(name: str) -> None:
    assert detect_alarms(NEGATIVES[name]()) == []


# --- streaming -------------------------------------------------------------------------------


@cache
def _streaming_cases() -> list[np.ndarray]:
    gen = synth.rng(30)
    return [
        synth.alarm("T3", "piezo", cycles=4, jitter=0.2, gen=gen).audio,
        with_background(synth.alarm("T4", "lf", gen=gen), speech(3), 6.0),
        synth.reverb(synth.alarm("T3", "lf", gen=gen).audio, gen, 0.7),
        music(13, 30.0),
    ]


@pytest.mark.parametrize("case", range(4))
def test_streaming_matches_one_shot_for_any_chunking(case: int) -> None:
    audio = _streaming_cases()[case]
    expected = detect_alarms(audio)
    magnitude = stft_magnitude(audio)
    gen = np.random.default_rng(case)
    # frames in random chunks, including empty and very large ones
    detector, hits, at = AlarmPatternDetector(), [], 0
    while at < len(magnitude):
        n = int(gen.choice([0, 1, 2, 5, 13, 48, 96, 333, 1000]))
        hits += detector.push(magnitude[at : at + n], at)
        at += n
    assert hits == expected
    # audio in random chunks through the streaming frontend
    frontend, detector, hits, at = StreamingFrontend(), AlarmPatternDetector(), [], 0
    while at < len(audio):
        n = int(gen.integers(1, 12000))
        chunk = frontend.push(audio[at : at + n])
        hits += detector.push(chunk.magnitude, chunk.first_frame)
        at += n
    assert hits == expected


def test_stream_times_follow_first_frame() -> None:
    alarm = synth.alarm("T3", "piezo")
    expected = detect_alarms(alarm.audio)
    hits = AlarmPatternDetector().push(stft_magnitude(alarm.audio), 12_345)
    assert hits
    assert [h.start_s for h in hits] == pytest.approx([h.start_s + 123.45 for h in expected])
    assert [h.end_s for h in hits] == pytest.approx([h.end_s + 123.45 for h in expected])


def test_reset_and_discontinuity_restart_the_search() -> None:
    alarm = synth.alarm("T3", "piezo", cycles=3)
    magnitude = stft_magnitude(alarm.audio)
    cut = 300  # 3 s: the first cycle's three pulses, not yet confirmed
    detector = AlarmPatternDetector()
    assert detector.push(magnitude[:cut], 0) == []
    # a jump in frame numbers (a dropped chunk) forgets what came before: no cycle spans it
    hits = detector.push(magnitude[cut:], cut + 1000)
    assert all(h.start_s >= (cut + 1000) / 100 for h in hits)
    detector.reset()
    assert detector.push(magnitude, 0) == detect_alarms(alarm.audio)


def test_empty_push_and_bad_shape() -> None:
    detector = AlarmPatternDetector()
    assert detector.push(np.zeros((0, 257), np.float32), 0) == []
    with pytest.raises(ValueError, match="257"):
        detector.push(np.zeros((10, 64), np.float32), 0)


def test_memory_stays_bounded_on_an_endless_stream() -> None:
    """Six minutes of alarm, music and noise: history and pulse lists keep a fixed size."""
    gen = synth.rng(40)
    minute = synth.mix(
        np.tile(synth.alarm("T3", "piezo", cycles=3, lead_s=0.0, tail_s=0.0).audio, 6)[
            : synth.samples(60.0)
        ],
        music(13, 60.0),
        synth.white_noise(60.0, -40.0, gen),
    )
    magnitude = stft_magnitude(minute)
    detector = AlarmPatternDetector()
    buffer_bytes = detector._buf.nbytes
    frame, hits = 0, 0
    for _ in range(6):
        for at in range(0, len(magnitude), 96):
            hits += len(detector.push(magnitude[at : at + 96], frame))
            frame += len(magnitude[at : at + 96])
    assert hits > 60  # it kept detecting
    assert detector._buf.nbytes == buffer_bytes
    assert all(len(onsets) < 400 for onsets in detector._onsets.values())
    assert len(detector._pending) < 50
    assert len(detector._recent) <= 8
    assert len(detector._hits) <= 4
