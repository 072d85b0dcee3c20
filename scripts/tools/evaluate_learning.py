"""Evaluate "not a threat" learning on a labeled corpus.

Usage: scripts/evaluate_learning [CORPUS_DIR ...] [--sensitivity 1.25] [--similarity 0.85]

Without CORPUS_DIR it reads ../shared/audio/dev, dev-impacts and dev-ext. Three experiments:

1. Non-threats: every negative clip (speech, music, household, tv_mix) and unscored clip (siren,
   other alarms) that raises an alert is a recurring non-threat a household would mark: its first
   alert is marked "not a threat", the clip is played again five times as a repeat would be heard
   (quieter, louder, shifted, over room noise), and every positive clip must still be detected
   with all marks active.
2. The household's own dog (and its own everything): each positive clip in turn is marked as a
   non-threat (the family dog barking every day); its repeats should be suppressed, while every
   OTHER positive clip of the corpus — other dogs, other glass — must still be detected.
3. The neighbour's jackhammer: negative clips cut from one recording (UrbanSound8K and ESC-10
   name their slices by the source recording) are the same noise at other moments. When slices
   of a recording raise alerts, the first alert of the first one is marked "not a threat"; the
   other slices' alerts must then be reported as learned, not alerted.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
from pathlib import Path
from typing import Any

import numpy as np

from custom_components.guard_mode.engine.analyze import LEAD_S, TAIL_S, DetectingStream
from custom_components.guard_mode.engine.decider import DeciderConfig, EventKind, Reason
from custom_components.guard_mode.engine.frontend import SAMPLE_RATE
from custom_components.guard_mode.engine.labels import ALARM_SOUNDS
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

from .evaluate import DEFAULT_CORPORA, SHARED_AUDIO, Clip, find_clips

CHUNK = SAMPLE_RATE


def run(samples: np.ndarray, tagger: Tagger, config: DeciderConfig) -> tuple[list, DetectingStream]:
    """Stream samples (with silence around them) and return the onsets and the stream."""
    stream = DetectingStream(config)
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
    parser.add_argument("corpora", type=Path, nargs="*")
    parser.add_argument("--sensitivity", type=float, default=1.25)
    parser.add_argument("--similarity", type=float, default=None)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    tagger = load_tagger(backend=args.backend)
    base = DeciderConfig(sensitivity=args.sensitivity, remember=True, noise_margin_db=3.0)
    if args.similarity is not None:
        base = replace(base, learned_similarity=args.similarity)

    corpora = args.corpora or [
        SHARED_AUDIO / name for name in DEFAULT_CORPORA if (SHARED_AUDIO / name).is_dir()
    ]
    clips = [clip for corpus in corpora for clip in find_clips(corpus)]
    audio = {clip.path: clip.audio() for clip in clips}
    negatives = [clip for clip in clips if not clip.expected]  # unscored alarms included
    positives_all = [clip for clip in clips if clip.expected]

    # 1. Mark the first alert of every non-threat clip that alerts.
    learned: dict[str, list[np.ndarray]] = {}
    marked = []
    first_alerts: dict[Path, tuple[str, np.ndarray]] = {}
    for clip in negatives:
        assert clip.path is not None
        onsets, stream = run(audio[clip.path], tagger, base)
        alerts = [d for d in onsets if not d.suppressed and d.sound not in ALARM_SOUNDS]
        if not alerts:
            continue
        first = alerts[0]
        vectors = stream.decider.detection_embeddings.get(first.id)
        if vectors is None:
            continue
        first_alerts[clip.path] = (first.sound, vectors)
        learned.setdefault(first.sound, []).append(vectors)
        marked.append((clip.path, first.sound))
    config = replace(base, learned={sound: np.concatenate(v) for sound, v in learned.items()})
    neighbour = _recurring_noise(negatives, first_alerts, audio, tagger, base)

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
    for label in sorted({clip.label for clip in positives_all}):
        files = [clip for clip in positives_all if clip.label == label]
        before = after = 0
        for clip in files:
            assert clip.path is not None
            was = {d.sound for d in run(audio[clip.path], tagger, base)[0] if not d.suppressed}
            now = {d.sound for d in run(audio[clip.path], tagger, config)[0] if not d.suppressed}
            before += bool(was & clip.expected)
            after += bool(now & clip.expected)
            if was & clip.expected and not now & clip.expected:
                lost.append(f"{clip.corpus}/{label}/{clip.name}")
        recall[label] = {
            "files": len(files),
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
    positives = [(clip.path, clip.expected) for clip in positives_all if clip.corpus == "dev"]
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
                "neighbours_noise": neighbour,
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


def recording(clip: Clip) -> str:
    """Return the source recording of a dataset slice (the clip's name without the slice)."""
    if clip.name.startswith("us8k_"):  # us8k_<freesound id>-<class>-<occurrence>-<slice>
        return clip.name.split("-")[0]
    if clip.name.startswith("esc10_"):  # esc10_<fold>-<freesound id>-<take>-<class>
        return "-".join(clip.name.split("-")[:2])
    return clip.name


def _recurring_noise(
    negatives: list[Clip],
    first_alerts: dict[Path, tuple[str, np.ndarray]],
    audio: dict[Path | None, np.ndarray],
    tagger: Tagger,
    base: DeciderConfig,
) -> dict[str, Any]:
    """Experiment 3: mark one slice of a recording, hear the recording's other slices."""
    groups: dict[str, list[Clip]] = {}
    for clip in negatives:
        if clip.path in first_alerts:
            groups.setdefault(f"{clip.label}/{recording(clip)}", []).append(clip)
    result: dict[str, Any] = {"recordings": 0, "other_slices": 0, "still_alerting": 0, "by": {}}
    for key, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        sound, vectors = first_alerts[group[0].path]  # type: ignore[index]
        mine = replace(base, learned={sound: vectors})
        still = sum(
            any(not d.suppressed for d in run(audio[clip.path], tagger, mine)[0])
            for clip in group[1:]
        )
        result["recordings"] += 1
        result["other_slices"] += len(group) - 1
        result["still_alerting"] += still
        result["by"][key] = {"sound": sound, "other_slices": len(group) - 1, "still": still}
    return result


if __name__ == "__main__":
    main()
