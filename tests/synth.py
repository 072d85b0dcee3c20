"""Synthetic test audio: alarms, everyday sounds and backgrounds, 16 kHz mono float32.

Every generator returns a float32 array at :data:`SAMPLE_RATE`. Levels are in dBFS: ``peak_db``
sets the peak amplitude of a tone (0 dBFS = amplitude 1), ``level_db`` the RMS of a noise-like or
mixed signal (speech, music, noise). Random generators take a ``numpy.random.Generator``, so
tests stay deterministic (make one with :func:`rng`). Nothing clips unless asked (:func:`clip`,
:func:`to_pcm16`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
import wave

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
Audio = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]

#: Nominal temporal patterns as (on_s, off_s) segments of one cycle.
T3_CYCLE: tuple[tuple[float, float], ...] = ((0.5, 0.5), (0.5, 0.5), (0.5, 1.5))  # 4.0 s
T4_CYCLE: tuple[tuple[float, float], ...] = ((0.1, 0.1),) * 3 + ((0.1, 5.1),)  # 5.8 s


def rng(seed: int = 0) -> np.random.Generator:
    """Return a seeded random generator."""
    return np.random.default_rng(seed)


def db_to_amp(db: float) -> float:
    """Convert dBFS to a linear amplitude."""
    return float(10.0 ** (db / 20.0))


def _normalise(x: npt.ArrayLike, peak_db: float) -> Audio:
    a = np.asarray(x, np.float64)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    return (a * (db_to_amp(peak_db) / max(peak, 1e-9))).astype(np.float32)


def rms_db(x: npt.ArrayLike) -> float:
    """Return the RMS level of a signal in dBFS (-inf for silence)."""
    a = np.asarray(x, np.float64)
    power = float(np.mean(a * a)) if a.size else 0.0
    return 10.0 * np.log10(power) if power > 0 else float("-inf")


def set_rms(x: npt.ArrayLike, db: float) -> Audio:
    """Scale a signal to an RMS level in dBFS (silence stays silence)."""
    a = np.asarray(x, np.float64)
    level = rms_db(a)
    if not np.isfinite(level):
        return a.astype(np.float32)
    return (a * db_to_amp(db - level)).astype(np.float32)


def samples(duration_s: float) -> int:
    """Return the number of samples in duration_s seconds."""
    return round(duration_s * SAMPLE_RATE)


def _t(n: int) -> _F64:
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


# --- building blocks -------------------------------------------------------------------------


def silence(duration_s: float) -> Audio:
    """Return digital silence."""
    return np.zeros(samples(duration_s), np.float32)


def tone(freq_hz: float, duration_s: float, peak_db: float = -20.0, phase: float = 0.0) -> Audio:
    """Return a sine tone."""
    t = _t(samples(duration_s))
    return (db_to_amp(peak_db) * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def square(
    freq_hz: float, duration_s: float, peak_db: float = -20.0, rolloff_db_per_oct: float = 0.0
) -> Audio:
    """Return a band-limited square wave (odd harmonics below 8 kHz, amplitude 1/n).

    ``rolloff_db_per_oct`` adds a further high-frequency roll-off (a small speaker, a wall).
    The fundamental's peak amplitude is set by ``peak_db``.
    """
    t = _t(samples(duration_s))
    out = np.zeros_like(t)
    n = 1
    while n * freq_hz < SAMPLE_RATE / 2 - 200:
        gain = (1.0 / n) * 10.0 ** (-rolloff_db_per_oct * np.log2(n) / 20.0)
        out += gain * np.sin(2 * np.pi * n * freq_hz * t)
        n += 2
    return (db_to_amp(peak_db) * out).astype(np.float32)


def gate(
    carrier: npt.ArrayLike, segments: Sequence[tuple[float, float]], ramp_s: float = 0.003
) -> Audio:
    """Switch a carrier on and off: ``segments`` are (on_s, off_s) pairs from time 0.

    Each on-part gets raised-cosine ramps of ``ramp_s`` (no clicks). The output has the length of
    the carrier; segments past its end are cut.
    """
    c = np.asarray(carrier, np.float32)
    env = np.zeros(len(c), np.float32)
    ramp_n = max(1, samples(ramp_s))
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_n) / ramp_n)).astype(np.float32)
    pos = 0.0
    for on_s, off_s in segments:
        a, b = samples(pos), min(samples(pos + on_s), len(c))
        if a >= len(c):
            break
        env[a:b] = 1.0
        r = min(ramp_n, (b - a) // 2)
        if r > 0:
            env[a : a + r] *= ramp[:r]
            env[b - r : b] *= ramp[:r][::-1]
        pos += on_s + off_s
    return c * env


def place(x: npt.ArrayLike, at_s: float, total_s: float) -> Audio:
    """Return ``total_s`` seconds of silence with ``x`` starting at ``at_s`` (cut at the end)."""
    out = silence(total_s)
    a = samples(at_s)
    src = np.asarray(x, np.float32)[: max(0, len(out) - a)]
    out[a : a + len(src)] = src
    return out


def mix(*signals: npt.ArrayLike) -> Audio:
    """Sum signals; the result is as long as the longest (shorter ones are zero-padded)."""
    arrays = [np.asarray(s, np.float32) for s in signals]
    out = np.zeros(max((len(a) for a in arrays), default=0), np.float32)
    for a in arrays:
        out[: len(a)] += a
    return out


def clip(x: npt.ArrayLike, limit: float = 1.0) -> Audio:
    """Hard-clip a signal at +-limit (what an overdriven input does)."""
    return np.clip(np.asarray(x, np.float32), -limit, limit)


def to_pcm16(x: npt.ArrayLike) -> Audio:
    """Quantise to 16 bit and back (as a WAV round trip does), clipping at full scale."""
    q = np.round(np.clip(np.asarray(x, np.float64), -1.0, 32767 / 32768) * 32768.0)
    return (q / 32768.0).astype(np.float32)


def pcm16(x: npt.ArrayLike) -> bytes:
    """Return float audio in [-1, 1] as 16-bit little-endian PCM (what a microphone sends)."""
    return (np.clip(np.asarray(x), -1, 1) * 32767).astype("<i2").tobytes()


def write_wav(path: Path, x: npt.ArrayLike, rate: int = SAMPLE_RATE, channels: int = 1) -> Path:
    """Write a 16-bit WAV file of the audio (the same in every channel); return its path."""
    mono = np.frombuffer(pcm16(x), "<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(mono, channels).tobytes())
    return path


# --- noise and reverberation -----------------------------------------------------------------


def white_noise(duration_s: float, level_db: float, gen: np.random.Generator) -> Audio:
    """Return Gaussian white noise at an RMS level."""
    return set_rms(gen.standard_normal(samples(duration_s)), level_db)


def pink_noise(duration_s: float, level_db: float, gen: np.random.Generator) -> Audio:
    """Return pink (1/f power) noise at an RMS level, shaped in the frequency domain."""
    n = samples(duration_s)
    if n == 0:
        return silence(0)
    spec = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[1:] /= np.sqrt(f[1:] / 20.0).clip(1.0)
    spec[0] = 0
    return set_rms(np.fft.irfft(spec, n), level_db)


def _fft_convolve(x: _F64, h: _F64) -> _F64:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def room_impulse_response(
    rt60_s: float, gen: np.random.Generator, drr_db: float = 0.0, predelay_s: float = 0.004
) -> _F64:
    """Return a synthetic room impulse response: a direct path plus an exponential noise tail.

    ``rt60_s`` is the time the tail takes to decay by 60 dB; ``drr_db`` the direct-to-reverberant
    energy ratio (0 dB at the critical distance, negative farther away).
    """
    n = samples(rt60_s * 1.2)
    t = _t(n)
    tail = gen.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)
    tail[: samples(predelay_s)] = 0.0
    tail *= np.sqrt(1.0 / (np.sum(tail**2) * db_to_amp(drr_db) ** 2))
    tail[0] = 1.0  # direct sound, energy 1
    return np.asarray(tail, np.float64)


def reverb(
    x: npt.ArrayLike,
    gen: np.random.Generator,
    rt60_s: float = 0.6,
    drr_db: float = 0.0,
    keep_length: bool = True,
) -> Audio:
    """Convolve with :func:`room_impulse_response`, keeping the direct sound's level."""
    a = np.asarray(x, np.float64)
    y = _fft_convolve(a, room_impulse_response(rt60_s, gen, drr_db))
    return (y[: len(a)] if keep_length else y).astype(np.float32)


# --- alarms ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synth:
    """A synthetic signal and the true times of its pulses (seconds from its start)."""

    audio: Audio
    onsets: tuple[float, ...]
    offsets: tuple[float, ...]


def pattern_segments(
    cycle: Sequence[tuple[float, float]],
    cycles: int,
    gen: np.random.Generator | None = None,
    jitter: float = 0.0,
    scale: float = 1.0,
) -> list[tuple[float, float]]:
    """Return ``cycles`` repetitions of a pattern as (on_s, off_s) segments.

    Every duration is multiplied by ``scale`` (a unit that runs slow or fast) and by an independent
    factor drawn uniformly from ``[1 - jitter, 1 + jitter]``.
    """
    out = []
    for _ in range(cycles):
        for on_s, off_s in cycle:
            on_k, off_k = 1.0, 1.0
            if gen is not None and jitter > 0:
                on_k, off_k = 1 + gen.uniform(-jitter, jitter), 1 + gen.uniform(-jitter, jitter)
            out.append((on_s * on_k * scale, off_s * off_k * scale))
    return out


def alarm(
    pattern: str = "T3",
    carrier: str = "piezo",
    cycles: int = 3,
    *,
    freq_hz: float | None = None,
    peak_db: float = -20.0,
    jitter: float = 0.0,
    scale: float = 1.0,
    gen: np.random.Generator | None = None,
    lead_s: float = 1.0,
    tail_s: float = 2.0,
    rolloff_db_per_oct: float = 0.0,
) -> Synth:
    """Return a smoke (``"T3"``) or CO (``"T4"``) alarm.

    ``carrier`` is ``"piezo"`` (a sine, 3.1 kHz by default) or ``"lf"`` (a 520 Hz square wave,
    NFPA 72 low-frequency sounder). The alarm starts after ``lead_s`` of silence and is followed by
    ``tail_s`` of silence (after its last cycle's final off time).
    """
    cycle = T3_CYCLE if pattern == "T3" else T4_CYCLE
    segs = pattern_segments(cycle, cycles, gen, jitter, scale)
    length = sum(a + b for a, b in segs)
    if carrier == "piezo":
        sound = tone(freq_hz or 3100.0, length, peak_db)
    else:
        sound = square(freq_hz or 520.0, length, peak_db, rolloff_db_per_oct)
    gated = gate(sound, segs)
    onsets, offsets, pos = [], [], lead_s
    for on_s, off_s in segs:
        onsets.append(pos)
        offsets.append(pos + on_s)
        pos += on_s + off_s
    audio = place(gated, lead_s, lead_s + length + tail_s)
    return Synth(audio, tuple(onsets), tuple(offsets))


def smoke_alarm_audio() -> Audio:
    """Three T3 cycles of a 3.1 kHz smoke alarm, then 20 s of a quiet room."""
    return alarm("T3", "piezo", cycles=3, peak_db=-12.0, lead_s=1.0, tail_s=20.0).audio


def beeps(
    count: int,
    on_s: float,
    off_s: float,
    freq_hz: float,
    peak_db: float = -20.0,
    *,
    lead_s: float = 1.0,
    tail_s: float = 6.0,
    square_wave: bool = False,
) -> Synth:
    """Return ``count`` equal beeps, once (a microwave or oven timer's end beeps)."""
    segs = [(on_s, off_s)] * count
    length = count * (on_s + off_s)
    wave = square(freq_hz, length, peak_db) if square_wave else tone(freq_hz, length, peak_db)
    onsets = tuple(lead_s + i * (on_s + off_s) for i in range(count))
    audio = place(gate(wave, segs), lead_s, lead_s + length + tail_s)
    return Synth(audio, onsets, tuple(o + on_s for o in onsets))


def microwave_beeps(gen: np.random.Generator, peak_db: float = -20.0) -> Synth:
    """Return a random microwave end signal: 3-5 beeps of 0.2-0.5 s at 1-4 kHz, once."""
    on_s = float(gen.uniform(0.2, 0.5))
    return beeps(
        int(gen.integers(3, 6)),
        on_s,
        on_s * float(gen.uniform(0.6, 1.4)),
        float(gen.uniform(1000, 4000)),
        peak_db,
        square_wave=bool(gen.integers(0, 2)),
    )


# --- everyday sounds -------------------------------------------------------------------------


def phone_ring_us(duration_s: float, peak_db: float = -20.0) -> Audio:
    """Return a North American ring: 440 + 480 Hz, 2 s on, 4 s off."""
    n = samples(duration_s)
    t = _t(n)
    wave = 0.5 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * db_to_amp(peak_db)
    return gate(wave, [(2.0, 4.0)] * (int(duration_s // 6) + 1))


def phone_ring_uk(duration_s: float, peak_db: float = -20.0) -> Audio:
    """Return a British ring: 400 + 450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off."""
    n = samples(duration_s)
    t = _t(n)
    wave = 0.5 * (np.sin(2 * np.pi * 400 * t) + np.sin(2 * np.pi * 450 * t)) * db_to_amp(peak_db)
    return gate(wave, [(0.4, 0.2), (0.4, 2.0)] * (int(duration_s // 3) + 1))


def _note(freq_hz: float, duration_s: float, partials: int, decay_s: float | None) -> _F64:
    """Return one harmonic note (amplitude 1/k partials), optionally decaying like a pluck."""
    t = _t(samples(duration_s))
    out = np.zeros_like(t)
    for k in range(1, partials + 1):
        if k * freq_hz >= SAMPLE_RATE / 2 - 200:
            break
        out += np.sin(2 * np.pi * k * freq_hz * t) / k
    env = np.minimum(1.0, t / 0.01)  # 10 ms attack
    if decay_s is not None:
        env *= np.exp(-t / decay_s)
    tail = min(len(t), samples(0.03))
    if tail:
        env[-tail:] *= np.linspace(1.0, 0.0, tail)
    return np.asarray(out * env, np.float64)


def ringtone(duration_s: float, gen: np.random.Generator, peak_db: float = -20.0) -> Audio:
    """Return a melodic mobile ringtone: a bright 8-note phrase repeated with a short rest."""
    scale_hz = 880.0 * 2.0 ** (np.array([0, 2, 4, 7, 9, 12, 14, 16, 19]) / 12)  # A5 pentatonic
    phrase = [
        (float(gen.choice(scale_hz)), float(gen.choice([0.12, 0.12, 0.25]))) for _ in range(8)
    ]
    out = np.zeros(samples(duration_s))
    pos = 0.0
    while pos < duration_s:
        for freq, dur in phrase:
            note = _note(freq, dur, 4, 0.15)
            a = samples(pos)
            seg = note[: max(0, len(out) - a)]
            out[a : a + len(seg)] += seg
            pos += dur + 0.03
        pos += 1.0
    return _normalise(out, peak_db)


def kettle_whistle(
    duration_s: float,
    gen: np.random.Generator,
    peak_db: float = -20.0,
    f_start: float = 1500.0,
    f_end: float = 3500.0,
) -> Audio:
    """Return a kettle whistle: a continuous tone gliding slowly up, with flutter and breath."""
    n = samples(duration_s)
    t = _t(n)
    freq = f_start + (f_end - f_start) * t / max(duration_s, 1e-9)
    freq = freq * (1 + 0.004 * np.sin(2 * np.pi * 5.3 * t))
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    amp = np.minimum(1.0, t / 1.5) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
    whistle = amp * np.sin(phase)
    breath = 0.05 * gen.standard_normal(n) * np.minimum(1.0, t / 1.5)
    out = whistle + breath
    return _normalise(out, peak_db)


def clicks(
    duration_s: float,
    gen: np.random.Generator,
    peak_db: float = -10.0,
    interval_s: float = 1.0,
    jitter_s: float = 0.0,
) -> Audio:
    """Return a train of short broadband clicks (single-sample impulses plus a 2 ms decay)."""
    out = np.zeros(samples(duration_s))
    kernel = np.exp(-np.arange(samples(0.002)) / 5.0) * gen.choice([-1.0, 1.0], samples(0.002))
    pos = interval_s / 2
    while pos < duration_s:
        a = samples(pos + (gen.uniform(-jitter_s, jitter_s) if jitter_s else 0.0))
        seg = kernel[: max(0, len(out) - a)]
        out[a : a + len(seg)] += seg
        pos += interval_s
    return (out * db_to_amp(peak_db)).astype(np.float32)


# --- speech and music ------------------------------------------------------------------------

_VOWELS = np.array(  # F1, F2, F3 (Hz)
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [530, 1840, 2480],
        [660, 1720, 2410],
        [570, 840, 2410],
        [440, 1020, 2240],
        [300, 870, 2240],
        [640, 1190, 2390],
        [490, 1350, 1690],
        [390, 1990, 2550],
    ],
    np.float64,
)


def _smooth(x: _F64, width: int) -> _F64:
    if width <= 1:
        return x
    kernel = np.hanning(width + 2)[1:-1]
    return np.convolve(np.pad(x, width, mode="edge"), kernel / kernel.sum(), "same")[width:-width]


def speech_like(
    duration_s: float,
    gen: np.random.Generator,
    level_db: float = -30.0,
    f0_hz: float | None = None,
) -> Audio:
    """Return a speech-like signal.

    A glottal pulse train (harmonics of a wandering f0, -6 dB/octave) shaped by three moving
    formants, gated into syllables (~4 per second, in words separated by pauses), with fricative
    noise bursts (2-7 kHz) at some syllable onsets.
    """
    n = samples(duration_s)
    if n == 0:
        return silence(0)
    rate = 200  # control rate (Hz)
    m = int(np.ceil(duration_s * rate)) + 2
    tc = np.arange(m) / rate
    base = f0_hz if f0_hz is not None else float(gen.uniform(95, 230))
    f0_ctrl = base * (
        1
        + 0.12 * np.sin(2 * np.pi * 0.3 * tc + gen.uniform(0, 6.3))
        + 0.06 * np.sin(2 * np.pi * 1.1 * tc + gen.uniform(0, 6.3))
    )
    # syllables: consecutive segments with a vowel and an envelope; words separated by pauses
    env_ctrl = np.zeros(m)
    fricative_ctrl = np.zeros(m)
    formant_ctrl = np.zeros((m, 3))
    pos = 0.0
    vowel = _VOWELS[0]
    while pos < duration_s:
        for _ in range(int(gen.integers(1, 5))):
            dur = float(gen.uniform(0.12, 0.32))
            a, b = int(pos * rate), min(m, int((pos + dur) * rate))
            if a >= m:
                break
            vowel = _VOWELS[int(gen.integers(0, len(_VOWELS)))]
            formant_ctrl[a:b] = vowel * gen.uniform(0.9, 1.15)
            k = b - a
            env_ctrl[a:b] = np.sin(np.pi * np.arange(k) / max(k, 1)) ** 0.7 * gen.uniform(0.4, 1)
            if gen.uniform() < 0.35:
                fa = max(0, a - int(0.06 * rate))
                fricative_ctrl[fa:a] = gen.uniform(0.2, 0.6)
            pos += dur + float(gen.uniform(0.0, 0.05))
        formant_ctrl[int(pos * rate) : int((pos + 0.5) * rate)] = vowel
        pos += float(gen.uniform(0.1, 0.45))
    formant_ctrl = np.stack([_smooth(formant_ctrl[:, i], 8) for i in range(3)], axis=1)
    env_ctrl = _smooth(env_ctrl, 4)
    fricative_ctrl = _smooth(fricative_ctrl, 3)

    t = _t(n)
    f0 = np.interp(t, tc, f0_ctrl)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    bw = np.array([90.0, 110.0, 170.0])
    voiced = np.zeros(n)
    for h in range(1, int(7000 // base) + 1):
        f_h = h * f0_ctrl
        gain = np.sum(
            1.0 / np.sqrt(1.0 + ((f_h[:, None] - formant_ctrl) / bw) ** 2) * [1.0, 0.7, 0.35],
            axis=1,
        )
        gain *= (f_h < 7500) / h  # source and radiation: -6 dB/octave
        voiced += np.interp(t, tc, gain * env_ctrl) * np.sin(h * phase + gen.uniform(0, 6.3))
    noise = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    noise *= (f > 2000) & (f < 7000)
    fricative = np.fft.irfft(noise, n) * np.interp(t, tc, fricative_ctrl) * 3.0
    return set_rms(voiced + fricative, level_db)


def _midi_hz(note: float) -> float:
    return float(440.0 * 2.0 ** ((note - 69) / 12))


def music_like(
    duration_s: float,
    gen: np.random.Generator,
    level_db: float = -30.0,
    tempo_bpm: float = 96.0,
    high_note_hz: float | None = 3136.0,
    mid_note_hz: float | None = 523.25,
) -> Audio:
    """Return music-like audio: sustained chords, a plucked melody, bass and a hi-hat.

    Every two beats a new chord (three sustained harmonic notes with vibrato) starts; a melody of
    plucked notes plays on the beats. ``high_note_hz`` adds a sustained flute-like note (e.g.
    3136 Hz, G7, close to a piezo horn) held for 1-3 beats at a time; ``mid_note_hz`` makes it
    hold notes at that pitch (e.g. 523 Hz, C5, close to a low-frequency alarm) in the chords.
    """
    n = samples(duration_s)
    out = np.zeros(n)
    beat = 60.0 / tempo_bpm

    def add(x: _F64, at_s: float, gain: float) -> None:
        a = samples(at_s)
        seg = x[: max(0, n - a)]
        out[a : a + len(seg)] += gain * seg

    roots = [60, 65, 67, 57, 62, 64]  # C F G A D E (MIDI)
    pos = 0.0
    while pos < duration_s:
        root = roots[int(gen.integers(0, len(roots)))]
        notes = [_midi_hz(root + i) for i in (0, 4, 7)]
        if mid_note_hz is not None and gen.uniform() < 0.5:
            notes[-1] = mid_note_hz
        dur = 2 * beat
        for f in notes:
            t = _t(samples(dur))
            vib = 1 + 0.003 * np.sin(2 * np.pi * 5.5 * t)
            ph = 2 * np.pi * np.cumsum(f * vib) / SAMPLE_RATE
            note = sum(np.sin(k * ph) / k**1.5 for k in range(1, 7) if k * f < 7800)
            env = np.minimum(1.0, t / 0.08) * np.minimum(1.0, (dur - t) / 0.08)
            add(np.asarray(note) * env, pos, 0.25)
        add(_note(_midi_hz(root - 12), dur, 5, 0.8), pos, 0.4)  # bass
        for b in range(2):  # melody, plucked
            f = _midi_hz(root + 12 + int(gen.choice([0, 2, 4, 7, 9, 12])))
            add(_note(f, beat, 8, 0.3), pos + b * beat, 0.3)
        pos += dur
    if high_note_hz is not None:
        pos = float(gen.uniform(0, beat))
        while pos < duration_s:
            dur = beat * int(gen.integers(1, 4))
            t = _t(samples(dur))
            vib = 1 + 0.004 * np.sin(2 * np.pi * 5.0 * t)
            ph = 2 * np.pi * np.cumsum(high_note_hz * vib) / SAMPLE_RATE
            env = np.minimum(1.0, t / 0.05) * np.minimum(1.0, (dur - t) / 0.05)
            add(np.sin(ph) * env, pos, 0.15)
            pos += dur + beat * int(gen.integers(0, 3))
    hat = gen.standard_normal(samples(0.05)) * np.exp(-np.arange(samples(0.05)) / 120.0)
    pos = beat / 2
    while pos < duration_s:
        add(hat, pos, 0.05)
        pos += beat
    return set_rms(out, level_db)


# --- household sounds for learning tests -----------------------------------------------------


def _decay(n: int, attack_s: float, decay_s: float) -> _F64:
    t = _t(n)
    return np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)


def shattering(seed: int, duration_s: float = 2.5, peak_db: float = -6.0) -> Audio:
    """Return a crash with a rain of short high tinkles (falling shards, cutlery, chimes).

    The tagger hears glass at the onset (a strong window or two), and in the crash's first
    moments (a late window) a shot; at high sensitivity that is an alert, which makes it a handy
    recurring non-threat for the learning tests.
    """
    gen = rng(seed)
    n = samples(duration_s)
    out = 0.6 * np.diff(gen.standard_normal(n + 1)) * _decay(n, 0.001, 0.15)
    length = samples(0.3)
    for _ in range(80):
        start = int(gen.uniform(0, duration_s - 0.3) * SAMPLE_RATE)
        freq, decay = gen.uniform(3500, 7500), gen.uniform(0.005, 0.04)
        ring = np.sin(2 * np.pi * freq * _t(length)) * np.exp(-_t(length) / decay)
        out[start : start + length] += ring * gen.uniform(0.1, 0.5)
    return (out / np.abs(out).max() * db_to_amp(peak_db)).astype(np.float32)


def chime(low_hz: float = 550.0, high_hz: float = 660.0, peak_db: float = -10.0) -> Audio:
    """Return a two-note doorbell ("ding-dong") with harmonics and a bell-like decay."""
    notes = []
    for freq in (high_hz, low_hz):
        n = samples(0.6)
        partials = sum(np.sin(2 * np.pi * freq * k * _t(n)) / k**1.2 for k in (1, 2, 3, 4.2))
        notes.append(partials * _decay(n, 0.003, 0.35))
    out = np.concatenate(notes)
    return (out / np.abs(out).max() * db_to_amp(peak_db)).astype(np.float32)
