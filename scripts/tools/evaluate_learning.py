"""Evaluate "not a threat" learning on a labeled corpus.

Usage: scripts/evaluate_learning CORPUS_DIR [--sensitivity 1.25] [--similarity 0.85]

Two experiments:

1. Non-threats: every negative clip (speech, music, household, tv_mix) and unscored clip (siren,
   other alarms) that raises an alert is a recurring non-threat a household would mark: its first
   alert is marked "not a threat", the clip is played again five times as a repeat would be heard
   (quieter, louder, shifted, over room noise), and every positive clip must still be detected
   with all marks active.
2. The household's own dog (and its own everything): each positive clip in turn is marked as a
   non-threat (the family dog barking every day); its repeats should be suppressed, while every
   OTHER positive clip of the corpus — other dogs, other glass — must still be detected.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
from pathlib import Path
from typing import Any

import numpy as np

from custom_components.guard_mode.engine.analyze import LEAD_S, TAIL_S
from custom_components.guard_mode.engine.decider import DeciderConfig, EventKind, Reason
from custom_components.guard_mode.engine.frontend import SAMPLE_RATE
from custom_components.guard_mode.engine.labels import ALARM_SOUNDS
from custom_components.guard_mode.engine.pcm import read_audio
from custom_components.guard_mode.engine.stream import StreamAnalyzer
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

from .evaluate import NEGATIVES, POSITIVES, UNSCORED

CHUNK = SAMPLE_RATE


def run(samples: np.ndarray, tagger: Tagger, config: DeciderConfig) -> tuple[list, StreamAnalyzer]:
    """Stream samples (with silence around them) and return the onsets and the stream."""
    stream = StreamAnalyzer(decider_config=config)
    padded = np.concatenate(
        [
            np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32),
            samples,
            np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32),
        ]
    )
    onsets = []
    for start in range(0, len(padded), CHUNK):
        events = stream.process(padded[start : start + CHUNK], tagger)
        onsets += [e.detection for e in events if e.kind is EventKind.ONSET]
    return onsets, stream


def variants(samples: np.ndarray) -> list[np.ndarray]:
    """The clip as a repeat would be heard: other level, other timing, room noise."""
    noise = np.random.default_rng(7).standard_normal(len(samples) + 6400).astype(np.float32)
    return [
        samples * 0.5,
        np.clip(samples * 1.6, -1, 1),
        np.concatenate([np.zeros(2400, np.float32), samples]),
        np.concatenate([np.zeros(5600, np.float32), samples * 0.8]),
        samples + noise[: len(samples)] * 3e-3,
    ]


def main() -> None:
    """Run the evaluation and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--sensitivity", type=float, default=1.25)
    parser.add_argument("--similarity", type=float, default=None)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    tagger = load_tagger(backend=args.backend)
    base = DeciderConfig(sensitivity=args.sensitivity, remember=True, noise_margin_db=3.0)
    if args.similarity is not None:
        base = replace(base, learned_similarity=args.similarity)

    folders = {p.name: sorted(p.glob("*.wav")) for p in args.corpus.iterdir() if p.is_dir()}
    audio = {path: read_audio(path).samples for files in folders.values() for path in files}

    # 1. Mark the first alert of every non-threat clip that alerts.
    learned: dict[str, list[np.ndarray]] = {}
    marked = []
    for name in sorted(NEGATIVES | UNSCORED):
        for path in folders.get(name, []):
            onsets, stream = run(audio[path], tagger, base)
            alerts = [d for d in onsets if not d.suppressed and d.sound not in ALARM_SOUNDS]
            if not alerts:
                continue
            first = alerts[0]
            vectors = stream.decider.detection_embeddings.get(first.id)
            if vectors is None:
                continue
            learned.setdefault(first.sound, []).append(vectors)
            marked.append((path, first.sound))
    config = replace(base, learned={sound: np.concatenate(v) for sound, v in learned.items()})

    # 2. Repeats of each marked clip: suppressed as learned?
    repeats = suppressed = 0
    per_clip = {}
    for path, sound in marked:
        hits = 0
        for variant in variants(audio[path]):
            onsets, _ = run(variant, tagger, config)
            heard = [d for d in onsets if d.sound == sound]
            if heard:
                repeats += 1
                learned_now = all(d.reason is Reason.LEARNED for d in heard)
                suppressed += learned_now
                hits += learned_now
        per_clip[f"{path.parent.name}/{path.name}"] = {"sound": sound, "suppressed_repeats": hits}

    # 3. Every positive still detected with all marks active?
    recall: dict[str, dict[str, float]] = {}
    lost = []
    for name, expected in POSITIVES.items():
        files = folders.get(name, [])
        if not files:
            continue
        before = after = 0
        for path in files:
            was = {d.sound for d in run(audio[path], tagger, base)[0] if not d.suppressed}
            now = {d.sound for d in run(audio[path], tagger, config)[0] if not d.suppressed}
            before += bool(was & expected)
            after += bool(now & expected)
            if was & expected and not now & expected:
                lost.append(f"{name}/{path.name}")
        recall[name] = {
            "before": round(before / len(files), 3),
            "after": round(after / len(files), 3),
        }
    # 4. Each positive in turn is the household's own (recurring, harmless) sound.
    own: dict[str, Any] = {
        "clips": 0,
        "repeats_heard": 0,
        "repeats_suppressed": 0,
        "other_positives_checked": 0,
        "other_positives_lost": 0,
        "lost_pairs": [],
    }
    positives = [
        (path, expected) for name, expected in POSITIVES.items() for path in folders.get(name, [])
    ]
    detected_before = {
        path: {d.sound for d in run(audio[path], tagger, base)[0] if not d.suppressed} & expected
        for path, expected in positives
    }
    for path, expected in positives:
        onsets, stream = run(audio[path], tagger, base)
        alerts = [d for d in onsets if not d.suppressed and d.sound in expected]
        vectors = stream.decider.detection_embeddings.get(alerts[0].id) if alerts else None
        if vectors is None or alerts[0].sound in ALARM_SOUNDS:
            continue
        mine = replace(base, learned={alerts[0].sound: vectors})
        own["clips"] += 1
        for variant in variants(audio[path]):
            heard = [d for d in run(variant, tagger, mine)[0] if d.sound == alerts[0].sound]
            if heard:
                own["repeats_heard"] += 1
                own["repeats_suppressed"] += all(d.reason is Reason.LEARNED for d in heard)
        for other, other_expected in positives:
            if other == path or not detected_before[other]:
                continue
            now = {d.sound for d in run(audio[other], tagger, mine)[0] if not d.suppressed}
            own["other_positives_checked"] += 1
            if not now & other_expected:
                own["other_positives_lost"] += 1
                own["lost_pairs"].append(f"{path.name} -> {other.name}")
    print(
        json.dumps(
            {
                "household_sound_marked": own,
                "sensitivity": args.sensitivity,
                "learned_similarity": config.learned_similarity,
                "marked_clips": len(marked),
                "marked": per_clip,
                "repeats_heard": repeats,
                "repeats_suppressed_as_learned": suppressed,
                "recall": recall,
                "positives_lost": lost,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
