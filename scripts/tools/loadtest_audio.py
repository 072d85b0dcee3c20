"""Synthetic microphone audio for the load test: a quiet room with events, or a busy room.

16 kHz mono float32, deterministic (seeded). Two profiles:

- ``quiet``: a quiet room (pink noise around -68 dBFS, below the engine's -55 dBFS level gate)
  with, now and then, speech-like talk, music-like passages and short noise bursts (a door, a
  clatter) — most windows stay below the gate, some go through the tagger, as in a real home;
- ``loud``: a busy room (TV-like mix of speech, music and noise over a -40 dBFS floor) where
  every window is above the gate and, being media, seldom calm: the tagger runs on nearly
  every window (the report's ``skipped_calm_share`` says how many it skipped).

The generators are simple (harmonic speech with formants, chords with partials, decaying noise),
written for this harness; they sound like what they stand for to the level gate and the tagger,
which is what the load depends on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
Audio = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
GATE_DB = -55.0  # the engine's default level gate (loudest 25 ms frame of a 0.96 s window)

# Formants (Hz) of a few vowels: a, e, i, o, u.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    np.float64,
)


def _amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _set_rms(x: _F64, db: float) -> _F64:
    power = float(np.mean(x * x)) if x.size else 0.0
    return x if power <= 0 else x * (_amp(db) / np.sqrt(power))


def pink_noise(n: int, level_db: float, gen: np.random.Generator) -> _F64:
    """Return pink (1/f) noise at an RMS level."""
    spec = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[1:] /= np.sqrt(np.maximum(f[1:] / 20.0, 1.0))
    spec[0] = 0
    return _set_rms(np.fft.irfft(spec, n), level_db)


def speech_like(seconds: float, level_db: float, gen: np.random.Generator) -> _F64:
    """Return talk: harmonics of a wandering f0 shaped by vowel formants, in syllables."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = gen.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.4 * t + gen.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(gen.uniform(0.12, 0.3) * SAMPLE_RATE)
        end = min(n, pos + length)
        formants = _VOWELS[int(gen.integers(0, len(_VOWELS)))] * gen.uniform(0.9, 1.1)
        seg = np.zeros(end - pos)
        mean_f0 = float(f0[pos:end].mean())
        for k in range(1, int(3800 // mean_f0)):
            freq = k * mean_f0
            gain = sum(np.exp(-(((freq - f) / 110.0) ** 2)) for f in formants) / k**0.5
            if gain > 1e-3:
                seg += gain * np.sin(k * phase[pos:end])
        env = np.sin(np.pi * np.arange(end - pos) / max(end - pos, 1)) ** 0.7
        out[pos:end] = seg * env * gen.uniform(0.4, 1.0)
        pos = end
        if gen.uniform() < 0.3:  # a pause between words
            pos += int(gen.uniform(0.1, 0.4) * SAMPLE_RATE)
    return _set_rms(out, level_db)


def music_like(seconds: float, level_db: float, gen: np.random.Generator) -> _F64:
    """Return music: a chord every two beats (harmonic notes), plucked melody notes, a hi-hat."""
    n = int(seconds * SAMPLE_RATE)
    out = np.zeros(n)
    beat = 60.0 / gen.uniform(80, 130)
    step = int(beat * SAMPLE_RATE)
    roots = [48, 53, 55, 57, 50, 52]

    def note(midi: float, length: int, decay_s: float) -> _F64:
        freq = 440.0 * 2 ** ((midi - 69) / 12)
        tt = np.arange(length) / SAMPLE_RATE
        tone = sum(np.sin(2 * np.pi * freq * k * tt) / k for k in range(1, 5))
        return np.asarray(tone * np.exp(-tt / decay_s), np.float64)

    for start in range(0, n, 2 * step):
        length = min(2 * step, n - start)
        root = roots[int(gen.integers(0, len(roots)))]
        for interval in (0, 4, 7):
            out[start : start + length] += 0.3 * note(root + interval, length, 1.5)
    for start in range(0, n, step):
        length = min(step, n - start)
        out[start : start + length] += 0.5 * note(root + 24 + int(gen.integers(0, 8)), length, 0.25)
        hat = min(int(0.04 * SAMPLE_RATE), length)
        out[start : start + hat] += 0.1 * gen.standard_normal(hat) * np.linspace(1, 0, hat)
    return _set_rms(out, level_db)


def noise_burst(level_db: float, gen: np.random.Generator) -> _F64:
    """Return a short knock or clatter: decaying band-limited noise, 0.15-0.6 s."""
    n = int(gen.uniform(0.15, 0.6) * SAMPLE_RATE)
    noise = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    centre = gen.uniform(300, 3000)
    noise *= np.exp(-(((f - centre) / (0.8 * centre)) ** 2))
    burst = np.fft.irfft(noise, n) * np.exp(-np.arange(n) / (0.08 * SAMPLE_RATE))
    return _set_rms(burst, level_db)


def _add(out: _F64, x: _F64, at: int) -> None:
    seg = x[: max(0, len(out) - at)]
    out[at : at + len(seg)] += seg


def quiet_room(seconds: float, seed: int) -> Audio:
    """Return a quiet room with occasional talk, music and knocks (most windows gated)."""
    gen = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    out = pink_noise(n, -68.0, gen)
    pos = int(gen.uniform(2, 10) * SAMPLE_RATE)
    while pos < n:
        kind = gen.choice(["speech", "music", "burst", "burst"])
        if kind == "speech":
            event = speech_like(gen.uniform(2, 6), gen.uniform(-38, -28), gen)
        elif kind == "music":
            event = music_like(gen.uniform(4, 10), gen.uniform(-40, -32), gen)
        else:
            event = noise_burst(gen.uniform(-35, -22), gen)
        _add(out, event, pos)
        pos += len(event) + int(gen.uniform(8, 30) * SAMPLE_RATE)
    return np.clip(out, -1, 1).astype(np.float32)


def busy_room(seconds: float, seed: int) -> Audio:
    """Return a busy room (a TV on): speech and music over noise, every window above the gate."""
    gen = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    out = pink_noise(n, -40.0, gen)
    pos = 0
    while pos < n:
        if gen.uniform() < 0.6:
            event = speech_like(gen.uniform(3, 8), gen.uniform(-32, -24), gen)
        else:
            event = music_like(gen.uniform(5, 12), gen.uniform(-32, -26), gen)
        _add(out, event, pos)
        if gen.uniform() < 0.5:
            _add(out, noise_burst(gen.uniform(-30, -22), gen), pos + int(gen.integers(0, n // 50)))
        pos += len(event)
    return np.clip(out, -1, 1).astype(np.float32)


def profile_audio(profile: str, seconds: float, seed: int) -> Audio:
    """Return the audio of a profile: 'quiet' or 'loud'."""
    if profile == "loud":
        return busy_room(seconds, seed)
    if profile == "quiet":
        return quiet_room(seconds, seed)
    raise ValueError(f"unknown audio profile {profile!r}")


def pcm16(audio: Audio) -> bytes:
    """Return float audio in [-1, 1] as 16-bit little-endian PCM."""
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def gated_share(audio: Audio, gate_db: float = GATE_DB) -> float:
    """Return the share of 0.96 s windows (every 0.48 s) whose loudest 25 ms frame is below gate_db.

    An approximation of the engine's gate (its frames are 25 ms every 10 ms), for the report.
    """
    frame, hop = 400, 160
    count = 1 + max(0, (len(audio) - frame) // hop)
    idx = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    frames = audio[idx].astype(np.float64)
    db = 10 * np.log10(np.maximum((frames**2).mean(axis=1), 1e-12))
    windows = range(0, count - 96 + 1, 48)
    gated = [float(db[w : w + 96].max()) < gate_db for w in windows]
    return float(np.mean(gated)) if gated else 1.0
