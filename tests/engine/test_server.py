"""The engine as a Wyoming service: the real server, the real model, real sockets on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from dataclasses import replace
import json
import os
from pathlib import Path
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import numpy.typing as npt
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong

from custom_components.guard_mode.engine.analyze import DetectingStream
from custom_components.guard_mode.engine.client import (
    ClientTimeouts,
    Connector,
    EngineClient,
    RemoteSettings,
)
from custom_components.guard_mode.engine.decider import DeciderConfig, EventKind
from custom_components.guard_mode.engine.decision import StreamDecision
from custom_components.guard_mode.engine.evidence import (
    Evidence,
    EvidenceStream,
    Gap,
    WindowEvidence,
)
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.engine.protocol import (
    ENGINE_VERSION,
    ERROR_BAD_AUDIO,
    ERROR_BAD_EVENT,
    ERROR_PROTOCOL,
    ERROR_TOO_MANY,
    MAX_HEADER,
    STATUS_TYPE,
    GuardModeAuth,
    GuardModeEvidence,
    GuardModeInfo,
    GuardModeStatus,
    GuardModeStream,
    ProtocolError,
    read_event,
)
from custom_components.guard_mode.engine.server import (
    EngineServer,
    Outbox,
    event_size,
    parse_uri,
    start_server,
)
from custom_components.guard_mode.engine.tagger import onnxruntime_available

from .. import synth
from ..helpers import BACKENDS
from .service_client import TOKEN, WINDOW, Client, frame, tagger_for, to_pcm, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BACKEND = "onnxruntime" if onnxruntime_available() else "numpy"
FAST = 1000.0  # tests of detection stream faster than real time: read them as fast


# --- audio ---------------------------------------------------------------------------------


def smoke_alarm() -> bytes:
    return to_pcm(synth.alarm("T3", "piezo", cycles=3, peak_db=-12.0).audio)


def co_alarm() -> bytes:
    return to_pcm(synth.alarm("T4", "piezo", cycles=3, peak_db=-12.0).audio)


def scene() -> npt.NDArray[np.float32]:
    """A pane shattering at 1.5 s, then a CO alarm (two T4 cycles) from 4 s, at 16 kHz."""
    alarm = synth.alarm("T4", "piezo", cycles=2, peak_db=-12.0).audio
    total = 5.0 + len(alarm) / synth.SAMPLE_RATE
    return synth.mix(synth.place(synth.shattering(8), 1.5, total), synth.place(alarm, 4.0, total))


# --- fixtures ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(backend: str = DEFAULT_BACKEND, **options: object) -> AsyncIterator[EngineServer]:
    """A started server (a large engine queue: tests stream much faster than real time)."""
    options.setdefault("queue_s", 120.0)
    options.setdefault("token", TOKEN)
    options.setdefault("audio_rate", FAST)
    server = EngineServer(tagger_for(backend), **options)  # type: ignore[arg-type]
    await start_server(server, "127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def server() -> AsyncIterator[EngineServer]:
    async with running() as server:
        yield server


@pytest.fixture
async def client(server: EngineServer) -> AsyncIterator[Client]:
    client = await Client.connect(server.port)
    yield client
    await client.close()


# --- protocol ------------------------------------------------------------------------------


def test_events_round_trip() -> None:
    status = GuardModeStatus(segment=1, time_s=5.0, seconds_dropped=0.5, bad_chunks=1)
    assert GuardModeStatus.from_event(status.event()) == status
    assert "model_error" not in status.event().data  # said only while the model fails
    failing = GuardModeStatus(
        segment=1, time_s=5.0, seconds_dropped=0, bad_chunks=0, model_error="x"
    )
    assert GuardModeStatus.from_event(failing.event()) == failing
    settings = GuardModeStream("Kitchen", embeddings=True)
    assert settings.event().data == {"name": "Kitchen", "embeddings": True}
    assert GuardModeStream.from_event(settings.event()) == settings
    sparse = GuardModeStream(every_window=False)
    assert sparse.event().data == {"every_window": False}
    assert GuardModeStream.from_event(sparse.event()) == sparse
    assert GuardModeStream.from_event(Event(type="guard-mode-stream")) == GuardModeStream()
    info = GuardModeInfo("1.2.3", "numpy", "yamnet.onnx")
    assert GuardModeInfo.from_event(info.event()) == info
    assert Info.from_event(info.event()) == Info()  # a plain Wyoming client sees no services


def test_evidence_round_trips_exactly() -> None:
    """What crosses the wire is what an in-process decider would get, to the last bit."""
    stream = DetectingStream(DeciderConfig(remember=True))
    evidence = stream.analyzer.process(scene(), tagger_for("numpy"))
    evidence.insert(3, Gap(2.5))
    windows = [item for item in evidence if isinstance(item, WindowEvidence)]
    assert windows
    assert all(w.embedding is not None for w in windows if not w.gated)
    assert any(w.onset is not None for w in windows)
    assert any(not isinstance(item, WindowEvidence | Gap) for item in evidence)  # an alarm hit
    batches = GuardModeEvidence.batches(0, stream.time_s, evidence)
    assert len(batches) > 1  # at most 16 items an event
    received = [GuardModeEvidence.from_event(batch.event()) for batch in batches]
    decoded = [item for message in received for item in message.items]
    assert len(decoded) == len(evidence)
    for sent, got in zip(evidence, decoded, strict=True):
        if isinstance(sent, WindowEvidence):
            assert isinstance(got, WindowEvidence)
            assert (got.embedding is None) == (sent.embedding is None)
            assert sent.embedding is None or np.array_equal(sent.embedding, got.embedding)
            assert replace(got, embedding=None) == replace(sent, embedding=None)
        else:
            assert got == sent
    # a window without its embedding carries nothing in the payload
    gated = [w for w in windows if w.embedding is None]
    plain = GuardModeEvidence(0, 1.0, tuple(gated)).event()
    assert plain.payload is None


@pytest.mark.parametrize(
    ("kind", "data", "payload"),
    [
        ("guard-mode-stream", {"embeddings": "yes"}, None),
        ("guard-mode-stream", {"name": 5}, None),
        ("guard-mode-status", {"segment": 0, "time_s": float("nan")}, None),
        ("guard-mode-evidence", {"segment": 0, "time_s": 1.0, "items": "lots"}, None),
        ("guard-mode-evidence", {"segment": 0, "time_s": 1.0, "items": [{}] * 17}, None),
        ("guard-mode-evidence", {"segment": 0, "time_s": 1.0, "items": [{"kind": "x"}]}, None),
        ("guard-mode-evidence", {"segment": 0, "time_s": 1.0, "items": []}, b"\0" * 2048),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [{"kind": "gap", "time_s": "soon"}]},
            None,
        ),
        (
            "guard-mode-evidence",
            {
                "segment": 0,
                "time_s": 1.0,
                "items": [{"kind": "alarm", "sound": "doorbell", "pattern": "T3"}],
            },
            None,
        ),
    ],
)
def test_bad_event_data(kind: str, data: dict[str, object], payload: bytes | None) -> None:
    parse = {
        "guard-mode-stream": GuardModeStream.from_event,
        "guard-mode-evidence": GuardModeEvidence.from_event,
        "guard-mode-status": GuardModeStatus.from_event,
    }[kind]
    with pytest.raises(ProtocolError):
        parse(Event(type=kind, data=data, payload=payload))


NAN_EMBEDDING = np.full(1024, np.nan, "<f2").tobytes()


@pytest.mark.parametrize(
    ("kind", "data", "payload", "said"),
    [
        ("guard-mode-status", {"segment": -1, "time_s": 1.0}, None, "'segment' must be a count"),
        ("guard-mode-evidence", {"segment": 0, "time_s": 1.0, "items": [WINDOW]}, None, None),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [WINDOW | {"scores": [0.5]}]},
            None,
            "'scores' must be a map",
        ),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [WINDOW | {"labels": "glass"}]},
            None,
            "'labels' must be a map",
        ),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [WINDOW | {"head": {"dog\n": 0.9}}]},
            None,
            "not short printable text",
        ),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [WINDOW | {"onset": [1.0, 2.0]}]},
            None,
            "'onset' must be a list of 6 numbers",
        ),
        (
            "guard-mode-evidence",
            {"segment": 0, "time_s": 1.0, "items": [WINDOW | {"embedding": True}]},
            NAN_EMBEDDING,
            "an embedding that is not finite",
        ),
    ],
    ids=["negative-count", "valid", "scores", "labels", "class-name", "onset", "nan-embedding"],
)
def test_what_a_hostile_engine_sends_is_checked_field_by_field(
    kind: str, data: dict[str, object], payload: bytes | None, said: str | None
) -> None:
    """The client reads the engine's evidence as untrusted: each bad field is named."""
    parse = {
        "guard-mode-evidence": GuardModeEvidence.from_event,
        "guard-mode-status": GuardModeStatus.from_event,
    }[kind]
    event = Event(type=kind, data=data, payload=payload)
    if said is None:  # the well-formed window the others spoil one field of
        assert parse(event).items[0].level_db == -30.0  # type: ignore[union-attr]
        return
    with pytest.raises(ProtocolError, match=said):
        parse(event)


async def test_an_event_cut_off_by_the_connection_is_an_error() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b'{"type": "guard-mode-status", "da')
    reader.feed_eof()
    with pytest.raises(ProtocolError, match="closed in the middle of an event"):
        await read_event(reader)
    clean = asyncio.StreamReader()
    clean.feed_eof()
    assert await read_event(clean) is None  # closed between events: just the end


def test_the_token_is_never_shown_and_info_must_be_info() -> None:
    auth = GuardModeAuth("a-secret-token-0123456789")
    assert "a-secret-token" not in repr(auth)
    assert "a-secret-token" not in str(auth)
    with pytest.raises(ProtocolError, match="expected info, got 'pong'"):
        GuardModeInfo.from_event(Pong().event())


def test_window_with_unknown_sound_is_refused() -> None:
    stream = DetectingStream()
    evidence = stream.analyzer.process(scene(), tagger_for("numpy"))
    window = next(w for w in evidence if isinstance(w, WindowEvidence) and not w.gated)
    event = GuardModeEvidence(0, 1.0, (window,)).event()
    event.data["items"][0]["scores"]["unicorn"] = 1.0
    with pytest.raises(ProtocolError, match="unknown sound key"):
        GuardModeEvidence.from_event(event)


def test_info_of_another_service() -> None:
    with pytest.raises(ProtocolError, match="not a Guard Mode engine"):
        GuardModeInfo.from_event(Info().event())


def test_parse_uri() -> None:
    assert parse_uri("tcp://0.0.0.0:10800") == ("0.0.0.0", 10800)
    assert parse_uri("tcp://[::]:1234") == ("::", 1234)
    assert parse_uri("tcp://example") == ("example", 10800)
    for bad in ("unix:///tmp/x", "10800", "tcp://:5", "tcp://host:99999"):
        with pytest.raises(ValueError):  # noqa: PT011
            parse_uri(bad)


async def test_outbox_drops_status_first() -> None:
    status = [Event("status", {"n": i}) for i in range(5)]
    detections = [Event("detect", {"n": i}) for i in range(4)]  # the same size
    size = event_size(detections[0])
    assert event_size(status[0]) == size
    outbox = Outbox(max_droppable=2, max_bytes=3 * size)
    assert outbox.put(status[0], True)
    assert outbox.put(detections[0], False)
    for event in status[1:]:
        assert outbox.put(event, True)
    assert len(outbox) == 3
    assert outbox.dropped == 3
    assert outbox.put(detections[1], False)  # room made by dropping the oldest status
    assert outbox.put(detections[2], False)
    assert outbox.bytes == 3 * size
    assert not outbox.put(detections[3], False)  # too far behind: the caller disconnects
    got = [await outbox.get() for _ in range(len(outbox))]
    assert got == [detections[0], detections[1], detections[2]]
    assert outbox.dropped == 5
    outbox.close()
    assert await outbox.get() is None


# --- the server ----------------------------------------------------------------------------


async def test_describe(client: Client) -> None:
    await client.send(Describe().event())
    event = await client.until("info")
    info = GuardModeInfo.from_event(event)
    assert info.version == ENGINE_VERSION
    assert info.backend == DEFAULT_BACKEND
    assert info.model == "yamnet.onnx"
    assert info.sounds == tuple(Sound)
    assert event.data["guard_mode"]["sounds"] == [
        "glass_break",
        "smoke_alarm",
        "co_alarm",
        "dog_bark",
        "baby_cry",
        "gunshot",
    ]
    for key in ("asr", "tts", "handle", "intent", "wake", "mic", "snd"):
        assert event.data[key] == []
    await client.send(Ping(text="hi").event())
    assert Pong.from_event(await client.until("pong")).text == "hi"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_smoke_alarm(backend: str) -> None:
    async with running(backend) as server:
        client = await Client.connect(server.port)
        await client.send(GuardModeStream(name="Hall").event())
        await client.stream(smoke_alarm())
        first = await client.until_heard(kind=EventKind.ONSET, sound=Sound.SMOKE_ALARM)
        final = await client.until(STATUS_TYPE, ended=True)
        await client.close()
    assert not first.detection.suppressed
    assert 0.5 <= first.detection.start_s <= 2.0  # the alarm starts at 1 s
    assert first.detection.start_s <= first.time_s <= 15.0
    last = next(d for d in client.detections() if d.kind is EventKind.OFFSET)
    assert last.detection.id == first.detection.id
    assert last.detection.end_s >= 9.0
    assert {d.detection.sound for d in client.detections()} == {Sound.SMOKE_ALARM}
    statuses = client.statuses()
    assert len(statuses) >= 3  # at 5 s, 10 s and the last one
    assert [s.time_s for s in statuses] == sorted(s.time_s for s in statuses)
    status = GuardModeStatus.from_event(final)
    assert status.time_s == pytest.approx(15.0, abs=0.2)  # the resampler keeps ~0.1 s
    assert status.bad_chunks == 0
    assert status.seconds_dropped == 0.0
    windows = [w for m in client.evidence() for w in m.items if isinstance(w, WindowEvidence)]
    assert sum(not w.aligned for w in windows) >= 28
    assert any(w.level_db > -40 for w in windows)
    assert all(w.embedding is None for w in windows)  # nobody asked for them


async def test_engine_service_hears_what_the_engine_in_process_hears(client: Client) -> None:
    """The same audio: the same evidence, so the same detections, as in Home Assistant."""
    audio = scene()
    local = DetectingStream()
    expected = [
        e
        for chunk in range(0, len(audio), 1600)
        for e in local.process(audio[chunk : chunk + 1600], tagger_for(DEFAULT_BACKEND))
    ] + local.finish()
    assert Sound.CO_ALARM in {e.detection.sound for e in expected}
    await client.stream(to_pcm(audio, 16000, 1), rate=16000, channels=1)
    await client.until(STATUS_TYPE, ended=True)
    heard = client.detections()
    assert [(h.kind, h.detection.sound, h.detection.start_s, h.detection.end_s) for h in heard] == [
        (e.kind, e.detection.sound, e.detection.start_s, e.detection.end_s) for e in expected
    ]


async def test_the_engine_client_needs_no_home_assistant(server: EngineServer) -> None:
    """The engine's own client, with its defaults: what it relays is decided in stream time.

    The alarm, a 3 s outage, the alarm again: the second onset is placed after the first by the
    recording's length and the outage.
    """
    decision = StreamDecision()
    onsets: list[float] = []
    up = asyncio.Event()

    def decide(_stream: EvidenceStream, evidence: list[Evidence], time_s: float) -> None:
        onsets.extend(
            e.detection.start_s
            for e in decision.push(evidence, time_s)
            if e.kind is EventKind.ONSET
        )

    connector = Connector(RemoteSettings("127.0.0.1", server.port, TOKEN))
    stream = EngineClient(connector, "Hall", decide, on_up=lambda _: up.set())
    task = stream.start()
    await up.wait()
    alarm = (synth.alarm("T4", "piezo", cycles=2, peak_db=-12.0).audio * 32767).astype(np.int16)
    seconds = len(alarm) / synth.SAMPLE_RATE

    async def play() -> None:
        for start in range(0, len(alarm), 1600):
            stream.push(alarm[start : start + 1600])
            await asyncio.sleep(0)

    await play()
    await wait_for(lambda: onsets, seconds=30)
    stream.mark_gap(3.0)
    await play()
    await wait_for(lambda: len(onsets) == 2, seconds=30)
    assert 0.5 <= onsets[0] <= 1.5  # the alarm starts at 1 s
    assert onsets[1] - onsets[0] == pytest.approx(seconds + 3.0, abs=0.1)
    assert stream.status()["connected"]
    stream.close()
    await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: not server.worker.streams)


async def test_the_engine_client_drops_an_engine_that_takes_no_audio() -> None:
    """An engine that takes no more audio (its reader wedged; or a host gone without closing
    the connection) is let go once a write has waited the idle timeout, even while it still
    talks — not when TCP gives up, many minutes later."""
    shook_hands = asyncio.Event()
    handlers: set[asyncio.Task[None] | None] = set()  # held: asyncio keeps no strong reference

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        await read_event(reader)  # the token
        await read_event(reader)  # describe
        writer.write(frame(GuardModeInfo(ENGINE_VERSION, "numpy", "yamnet.onnx").event()))
        shook_hands.set()
        while True:  # reads nothing more, but still talks
            writer.write(frame(Pong().event()))
            await asyncio.sleep(0.2)

    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listening.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(deaf, sock=listening)
    down: list[str] = []
    connector = Connector(
        RemoteSettings("127.0.0.1", listening.getsockname()[1], TOKEN), ClientTimeouts(idle_s=1.0)
    )
    stream = EngineClient(
        connector, "Hall", lambda *_: None, on_down=lambda _s, why, _e: down.append(why)
    )
    task = stream.start()
    await shook_hands.wait()
    second = np.zeros(16000, np.int16)
    async with asyncio.timeout(10):
        while not down:  # much faster than real time: the buffers fill at once
            stream.push(second)
            await asyncio.sleep(0.01)
    assert down[0] == "the remote engine took nothing for 1 s"
    stream.close()
    await asyncio.gather(task, return_exceptions=True)
    server.close()
    for handler in handlers:
        assert handler is not None
        handler.cancel()
    await asyncio.gather(*(h for h in handlers if h is not None), return_exceptions=True)
    await server.wait_closed()


async def test_embeddings_only_when_asked(client: Client) -> None:
    await client.stream(to_pcm(scene()[:32000]), stop=False)
    await client.send(GuardModeStream(embeddings=True).event())
    await client.stream(to_pcm(scene()))
    await client.until(STATUS_TYPE, ended=True)
    windows = [w for m in client.evidence() for w in m.items if isinstance(w, WindowEvidence)]
    tagged = [w for w in windows if not w.gated]
    assert tagged[0].embedding is None
    assert tagged[-1].embedding is not None
    assert tagged[-1].embedding.dtype == np.float16
    assert np.linalg.norm(tagged[-1].embedding.astype(np.float32)) == pytest.approx(1.0, abs=1e-2)


async def test_calm_windows_are_skipped_once_the_client_allows_it(client: Client) -> None:
    """Until a client says it needs no calm window tagged (an older one never says), all are."""
    fan = to_pcm(synth.pink_noise(6.0, -35.0, synth.rng(5)))
    await client.stream(fan)
    await client.until(STATUS_TYPE, ended=True, segment=0)
    await client.send(GuardModeStream(every_window=False).event())
    await client.stream(fan)
    await client.until(STATUS_TYPE, ended=True, segment=1)
    windows: dict[int, list[WindowEvidence]] = {0: [], 1: []}
    for message in client.evidence():
        windows[message.segment] += [w for w in message.items if isinstance(w, WindowEvidence)]
    assert windows[0]
    assert not any(w.skipped or w.gated for w in windows[0])
    assert windows[1]
    assert sum(w.skipped for w in windows[1]) >= len(windows[1]) // 2 - 1
    assert all(not w.scores for w in windows[1] if w.skipped)


async def test_two_streams_at_once(server: EngineServer) -> None:
    smoke, co = await Client.connect(server.port), await Client.connect(server.port)
    await asyncio.gather(smoke.stream(smoke_alarm()), co.stream(co_alarm()))
    await asyncio.gather(
        smoke.until_heard(kind=EventKind.OFFSET, sound=Sound.SMOKE_ALARM),
        co.until_heard(kind=EventKind.OFFSET, sound=Sound.CO_ALARM),
    )
    await asyncio.gather(smoke.close(), co.close())
    assert {d.detection.sound for d in smoke.detections()} == {Sound.SMOKE_ALARM}
    assert {d.detection.sound for d in co.detections()} == {Sound.CO_ALARM}


async def test_stop_then_start_again(client: Client) -> None:
    """A new audio-start is a new segment; the old segment's evidence all comes first."""
    pcm = smoke_alarm()
    await client.stream(pcm)
    await client.stream(pcm)
    await client.until(STATUS_TYPE, ended=True, segment=1)
    segments = [message.segment for message in client.evidence()]
    assert segments == sorted(segments)
    assert set(segments) == {0, 1}
    kinds = [(d.kind, d.detection.id) for d in client.detections()]
    assert [k for k, _ in kinds] == [EventKind.ONSET, EventKind.OFFSET] * 2
    assert kinds[0][1] == kinds[1][1] != kinds[2][1] == kinds[3][1]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff this is not json\n",
        b'{"type": "audio-chunk", "payload_length": 1000000000}\n',
        b'{"data": {}}\n',
        b"x" * (MAX_HEADER + 100),
    ],
    ids=["not-json", "huge-payload", "no-type", "endless-header"],
)
async def test_garbage_closes_the_connection(server: EngineServer, garbage: bytes) -> None:
    client = await Client.connect(server.port)
    client.writer.write(garbage)
    await client.writer.drain()
    assert await client.closed()
    errors = [Error.from_event(e) for e in client.events if Error.is_type(e.type)]
    assert [e.code for e in errors] == [ERROR_PROTOCOL]
    # the server goes on serving
    other = await Client.connect(server.port)
    await other.send(Describe().event())
    await other.until("info")
    await other.close()
    await client.close()


async def test_bad_chunk_is_skipped(client: Client) -> None:
    await client.send(AudioChunk(rate=0, width=2, channels=1, audio=b"\0\0" * 100).event())
    error = Error.from_event(await client.until("error"))
    assert error.code == ERROR_BAD_AUDIO
    assert "sample rate 0 Hz" in error.text
    await client.send(Event("audio-chunk", {"rate": "fast", "width": 2}, b"\0\0"))
    assert Error.from_event(await client.until("error")).code == ERROR_BAD_AUDIO
    await client.send(Event("guard-mode-stream", {"embeddings": "please"}))
    assert Error.from_event(await client.until("error")).code == ERROR_BAD_EVENT
    # still usable
    await client.send(Describe().event())
    await client.until("info")
    await client.stream(smoke_alarm())
    await client.until_heard(kind=EventKind.ONSET, sound=Sound.SMOKE_ALARM)


async def test_too_many_streams() -> None:
    async with running(max_streams=1) as server:
        first = await Client.connect(server.port)
        await first.send(Describe().event())
        await first.until("info")
        second = await Client.connect(server.port)
        error = Error.from_event(await second.until("error"))
        assert error.code == ERROR_TOO_MANY
        assert await second.closed()
        await first.close()
        await wait_for(lambda: not server.connections)
        third = await Client.connect(server.port)
        await third.send(Describe().event())
        await third.until("info")
        await asyncio.gather(second.close(), third.close())


async def test_client_that_never_reads() -> None:
    """Events pile up for a client that doesn't read: the oldest status events are dropped first,
    evidence is kept within the outbox's bytes, and the server serves others meanwhile."""
    loop = asyncio.get_running_loop()
    async with running(status_interval_s=0.05, send_buffer=4096, max_queued_status=8) as server:
        lazy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never read from
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.setblocking(False)
        await loop.sock_connect(lazy, ("127.0.0.1", server.port))
        await loop.sock_sendall(lazy, frame(GuardModeAuth(TOKEN).event()))
        silence = to_pcm(synth.silence(0.5), 16000, 1)  # each chunk completes a window
        chunk = frame(AudioChunk(rate=16000, width=2, channels=1, audio=silence).event())
        await loop.sock_sendall(lazy, frame(AudioStart(rate=16000, width=2, channels=1).event()))
        await loop.sock_sendall(lazy, chunk)
        await wait_for(lambda: bool(server.connections) and server.connections[0]._segment)
        connection = server.connections[0]
        assert connection._segment is not None
        stream = connection._segment.stream
        for n in range(2, 250):  # one worker run, and one status, per chunk
            await loop.sock_sendall(lazy, chunk)
            fed = n * 0.5 - 1e-6
            await wait_for(lambda: stream.analyzer.time_s >= fed)  # noqa: B023 - awaited here
            assert connection.outbox.bytes <= server.outbox_bytes
        await wait_for(lambda: connection.outbox.dropped > 50)
        waiting = list(connection.outbox._queue)
        assert sum(droppable for _, droppable, _ in waiting) <= 8  # status events
        assert sum(not droppable for _, droppable, _ in waiting) > 100  # evidence, every window
        # the server doesn't wait on the lazy client
        busy = await Client.connect(server.port)
        await busy.stream(smoke_alarm())
        await busy.until_heard(kind=EventKind.ONSET, sound=Sound.SMOKE_ALARM)
        await busy.close()
        lazy.close()


async def test_client_far_behind_is_disconnected(caplog: pytest.LogCaptureFixture) -> None:
    """Events that are never dropped (errors, evidence) pile up: the client is let go."""
    loop = asyncio.get_running_loop()
    async with running(send_buffer=4096, outbox_bytes=1000) as server:
        lazy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never read from
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.setblocking(False)
        await loop.sock_connect(lazy, ("127.0.0.1", server.port))
        await loop.sock_sendall(lazy, frame(GuardModeAuth(TOKEN).event()))
        bad = frame(AudioChunk(rate=0, width=2, channels=1, audio=b"\0\0").event())
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                await loop.sock_sendall(lazy, bad * 20)  # an error event for each
                await asyncio.sleep(0.001)
        await wait_for(lambda: not server.connections)
        lazy.close()
    assert re.search(r"disconnected: not reading \(\d+ events, \d+ bytes waiting\)", caplog.text)


async def test_disconnect_mid_stream_closes_the_engine_stream(server: EngineServer) -> None:
    client = await Client.connect(server.port)
    await client.stream(smoke_alarm()[: 48000 * 4 * 3], stop=False)
    await wait_for(lambda: server.worker.streams)
    assert len(server.worker.streams) == 1
    await client.close()
    await wait_for(lambda: not server.worker.streams and not server.connections)
    assert server.worker.streams == []
    assert server.connections == []


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``python -m custom_components.guard_mode.engine serve`` on a free loopback port."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "custom_components.guard_mode.engine",
                "serve",
                "--uri",
                "tcp://127.0.0.1:0",
                "--max-streams",
                "4",
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "GUARD_MODE_ENGINE_TOKEN": TOKEN},
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"listening on tcp://127\.0\.0\.1:(\d+)", log.read_bytes())):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield process, log, int(found.group(1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_serve_command(engine_process: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    process, log, port = engine_process
    client = await Client.connect(port)
    await client.send(Describe().event())
    info = GuardModeInfo.from_event(await client.until("info"))
    assert info.version == ENGINE_VERSION
    await client.send(GuardModeStream(name="Hall").event())
    await client.stream(smoke_alarm())
    await client.until_heard(kind=EventKind.ONSET, sound=Sound.SMOKE_ALARM)
    await client.until(STATUS_TYPE, ended=True)
    process.send_signal(signal.SIGTERM)  # a clean shutdown with a client still connected
    assert await client.closed()
    await client.close()
    assert await asyncio.to_thread(process.wait, 10) == 0
    text = log.read_text()
    assert re.search(r"Client 127\.0\.0\.1:\d+ connected", text), text
    assert "(Hall) closed: server stopping" in text, text
    assert "Traceback" not in text, text


def test_serve_command_bad_uri() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "custom_components.guard_mode.engine", "serve", "--uri", "x:1"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"expected tcp://HOST:PORT" in result.stderr


def test_info_is_json_serialisable() -> None:
    info = GuardModeInfo("0", "numpy", "yamnet.onnx").event()
    assert json.loads(json.dumps(info.data))["guard_mode"]["protocol"] == 2
