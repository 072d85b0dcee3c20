"""Audio conversion at the source: its cost per stream, and audio to check it changes nothing.

    scripts/bench conversion [--seconds 60] [--code DIR] [--json]
    scripts/bench conversion --corpus OUT [--from ../shared/audio/dev ...]

Cost: CPU time per second of audio (one stream's real-time factor) to turn live PCM into the
16 kHz mono float32 the engine works on, in 100 ms chunks, for the formats microphones and
cameras send. ``--code DIR`` measures another checkout side by side (e.g. ``main`` before the
change: its ``engine.pcm.PcmConverter``), in a subprocess of this run.

``--corpus OUT`` writes what shows that conversion keeps detections: the corpora's clips at
48 kHz stereo (16-bit) and 44.1 kHz mono (24-bit), upsampled by FFmpeg from the 16 kHz
originals, and a logarithmic tone sweep (50 Hz-8 kHz, 30 s) at both rates, into
``OUT/<rate>/<label>/…`` — a corpus ``scripts/evaluate`` reads. Run evaluate on it with both
checkouts and compare the JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any
import wave

import av
import numpy as np

CHUNK_S = 0.1
FORMATS = ((16000, 2, 1), (44100, 2, 1), (48000, 2, 2), (48000, 3, 2), (22050, 1, 1))
SHARED_AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"


def _pcm(rate: int, width: int, channels: int, seconds: float) -> bytes:
    """Return loud noise and tones as PCM of a format."""
    rng = np.random.default_rng(rate + width + channels)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(n)
    frames = np.clip(np.repeat(mono[:, None], channels, axis=1), -1, 1)
    if width == 1:
        return np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    ints = np.round(frames * (2 ** (8 * width - 1) - 1)).astype("<i4")
    return ints.view(np.uint8).reshape(-1, 4)[:, :width].tobytes()


def _converter(code: Path | None) -> Callable[[int, int, int], Callable[[bytes], Any]]:
    """Return a factory of 'bytes → 16 kHz mono float32' for this checkout or an older one."""
    try:
        from custom_components.guard_mode.engine.audio import (  # noqa: PLC0415
            PcmConverter,
            to_float,
        )
    except ImportError:  # before issue 14: the hand-written converter gave floats
        from custom_components.guard_mode.engine.pcm import (  # type: ignore[import-not-found]  # noqa: PLC0415
            PcmConverter as OldConverter,
        )

        return lambda rate, width, channels: OldConverter(rate, width, channels).convert

    def new(rate: int, width: int, channels: int) -> Callable[[bytes], Any]:
        converter = PcmConverter()
        return lambda data: to_float(converter.convert(data, rate, width, channels))

    return new


def measure(seconds: float) -> dict[str, Any]:
    """Return CPU per audio second (RTF) of this checkout's conversion, per format."""
    make = _converter(None)
    figures = {}
    for rate, width, channels in FORMATS:
        data = _pcm(rate, width, channels, seconds)
        step = int(rate * CHUNK_S) * width * channels
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        convert = make(rate, width, channels)
        for chunk in chunks[:10]:  # warm up
            convert(chunk)
        convert = make(rate, width, channels)
        cpu0 = time.process_time()
        out = sum(len(convert(chunk)) for chunk in chunks)
        cpu = time.process_time() - cpu0
        figures[f"{rate}Hz_{8 * width}bit_{channels}ch"] = {
            "rtf": round(cpu / seconds, 6),
            "us_per_chunk": round(1e6 * cpu / len(chunks), 1),
            "samples_out": int(out),
        }
    return figures


def _write_wav(path: Path, frames: np.ndarray, rate: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ints = np.round(np.clip(frames, -1, 1) * (2 ** (8 * width - 1) - 1)).astype("<i4")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(frames.shape[1])
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(ints.view(np.uint8).reshape(-1, 4)[:, :width].tobytes())


def _upsample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Return 16 kHz mono float samples at rate (FFmpeg's resampler)."""
    resampler = av.AudioResampler(format="dbl", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(samples[np.newaxis].astype(np.float64), "dbl", "mono")
    frame.sample_rate = 16000
    out = [f.to_ndarray()[0] for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out)


def write_corpus(out: Path, corpora: list[Path]) -> int:
    """Write the corpora upsampled (48 kHz stereo 16-bit, 44.1 kHz mono 24-bit) and sweeps."""
    from custom_components.guard_mode.engine.audio import read_audio  # noqa: PLC0415

    variants = ((48000, 2, 2), (44100, 3, 1))
    count = 0
    for corpus in corpora:
        for path in sorted(corpus.rglob("*")):
            if path.suffix.lower() not in (".wav", ".flac"):
                continue
            samples = read_audio(path).samples.astype(np.float64)
            relative = path.relative_to(corpus).with_suffix(".wav")
            for rate, width, channels in variants:
                frames = np.repeat(_upsample(samples, rate)[:, None], channels, axis=1)
                _write_wav(out / f"{rate}" / corpus.name / relative, frames, rate, width)
                count += 1
    for rate, width, channels in variants:  # a 30 s log sweep, 50 Hz to 8 kHz, at -12 dBFS
        t = np.arange(30 * rate) / rate
        phase = 2 * np.pi * 50 * 30 / np.log(160) * (np.exp(t / 30 * np.log(160)) - 1)
        sweep = np.repeat((0.25 * np.sin(phase))[:, None], channels, axis=1)
        _write_wav(out / f"{rate}" / "sweep" / "sweep" / "sweep.wav", sweep, rate, width)
        count += 1
    return count


def main() -> None:
    """Run from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--code", type=Path, help="also measure this checkout (side by side)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--corpus", type=Path, help="write the check corpus here instead")
    parser.add_argument("--from", dest="sources", type=Path, nargs="*")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.corpus:
        sources = args.sources or [SHARED_AUDIO / "dev", SHARED_AUDIO / "dev-impacts"]
        print(f"wrote {write_corpus(args.corpus, sources)} files under {args.corpus}")
        return
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    figures = {"this": measure(args.seconds)}
    if args.measure_only:
        print(json.dumps(figures["this"]))
        return
    if args.code is not None:
        env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
        command = [sys.executable, __file__, "--measure-only", "--seconds", str(args.seconds)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        figures["code"] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    for name, table in figures.items():
        for fmt, row in table.items():
            print(f"{name:>5} {fmt:<22} rtf {row['rtf']:.6f}  {row['us_per_chunk']:>7.1f} µs/chunk")


if __name__ == "__main__":
    main()
