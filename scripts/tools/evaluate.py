"""Evaluate the engine on a labeled corpus, next to a Frigate-style baseline.

Usage: scripts/evaluate CORPUS_DIR [--backend auto|onnxruntime|numpy] [--files] [--json]

CORPUS_DIR holds one folder per label (as ../shared/audio/dev). Printed per class: recall of the
engine and of the baseline; false alarms per hour of negative audio; how much media audio was
recognised as media and how many detections in it were suppressed instead of alerted; and the
decision latency on the detected positives: from the sound's onset (its first 10 ms frame within
20 dB of the clip's loudest) to the alert, with the clip streamed in 80 ms chunks as a satellite
sends it.

The baseline does what Frigate's audio detection does: YAMNet on 0.96 s windows every 0.48 s,
and a sound fires when its single AudioSet label scores ≥ 0.8 in any window; no media logic.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
import json
from pathlib import Path
import sys

import numpy as np

from custom_components.guard_mode.engine.analyze import LEAD_S, analyze_samples, with_silence
from custom_components.guard_mode.engine.decider import EventKind
from custom_components.guard_mode.engine.frontend import (
    FRAME_HOP,
    PATCH_SAMPLES,
    SAMPLE_RATE,
    log_mel,
    patches,
    stft_magnitude,
)
from custom_components.guard_mode.engine.labels import Sound, class_index
from custom_components.guard_mode.engine.pcm import read_audio
from custom_components.guard_mode.engine.stream import StreamAnalyzer, to_db
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

# Folder → the sounds that count as a correct detection (empty: a negative folder).
POSITIVES: dict[str, set[Sound]] = {
    "glass": {Sound.GLASS_BREAK},
    "alarm_smoke": {Sound.SMOKE_ALARM, Sound.CO_ALARM},
    "alarm_co": {Sound.CO_ALARM},
    "dog": {Sound.DOG_BARK},
    "baby": {Sound.BABY_CRY},
    "gunshot": {Sound.GUNSHOT},
}
NEGATIVES = {"speech", "music", "household", "tv_mix", "silence_room"}
MEDIA_FOLDERS = {"tv_mix", "music"}
UNSCORED = {"siren", "alarm_co_or_other"}

# The baseline's single label per sound (what a Frigate user would enable).
BASELINE_LABELS = {
    Sound.GLASS_BREAK: "Glass",
    Sound.SMOKE_ALARM: "Smoke detector, smoke alarm",
    Sound.DOG_BARK: "Bark",
    Sound.BABY_CRY: "Baby cry, infant cry",
    Sound.GUNSHOT: "Gunshot, gunfire",
}
BASELINE_THRESHOLD = 0.8
LATENCY_CHUNK = 1280  # 80 ms, what a satellite sends
ONSET_BELOW_PEAK_DB = 20.0


def onset_s(samples: np.ndarray) -> float:
    """Return where the clip's sound starts: its first 10 ms frame within 20 dB of the loudest."""
    frames = samples[: len(samples) // FRAME_HOP * FRAME_HOP].reshape(-1, FRAME_HOP)
    level = to_db(np.mean(np.square(frames), axis=1))
    first = int(np.flatnonzero(level >= level.max() - ONSET_BELOW_PEAK_DB)[0])
    return first * FRAME_HOP / SAMPLE_RATE


def alert_latency(samples: np.ndarray, tagger: Tagger, expected: set[Sound]) -> float | None:
    """Return seconds from the sound's onset to the first alert of an expected sound."""
    stream = StreamAnalyzer()
    padded = with_silence(samples)
    for start in range(0, len(padded), LATENCY_CHUNK):
        for event in stream.process(padded[start : start + LATENCY_CHUNK], tagger):
            d = event.detection
            if event.kind is EventKind.ONSET and d.sound in expected and not d.suppressed:
                return stream.time_s - LEAD_S - onset_s(samples)
    return None


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


@dataclass
class Tally:
    """Counts for one system."""

    hits: Counter[str] = field(default_factory=Counter)  # positive files detected, per folder
    files: Counter[str] = field(default_factory=Counter)
    false_alarms: Counter[str] = field(default_factory=Counter)  # alerts on negatives, per folder
    confusions: Counter[str] = field(default_factory=Counter)  # wrong-sound alerts on positives
    suppressed: Counter[str] = field(default_factory=Counter)
    alerts_in_media: Counter[str] = field(default_factory=Counter)


def baseline_sounds(samples: np.ndarray, tagger: Tagger) -> set[Sound]:
    """Return what the Frigate-style baseline fires on for one clip."""
    if len(samples) < PATCH_SAMPLES:
        samples = np.pad(samples, (0, PATCH_SAMPLES - len(samples)))
    scores = tagger.infer(patches(log_mel(stft_magnitude(samples)))).scores
    peak = scores.max(axis=0)
    return {
        sound
        for sound, label in BASELINE_LABELS.items()
        if peak[class_index(label)] >= BASELINE_THRESHOLD
    }


def evaluate(corpus: Path, tagger: Tagger, show_files: bool) -> dict[str, object]:
    """Run both systems over the corpus and return the report."""
    engine, baseline = Tally(), Tally()
    seconds: Counter[str] = Counter()
    media_seconds: Counter[str] = Counter()
    unscored: dict[str, list[str]] = defaultdict(list)
    latency: dict[str, list[float]] = defaultdict(list)
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        label = folder.name
        for path in sorted(folder.glob("*.wav")):
            audio = read_audio(path)
            seconds[label] += audio.duration_s
            result = analyze_samples(audio.samples, tagger, name=str(path))
            media_seconds[label] += result.media_s
            alerts = {d.sound for d in result.detections if not d.suppressed}
            suppressed = [d for d in result.detections if d.suppressed]
            base = baseline_sounds(audio.samples, tagger)
            if show_files:
                heard = ", ".join(
                    f"{d.sound}{'(' + str(d.reason) + ')' if d.suppressed else ''}"
                    f" {d.confidence:.2f}@{d.start_s:.1f}"
                    for d in result.detections
                )
                print(
                    f"{label:>18}/{path.name[:38]:<38} engine: {heard or '-'}"
                    f" | baseline: {', '.join(sorted(base)) or '-'}",
                    file=sys.stderr,
                )
            if label in UNSCORED:
                unscored[label].append(f"{path.name}: {sorted(alerts) or '-'}")
                continue
            for tally, fired in ((engine, alerts), (baseline, base)):
                tally.files[label] += 1
                expected = POSITIVES.get(label)
                if expected is not None:
                    tally.hits[label] += bool(fired & expected)
                    if tally is engine and fired & expected:
                        delay = alert_latency(audio.samples, tagger, expected)
                        if delay is not None:
                            latency[label].append(delay)
                    tally.confusions[label] += len(fired - expected)
                else:
                    tally.false_alarms[label] += len(fired)
                if label in MEDIA_FOLDERS:
                    tally.alerts_in_media[label] += len(fired)
            engine.suppressed[label] += len(suppressed)

    negative_hours = sum(seconds[f] for f in NEGATIVES) / 3600
    report: dict[str, object] = {"corpus": str(corpus), "classes": {}, "negatives": {}}
    classes = report["classes"]
    assert isinstance(classes, dict)
    for label in POSITIVES:
        if engine.files[label]:
            classes[label] = {
                "files": engine.files[label],
                "engine_recall": round(engine.hits[label] / engine.files[label], 3),
                "baseline_recall": round(baseline.hits[label] / baseline.files[label], 3),
                "engine_wrong_sound_alerts": engine.confusions[label],
                "baseline_wrong_sound_alerts": baseline.confusions[label],
            }
            if latency[label]:
                classes[label]["latency_s"] = {
                    "p50": _percentile(latency[label], 50),
                    "p95": _percentile(latency[label], 95),
                    "max": round(max(latency[label]), 2),
                }
    negatives = report["negatives"]
    assert isinstance(negatives, dict)
    for label in sorted(NEGATIVES & set(engine.files)):
        negatives[label] = {
            "files": engine.files[label],
            "seconds": round(seconds[label], 1),
            "engine_false_alarms": engine.false_alarms[label],
            "baseline_false_alarms": baseline.false_alarms[label],
            "engine_suppressed": engine.suppressed[label],
        }
    engine_fa = sum(engine.false_alarms.values())
    baseline_fa = sum(baseline.false_alarms.values())
    report["negative_hours"] = round(negative_hours, 4)
    report["engine_false_alarms_per_hour"] = round(engine_fa / negative_hours, 1)
    report["baseline_false_alarms_per_hour"] = round(baseline_fa / negative_hours, 1)
    media_total = sum(seconds[f] for f in MEDIA_FOLDERS)
    heard_media = sum(engine.suppressed[f] + engine.alerts_in_media[f] for f in MEDIA_FOLDERS)
    report["media"] = {
        "seconds": round(media_total, 1),
        "recognised_as_media_s": round(sum(media_seconds[f] for f in MEDIA_FOLDERS), 1),
        "detections_in_media": heard_media,
        "suppressed_in_media": sum(engine.suppressed[f] for f in MEDIA_FOLDERS),
        "suppression_rate": round(sum(engine.suppressed[f] for f in MEDIA_FOLDERS) / heard_media, 3)
        if heard_media
        else None,
    }
    report["unscored"] = dict(unscored)
    return report


def print_report(report: dict[str, object]) -> None:
    """Print the report as tables."""
    print(f"corpus: {report['corpus']}")
    print(
        f"{'class':<12} {'files':>5} {'engine':>8} {'baseline':>9} {'wrong(e/b)':>11}"
        f"  latency p50/p95/max (s)"
    )
    classes = report["classes"]
    assert isinstance(classes, dict)
    for label, row in classes.items():
        print(
            f"{label:<12} {row['files']:>5} {row['engine_recall']:>8.2f} "
            f"{row['baseline_recall']:>9.2f} "
            f"{row['engine_wrong_sound_alerts']:>5}/{row['baseline_wrong_sound_alerts']:<5}"
            + ("  {p50}/{p95}/{max}".format(**row["latency_s"]) if "latency_s" in row else "")
        )
    print(f"\nnegatives ({report['negative_hours']} h):")
    negatives = report["negatives"]
    assert isinstance(negatives, dict)
    for label, row in negatives.items():
        print(
            f"  {label:<12} {row['files']:>3} files {row['seconds']:>6} s  false alarms "
            f"engine {row['engine_false_alarms']}, baseline {row['baseline_false_alarms']}; "
            f"suppressed {row['engine_suppressed']}"
        )
    print(
        f"false alarms per hour: engine {report['engine_false_alarms_per_hour']}, "
        f"baseline {report['baseline_false_alarms_per_hour']}"
    )
    print(f"media: {report['media']}")
    unscored = report["unscored"]
    assert isinstance(unscored, dict)
    for label, lines in unscored.items():
        print(f"unscored {label}: " + "; ".join(lines))


def main() -> None:
    """Run from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "numpy"])
    parser.add_argument("--files", action="store_true", help="print what fired on every file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = evaluate(args.corpus, load_tagger(backend=args.backend), args.files)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
