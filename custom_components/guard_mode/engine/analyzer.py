"""One audio stream through the engine: frontend, gate, onsets, alarm patterns, tagger → evidence.

The analyzer turns 16 kHz samples into :mod:`.evidence` (windows, alarm-pattern hits, gaps) in
stream-time order; it holds no decision: the stream's decider (on the other side of the seam,
see :mod:`.decision`) turns the evidence into detections.

Work is split in two so that one shared tagger can serve many streams: :meth:`feed` does the
per-stream signal processing and returns the windows that need the tagger; the caller runs the
tagger (batched across streams) and hands the scores to :meth:`complete`, which returns the
evidence in time order. :meth:`process` does both for a single stream.

Windows: the regular 0.96 s windows every 0.48 s, and for each onset of a short sound (see
:mod:`.onset`) up to three more, wherever the regular windows fall: two starting 40 ms and 160 ms
before it, so that a shot or a bark is also tagged whole, near the start of a window, and a late
one ending 160 ms after it (:attr:`.WindowEvidence.late`: a shot at the end of a window, after
the quiet before it, is where YAMNet hears it best). An aligned window is handed on once its
onset is measured (0.6 s after it), so a late one comes after regular windows that end later.
Before the stream's first frame lies digital silence, where a window may start. Onsets closer
than a window hop share the first one's windows (unless the later one is much louder than its
precursor: see :mod:`.onset`), and a window that a regular one nearly matches
is not added, which keeps the extra tagging small (a few per minute in a quiet home).

Uneventful sound (a fan, traffic, rain) is tagged about half as often. A tagged regular window is
calm when it heard nothing the decision uses: every tagger group below :data:`CALM_SCORE` of its
threshold, the head below :data:`CALM_HEAD` for each sound it alerts on, media evidence below
:data:`CALM_MEDIA` unless the stream is in media context (:data:`MEDIA_CONTEXT` of the last
:data:`MEDIA_WINDOWS` regular windows media-like, as the decider counts them): a TV that plays
on is tagged about half as often too, and a skipped window carries the media evidence of the one
before it. After two calm tagged regular windows (a skipped one between them does not
break the run; a gated one, or a window the tagger failed on, does), the next regular window is
not tagged (:attr:`WindowEvidence.skipped`) unless something starts in it: an onset in it or
less than :data:`CALM_AFTER_ONSET_S` before it (the impulse rule reads such windows), or an
octave band whose loudest frame rose :data:`CALM_RISE_DB` over the window before (a bark in a
street's roar raises its bands, not the broadband level). The windows either side of a skipped
one cover all of its audio, and never two in a row are skipped. A window is judged calm on the
tagger's result, so of the windows that arrive together (an engine that fell behind) only the
first can be skipped. Learning that matches every window (custom sounds, a teaching recording)
turns this off (:attr:`every_window`).

A quiet event (glass breaking in another room) is tagged at a normal level: an aligned window's
tagger input is amplified so that its loudest frame reaches :data:`EVENT_LEVEL_DB`, by at most
:data:`MAX_GAIN_DB`, and never so much that the room it rose from would exceed
:data:`ROOM_CEILING_DB` (room noise is not blown up into an event).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from .alarm_pattern import AlarmHit, AlarmPatternDetector
from .blas import one_blas_thread
from .evidence import Evidence, Gap, WindowEvidence, late_window
from .frontend import (
    FFT_LENGTH,
    FRAME_HOP,
    FRAME_LENGTH,
    PATCH_FRAMES,
    PATCH_HOP_FRAMES,
    SAMPLE_RATE,
    StreamingFrontend,
)
from .head import DetectionHead, shipped_head
from .labels import Sound, media_evidence, tagger_groups
from .learning import unit
from .onset import MATURE_FRAMES, REFRACTORY_FRAMES, Onset, OnsetTracker
from .tagger import Tagger

Floats = npt.NDArray[np.float32]
SILENCE_DB = -120.0
DEFAULT_GATE_DB = -55.0
# Aligned windows start this many frames before an onset: 40 ms and 160 ms (the sound whole, near
# the window's start), and 800 ms (a late window: the sound's first 160 ms at the window's end,
# after the quiet before it, where YAMNet hears a shot best) ...
ALIGNED_LEADS = (4, 16, 80)
# ... unless a regular window starts within this many frames of the same place.
ALIGNED_NEAR_FRAMES = 1
# A regular window borrows an onset that lies in its first frames (measured by its end).
ONSET_IN_WINDOW_FRAMES = PATCH_FRAMES - MATURE_FRAMES
_ENERGY_FRAMES = PATCH_FRAMES + PATCH_HOP_FRAMES + max(ALIGNED_LEADS)  # energy history kept
EVENT_LEVEL_DB = -20.0  # an aligned window's loudest frame is tagged at this level ...
MAX_GAIN_DB = 20.0  # ... amplified by at most this much ...
ROOM_CEILING_DB = -60.0  # ... keeping the room it rose from below this
CALM_SCORE = 0.3  # a calm window's groups stay below this share of their thresholds, ...
CALM_HEAD = 0.45  # ... the head below this for each sound it alerts on, ...
CALM_MEDIA = 0.3  # ... its media evidence below this (unless the stream is in media context)
CALM_RISE_DB = 6.0  # a band's peak rising this much over the window before starts something
CALM_AFTER_ONSET_S = 0.5  # ... as does an onset this long before it
# The decider's media context (DeciderConfig's defaults; it also holds it 6 s longer): a window
# with this much media evidence is media-like, and 10 of the last 16 regular ones make it.
MEDIA_LIKE = 0.5
MEDIA_WINDOWS, MEDIA_CONTEXT = 16, 10
_CALM_AFTER_ONSET_FRAMES = round(CALM_AFTER_ONSET_S * SAMPLE_RATE / FRAME_HOP)
# Octave bands 125 Hz-8 kHz as FFT bins (31.25 Hz each).
_OCTAVES = np.zeros((FFT_LENGTH // 2 + 1, 6), np.float32)
for _band in range(6):
    _OCTAVES[4 << _band : 8 << _band, _band] = 1.0


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
    aligned: bool = False  # an extra window aligned to an onset, not a regular one
    onset: Onset | None = None  # the onset it is aligned to, or one early in a regular window
    gain_db: float = 0.0  # how much the tagger's input was amplified (aligned windows)
    frame: int = 0  # the frame it ends at (the frontend's count)
    rose: bool = False  # a band's peak rose CALM_RISE_DB over the regular window before it
    skipped: bool = False  # a regular window after a calm one: the tagger is skipped

    @property
    def tagged(self) -> bool:
        """Return True when the tagger runs on the window."""
        return not self.gated and not self.skipped

    @property
    def late(self) -> bool:
        """Return True for a late window: aligned to end just after its onset."""
        return late_window(self.aligned, self.onset_s, self.end_s)


@dataclass(slots=True)
class PendingWindows:
    """What :meth:`StreamAnalyzer.feed` leaves for the tagger."""

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


def _due_frame(start: int, onset: int) -> int:
    """Return the frame count at which an aligned window is tagged: complete, onset measured."""
    return max(start + PATCH_FRAMES, onset + MATURE_FRAMES)


class StreamAnalyzer:
    """Per-stream state of the evidence side: turns 16 kHz samples into evidence."""

    def __init__(
        self,
        *,
        gate_db: float = DEFAULT_GATE_DB,
        embeddings: bool = False,
        every_window: bool = False,
        head: DetectionHead | None = None,
    ) -> None:
        """Start a stream; windows whose loudest frame is below gate_db skip the tagger.

        embeddings: whether the evidence carries each window's embedding (learning needs it).
        every_window: tag every regular window, calm or not (learning that matches each one).
        head: the detection head (None: the one Guard Mode ships; evaluation may give another).
        """
        self.gate_db = gate_db
        self.embeddings = embeddings
        self.every_window = every_window
        self.head = head
        self.frontend = StreamingFrontend()
        self.alarms = AlarmPatternDetector()
        self._reset_frames()
        self._origin = 0  # stream sample index where the current frontend started
        self._fed = 0  # samples fed to the current frontend
        self.windows = 0  # regular windows
        self.gated_windows = 0
        self.skipped_windows = 0  # regular windows after a calm one, not tagged
        self.aligned_windows = 0  # extra windows aligned to onsets, tagged

    @property
    def time_s(self) -> float:
        """Return the stream time of the audio fed so far (including skipped audio)."""
        return (self._origin + self._fed) / SAMPLE_RATE

    def seconds_to_next_window(self) -> float:
        """Return how much more audio completes the next 0.96 s window (regular or aligned)."""
        frames = self.frontend.frames
        next_end = (
            PATCH_FRAMES
            if frames < PATCH_FRAMES
            else frames + PATCH_HOP_FRAMES - ((frames - PATCH_FRAMES) % PATCH_HOP_FRAMES)
        )
        if self._aligned:
            next_end = min(next_end, *(_due_frame(*item) for item in self._aligned))
        needed = (next_end - 1) * FRAME_HOP + FRAME_LENGTH - self._fed
        return max(needed, 0) / SAMPLE_RATE

    def skip(self, samples: int) -> Gap:
        """Account for lost audio: frames start afresh, time goes on; return the gap."""
        self._origin += self._fed + samples
        self._fed = 0
        self.alarms.reset()
        self._reset_frames()
        return Gap(self.time_s)

    def _reset_frames(self) -> None:
        """Start the per-frame state afresh (a new stream, or after lost audio)."""
        # An aligned window can end in a later push than its onset: keep its older frames.
        self.frontend = StreamingFrontend(history_frames=PATCH_FRAMES + max(ALIGNED_LEADS))
        self.onsets = OnsetTracker()
        self._energy = np.zeros(_ENERGY_FRAMES, np.float32)  # the last frames' energies
        self._bands = np.zeros((PATCH_FRAMES, len(_OCTAVES.T)), np.float32)  # ... octave bands'
        self._aligned: list[tuple[int, int]] = []  # (start frame, onset frame) to be tagged
        self._measured: dict[int, Onset] = {}  # recent measured onsets by frame
        self._last_aligned_onset = -(10**9)
        self._was_calm = False  # the latest tagged regular window was calm
        self._media = 0.0  # the latest regular window's media evidence
        self._media_like: deque[bool] = deque(maxlen=MEDIA_WINDOWS)  # ... and the last ones'
        self._calm: int | None = None  # end frame of a second calm one in a row: skip the next
        self._band_peaks: Floats | None = None  # the regular window before's, unless it was gated
        self._last_onset = -(10**9)  # frame of the latest onset found

    def feed(self, samples: Floats) -> PendingWindows:
        """Run the signal processing on new samples; return windows awaiting the tagger."""
        one_blas_thread()  # the engine's BLAS setting, for every path that runs it
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
        self._energy = np.concatenate([self._energy, chunk.energy])  # trimmed below
        if to_db(float(chunk.energy.max())) >= self.gate_db:  # frames below the gate count as 0
            bands = np.square(chunk.magnitude) @ _OCTAVES
        else:  # (only windows above the gate are compared; a quiet stream skips the bands)
            bands = np.zeros((len(chunk.energy), len(_OCTAVES.T)), np.float32)
        self._bands = np.concatenate([self._bands, bands])  # trimmed below
        new, mature = self.onsets.push(to_db(chunk.energy), chunk.high_db)
        for onset in mature:
            self._measured[onset.frame] = onset
        for frame in new:
            self._schedule(frame, louder=frame - self._last_onset < REFRACTORY_FRAMES)
            self._last_onset = frame
        frames = self.frontend.frames
        infos = [(end, self._regular_window(end)) for end in chunk.patch_end_frames]
        due = [item for item in self._aligned if _due_frame(*item) <= frames]
        self._aligned = [item for item in self._aligned if _due_frame(*item) > frames]
        for start, onset_frame in due:
            info = self._window_info(start + PATCH_FRAMES, aligned=True, onset=onset_frame)
            if info.tagged and info.onset is not None:
                infos.append((_due_frame(start, onset_frame), info))
        infos.sort(key=lambda item: (item[0], item[1].frame))  # in the order they became due
        self._energy = self._energy[-_ENERGY_FRAMES:]
        self._bands = self._bands[-PATCH_FRAMES:]
        self._measured = {f: o for f, o in self._measured.items() if f > frames - 2 * PATCH_FRAMES}
        pending.windows = [info for _, info in infos]
        regular = [info for info in pending.windows if not info.aligned]
        self.windows += len(regular)
        self.gated_windows += sum(info.gated for info in regular)
        self.skipped_windows += sum(info.skipped for info in regular)
        self.aligned_windows += len(pending.windows) - len(regular)
        keep = [(info.frame, info.gain_db) for _, info in infos if info.tagged]
        if keep:
            ends, gains = zip(*keep, strict=True)
            pending.patches = self.frontend.patches(list(ends), list(gains))
        return pending

    def _schedule(self, onset_frame: int, *, louder: bool) -> None:
        """Plan the windows aligned to a new onset (none if one was planned a hop ago).

        louder: it came so soon after the onset before that it must be much louder (see
        :mod:`.onset`): the one before was its precursor, so it gets windows of its own.
        """
        if onset_frame - self._last_aligned_onset < PATCH_HOP_FRAMES and not louder:
            return
        self._last_aligned_onset = onset_frame
        planned = {start for start, _ in self._aligned}  # a precursor's (still to be tagged)
        for lead in ALIGNED_LEADS:
            start = onset_frame - lead
            offset = start % PATCH_HOP_FRAMES  # regular windows start every 48 frames
            if (
                min(offset, PATCH_HOP_FRAMES - offset) > ALIGNED_NEAR_FRAMES
                and start not in planned
            ):
                self._aligned.append((start, onset_frame))

    @property
    def _in_media(self) -> bool:
        """Return True while the stream is in media context (MEDIA_CONTEXT of MEDIA_WINDOWS)."""
        return sum(self._media_like) >= MEDIA_CONTEXT

    @property
    def wants_embeddings(self) -> bool:
        """Return True: the detection head reads every window's embedding."""
        return True

    def complete(
        self,
        pending: PendingWindows,
        scores: Floats | None = None,
        embeddings: Floats | None = None,
    ) -> list[Evidence]:
        """Give the tagger's scores (and embeddings) for pending's patches; return the evidence."""
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
        return [item for _, _, item in sorted(timeline, key=lambda entry: (entry[0], entry[1]))]

    def process(self, samples: Floats, tagger: Tagger) -> list[Evidence]:
        """Feed samples and run the tagger for this stream alone; return the evidence."""
        pending = self.feed(samples)
        if not pending.needs_tagger:
            return self.complete(pending)
        output = tagger.infer(pending.patches, embeddings=self.wants_embeddings)
        return self.complete(pending, output.scores, output.embeddings)

    def _regular_window(self, end: int) -> WindowInfo:
        """Return a regular window's info: whether a band rose in it, whether it is skipped."""
        info = self._window_info(end, aligned=False)
        if info.gated:  # the calm run starts again after it: nothing to compare with
            self._band_peaks = None
        else:
            first = len(self._bands) - (self.frontend.frames - end) - PATCH_FRAMES
            peaks = to_db(self._bands[first : first + PATCH_FRAMES].max(axis=0))
            before, self._band_peaks = self._band_peaks, peaks
            rose = before is not None and bool(np.any(peaks >= before + CALM_RISE_DB))
            info = replace(info, rose=rose)
        calm, self._calm = self._calm, None  # a calm window counts for the next one only
        if (
            calm == end - PATCH_HOP_FRAMES
            and not self.every_window
            and not info.gated
            and not info.rose
            and self._last_onset < end - PATCH_FRAMES - _CALM_AFTER_ONSET_FRAMES
        ):
            info = replace(info, skipped=True)
        return info

    def _window_info(
        self, end_frame: int, *, aligned: bool, onset: int | None = None
    ) -> WindowInfo:
        start_frame = end_frame - PATCH_FRAMES
        start_s = (self._origin + start_frame * FRAME_HOP) / SAMPLE_RATE
        end_s = (self._origin + (end_frame - 1) * FRAME_HOP + FRAME_LENGTH) / SAMPLE_RATE
        last = self.frontend.frames - end_frame  # frames of _energy after this window's end
        energy = self._energy[len(self._energy) - last - PATCH_FRAMES : len(self._energy) - last]
        frame_db = to_db(energy)
        peak_db = float(frame_db.max())
        if onset is None:  # the strongest measured onset early in a regular window
            early = [
                o
                for f, o in self._measured.items()
                if start_frame <= f < start_frame + ONSET_IN_WINDOW_FRAMES
            ]
            measured = max(early, key=lambda o: o.peak_db) if early else None
        else:
            measured = self._measured.get(onset)
        if measured is not None:
            onset_frame = measured.frame - start_frame
        else:
            rise = np.diff(frame_db)
            onset_frame = int(rise.argmax()) + 1 if len(rise) and rise.max() > 6.0 else 0
        gain = 0.0
        if aligned and measured is not None:
            room_headroom = ROOM_CEILING_DB - measured.background_db
            gain = round(max(0.0, min(EVENT_LEVEL_DB - peak_db, MAX_GAIN_DB, room_headroom)), 1)
        return WindowInfo(
            start_s=start_s,
            end_s=end_s,
            level_db=float(to_db(float(energy.mean()))),
            peak_db=peak_db,
            onset_s=start_s + onset_frame * FRAME_HOP / SAMPLE_RATE,
            gated=peak_db < self.gate_db,
            aligned=aligned,
            onset=measured,
            gain_db=gain,
            frame=end_frame,
        )

    def _evidence(
        self, windows: list[WindowInfo], scores: Floats, embeddings: Floats | None
    ) -> list[WindowEvidence]:
        table = tagger_groups()
        keys = table.keys
        head = self.head or shipped_head()
        keep = self.embeddings
        if len(scores):
            raw = scores[:, table.index]  # [N, K, W]
            best = (raw * table.inverse_threshold).argmax(axis=2)  # each group's best member
            group_score = table.normalized(scores)
            raw_best = np.take_along_axis(raw, best[..., None], axis=2)[..., 0]
            media = media_evidence(scores)
            if embeddings is not None:  # unit rows (see complete)
                heard = head.probabilities(embeddings)
        out = []
        row = 0
        for info in windows:
            groups: dict[str, float] = {}
            confidence: dict[str, float] = {}
            labels: dict[str, str] = {}
            classes: dict[str, float] = {}
            media_score = 0.0
            embedding = None
            if info.tagged:
                groups = {key: float(group_score[row, k]) for k, key in enumerate(keys)}
                confidence = {key: float(raw_best[row, k]) for k, key in enumerate(keys)}
                labels = {key: table.label(k, int(best[row, k])) for k, key in enumerate(keys)}
                media_score = float(media[row])
                if embeddings is not None:
                    classes = dict(zip(head.classes, heard[row].tolist(), strict=True))
                    embedding = embeddings[row].astype(np.float16) if keep else None
                row += 1
            elif info.skipped:  # the media it sits in goes on
                media_score = self._media
            if not info.aligned:
                self._media = media_score
                self._media_like.append(media_score >= MEDIA_LIKE)
                if info.tagged:
                    calm = _calm(groups, classes, media_score, self._in_media)
                    if calm and self._was_calm and not info.rose:  # what rose is heard whole next
                        self._calm = info.frame
                    self._was_calm = calm
                elif not info.skipped:  # gated, or the tagger failed: a calm run starts again
                    self._was_calm = False
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
                    aligned=info.aligned,
                    onset=info.onset,
                    head=classes,
                    skipped=info.skipped,
                )
            )
        return out


def _calm(groups: dict[str, float], head: dict[str, float], media: float, in_media: bool) -> bool:
    """Return True when a tagged window heard nothing the decision uses (see the docstring)."""
    return (
        max(groups.values(), default=0.0) < CALM_SCORE
        and all(head.get(sound, 0.0) < CALM_HEAD for sound in Sound)
        and (media < CALM_MEDIA or in_media)
    )
