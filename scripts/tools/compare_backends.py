"""Compare the tagger's onnxruntime and numpy backends on WAV files: agreement and speed.

Usage: scripts/compare_backends [PATH ...] [--threads N] [--rounds R] [--json]

PATHs are WAV files or folders searched recursively (default: ../shared/audio/dev). Audio is read
with the ``wave`` module (8/16/32-bit PCM, channels averaged; other rates resampled linearly),
clips shorter than one window are zero-padded to one, and every 0.96 s window (hop 0.48 s) goes
through the numpy frontend and both backends. Printed: max / p99 / median of |score difference|
over all window x class values, the same for each window's largest difference, top-1 label
agreement, embedding agreement, and CPU ms per window (process CPU time, all threads; best of R
rounds) at batch 1 and batch 8 for each backend.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time
from typing import Any
import wave

import numpy as np
import numpy.typing as npt

from custom_components.guard_mode.engine import frontend
from custom_components.guard_mode.engine.blas import one_blas_thread
from custom_components.guard_mode.engine.tagger import (
    NUMPY_TOLERANCE,
    Tagger,
    load_tagger,
    onnxruntime_available,
)

Floats = npt.NDArray[np.float32]
DEFAULT_CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "audio" / "dev"


def read_wav(path: Path) -> Floats:
    """Read a PCM WAV file as mono float32 at 16 kHz."""
    with wave.open(str(path), "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 4:
        data = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise ValueError(f"{path}: {8 * width}-bit WAV not supported here")
    samples: Floats = data.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    if rate != frontend.SAMPLE_RATE:
        count = round(len(samples) * frontend.SAMPLE_RATE / rate)
        where = np.arange(count) * (rate / frontend.SAMPLE_RATE)
        samples = np.interp(where, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def file_patches(path: Path) -> Floats:
    """Return the [N, 96, 64] patches of a WAV file (at least one)."""
    samples = read_wav(path)
    if len(samples) < frontend.PATCH_SAMPLES:
        samples = np.pad(samples, (0, frontend.PATCH_SAMPLES - len(samples)))
    return frontend.patches(frontend.log_mel(frontend.stft_magnitude(samples)))


def wav_files(paths: list[Path]) -> list[Path]:
    """Expand folders into their WAV files (sorted)."""
    out: list[Path] = []
    for path in paths:
        out += sorted(path.rglob("*.wav")) if path.is_dir() else [path]
    return out


def cpu_ms_per_window(tagger: Tagger, patches: Floats, batch: int, rounds: int) -> float:
    """Best-of-rounds process CPU time per window, inferring batches of ``batch`` patches."""
    count = max(batch, (64 // batch) * batch)
    chunks = [patches[(i * batch) % len(patches) :][:batch] for i in range(count // batch)]
    chunks = [c if len(c) == batch else patches[:batch] for c in chunks]
    for chunk in chunks[:3]:
        tagger.infer(chunk)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for chunk in chunks:
            tagger.infer(chunk)
        best = min(best, (time.process_time() - start) / (len(chunks) * batch))
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; return the exit status (1 if the backends disagree too much)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_CORPUS])
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime's threads (numpy: one, as the engine)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds, best kept (5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if not onnxruntime_available():
        print("onnxruntime is not importable here: nothing to compare with", file=sys.stderr)
        return 2
    files = wav_files(args.paths)
    if not files:
        print("no WAV files found", file=sys.stderr)
        return 2
    one_blas_thread()  # the numpy backend as the engine runs it
    taggers = {
        name: load_tagger(backend=name, threads=args.threads)
        for name in ("onnxruntime", "numpy")
    }  # fmt: skip
    all_patches = []
    diffs, window_max, top1 = [], [], []
    embedding_max = 0.0
    embedding_equal = 0
    for path in files:
        patches = file_patches(path)
        all_patches.append(patches)
        ort, num = (taggers[k].infer(patches, embeddings=True) for k in ("onnxruntime", "numpy"))
        delta = np.abs(ort.scores - num.scores)
        diffs.append(delta.ravel())
        window_max.append(delta.max(axis=1))
        top1.append(ort.scores.argmax(axis=1) == num.scores.argmax(axis=1))
        assert ort.embeddings is not None
        assert num.embeddings is not None
        embedding_max = max(embedding_max, float(np.abs(ort.embeddings - num.embeddings).max()))
        embedding_equal += int(np.all(ort.embeddings == num.embeddings, axis=1).sum())
    flat, per_window, agree = (
        np.concatenate(diffs),
        np.concatenate(window_max),
        np.concatenate(top1),
    )
    windows = len(per_window)
    report: dict[str, Any] = {
        "files": len(files),
        "windows": windows,
        "score_abs_diff": {
            "max": float(flat.max()),
            "p99": float(np.percentile(flat, 99)),
            "median": float(np.median(flat)),
        },
        "window_max_abs_diff": {
            "max": float(per_window.max()),
            "p99": float(np.percentile(per_window, 99)),
            "median": float(np.median(per_window)),
        },
        "top1_agreement": float(agree.mean()),
        "embedding_max_abs_diff": embedding_max,
        "embedding_identical_windows": embedding_equal,
        "tolerance": NUMPY_TOLERANCE,
        "threads": args.threads,
        "cpu_ms_per_window": {},
    }
    timing_patches = np.concatenate(all_patches)
    for name, tagger in taggers.items():
        report["cpu_ms_per_window"][name] = {
            f"batch{batch}": round(cpu_ms_per_window(tagger, timing_patches, batch, args.rounds), 3)
            for batch in (1, 8)
        }
    ok = report["score_abs_diff"]["max"] <= NUMPY_TOLERANCE and report["top1_agreement"] == 1.0
    if args.json:
        print(json.dumps(report))
        return 0 if ok else 1
    diff, win = report["score_abs_diff"], report["window_max_abs_diff"]
    print(f"{len(files)} files, {windows} windows (threads={args.threads})")
    print(
        f"|score diff| over all values: max {diff['max']:.3g}  p99 {diff['p99']:.3g}  "
        f"median {diff['median']:.3g}"
    )
    print(
        f"per-window max |score diff|:  max {win['max']:.3g}  p99 {win['p99']:.3g}  "
        f"median {win['median']:.3g}"
    )
    print(f"top-1 agreement: {agree.sum()}/{windows} ({100 * agree.mean():.1f} %)")
    print(
        f"embeddings: max |diff| {embedding_max:.3g}, identical in {embedding_equal}/{windows} "
        "windows"
    )
    for name, figures in report["cpu_ms_per_window"].items():
        print(
            f"{name:12s} CPU ms/window: batch 1 {figures['batch1']:.3f}  "
            f"batch 8 {figures['batch8']:.3f}"
        )
    print(
        f"within tolerance {NUMPY_TOLERANCE} with identical top-1 labels: {'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
