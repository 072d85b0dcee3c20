"""The shared worker: a failing tagger, gaps and dropped audio, with the real model."""

from __future__ import annotations

from collections.abc import Callable
import logging
from pathlib import Path
import time

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.guard_mode.engine.decider import DeciderEvent, EventKind
from custom_components.guard_mode.engine.decision import StreamDecision
from custom_components.guard_mode.engine.evidence import Evidence, WindowEvidence
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.engine.tagger import Tagger, TaggerOutput, load_tagger
from custom_components.guard_mode.engine.worker import EngineStream, EngineWorker

from .. import synth

Floats = npt.NDArray[np.float32]
_TAGGERS: list[Tagger] = []


def tagger() -> Tagger:
    if not _TAGGERS:
        _TAGGERS.append(load_tagger())
    return _TAGGERS[0]


class FailingTagger:
    """The real tagger, broken: every inference raises (a corrupt session, out of memory)."""

    def __init__(self, inner: Tagger) -> None:
        self.backend = inner.backend
        self.model_path: Path = inner.model_path
        self.calls = 0

    def infer(self, patches: Floats, *, embeddings: bool = False) -> TaggerOutput:
        self.calls += 1
        raise RuntimeError("inference failed")


class Events:
    """A stream callback that decides on the evidence; keeps every event with its stream time."""

    def __init__(self) -> None:
        self.decision = StreamDecision()
        self.items: list[tuple[DeciderEvent, float]] = []

    def __call__(self, stream: object, evidence: list[Evidence], time_s: float) -> None:
        self.items += [(event, time_s) for event in self.decision.push(evidence, time_s)]

    def of(self, kind: EventKind, sound: Sound) -> list[tuple[DeciderEvent, float]]:
        return [
            (e, t) for e, t in self.items if e.kind is kind and e.detection.sound == sound.value
        ]


def smoke_alarm() -> Floats:
    return synth.alarm("T3", "piezo", cycles=3, peak_db=-12.0).audio


def push_and_run(worker: EngineWorker, stream: EngineStream, audio: Floats) -> None:
    """Push audio in 0.5 s chunks, running the worker after each, as the thread would."""
    step = synth.samples(0.5)
    for start in range(0, len(audio), step):
        stream.push(audio[start : start + step])
        worker.run_once()


def wait_for(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_alarm_patterns_survive_a_failing_tagger(caplog: pytest.LogCaptureFixture) -> None:
    broken = FailingTagger(tagger())
    worker = EngineWorker(broken)
    events = Events()
    stream = worker.open_stream("Hall", events, queue_s=60.0)
    with caplog.at_level(logging.ERROR):
        push_and_run(worker, stream, smoke_alarm())
        push_and_run(worker, stream, synth.silence(15.0))  # the hold runs out
    assert broken.calls > 1
    assert worker.stats.errors == broken.calls
    assert len(events.of(EventKind.ONSET, Sound.SMOKE_ALARM)) == 1
    assert len(events.of(EventKind.OFFSET, Sound.SMOKE_ALARM)) == 1
    assert stream.analyzer.time_s == pytest.approx(
        len(smoke_alarm()) / synth.SAMPLE_RATE + 15.0, abs=1.0
    )
    assert len([r for r in caplog.records if "Tagger failed" in r.getMessage()]) == 1


class FlakyTagger(FailingTagger):
    """The real tagger, broken until it is fixed (a session re-created, memory freed)."""

    def __init__(self, inner: Tagger) -> None:
        super().__init__(inner)
        self.inner = inner
        self.broken = True

    def infer(self, patches: Floats, *, embeddings: bool = False) -> TaggerOutput:
        if self.broken:
            return super().infer(patches, embeddings=embeddings)
        return self.inner.infer(patches, embeddings=embeddings)


def test_a_tagger_that_works_again_is_used_again(caplog: pytest.LogCaptureFixture) -> None:
    """While it fails the windows go untagged (logged once); then tagged again, and said so."""
    flaky = FlakyTagger(tagger())
    worker = EngineWorker(flaky)
    heard: list[WindowEvidence] = []

    def keep(_stream: object, evidence: list[Evidence], _time_s: float) -> None:
        heard.extend(item for item in evidence if isinstance(item, WindowEvidence))

    stream = worker.open_stream("Hall", keep, queue_s=60.0)
    stream.set_every_window(True)  # steady noise: otherwise every other window is skipped
    noise = synth.white_noise(4.0, -30.0, synth.rng(1))
    with caplog.at_level(logging.INFO):
        push_and_run(worker, stream, noise)
        assert heard
        assert not any(window.scores for window in heard)
        flaky.broken = False
        heard.clear()
        push_and_run(worker, stream, noise)
    assert heard
    assert all(window.scores for window in heard)
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("Tagger works again") == 1
    assert len([m for m in messages if "Tagger failed" in m]) == 1


def test_a_gap_ends_open_detections() -> None:
    worker = EngineWorker(tagger())
    events = Events()
    stream = worker.open_stream("Hall", events, queue_s=60.0)
    push_and_run(worker, stream, smoke_alarm())
    assert events.of(EventKind.ONSET, Sound.SMOKE_ALARM)
    assert not events.of(EventKind.OFFSET, Sound.SMOKE_ALARM)
    before = stream.analyzer.time_s
    stream.mark_gap(3600.0)  # an hour-long outage, with nothing queued
    worker.run_once()
    assert stream.analyzer.time_s == pytest.approx(before + 3600.0)
    [(offset, at)] = events.of(EventKind.OFFSET, Sound.SMOKE_ALARM)
    assert at == pytest.approx(before + 3600.0)
    assert offset.detection.end_s < before


def test_mark_gap_wakes_the_worker() -> None:
    worker = EngineWorker(tagger())
    events = Events()
    stream = worker.open_stream("Hall", events, queue_s=60.0)
    worker.start()
    try:
        stream.push(smoke_alarm())  # one chunk: taken at once
        wait_for(lambda: events.of(EventKind.ONSET, Sound.SMOKE_ALARM))  # the worker is idle
        stream.mark_gap(60.0)
        wait_for(lambda: events.of(EventKind.OFFSET, Sound.SMOKE_ALARM), seconds=5.0)
    finally:
        worker.stop()


def test_dropped_audio_keeps_the_level() -> None:
    tone = (synth.tone(440.0, 30.0, peak_db=-20.0) * 32767).astype(np.int16)  # about -23 dBFS
    chunks = [tone[i : i + 1001] for i in range(0, len(tone), 1001)]
    worker = EngineWorker(tagger())
    events = Events()
    stream = worker.open_stream("Hall", events, queue_s=1.0)
    levels = []
    for burst in range(3):
        part = chunks[burst * 150 : (burst + 1) * 150]
        for piece in part[: 100 + burst]:  # the worker falls behind: all but 1 s is dropped
            stream.push(piece)
        for piece in part[100 + burst :]:  # then keeps up again
            worker.run_once()
            stream.push(piece)
        worker.run_once()
        levels.append(events.decision.take_peak_level())
    assert stream.stats.chunks_dropped > 200
    assert levels == [pytest.approx(-23.0, abs=1.0)] * 3


def test_queues_are_bounded_in_bytes_whatever_a_chunk_holds() -> None:
    """A chunk bigger than the whole queue is not kept (the entrances refuse those first)."""
    worker = EngineWorker(tagger())
    stream = worker.open_stream("Hall", Events(), queue_s=10.0, queue_bytes=64_000)
    stream.push(np.zeros(24_000, np.int16))  # 1.5 s, 48 kB: kept
    assert stream._queued_bytes == 48_000
    stream.push(np.zeros(16_000, np.int16))  # 80 kB in all: the oldest goes
    assert stream._queued_bytes == 32_000
    assert stream.stats.chunks_dropped == 1
    stream.push(np.zeros(1 << 19, np.int16))  # 1 MiB: never queued, whatever its seconds
    assert stream._queued_bytes == 0
    assert stream.stats.chunks_dropped == 3
    assert stream.stats.seconds_dropped == pytest.approx(1.5 + 1.0 + (1 << 19) / 16000)
    worker.run_once()  # only the gap is left: it is handled, nothing is tagged
    assert stream.analyzer.windows == 0
