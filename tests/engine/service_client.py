"""A client of the engine service for its tests: keeps every event, decides as Guard Mode does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import json

import numpy as np
import numpy.typing as npt
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_write_event

from custom_components.guard_mode.engine.decider import DeciderConfig, Detection, EventKind
from custom_components.guard_mode.engine.decision import StreamDecision
from custom_components.guard_mode.engine.protocol import (
    EVIDENCE_TYPE,
    MAX_HEADER,
    STATUS_TYPE,
    GuardModeAuth,
    GuardModeEvidence,
    GuardModeStatus,
    read_event,
)
from custom_components.guard_mode.engine.tagger import Tagger, load_tagger

from .. import synth

RECV_TIMEOUT_S = 10.0
TOKEN = "test-token-0123456789"  # what the servers of these tests accept
# one window of evidence as the protocol puts it on the wire
WINDOW: dict[str, object] = {
    "kind": "window",
    "start_s": 0.0,
    "end_s": 0.96,
    "level_db": -30.0,
    "peak_db": -25.0,
    "onset_s": 0.0,
    "media": 0.0,
    "aligned": False,
    "scores": {},
    "confidence": {},
    "labels": {},
    "head": {},
    "onset": None,
    "embedding": False,
}


def to_pcm(audio: npt.NDArray[np.float32], rate: int = 48000, channels: int = 2) -> bytes:
    """16 kHz float audio as 16-bit PCM at rate with channels (linear interpolation)."""
    n = round(len(audio) * rate / synth.SAMPLE_RATE)
    resampled = np.interp(np.arange(n) * synth.SAMPLE_RATE / rate, np.arange(len(audio)), audio)
    frames = np.repeat(resampled[:, None], channels, axis=1)
    return (np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes()


@dataclass(frozen=True)
class Heard:
    """A detection the client's decider made of the engine's evidence."""

    kind: EventKind
    detection: Detection
    time_s: float  # segment time of the evidence that made it


@dataclass
class Client:
    """A Wyoming client of the engine that keeps every event it receives.

    It decides as Guard Mode does: one decider per segment, fed the segment's evidence, its
    open detections closed when the segment's last status says it ended.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    events: list[Event] = field(default_factory=list)
    config: DeciderConfig | None = None
    _decisions: dict[int, StreamDecision] = field(default_factory=dict)
    _heard: list[Heard] = field(default_factory=list)
    _decided: int = 0  # events decided on so far

    @classmethod
    async def connect(cls, port: int, token: str | None = TOKEN, **tls: object) -> Client:
        """Connect, and send the token first (None: send nothing)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_HEADER, **tls)
        client = cls(reader, writer)
        if token is not None:
            await client.send(GuardModeAuth(token).event())
        return client

    async def send(self, event: Event) -> None:
        await async_write_event(event, self.writer)

    async def stream(
        self,
        pcm: bytes,
        *,
        rate: int = 48000,
        width: int = 2,
        channels: int = 2,
        chunk_s: float = 0.1,
        speed: float = 20.0,
        stop: bool = True,
    ) -> None:
        """Send audio-start, the audio in chunks at speed × real time, audio-stop."""
        await self.send(AudioStart(rate=rate, width=width, channels=channels).event())
        step = round(chunk_s * rate) * width * channels
        for start in range(0, len(pcm), step):
            chunk = AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[start:][:step])
            await self.send(chunk.event())
            await asyncio.sleep(chunk_s / speed)
        if stop:
            await self.send(AudioStop().event())

    async def recv(self, seconds: float = RECV_TIMEOUT_S) -> Event | None:
        async with asyncio.timeout(seconds):
            event = await read_event(self.reader)
        if event is not None:
            self.events.append(event)
        return event

    async def until(self, what: str, **data: object) -> Event:
        """Read until an event of type what whose data has the given values."""
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while True:
                event = await self.recv()
                assert event is not None, f"connection closed before {what} {data}"
                if event.type == what and all(event.data.get(k) == v for k, v in data.items()):
                    return event

    async def closed(self) -> bool:
        """Read until the server closes the connection."""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(RECV_TIMEOUT_S):
                while await self.recv() is not None:
                    pass
        return True

    def evidence(self) -> list[GuardModeEvidence]:
        return [GuardModeEvidence.from_event(e) for e in self.events if e.type == EVIDENCE_TYPE]

    def detections(self) -> list[Heard]:
        """Return what the client's deciders made of the evidence received so far."""
        for event in self.events[self._decided :]:
            if event.type == EVIDENCE_TYPE:
                message = GuardModeEvidence.from_event(event)
                decision = self._decision(message.segment)
                for found in decision.push(message.items, message.time_s):
                    self._heard.append(Heard(found.kind, found.detection, message.time_s))
            elif event.type == STATUS_TYPE and (status := GuardModeStatus.from_event(event)).ended:
                ended = self._decision(status.segment).finish()
                self._heard += [Heard(f.kind, f.detection, status.time_s) for f in ended]
        self._decided = len(self.events)
        return list(self._heard)

    def _decision(self, segment: int) -> StreamDecision:
        if segment not in self._decisions:
            self._decisions[segment] = StreamDecision(self.config)
        return self._decisions[segment]

    async def until_heard(self, **match: object) -> Heard:
        """Read until the client's decider makes a detection whose fields have these values."""

        def value(item: Heard, key: str) -> object:
            return item.kind if key == "kind" else getattr(item.detection, key)

        async with asyncio.timeout(RECV_TIMEOUT_S):
            while True:
                for item in self.detections():
                    if all(value(item, k) == v for k, v in match.items()):
                        return item
                event = await self.recv()
                assert event is not None, f"connection closed before a detection {match}"

    def statuses(self) -> list[GuardModeStatus]:
        return [GuardModeStatus.from_event(e) for e in self.events if e.type == STATUS_TYPE]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(1):
                await self.writer.wait_closed()


async def wait_for(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll condition until it holds (or fail after seconds)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - the state lives in another thread
            await asyncio.sleep(0.001)


_TAGGERS: dict[str, Tagger] = {}


def tagger_for(backend: str) -> Tagger:
    if backend not in _TAGGERS:
        _TAGGERS[backend] = load_tagger(backend="numpy" if backend == "numpy" else "onnxruntime")
    return _TAGGERS[backend]


def frame(event: Event) -> bytes:
    """Return an event as Wyoming puts it on the wire."""
    header: dict[str, object] = {"type": event.type}
    data = json.dumps(event.data).encode() if event.data else b""
    if data:
        header["data_length"] = len(data)
    if event.payload:
        header["payload_length"] = len(event.payload)
    return json.dumps(header).encode() + b"\n" + data + (event.payload or b"")
