"""Evaluate the engine on labelled corpora, next to a Frigate-style baseline.

Usage: scripts/evaluate [CORPUS_DIR ...] [--offsets 0 120 240 360] [--jobs N]
                        [--backend auto|onnxruntime|numpy] [--files] [--json] [--no-baseline]
                        [--held-out-head] [--speex NS AGC] [--far] [--textures]
                        [--soundtracks]

Without CORPUS_DIR it reads ../shared/audio/dev, dev-impacts and dev-ext (those that exist).
A corpus holds one folder per label (WAV, FLAC, Ogg, Opus or MP3); ``negatives/<class>/``
folders hold negative classes. Every clip is streamed as a satellite sends it (80 ms chunks,
silence before and after, as the ``analyze`` CLI does) once per offset: the audio delayed by
0/120/240/360 ms, because a short sound's scores depend on where the 0.96 s windows fall.
Printed per corpus:

* positives: recall at each offset and at the worst one (the figure that counts), how many clips
  were caught at every offset, wrong-sound alerts, and the latency from the sound's onset (its
  first 10 ms frame within 20 dB of the clip's loudest) to the alert;
* negatives: false alerts per hour per class (all offsets counted: hours × offsets);
* media: the corpus's positives mixed into its media beds (music, tv_mix) as a TV plays them
  (the event at the programme's level, after 6 s of programme) — the share of those heard that
  were suppressed — and the same events 20 dB over a quiet programme (in the room), which must
  alert;
* far (``--far``): the corpus's positives 20 dB quieter over a quiet room's noise, as from
  another room: recall per class at the worst offset;
* textures (``--textures``): the corpus's glass breaks and gunshots 2.5 s into household
  textures taken from the negatives of the corpora given (a ticking clock, a crackling fire,
  rain, an air conditioner; four clips of each), the event's loudest 10 ms frame 10 dB over the
  texture's typical one: recall per texture and class at the worst offset, counting only alerts
  that start at the event (what the texture alone raised before it does not count);
* soundtracks (``--soundtracks``): 4.2 h of game music from Debian packages no corpus uses
  (:mod:`scripts.tools.soundtracks`), as negatives: false alerts per hour of real music;
* alarms: generated T3 and T4 patterns (3.1 kHz and 520 Hz carriers, loud and faint, dry and
  reverberant, with timing jitter): a T4 must only ever be ``co_alarm``, a T3 only
  ``smoke_alarm``.

``--held-out-head`` judges the ESC-10 clips of dev-ext that trained the detection head with a head
fitted the same way (``models/train_head.py``) without the clip's fold: the shipped head's
figures on them are optimistic, these are the ones to expect on other recordings (the clips made
from them, media mixes and ``--far``, keep the shipped head).

``--speex NS AGC`` first puts every clip through the noise suppression (level 0–4) and auto gain
(0–31 dBFS) Home Assistant's assist pipeline applies when a run's AudioSettings ask for them
(pyspeex-noise, as its MicroVadSpeexEnhancer, 10 ms frames): what a voice satellite's stream
would sound like with them on.

The baseline does what Frigate's audio detection does: YAMNet on 0.96 s windows every 0.48 s, and
a sound fires when its single AudioSet label scores ≥ 0.8 in any window; no media logic.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import sys
from typing import Any

import numpy as np

from custom_components.guard_mode.engine.analyze import LEAD_S, DetectingStream, with_silence
from custom_components.guard_mode.engine.analyzer import to_db
from custom_components.guard_mode.engine.audio import read_audio
from custom_components.guard_mode.engine.decider import EventKind
from custom_components.guard_mode.engine.frontend import (
    FRAME_HOP,
    PATCH_SAMPLES,
    SAMPLE_RATE,
    log_mel,
    patches,
    stft_magnitude,
)
from custom_components.guard_mode.engine.head import DetectionHead
from custom_components.guard_mode.engine.labels import Sound, class_index
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

SHARED_AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"
DEFAULT_CORPORA = ("dev", "dev-impacts", "dev-ext")
DEFAULT_OFFSETS_MS = (0, 120, 240, 360)

# Folder → the sounds that count as a correct detection.
POSITIVES: dict[str, frozenset[Sound]] = {
    "glass": frozenset({Sound.GLASS_BREAK}),
    "alarm_smoke": frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM}),
    "alarm_co": frozenset({Sound.CO_ALARM}),
    "dog": frozenset({Sound.DOG_BARK}),
    "baby": frozenset({Sound.BABY_CRY}),
    "gunshot": frozenset({Sound.GUNSHOT}),
}
MEDIA_BEDS = frozenset({"tv_mix", "music"})
UNSCORED = frozenset({"siren", "alarm_co_or_other"})  # other alarms: reported, not scored
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")  # what the analyze CLI reads

# The baseline's single label per sound (what a Frigate user would enable).
BASELINE_LABELS = {
    Sound.GLASS_BREAK: "Glass",
    Sound.SMOKE_ALARM: "Smoke detector, smoke alarm",
    Sound.DOG_BARK: "Bark",
    Sound.BABY_CRY: "Baby cry, infant cry",
    Sound.GUNSHOT: "Gunshot, gunfire",
}
BASELINE_THRESHOLD = 0.8
CHUNK = 1280  # 80 ms, what a satellite sends
ONSET_BELOW_PEAK_DB = 20.0
# Media-embedded events: the programme plays this long before the event, the event is cut to
# this length, and its loudest 10 ms frame sits this far over the programme's typical one.
MEDIA_LEAD_S = 6.0
MEDIA_EVENT_S = 2.5
MEDIA_EVENT_OVER_DB = 3.0
ROOM_EVENT_OVER_DB = 20.0
FAR_DB = -20.0  # --far: positives this much quieter ...
FAR_ROOM_DB = -68.0  # ... over pink room noise at this RMS level
# --textures: impulsive positives over household textures (negative classes of the corpora).
TEXTURES = ("clock_tick", "crackling_fire", "rain", "air_conditioner")
TEXTURE_EVENTS = frozenset({"glass", "gunshot"})
TEXTURE_BEDS = 4  # clips of each texture, evenly spread over its sorted files
TEXTURE_LEAD_S = 2.5  # the texture plays this long before the event ...
TEXTURE_EVENT_OVER_DB = 10.0  # ... whose loudest frame sits this far over the texture's typical
TEXTURE_EARLY_S = 0.3  # an alert starting this much before the event still counts as its own


@dataclass(frozen=True, slots=True)
class Clip:
    """One labelled clip, or a constructed one (samples given)."""

    corpus: str
    label: str  # folder name: positive, negative or unscored class
    name: str
    path: Path | None = None
    samples: np.ndarray | None = None
    expected: frozenset[str] = frozenset()  # sounds that count as a detection
    kind: str = "clip"  # clip | media | room | far | texture | alarm
    event_s: float = 0.0  # where a constructed clip's event begins (texture)
    scored: bool = True  # False: another alarm, reported but not scored

    def audio(self) -> np.ndarray:
        """Return the clip's 16 kHz mono samples."""
        if self.samples is not None:
            return self.samples
        assert self.path is not None
        return read_audio(self.path).samples


@dataclass(slots=True)
class Run:
    """What one system heard in one clip at one offset."""

    alerts: set[str] = field(default_factory=set)
    suppressed: set[str] = field(default_factory=set)
    latency_s: float | None = None  # onset → first alert of an expected sound
    alert_times: list[tuple[str, float]] = field(default_factory=list)  # (sound, start in clip)
    heard: list[str] = field(default_factory=list)  # for --files


@dataclass(slots=True)
class ClipResult:
    """A clip's runs at every offset (engine and baseline)."""

    clip: Clip
    seconds: float
    engine: list[Run]
    baseline: list[set[str]]


def onset_s(samples: np.ndarray) -> float:
    """Return where the clip's sound starts: its first 10 ms frame within 20 dB of the loudest."""
    usable = len(samples) // FRAME_HOP * FRAME_HOP
    if not usable:
        return 0.0
    level = to_db(np.mean(np.square(samples[:usable].reshape(-1, FRAME_HOP)), axis=1))
    first = int(np.flatnonzero(level >= level.max() - ONSET_BELOW_PEAK_DB)[0])
    return first * FRAME_HOP / SAMPLE_RATE


def engine_run(
    samples: np.ndarray, tagger: Tagger, expected: frozenset[str], head: DetectionHead | None = None
) -> Run:
    """Stream samples through a fresh engine stream in 80 ms chunks; return what it reported."""
    stream = DetectingStream(head=head)
    padded = with_silence(samples)
    start_s = onset_s(samples)
    run = Run()
    for start in range(0, len(padded) + CHUNK, CHUNK):
        chunk = padded[start : start + CHUNK]
        events = stream.process(chunk, tagger) if len(chunk) else stream.finish()
        for event in events:
            d = event.detection
            if event.kind is not EventKind.ONSET:
                continue
            (run.suppressed if d.suppressed else run.alerts).add(d.sound)
            if not d.suppressed:
                run.alert_times.append((d.sound, d.start_s - LEAD_S))
            reason = f"({d.reason})" if d.suppressed else ""
            run.heard.append(f"{d.sound}{reason} {d.confidence:.2f}@{d.start_s - LEAD_S:.1f}")
            if not d.suppressed and d.sound in expected and run.latency_s is None:
                run.latency_s = round(stream.time_s - LEAD_S - start_s, 3)
        if not len(chunk):
            break
    return run


def baseline_sounds(samples: np.ndarray, tagger: Tagger) -> set[str]:
    """Return what the Frigate-style baseline fires on for one clip."""
    if len(samples) < PATCH_SAMPLES:
        samples = np.pad(samples, (0, PATCH_SAMPLES - len(samples)))
    peak = tagger.infer(patches(log_mel(stft_magnitude(samples)))).scores.max(axis=0)
    return {
        str(sound)
        for sound, label in BASELINE_LABELS.items()
        if peak[class_index(label)] >= BASELINE_THRESHOLD
    }


# --- the corpora --------------------------------------------------------------------------------


def find_clips(corpus: Path) -> list[Clip]:
    """Return the labelled clips of a corpus directory."""
    clips = []
    name = corpus.name
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        if folder.name == "negatives":
            groups = [(sub.name, sub) for sub in sorted(folder.iterdir()) if sub.is_dir()]
        else:
            groups = [(folder.name, folder)]
        top = folder.name != "negatives"
        for label, path in groups:
            expected = POSITIVES.get(label, frozenset()) if top else frozenset()
            scored = not (top and label in UNSCORED)
            clips.extend(
                Clip(name, label, file.name, file, expected=expected, scored=scored)
                for file in sorted(path.iterdir())
                if file.suffix.lower() in AUDIO_SUFFIXES
            )
    return clips


def peak_frame_db(samples: np.ndarray) -> float:
    """Return the level of the loudest 10 ms frame (dBFS)."""
    usable = len(samples) // FRAME_HOP * FRAME_HOP
    frames = samples[:usable].reshape(-1, FRAME_HOP)
    return float(to_db(np.mean(np.square(frames), axis=1)).max())


def typical_peak_db(samples: np.ndarray) -> float:
    """Return the median over 0.5 s blocks of the loudest 10 ms frame (a programme's level)."""
    block = SAMPLE_RATE // 2
    peaks = [peak_frame_db(samples[i : i + block]) for i in range(0, len(samples) - block, block)]
    return float(np.median(peaks))


def add_event(bed: np.ndarray, sound: np.ndarray, at: int, level_db: float) -> np.ndarray:
    """Add sound to bed (in place) from sample at, its loudest 10 ms frame at level_db; scale
    the mix down if it would clip; return bed."""
    bed[at : at + len(sound)] += sound * np.float32(10 ** ((level_db - peak_frame_db(sound)) / 20))
    peak = float(np.abs(bed).max())
    if peak > 0.99:
        bed *= np.float32(0.99 / peak)
    return bed


def media_mixes(clips: Sequence[Clip]) -> list[Clip]:
    """Return the corpus's positives mixed into its media beds: from the TV, and in the room."""
    beds = [c for c in clips if c.label in MEDIA_BEDS]
    events = [c for c in clips if c.expected and c.label != "alarm_smoke"]
    mixes: list[Clip] = []
    if not beds or not events:
        return mixes
    bed_audio = [c.audio() for c in beds]
    for i, event in enumerate(events):
        bed = bed_audio[i % len(bed_audio)]
        sound = event.audio()[: int(MEDIA_EVENT_S * SAMPLE_RATE)]
        # The programme goes on for as long as the event lasts plus 2 s (looped if short).
        total = int((MEDIA_LEAD_S + len(sound) / SAMPLE_RATE + 2.0) * SAMPLE_RATE)
        programme = np.resize(bed, total).astype(np.float32)
        level = typical_peak_db(programme)
        at = int(MEDIA_LEAD_S * SAMPLE_RATE)
        for kind, over_db, bed_gain_db in (
            ("media", MEDIA_EVENT_OVER_DB, 0.0),
            ("room", ROOM_EVENT_OVER_DB, -10.0),
        ):
            bed_gain = np.float32(10 ** (bed_gain_db / 20))
            mixed = add_event(programme * bed_gain, sound, at, level + bed_gain_db + over_db)
            mixes.append(
                Clip(
                    event.corpus,
                    f"{kind}:{event.label}",
                    f"{event.name}+{beds[i % len(beds)].name}",
                    samples=mixed,
                    expected=event.expected,
                    kind=kind,
                )
            )
    return mixes


def far_clips(clips: Sequence[Clip]) -> list[Clip]:
    """Return the corpus's positives as heard from another room: quieter, over room noise."""
    from tests import synth  # noqa: PLC0415 - the project's signal generator

    out = []
    for i, clip in enumerate(c for c in clips if c.expected and c.kind == "clip"):
        quiet = clip.audio() * np.float32(10 ** (FAR_DB / 20))
        noise = synth.pink_noise(len(quiet) / SAMPLE_RATE, FAR_ROOM_DB, synth.rng(100 + i))
        out.append(
            Clip(
                clip.corpus,
                f"far:{clip.label}",
                clip.name,
                samples=synth.mix(quiet, noise),
                expected=clip.expected,
                kind="far",
            )
        )
    return out


def texture_mixes(clips: Sequence[Clip]) -> list[Clip]:
    """Return the glass breaks and gunshots of clips, each over every texture bed of clips."""
    beds: list[tuple[str, np.ndarray]] = []
    for texture in TEXTURES:
        found = [c for c in clips if c.label == texture and not c.expected and c.kind == "clip"]
        step = max(len(found) // TEXTURE_BEDS, 1)
        beds += [(texture, c.audio()) for c in found[::step][:TEXTURE_BEDS]]
    events = [c for c in clips if c.label in TEXTURE_EVENTS and c.kind == "clip"]
    at = int(TEXTURE_LEAD_S * SAMPLE_RATE)
    mixes: list[Clip] = []
    for event in events:
        sound = event.audio()[: int(MEDIA_EVENT_S * SAMPLE_RATE)]
        for i, (texture, bed) in enumerate(beds):
            looped = np.resize(bed, at + len(sound) + SAMPLE_RATE).astype(np.float32)
            level = typical_peak_db(looped) + TEXTURE_EVENT_OVER_DB
            mixed = add_event(looped, sound, at, level)
            mixes.append(
                Clip(
                    event.corpus,
                    f"{texture}:{event.label}",
                    f"{event.name}+{texture}{i}",
                    samples=mixed,
                    expected=event.expected,
                    kind="texture",
                    event_s=TEXTURE_LEAD_S,
                )
            )
    return mixes


def soundtrack_clips() -> list[Clip]:
    """Return the game soundtracks as negatives: music in the room, no media player known."""
    from scripts.tools.soundtracks import soundtracks  # noqa: PLC0415 - fetched for this only

    return [Clip("soundtracks", "soundtrack", path.name, path) for path in soundtracks()]


def alarm_clips() -> list[Clip]:
    """Return generated T3 (smoke) and T4 (CO) alarms in the conditions a home gives them."""
    from tests import synth  # noqa: PLC0415 - the project's signal generator

    clips = []
    gen = synth.rng(12)
    for pattern, sound in (("T3", Sound.SMOKE_ALARM), ("T4", Sound.CO_ALARM)):
        for carrier in ("piezo", "lf"):
            for peak_db in (-12.0, -40.0):
                for rt60 in (0.0, 0.7):
                    cycles = 3 if pattern == "T3" else 2
                    audio = synth.alarm(
                        pattern, carrier, cycles, peak_db=peak_db, jitter=0.05, gen=gen
                    ).audio
                    if rt60:
                        audio = synth.reverb(audio, gen, rt60_s=rt60, drr_db=-3.0)
                    noise = synth.pink_noise(len(audio) / SAMPLE_RATE, peak_db - 35.0, gen)
                    name = f"{pattern}_{carrier}_{peak_db:+.0f}dB_rt{rt60}"
                    clips.append(
                        Clip(
                            "generated",
                            f"alarm_{pattern}",
                            name,
                            samples=synth.mix(audio, noise),
                            expected=frozenset({sound}),
                            kind="alarm",
                        )
                    )
    return clips


# --- running ----------------------------------------------------------------------------------

_TAGGER: Tagger | None = None
_HEADS: dict[Path, DetectionHead] = {}  # --held-out-head: clip → the head to judge it with


def _init(backend: str, heads: dict[Path, DetectionHead]) -> None:
    global _TAGGER  # noqa: PLW0603 - one tagger per worker process
    _TAGGER = load_tagger(backend=backend)  # type: ignore[arg-type]
    _HEADS.update(heads)


def held_out_heads() -> dict[Path, DetectionHead]:
    """Return, for every clip the detection head was trained on, a head fitted without its fold."""
    from models import train_head  # noqa: PLC0415 - build-time code, for this option only

    clips = train_head.find_clips(train_head.AUDIO, train_head.CACHE)
    tagger = load_tagger(backend="onnxruntime")
    examples = [
        (clip, embeddings)
        for clip in clips
        if len(embeddings := train_head.window_embeddings(read_audio(clip.path).samples, tagger))
    ]
    heads: dict[Path, DetectionHead] = {}
    for fold in sorted({clip.fold for clip in clips} - {0}):  # fold 0 is never held out
        weights, bias = train_head.fit_head([(c, e) for c, e in examples if c.fold != fold])
        head = DetectionHead(tuple(train_head.CLASSES), weights, bias)
        heads.update({clip.path.resolve(): head for clip in clips if clip.fold == fold})
    return heads


def speex(samples: np.ndarray, noise_suppression: int, auto_gain_dbfs: int) -> np.ndarray:
    """Return samples through Home Assistant's speex processing at these AudioSettings."""
    from pyspeex_noise import AudioProcessor  # noqa: PLC0415 (a test requirement, for --speex)

    processor = AudioProcessor(auto_gain_dbfs * 300, noise_suppression * -15)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 160, "<i2")])  # whole 10 ms frames
    out = b"".join(
        processor.Process10ms(pcm[i : i + 160].tobytes()).audio for i in range(0, len(pcm), 160)
    )
    return np.frombuffer(out, "<i2").astype(np.float32) / 32768.0


def _evaluate_clip(args: tuple[Clip, tuple[int, ...], bool, tuple[int, int] | None]) -> ClipResult:
    clip, offsets, with_baseline, speex_settings = args
    assert _TAGGER is not None
    head = _HEADS.get(clip.path.resolve()) if clip.path is not None else None
    samples = clip.audio()
    if speex_settings is not None:
        samples = speex(samples, *speex_settings)
    engine, baseline = [], []
    for offset_ms in offsets:
        delayed = np.concatenate([np.zeros(offset_ms * SAMPLE_RATE // 1000, np.float32), samples])
        engine.append(engine_run(delayed, _TAGGER, clip.expected, head))
        if with_baseline:
            baseline.append(baseline_sounds(delayed, _TAGGER))
    return ClipResult(clip, len(samples) / SAMPLE_RATE, engine, baseline)


def run_all(
    clips: Sequence[Clip],
    offsets: tuple[int, ...],
    backend: str,
    jobs: int,
    baseline: bool,
    *,
    speex_settings: tuple[int, int] | None = None,
    heads: dict[Path, DetectionHead] | None = None,
) -> list[ClipResult]:
    """Evaluate every clip (in jobs worker processes; heads: another head for these clips)."""
    work = [(clip, offsets, baseline, speex_settings) for clip in clips]
    if jobs <= 1:
        _init(backend, heads or {})
        return [_evaluate_clip(item) for item in work]
    with ProcessPoolExecutor(jobs, initializer=_init, initargs=(backend, heads or {})) as pool:
        return list(pool.map(_evaluate_clip, work, chunksize=4))


# --- the report ---------------------------------------------------------------------------------


def _recall(hits: Iterable[bool]) -> float:
    values = list(hits)
    return round(sum(values) / len(values), 3) if values else 0.0


def _percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
        "max": round(max(values), 2),
        "count": len(values),
        "over_1.5s": sum(v > 1.5 for v in values),
    }


def report(results: Sequence[ClipResult], offsets: tuple[int, ...]) -> dict[str, Any]:
    """Summarise the results per corpus."""
    out: dict[str, Any] = {"offsets_ms": list(offsets), "corpora": {}}
    by_corpus: dict[str, list[ClipResult]] = defaultdict(list)
    for r in results:
        by_corpus[r.clip.corpus].append(r)
    for corpus, rows in by_corpus.items():
        section: dict[str, Any] = {}
        out["corpora"][corpus] = section
        clips = [r for r in rows if r.clip.kind == "clip"]
        section["positives"] = _positives([r for r in clips if r.clip.expected], offsets)
        negatives = [r for r in clips if not r.clip.expected and r.clip.scored]
        if negatives:
            section["negatives"] = _negatives(negatives, offsets)
        unscored = [r for r in clips if not r.clip.scored]
        if unscored:
            section["unscored"] = {
                r.clip.name: sorted(set().union(*(run.alerts for run in r.engine))) or "-"
                for r in unscored
            }
        media = [r for r in rows if r.clip.kind in ("media", "room")]
        if media:
            section["media"] = _media(media)
        alarms = [r for r in rows if r.clip.kind == "alarm"]
        if alarms:
            section["alarms"] = _alarms(alarms)
        far = [r for r in rows if r.clip.kind == "far"]
        if far:
            section["far"] = {
                label: row["recall_worst"] for label, row in _positives(far, offsets).items()
            }
        textures = [r for r in rows if r.clip.kind == "texture"]
        if textures:
            section["textures"] = _textures(textures, offsets)
    return out


def _textures(rows: list[ClipResult], offsets: tuple[int, ...]) -> dict[str, Any]:
    """Recall per texture:class at the worst offset, counting alerts that start at the event."""

    def caught(r: ClipResult, k: int) -> bool:
        start = r.clip.event_s + offsets[k] / 1000 - TEXTURE_EARLY_S
        return any(s in r.clip.expected and t >= start for s, t in r.engine[k].alert_times)

    table: dict[str, Any] = {}
    for label in sorted({r.clip.label for r in rows}):
        mine = [r for r in rows if r.clip.label == label]
        per_offset = [sum(caught(r, k) for r in mine) for k in range(len(offsets))]
        table[label] = f"{min(per_offset)}/{len(mine)}"
    return table


def _positives(rows: list[ClipResult], offsets: tuple[int, ...]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for label in sorted({r.clip.label for r in rows}):
        mine = [r for r in rows if r.clip.label == label]
        per_offset = [
            _recall(bool(r.engine[k].alerts & r.clip.expected) for r in mine)
            for k in range(len(offsets))
        ]
        base = (
            [
                _recall(bool(r.baseline[k] & r.clip.expected) for r in mine)
                for k in range(len(offsets))
            ]
            if mine[0].baseline
            else []
        )
        latencies = [run.latency_s for r in mine for run in r.engine if run.latency_s is not None]
        row: dict[str, Any] = {
            "files": len(mine),
            "recall_worst": min(per_offset),
            "recall_by_offset": per_offset,
            "caught_at_every_offset": sum(
                all(run.alerts & r.clip.expected for run in r.engine) for r in mine
            ),
            "wrong_sound_alerts": sum(
                len(run.alerts - r.clip.expected) for r in mine for run in r.engine
            ),
        }
        if base:
            row["baseline_recall_worst"] = min(base)
            row["baseline_wrong_sound_alerts"] = sum(
                len(b - r.clip.expected) for r in mine for b in r.baseline
            )
        if latencies:
            row["latency_s"] = _percentiles(latencies)
        table[label] = row
    return table


def _negatives(rows: list[ClipResult], offsets: tuple[int, ...]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    total_s = 0.0
    total_engine = total_base = 0
    for label in sorted({r.clip.label for r in rows}):
        mine = [r for r in rows if r.clip.label == label]
        seconds = sum(r.seconds for r in mine) * len(offsets)
        sounds: Counter[str] = Counter(s for r in mine for run in r.engine for s in run.alerts)
        engine = sum(sounds.values())
        base = sum(len(b) for r in mine for b in r.baseline)
        total_s += seconds
        total_engine += engine
        total_base += base
        table[label] = {
            "files": len(mine),
            "hours": round(seconds / 3600, 4),
            "false_alerts": engine,
            "per_hour": round(engine / seconds * 3600, 2),
            "sounds": dict(sounds),
            "suppressed": sum(len(run.suppressed) for r in mine for run in r.engine),
            "baseline_false_alerts": base,
            "baseline_per_hour": round(base / seconds * 3600, 2),
        }
    table["all"] = {
        "hours": round(total_s / 3600, 4),
        "false_alerts": total_engine,
        "per_hour": round(total_engine / total_s * 3600, 2),
        "baseline_false_alerts": total_base,
        "baseline_per_hour": round(total_base / total_s * 3600, 2),
    }
    return table


def _media(rows: list[ClipResult]) -> dict[str, Any]:
    from_tv = [(r, run) for r in rows if r.clip.kind == "media" for run in r.engine]
    alerted = sum(bool(run.alerts & r.clip.expected) for r, run in from_tv)
    suppressed = sum(bool(run.suppressed) and not run.alerts for _, run in from_tv)
    room = [(r, run) for r in rows if r.clip.kind == "room" for run in r.engine]
    return {
        "from_tv_runs": len(from_tv),
        "from_tv_alerted": alerted,  # what must not happen
        "from_tv_suppressed": suppressed,  # heard, reported as media
        "from_tv_not_alerted": round(1 - alerted / len(from_tv), 3) if from_tv else None,
        "suppression_rate": round(suppressed / (suppressed + alerted), 3)
        if suppressed + alerted
        else None,
        "in_room_runs": len(room),
        "in_room_alerted": sum(bool(run.alerts & r.clip.expected) for r, run in room),
        "in_room_suppressed": sum(bool(run.suppressed & r.clip.expected) for r, run in room),
    }


def _alarms(rows: list[ClipResult]) -> dict[str, Any]:
    table = {}
    for pattern, wanted, wrong in (
        ("alarm_T3", Sound.SMOKE_ALARM, Sound.CO_ALARM),
        ("alarm_T4", Sound.CO_ALARM, Sound.SMOKE_ALARM),
    ):
        runs = [run for r in rows if r.clip.label == pattern for run in r.engine]
        table[pattern] = {
            "runs": len(runs),
            "detected": sum(wanted in run.alerts for run in runs),
            f"also_or_only_{wrong}": sum(wrong in run.alerts for run in runs),
        }
    return table


def print_report(rep: dict[str, Any]) -> None:
    """Print the report as tables."""
    print(f"offsets (ms): {rep['offsets_ms']}")
    for corpus, section in rep["corpora"].items():
        print(f"\n== {corpus}")
        if section["positives"]:
            print(
                f"{'class':<12} {'files':>5} {'worst':>6} {'by offset':<24} {'every':>5}"
                f" {'base':>5} {'wrong':>5}  latency p50/p95/max (>1.5 s)"
            )
        for label, row in section["positives"].items():
            lat = row.get("latency_s")
            print(
                f"{label:<12} {row['files']:>5} {row['recall_worst']:>6.2f} "
                f"{' '.join(f'{v:.2f}' for v in row['recall_by_offset']):<24} "
                f"{row['caught_at_every_offset']:>5} {row.get('baseline_recall_worst', 0):>5.2f} "
                f"{row['wrong_sound_alerts']:>5}  "
                + (f"{lat['p50']}/{lat['p95']}/{lat['max']} ({lat['over_1.5s']})" if lat else "")
            )
        if "negatives" in section:
            header = f"{'negatives':<18} {'hours':>7} {'alerts':>6} {'per h':>7} {'base/h':>7}"
            print(f"{header}  sounds")
            for label, row in section["negatives"].items():
                print(
                    f"{label:<18} {row['hours']:>7.3f} {row['false_alerts']:>6} "
                    f"{row['per_hour']:>7.2f} {row['baseline_per_hour']:>7.2f}  "
                    f"{row.get('sounds', '')}"
                )
        for key in ("media", "far", "textures", "alarms", "unscored"):
            if key in section:
                print(f"{key}: {json.dumps(section[key])}")


def main() -> None:
    """Run from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", type=Path, nargs="*")
    parser.add_argument("--offsets", type=int, nargs="+", default=list(DEFAULT_OFFSETS_MS))
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "numpy"])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--files", action="store_true", help="print what fired on every clip")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Frigate-style loop")
    parser.add_argument("--no-generated", action="store_true", help="skip media mixes, alarms")
    parser.add_argument("--far", action="store_true", help="also the positives from another room")
    parser.add_argument(
        "--textures",
        action="store_true",
        help="also glass and gunshots over a clock, a fire, rain, an air conditioner",
    )
    parser.add_argument(
        "--soundtracks",
        action="store_true",
        help="also 4.2 h of game music as negatives (fetched once, see tools/soundtracks.py)",
    )
    parser.add_argument(
        "--held-out-head",
        action="store_true",
        help="judge the clips that trained the detection head with one fitted without their fold",
    )
    parser.add_argument(
        "--speex",
        type=int,
        nargs=2,
        metavar=("NS", "AGC"),
        help="Home Assistant's noise suppression (0-4) and auto gain (0-31 dBFS) first",
    )
    args = parser.parse_args()
    corpora = args.corpora or [
        SHARED_AUDIO / name for name in DEFAULT_CORPORA if (SHARED_AUDIO / name).is_dir()
    ]
    clips: list[Clip] = []
    for corpus in corpora:
        found = find_clips(corpus)
        clips += found
        if not args.no_generated:
            clips += media_mixes(found)
        if args.far:
            clips += far_clips(found)
    if args.textures:
        clips += texture_mixes(clips)
    if not args.no_generated:
        clips += alarm_clips()
    if args.soundtracks:
        clips += soundtrack_clips()
    offsets = tuple(args.offsets)
    speex_settings = tuple(args.speex) if args.speex else None
    heads = held_out_heads() if args.held_out_head else None
    if heads is not None:
        print(
            f"held-out head: {len(heads)} clips judged by a head fitted without their fold",
            file=sys.stderr,
        )
    results = run_all(
        clips,
        offsets,
        args.backend,
        args.jobs,
        not args.no_baseline,
        speex_settings=speex_settings,
        heads=heads,
    )
    if args.files:
        for r in results:
            runs = " | ".join(", ".join(run.heard) or "-" for run in r.engine)
            print(f"{r.clip.corpus}/{r.clip.label}/{r.clip.name[:40]}: {runs}", file=sys.stderr)
    rep = report(results, offsets)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print_report(rep)


if __name__ == "__main__":
    main()
