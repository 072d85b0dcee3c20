"""Benchmark the engine; prints one JSON object (machine-readable figures).

Usage: scripts/bench [--seconds 120] [--backend onnxruntime numpy] [--streams 16]

Measured, start-up excluded, CPU time of the whole process (all threads) per second of audio:
- ``engine``: the streaming engine as the worker runs it (80 ms chunks in, signal processing
  once per window: frontend computing each frame once, alarm-pattern DSP, level gate, tagger,
  decider) on a busy stream — every window loud enough for the tagger; windows after calm ones
  are skipped as in production;
- ``engine_every_window``: the same with every window tagged (a custom sound is taught: the
  worst case);
- ``frigate_loop``: side by side on the same audio, what a Frigate-style loop does: the numpy
  frontend over a whole 0.96 s window and one tagger call, every 0.48 s, with Guard Mode's model;
- ``frigate_loop_float``: the same loop with YAMNet's weights in float32, as Frigate runs YAMNet
  (our int8 model dequantized in memory; onnxruntime only, needs the ``onnx`` package);
- ``quiet``: the engine on a quiet stream (the level gate skips the tagger);
- ``home``: both on the project's scenario recording (build/scenario/scenario.wav), if built;
- ``multi``: N streams through the shared worker (batched tagging), real-time factor per stream;
- per-window latency percentiles and the frontend/DSP vs tagger split; RSS with the model loaded;
- ``blas_threads``: BLAS threads before and after the engine ran (1 is required: set once, by
  engine/blas.py, wherever the engine runs); the Frigate-style loop runs with the same setting.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path
import platform
import resource
import threading
import time
from typing import Any

import numpy as np

from custom_components.guard_mode.engine import frontend as fe
from custom_components.guard_mode.engine.analyze import analyze_samples
from custom_components.guard_mode.engine.audio import read_audio
from custom_components.guard_mode.engine.blas import blas_threads
from custom_components.guard_mode.engine.decider import DeciderConfig
from custom_components.guard_mode.engine.decision import StreamDecision
from custom_components.guard_mode.engine.tagger import (
    DEFAULT_MODEL,
    load_tagger,
    onnxruntime_available,
)
from custom_components.guard_mode.engine.worker import EngineWorker

CHUNK = 1280  # 80 ms, a typical microphone chunk


def rss_mb() -> float:
    """Return the resident set size of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def busy_audio(seconds: float, seed: int = 1) -> np.ndarray:
    """Return loud, varied audio (tones, noise bursts, chirps) so the gate never skips."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fe.SAMPLE_RATE)
    t = np.arange(n) / fe.SAMPLE_RATE
    audio = 0.05 * rng.standard_normal(n)
    audio += 0.2 * np.sin(2 * np.pi * (300 + 200 * np.sin(0.3 * t)) * t)
    bursts = (np.sin(2 * np.pi * 0.7 * t) > 0.6) * rng.standard_normal(n) * 0.3
    return (audio + bursts).astype(np.float32)


SCENARIO = Path("build/scenario/scenario.wav")
FLOAT_MODEL = Path("build/bench/yamnet_float.onnx")


def home_audio() -> np.ndarray | None:
    """Return the project's scenario recording (quiet room, TV, dog, glass, alarm), if built."""
    if not SCENARIO.exists():
        return None
    return read_audio(SCENARIO).samples


def quiet_audio(seconds: float) -> np.ndarray:
    """Return a quiet room: faint noise around -70 dBFS."""
    rng = np.random.default_rng(2)
    return (rng.standard_normal(int(seconds * fe.SAMPLE_RATE)) * 3e-4).astype(np.float32)


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Return float samples as the 16-bit samples a satellite hands the engine."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    return [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]


def bench_engine(tagger: Any, audio: np.ndarray, *, every_window: bool = False) -> dict[str, Any]:
    """One stream through the engine as it runs in production: 80 ms chunks of 16-bit samples
    pushed to the worker, which a stream wakes once per window; RTF and the per-window split.

    every_window: tag every regular window (as when a custom sound is taught).
    """
    worker = EngineWorker(tagger)
    warm = worker.open_stream("warm-up", lambda *_: None)
    warm.push(audio[: 2 * fe.SAMPLE_RATE])
    worker.run_once()
    warm.close()
    # The satellite's decider as Home Assistant runs it (learning on: embeddings shipped).
    decision = StreamDecision(DeciderConfig(remember=True))
    stream = worker.open_stream("bench", lambda _, found, time_s: decision.push(found, time_s))
    stream.set_embeddings(decision.wants_embeddings)
    stream.set_every_window(every_window or decision.wants_every_window)
    chunks = _chunks(pcm16(audio))
    gc.collect()
    run_ms = []
    cpu0 = time.process_time()
    for chunk in chunks:
        stream.push(chunk)
        t0 = time.perf_counter()
        worker.run_if_woken()  # what the worker thread does when a stream wakes it
        run_ms.append((time.perf_counter() - t0) * 1000)
    cpu = time.process_time() - cpu0
    seconds = len(audio) / fe.SAMPLE_RATE
    windows = stream.analyzer.windows
    tagger_s = worker.stats.tagger_seconds
    tagger_ms = 1000 * tagger_s / max(worker.stats.windows_tagged, 1)  # per window it tagged
    per_window = 1000 * cpu / max(windows, 1)
    return {
        "rtf": round(cpu / seconds, 5),
        "windows": windows,
        "gated_windows": stream.analyzer.gated_windows,
        "skipped_calm_windows": stream.analyzer.skipped_windows,
        "ms_per_window_mean": round(per_window, 3),
        "ms_per_window_p50": round(float(np.percentile([m for m in run_ms if m > 0.05], 50)), 3)
        if run_ms
        else 0.0,
        "ms_per_window_p95": round(float(np.percentile([m for m in run_ms if m > 0.05], 95)), 3)
        if run_ms
        else 0.0,
        "tagger_ms_per_window": round(tagger_ms, 3),
        "frontend_dsp_decider_ms_per_window": round(1000 * (cpu - tagger_s) / max(windows, 1), 3),
        "tagger_share": round(tagger_s / cpu, 3) if cpu else 0.0,
    }


def bench_frigate_loop(tagger: Any, audio: np.ndarray) -> dict[str, Any]:
    """What a Frigate-style loop costs: full-window frontend + one tagger call every 0.48 s."""
    hop = int(fe.WINDOW_HOP_S * fe.SAMPLE_RATE)
    window = fe.PATCH_SAMPLES
    starts = range(0, len(audio) - window + 1, hop)
    for start in list(starts)[:4]:  # warm-up
        tagger.infer(fe.patches(fe.log_mel(fe.stft_magnitude(audio[start : start + window]))))
    gc.collect()
    cpu0 = time.process_time()
    times = []
    for start in starts:
        t0 = time.perf_counter()
        patch = fe.patches(fe.log_mel(fe.stft_magnitude(audio[start : start + window])))
        tagger.infer(patch)
        times.append((time.perf_counter() - t0) * 1000)
    cpu = time.process_time() - cpu0
    return {
        "rtf": round(cpu / (len(audio) / fe.SAMPLE_RATE), 5),
        "ms_per_window_p50": round(float(np.percentile(times, 50)), 3),
        "ms_per_window_p95": round(float(np.percentile(times, 95)), 3),
    }


def float_weights_model(out: Path) -> Path | None:
    """Write YAMNet with float32 weights and no quantization (what a plain loop runs) to out.

    Our model stores int8 weights behind DequantizeLinear and quantizes activations between
    layers; here the weights are dequantized once and every Quantize/DequantizeLinear pair on
    activations is dropped. Returns None when the ``onnx`` package is not installed.
    """
    try:
        import onnx  # noqa: PLC0415
        from onnx import numpy_helper  # noqa: PLC0415
    except ImportError:
        return None
    model = onnx.load(str(DEFAULT_MODEL))
    graph = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias: dict[str, str] = {}
    weights: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.node:
        source = alias.get(node.input[0], node.input[0])
        if node.op_type == "DequantizeLinear" and source in arrays:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            values = arrays[source].astype(np.float32)
            scale, zero = arrays[node.input[1]], arrays[node.input[2]].astype(np.float32)
            shape = [1] * values.ndim
            if scale.ndim:
                shape[axis] = -1
            weights[node.output[0]] = (values - zero.reshape(shape)) * scale.reshape(shape)
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            alias[node.output[0]] = source
        else:
            node.input[:] = [alias.get(name, name) for name in node.input]
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(array, name) for name, array in weights.items() if name in used
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def bench_quiet(tagger: Any, audio: np.ndarray) -> dict[str, Any]:
    """Return the engine's real-time factor on a quiet stream (the level gate skips the tagger)."""
    result = bench_engine(tagger, audio)
    return {
        "rtf": result["rtf"],
        "gated_share": round(result["gated_windows"] / max(result["windows"], 1), 3),
    }


def bench_multi(tagger: Any, streams: int, seconds: float) -> dict[str, Any]:
    """Push N busy streams through the shared worker as fast as it goes; RTF per stream."""
    worker = EngineWorker(tagger)
    handles = [worker.open_stream(f"s{i}", lambda *_: None) for i in range(streams)]
    audio = [pcm16(busy_audio(seconds, seed=10 + i)) for i in range(streams)]
    cpu0 = time.process_time()
    for k in range(0, int(seconds * fe.SAMPLE_RATE), CHUNK):
        for handle, samples in zip(handles, audio, strict=True):
            handle.push(samples[k : k + CHUNK])
        worker.run_if_woken()  # streams wake it once a window: their windows are batched
    worker.run_once()
    cpu = time.process_time() - cpu0
    return {
        "streams": streams,
        "rtf_total": round(cpu / seconds, 4),
        "rtf_per_stream": round(cpu / seconds / streams, 5),
        "windows_tagged": worker.stats.windows_tagged,
        "batches": worker.stats.batches,
        "mean_batch": round(worker.stats.windows_tagged / max(worker.stats.batches, 1), 1),
        "cores_needed_for_realtime": round(cpu / seconds, 3),
    }


def check_blas_threads(tagger: Any) -> dict[str, Any]:
    """Return the BLAS threads before and after the analyze path ran on a thread of its own."""
    before = blas_threads()
    thread = threading.Thread(target=lambda: analyze_samples(busy_audio(3.0), tagger))
    thread.start()
    thread.join()
    after = blas_threads()
    return {"process_default": before, "after_engine": after, "ok": after == 1}


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--backend", nargs="*", default=None)
    parser.add_argument("--streams", type=int, default=16)
    args = parser.parse_args()
    backends = args.backend or (["onnxruntime", "numpy"] if onnxruntime_available() else ["numpy"])
    busy = busy_audio(args.seconds)
    quiet = quiet_audio(args.seconds)
    home = home_audio()
    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "audio_seconds": args.seconds,
        "backends": {},
    }
    for backend in backends:
        gc.collect()
        before = rss_mb()
        tagger = load_tagger(backend=backend)
        tagger.infer(np.zeros((1, 96, 64), np.float32))
        loaded = rss_mb()
        if "blas_threads" not in report:  # first, before anything here ran the engine
            report["blas_threads"] = check_blas_threads(tagger)
        engine = bench_engine(tagger, busy)
        frigate = bench_frigate_loop(tagger, busy)
        every = bench_engine(tagger, busy, every_window=True)
        result = {
            "rss_model_mb": round(loaded - before, 1),
            "engine": engine,
            "frigate_loop": frigate,
            "engine_vs_frigate": round(engine["rtf"] / frigate["rtf"], 3),
            "engine_every_window_vs_frigate": round(every["rtf"] / frigate["rtf"], 3),
            "engine_every_window": every,
            "quiet": bench_quiet(tagger, quiet),
        }
        if backend == "onnxruntime" and (path := float_weights_model(FLOAT_MODEL)):
            plain = load_tagger(path, backend="onnxruntime")
            float_loop = bench_frigate_loop(plain, busy)
            result["frigate_loop_float"] = float_loop
            result["engine_vs_frigate_float"] = round(engine["rtf"] / float_loop["rtf"], 3)
            del plain
        if home is not None:
            home_engine = bench_engine(tagger, home)
            home_frigate = bench_frigate_loop(tagger, home)
            result["home"] = {
                "audio": str(SCENARIO),
                "engine_rtf": home_engine["rtf"],
                "gated_share": round(
                    home_engine["gated_windows"] / max(home_engine["windows"], 1), 3
                ),
                "skipped_calm_share": round(
                    home_engine["skipped_calm_windows"] / max(home_engine["windows"], 1), 3
                ),
                "frigate_loop_rtf": home_frigate["rtf"],
                "engine_vs_frigate": round(home_engine["rtf"] / home_frigate["rtf"], 3),
            }
        if args.streams:
            result["multi"] = bench_multi(tagger, args.streams, min(args.seconds, 30.0))
        report["backends"][backend] = result
    report["rss_total_mb"] = round(rss_mb(), 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
