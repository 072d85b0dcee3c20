"""The shared engine: one tagger for every stream, run in one worker thread.

Streams push 16 kHz mono audio (converted at its source, see :mod:`.audio`) from any thread (in
Home Assistant: the event loop) without blocking: each stream has a queue bounded in seconds and
in bytes, and when the host can't keep up the oldest audio is dropped and counted, never queued
without bound (a chunk bigger than the whole bound is dropped at once: entrances refuse those
before, see :mod:`.bounds`). The worker drains all
queues, runs each stream's signal processing, tags every ready window of every stream in one
batch, and hands each stream's evidence (:mod:`.evidence`) to its callback — on the worker
thread; callers hop threads themselves. The worker decides nothing: a stream's decider runs
wherever its callback takes the evidence (:mod:`.decision`), and the worker touches no state of
it. The only setting that crosses the other way, whether to ship embeddings, is handed over
under the stream's lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import logging
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from .analyzer import DEFAULT_GATE_DB, PendingWindows, StreamAnalyzer
from .audio import Pcm16, sanitize, to_float
from .bounds import QUEUE_BYTES
from .evidence import Evidence, EvidenceCallback
from .frontend import SAMPLE_RATE
from .head import DetectionHead
from .tagger import Tagger

_LOGGER = logging.getLogger(__name__)
Floats = npt.NDArray[np.float32]
DEFAULT_QUEUE_S = 10.0  # audio a stream may have waiting before the oldest is dropped


@dataclass(slots=True)
class EngineStats:
    """Counters of the worker, for diagnostics and the benchmark."""

    batches: int = 0
    windows_tagged: int = 0
    tagger_seconds: float = 0.0
    busy_seconds: float = 0.0
    errors: int = 0


@dataclass(slots=True)
class StreamStats:
    """Counters of one stream."""

    seconds_in: float = 0.0  # audio received
    seconds_dropped: float = 0.0  # audio dropped because the worker fell behind
    chunks_dropped: int = 0


# A queued chunk: 16 kHz mono samples, 16-bit or float32.
type _Chunk = Pcm16 | Floats


def _seconds(chunk: _Chunk) -> float:
    return len(chunk) / SAMPLE_RATE


class EngineStream:
    """One audio stream's handle: push audio, get its evidence through the callback."""

    def __init__(
        self,
        worker: EngineWorker,
        name: str,
        callback: EvidenceCallback,
        analyzer: StreamAnalyzer,
        max_queued_s: float,
        *,
        max_queued_bytes: int = QUEUE_BYTES,
    ) -> None:
        """Create through :meth:`EngineWorker.open_stream`."""
        self.name = name
        self.analyzer = analyzer
        self.stats = StreamStats()
        self._worker = worker
        self._callback = callback
        # Chunks, and gaps (seconds of lost audio) where they happened.
        self._queue: deque[_Chunk | float] = deque()
        self._queued_s = 0.0
        self._queued_bytes = 0
        self._chunks = 0  # chunks in the queue
        self._max_queued_s = max_queued_s
        self._max_queued_bytes = max_queued_bytes
        self._lock = threading.Lock()
        # Asked for; the worker thread hands them to the analyzer.
        self._embeddings = analyzer.embeddings
        self._every_window = analyzer.every_window
        self._needed_s = 0.0  # audio that completes the next window (the worker keeps it)
        self.closed = False

    def push(self, samples: Pcm16 | Floats) -> None:
        """Queue 16 kHz mono samples (16-bit, or float32 in [-1, 1]); never blocks on inference."""
        if not len(samples) or self.closed:
            return
        seconds = _seconds(samples)
        with self._lock:
            self._queue.append(samples)
            self._queued_s += seconds
            self._queued_bytes += samples.nbytes
            self._chunks += 1
            self.stats.seconds_in += seconds
            lost = 0.0
            while self._chunks and (
                self._queued_s > self._max_queued_s or self._queued_bytes > self._max_queued_bytes
            ):
                item = self._queue.popleft()
                if isinstance(item, float):  # an older gap: the new one includes it
                    lost += item
                    continue
                dropped = _seconds(item)
                self._queued_s -= dropped
                self._queued_bytes -= item.nbytes
                self._chunks -= 1
                self.stats.seconds_dropped += dropped
                self.stats.chunks_dropped += 1
                lost += dropped
            if lost:
                self._queue.appendleft(lost)
            due = lost > 0 or self._queued_s + 1e-3 >= self._needed_s
        if due:  # woken once a window, not on every chunk
            self._worker.wake()

    def mark_gap(self, seconds: float) -> None:
        """Account for time without audio (a reconnect): holds and cooldowns keep running."""
        with self._lock:
            self._queue.append(max(seconds, 1e-6))  # after the old connection's queued audio
        self._worker.wake()

    def set_embeddings(self, wanted: bool) -> None:
        """Ship each window's embedding in the evidence (learning needs them) or not."""
        with self._lock:
            self._embeddings = wanted

    def set_every_window(self, wanted: bool) -> None:
        """Tag every regular window, calm ones too (learning that matches each window)."""
        with self._lock:
            self._every_window = wanted

    def status(self) -> dict[str, Any]:
        """Return the engine side's counters for diagnostics."""
        with self._lock:
            return {
                "seconds_in": round(self.stats.seconds_in, 1),
                "seconds_dropped": round(self.stats.seconds_dropped, 2),
                "chunks_dropped": self.stats.chunks_dropped,
            }

    def close(self) -> None:
        """Stop processing this stream; queued audio is discarded."""
        self.closed = True
        self._worker.remove(self)
        with self._lock:
            self._queue.clear()
            self._queued_s, self._queued_bytes, self._chunks = 0.0, 0, 0

    def _due(self) -> bool:
        """Return True when the queued audio completes a window (or a gap must be handled).

        A stream's signal processing runs once per window (and wakes the worker only then):
        working on a 64 ms chunk at a time would cost more and produce nothing sooner.
        """
        needed = self.analyzer.seconds_to_next_window()
        with self._lock:
            self._needed_s = needed
            queued, gaps = self._queued_s, len(self._queue) - self._chunks
        return gaps > 0 or (queued > 0 and queued + 1e-3 >= needed)

    def _expect(self) -> None:
        """After a window's audio was taken: note what completes the next (wake if it has)."""
        if self._due():
            self._worker.wake()

    def _take(self) -> tuple[Floats | None, float]:
        """Return a gap at the head of the queue (seconds, else 0) and the audio up to the next.

        Audio after a gap waits for the next round, so that the audio before it has reached the
        decider when the gap does.
        """
        with self._lock:
            self.analyzer.embeddings = self._embeddings
            self.analyzer.every_window = self._every_window
            gap = 0.0
            if self._queue and isinstance(first := self._queue[0], float):
                gap = first
                self._queue.popleft()
            queued: list[_Chunk] = []
            while self._queue and not isinstance(head := self._queue[0], float):
                queued.append(head)
                self._queue.popleft()
            self._chunks -= len(queued)
            waiting = [item for item in self._queue if not isinstance(item, float)]
            self._queued_s = sum(_seconds(chunk) for chunk in waiting)
            self._queued_bytes = sum(chunk.nbytes for chunk in waiting)
            if self._queue:  # a gap, and maybe audio after it: the next round handles them
                self._worker.wake()
        if not queued:
            return None, gap
        # 16-bit samples converted once; floats pushed as they are: NaN/inf and range checked.
        if all(c.dtype == np.int16 for c in queued):
            return to_float(queued[0] if len(queued) == 1 else np.concatenate(queued)), gap
        parts = [sanitize(c) if c.dtype.kind == "f" else to_float(c) for c in queued]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), gap

    def _deliver(self, evidence: list[Evidence]) -> None:
        if evidence and not self.closed:
            self._callback(self, evidence, self.analyzer.time_s)


@dataclass(slots=True)
class _Work:
    stream: EngineStream
    pending: PendingWindows
    scores: Floats | None = None
    embeddings: Floats | None = None


class EngineWorker:
    """Runs the tagger for all streams in one thread, batching windows that are ready together."""

    def __init__(
        self, tagger: Tagger, *, head: DetectionHead | None = None, max_batch: int = 32
    ) -> None:
        """Create the worker (call :meth:`start`).

        head: the detection head every stream uses, read and checked when the engine started
        (None: the shipped one, read on the first window).
        """
        self.tagger = tagger
        self.head = head
        self.max_batch = max_batch
        self.stats = EngineStats()
        self._streams: list[EngineStream] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Why the tagger fails, while it does (logged once, until a batch succeeds again).
        self.tagger_error: str | None = None
        # Told (on the worker thread) why the tagger started failing, and None once it works.
        self.on_tagger_failing: Callable[[str | None], None] | None = None

    @property
    def streams(self) -> list[EngineStream]:
        """Return the open streams."""
        with self._lock:
            return list(self._streams)

    def open_stream(
        self,
        name: str,
        callback: EvidenceCallback,
        *,
        gate_db: float | None = None,
        queue_s: float = DEFAULT_QUEUE_S,
        queue_bytes: int = QUEUE_BYTES,
    ) -> EngineStream:
        """Open a stream; callback gets its evidence on the worker thread."""
        analyzer = StreamAnalyzer(
            head=self.head, gate_db=DEFAULT_GATE_DB if gate_db is None else gate_db
        )
        stream = EngineStream(self, name, callback, analyzer, queue_s, max_queued_bytes=queue_bytes)
        with self._lock:
            self._streams.append(stream)
        return stream

    def remove(self, stream: EngineStream) -> None:
        """Forget a stream."""
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    def wake(self) -> None:
        """Tell the worker a stream has a window's audio (or a gap)."""
        self._wake.set()

    def run_if_woken(self) -> int:
        """Process what woke the worker, if anything did (the thread's step); windows tagged."""
        if not self._wake.is_set():
            return 0
        self._wake.clear()
        return self.run_once()

    def start(self) -> None:
        """Start the worker thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="guard_mode_engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker thread (queued audio is discarded)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> int:
        """Process everything queued now, in the calling thread; return windows tagged."""
        started = time.perf_counter()
        work: list[_Work] = []
        for stream in self.streams:
            if not stream._due():
                continue
            try:
                samples, gap = stream._take()
                if gap:  # frames and persistence must not span a gap; holds run out during it
                    stream._deliver([stream.analyzer.skip(round(gap * SAMPLE_RATE))])
                if samples is None:
                    continue
                work.append(_Work(stream, stream.analyzer.feed(samples)))
                stream._expect()
            except Exception:
                self.stats.errors += 1
                _LOGGER.exception("Engine failed on stream %s", stream.name)
        try:
            tagged = self._tag(work)
        except Exception as err:  # alarm patterns and hold times must not depend on the tagger
            self.stats.errors += 1
            if self.tagger_error is None:
                _LOGGER.exception("Tagger failed; only alarm patterns are detected until it works")
                self._tagger_state(str(err) or type(err).__name__)
            tagged = 0
            for item in work:
                item.pending, item.scores, item.embeddings = item.pending.gated(), None, None
        else:
            if tagged and self.tagger_error is not None:
                _LOGGER.info("Tagger works again")
                self._tagger_state(None)
        for item in work:
            try:
                evidence = item.stream.analyzer.complete(item.pending, item.scores, item.embeddings)
            except Exception:
                self.stats.errors += 1
                _LOGGER.exception("Engine failed on stream %s", item.stream.name)
                continue
            item.stream._deliver(evidence)
        if work:
            self.stats.busy_seconds += time.perf_counter() - started
        return tagged

    def _tagger_state(self, error: str | None) -> None:
        self.tagger_error = error
        if self.on_tagger_failing is not None:
            self.on_tagger_failing(error)

    def _tag(self, work: list[_Work]) -> int:
        """Run the tagger on every pending patch of every stream, in batches."""
        needed = [item for item in work if item.pending.needs_tagger]
        if not needed:
            return 0
        patches = np.concatenate([item.pending.patches for item in needed])
        # The detection head reads every window's embedding.
        want = any(item.stream.analyzer.wants_embeddings for item in needed)
        started = time.perf_counter()
        outputs = [
            self.tagger.infer(patches[i : i + self.max_batch], embeddings=want)
            for i in range(0, len(patches), self.max_batch)
        ]
        scores = np.concatenate([out.scores for out in outputs])
        embeddings = (
            np.concatenate([out.embeddings for out in outputs if out.embeddings is not None])
            if want
            else None
        )
        self.stats.tagger_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.windows_tagged += len(patches)
        row = 0
        for item in needed:
            count = item.pending.needs_tagger
            item.scores = scores[row : row + count]
            if embeddings is not None and item.stream.analyzer.wants_embeddings:
                item.embeddings = embeddings[row : row + count]
            row += count
        return len(patches)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                break
            try:
                self.run_if_woken()
            except Exception:  # keep the thread alive whatever a stream does
                self.stats.errors += 1
                _LOGGER.exception("Engine worker error")
