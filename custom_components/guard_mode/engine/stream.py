"""One audio stream through the engine: frontend, level gate, alarm patterns, tagger, decider.

Work is split in two so that one shared tagger can serve many streams: :meth:`feed` does the
per-stream signal processing and returns the windows that need the tagger; the caller runs the
tagger (batched across streams) and hands the scores to :meth:`complete`, which feeds the
decider in time order. :meth:`process` does both for a single stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from .alarm_pattern import AlarmHit, AlarmPatternDetector
from .decider import Decider, DeciderConfig, DeciderEvent, WindowEvidence
from .frontend import (
    FRAME_HOP,
    FRAME_LENGTH,
    PATCH_FRAMES,
    PATCH_HOP_FRAMES,
    SAMPLE_RATE,
    StreamingFrontend,
)
from .labels import media_evidence, tagger_groups
from .learning import unit
from .tagger import Tagger

Floats = npt.NDArray[np.float32]
SILENCE_DB = -120.0
DEFAULT_GATE_DB = -55.0


def to_db(mean_square: float | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return dBFS of a mean square (full-scale sine = -3 dBFS, full-scale square = 0)."""
    return np.asarray(10.0 * np.log10(np.maximum(mean_square, 1e-12)), np.float32)


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """Level and timing of a window, known before the tagger runs."""

    start_s: float
    end_s: float
    level_db: float
    peak_db: float
    onset_s: float
    gated: bool  # too quiet: the tagger is skipped


@dataclass(slots=True)
class PendingWindows:
    """What :meth:`StreamAnalyzer.feed` leaves for the tagger and the decider."""

    windows: list[WindowInfo] = field(default_factory=list)
    patches: Floats = field(default_factory=lambda: np.zeros((0, 96, 64), np.float32))
    alarm_hits: list[AlarmHit] = field(default_factory=list)

    @property
    def needs_tagger(self) -> int:
        """Return how many patches await the tagger."""
        return len(self.patches)

    def gated(self) -> PendingWindows:
        """Return a copy as if every window had been too quiet (no tagger scores needed)."""
        return PendingWindows(
            windows=[replace(w, gated=True) for w in self.windows], alarm_hits=list(self.alarm_hits)
        )


class StreamAnalyzer:
    """Per-stream state: turns 16 kHz samples into decider events."""

    def __init__(
        self,
        *,
        gate_db: float = DEFAULT_GATE_DB,
        decider_config: DeciderConfig | None = None,
    ) -> None:
        """Start a stream; windows whose loudest frame is below gate_db skip the tagger."""
        self.gate_db = gate_db
        self.frontend = StreamingFrontend()
        self.alarms = AlarmPatternDetector()
        self.decider = Decider(decider_config)
        self._energy = np.zeros(PATCH_FRAMES, np.float32)  # energies of the last 96 frames
        self._origin = 0  # stream sample index where the current frontend started
        self._fed = 0  # samples fed to the current frontend
        self.collect_embeddings = False  # teaching: keep embeddings of every window
        self.windows = 0
        self.gated_windows = 0
        self.level_db = SILENCE_DB  # level of the latest window
        self._peak_level_db: float | None = None  # loudest window since take_peak_level

    @property
    def time_s(self) -> float:
        """Return the stream time of the audio fed so far (including skipped audio)."""
        return (self._origin + self._fed) / SAMPLE_RATE

    def take_peak_level(self) -> float | None:
        """Return the loudest window level (dBFS) since the last call, None if no window."""
        level, self._peak_level_db = self._peak_level_db, None
        return level

    def seconds_to_next_window(self) -> float:
        """Return how much more audio completes the next 0.96 s window."""
        frames = self.frontend.frames
        next_end = (
            PATCH_FRAMES
            if frames < PATCH_FRAMES
            else frames + PATCH_HOP_FRAMES - ((frames - PATCH_FRAMES) % PATCH_HOP_FRAMES)
        )
        needed = (next_end - 1) * FRAME_HOP + FRAME_LENGTH - self._fed
        return max(needed, 0) / SAMPLE_RATE

    def skip(self, samples: int) -> list[DeciderEvent]:
        """Account for lost audio: frames start afresh, time goes on; return decider events."""
        self._origin += self._fed + samples
        self._fed = 0
        self.frontend = StreamingFrontend()
        self.alarms.reset()
        self._energy = np.zeros(PATCH_FRAMES, np.float32)
        return self.decider.gap(self.time_s)

    def feed(self, samples: Floats) -> PendingWindows:
        """Run the signal processing on new samples; return windows awaiting the tagger."""
        self._fed += len(samples)
        chunk = self.frontend.push(samples)
        origin_s = self._origin / SAMPLE_RATE
        hits = self.alarms.push(chunk.magnitude, chunk.first_frame)
        if origin_s:
            hits = [
                replace(hit, start_s=hit.start_s + origin_s, end_s=hit.end_s + origin_s)
                for hit in hits
            ]
        pending = PendingWindows(alarm_hits=hits)
        if not len(chunk.energy):
            return pending
        energy = np.concatenate([self._energy, chunk.energy])
        self._energy = energy[-PATCH_FRAMES:]
        offset = self.frontend.frames - len(energy)  # stream frame index of energy[0]
        keep = []
        for end in chunk.patch_end_frames:
            frames = energy[end - offset - PATCH_FRAMES : end - offset]
            info = self._window_info(end, frames)
            pending.windows.append(info)
            if not info.gated:
                keep.append(end)
        self.windows += len(pending.windows)
        self.gated_windows += len(pending.windows) - len(keep)
        if pending.windows:
            self.level_db = pending.windows[-1].level_db
            loudest = max(w.level_db for w in pending.windows)
            if self._peak_level_db is None or loudest > self._peak_level_db:
                self._peak_level_db = loudest
        if keep:
            pending.patches = self.frontend.patches(keep)
        return pending

    @property
    def wants_embeddings(self) -> bool:
        """Return True when the tagger should also give this stream's embeddings."""
        return self.collect_embeddings or self.decider.config.wants_embeddings

    def complete(
        self,
        pending: PendingWindows,
        scores: Floats | None = None,
        embeddings: Floats | None = None,
    ) -> list[DeciderEvent]:
        """Give the tagger's scores (and embeddings) for pending's patches; return events."""
        if scores is None:
            scores = np.zeros((0, 521), np.float32)
        if len(scores) != pending.needs_tagger:
            raise ValueError(f"expected {pending.needs_tagger} score rows, got {len(scores)}")
        evidence = self._evidence(
            pending.windows, scores, unit(embeddings) if embeddings is not None else None
        )
        timeline: list[tuple[float, int, WindowEvidence | AlarmHit]] = [
            (w.end_s, 0, w) for w in evidence
        ]
        timeline += [(hit.end_s, 1, hit) for hit in pending.alarm_hits]
        events: list[DeciderEvent] = []
        for _, _, item in sorted(timeline, key=lambda entry: (entry[0], entry[1])):
            if isinstance(item, WindowEvidence):
                events.extend(self.decider.push_window(item))
            else:
                events.extend(self.decider.push_alarm(item))
        return events

    def process(self, samples: Floats, tagger: Tagger) -> list[DeciderEvent]:
        """Feed samples and run the tagger for this stream alone."""
        pending = self.feed(samples)
        if not pending.needs_tagger:
            return self.complete(pending)
        output = tagger.infer(pending.patches, embeddings=self.wants_embeddings)
        return self.complete(pending, output.scores, output.embeddings)

    def finish(self) -> list[DeciderEvent]:
        """End of stream: close open detections."""
        return self.decider.finish()

    def _window_info(self, end_frame: int, energy: Floats) -> WindowInfo:
        start_frame = end_frame - PATCH_FRAMES
        start_s = (self._origin + start_frame * FRAME_HOP) / SAMPLE_RATE
        end_s = (self._origin + (end_frame - 1) * FRAME_HOP + FRAME_LENGTH) / SAMPLE_RATE
        frame_db = to_db(energy)
        peak_db = float(frame_db.max())
        rise = np.diff(frame_db)
        onset = int(rise.argmax()) + 1 if len(rise) and rise.max() > 6.0 else 0
        return WindowInfo(
            start_s=start_s,
            end_s=end_s,
            level_db=float(to_db(float(energy.mean()))),
            peak_db=peak_db,
            onset_s=start_s + onset * FRAME_HOP / SAMPLE_RATE,
            gated=peak_db < self.gate_db,
        )

    def _evidence(
        self, windows: list[WindowInfo], scores: Floats, embeddings: Floats | None
    ) -> list[WindowEvidence]:
        table = tagger_groups()
        keys = table.keys
        if len(scores):
            raw = scores[:, table.index]  # [N, K, W]
            normalized = raw * table.inverse_threshold
            best = normalized.argmax(axis=2)
            norm_best = np.take_along_axis(normalized, best[..., None], axis=2)[..., 0]
            raw_best = np.take_along_axis(raw, best[..., None], axis=2)[..., 0]
            media = media_evidence(scores)
        out = []
        row = 0
        for info in windows:
            if info.gated:
                groups: dict[str, float] = {}
                confidence: dict[str, float] = {}
                labels: dict[str, str] = {}
                media_score = 0.0
                embedding = None
            else:
                groups = {key: float(norm_best[row, k]) for k, key in enumerate(keys)}
                confidence = {key: float(raw_best[row, k]) for k, key in enumerate(keys)}
                labels = {key: table.label(k, int(best[row, k])) for k, key in enumerate(keys)}
                media_score = float(media[row])
                embedding = embeddings[row] if embeddings is not None else None
                row += 1
            out.append(
                WindowEvidence(
                    start_s=info.start_s,
                    end_s=info.end_s,
                    level_db=info.level_db,
                    peak_db=info.peak_db,
                    scores=groups,
                    confidence=confidence,
                    labels=labels,
                    media=media_score,
                    onset_s=info.onset_s,
                    embedding=embedding,
                )
            )
        return out
