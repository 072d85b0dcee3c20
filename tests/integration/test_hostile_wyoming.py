"""Hostile Wyoming mic services: a real Home Assistant, real servers on loopback, the real model.

Two satellites listen at once: "Hall mic" is an honest Wyoming mic service playing a smoke alarm,
"Attic mic" is a hostile one. For each attack the test asserts the bound (what the attacker got
into the engine, what it left in the log) and that the honest satellite's smoke alarm still
comes, detected as without the attack. Memory figures: scripts/loadtest hostile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import logging
import time

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.engine import bounds
from custom_components.guard_mode.satellite import Satellite
from tests import synth

from ..helpers import arm, make_entry, satellite_subentry, setup_entry, wait_for
from ..synth import pcm16, smoke_alarm_audio
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled", "fast_timeouts")

Attack = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class HostileMic:
    """A TCP service on loopback that runs an attack on every connection."""

    def __init__(self, attack: Attack) -> None:
        self.attack = attack
        self.connections = 0
        self.sent = 0  # bytes written to Home Assistant
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> HostileMic:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:  # accepted just before stop(), served after it began: hang up
            writer.close()
            return
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await self.attack(reader, writer)
                await asyncio.Event().wait()  # then keep the connection open, say nothing
        finally:
            self._tasks.discard(task)
            writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent += len(data)

    async def stop(self) -> None:
        assert self._server is not None
        self._stopping = True
        self._server.close()
        await asyncio.sleep(0)  # a connection's handler created before close() starts (and ends)
        while self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


def header(kind: str, data: str = "", **lengths: object) -> bytes:
    extra = "".join(f', "{key}": {value}' for key, value in lengths.items())
    data_part = f', "data": {data}' if data else ""
    return f'{{"type": "{kind}"{data_part}{extra}}}\n'.encode()


START = header("audio-start", '{"rate": 16000, "width": 2, "channels": 1}')


@pytest.fixture
async def honest() -> AsyncIterator[MicServer]:
    server = await MicServer(audio=pcm16(smoke_alarm_audio()), speed=3.0).start()
    yield server
    await server.stop()


async def two_satellites(
    hass: HomeAssistant, honest_port: int, hostile_port: int
) -> tuple[Satellite, Satellite]:
    satellites = [
        satellite_subentry(
            "Hall mic", "hall", source="wyoming", host="127.0.0.1", port=honest_port
        ),
        satellite_subentry(
            "Attic mic", "attic", source="wyoming", host="127.0.0.1", port=hostile_port
        ),
    ]
    entry = await setup_entry(hass, make_entry({}, satellites))
    hall, attic = entry.runtime_data.satellites.values()
    return hall, attic


async def honest_alarm_comes(hass: HomeAssistant) -> None:
    """Arm and wait for the Hall's smoke alarm; it is the only detection."""
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert detections[0].data["satellite"] == "Hall mic"
    assert {d.data["satellite"] for d in detections} == {"Hall mic"}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [
        r for r in caplog.records if r.name.startswith("custom_components") and r.exc_info
    ], "an attack escaped as an exception"


@pytest.mark.parametrize(
    ("chunk", "why"),
    [
        (  # 16 MiB declared 4 kHz 8-bit: 70 minutes of audio in one event
            header(
                "audio-chunk",
                '{"rate": 4000, "width": 1, "channels": 1}',
                payload_length=16 * 1024 * 1024,
            ),
            "payload of 16777216 bytes is too big",
        ),
        (  # 1 MiB of 4 kHz 8-bit: within the byte bound, 262 s of audio
            header(
                "audio-chunk",
                '{"rate": 4000, "width": 1, "channels": 1}',
                payload_length=bounds.MAX_CHUNK_BYTES,
            )
            + bytes(bounds.MAX_CHUNK_BYTES),
            "(4.4 min of audio) is too big",
        ),
    ],
    ids=["16MiB", "262s"],
)
async def test_giant_chunk_is_refused(
    hass: HomeAssistant,
    honest: MicServer,
    caplog: pytest.LogCaptureFixture,
    chunk: bytes,
    why: str,
) -> None:
    async def giant(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await attacker.write(writer, START + chunk + bytes(1 << 20))

    attacker = await HostileMic(giant).start()
    try:
        _, attic = await two_satellites(hass, honest.port, attacker.port)
        await honest_alarm_comes(hass)
        await wait_for(lambda: attacker.connections >= 3, limit=10)
        assert why in (attic.state.last_error or "")
        assert attic.stream is not None
        assert attic.stream.stats.seconds_in == 0  # nothing of it reached the engine
        await arm(hass, False)
    finally:
        await attacker.stop()
    assert caplog.text.count("Attic mic is unreachable") == 1  # once per outage
    no_tracebacks(caplog)


async def test_flood_is_taken_at_a_bounded_rate(
    hass: HomeAssistant, honest: MicServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A mic service sending as fast as it can gets RATE_FACTOR × real time into the engine."""
    room = synth.white_noise(10.0, -50.0, synth.rng(3))
    flood = await MicServer(audio=pcm16(room), speed=1000.0).start()
    try:
        _, attic = await two_satellites(hass, honest.port, flood.port)
        started = time.monotonic()
        await honest_alarm_comes(hass)
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        assert attic.stream is not None
        taken = attic.stream.stats.seconds_in
        assert taken <= bounds.BURST_S + bounds.RATE_FACTOR * elapsed + 1.0
        assert taken >= elapsed  # it is still served, faster than real time
        await arm(hass, False)
    finally:
        await flood.stop()
    assert caplog.text.count("Attic mic: the Wyoming mic service sends faster than real time") == 1


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (header("audio-chunk", data_length="1e999"), "data_length must be a whole number"),
        (
            header("info", data_length=200_000) + b"[" * 100_000 + b"]" * 100_000,
            "is not JSON (RecursionError)",
        ),
        (header("audio-chunk", data_length=6) + b"\xff\xfe\xfd\xfc\xfb\n", "is not JSON"),
        (header("audio-chunk", payload_length=10**30), "must be a whole number"),
        (
            header("audio-chunk", '{"rate": 1e999, "width": 2, "channels": 1}', payload_length=2)
            + b"\0\0",
            "without a valid format",
        ),
        (b"\xff" * 100 + b"\n", "is not JSON"),
    ],
    ids=["inf-length", "deep-nesting", "bad-utf8", "huge-int", "inf-rate", "binary"],
)
async def test_malformed_events_reconnect_and_log_once(
    hass: HomeAssistant,
    honest: MicServer,
    caplog: pytest.LogCaptureFixture,
    garbage: bytes,
    why: str,
) -> None:
    async def malformed(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await attacker.write(writer, START + garbage)

    attacker = await HostileMic(malformed).start()
    try:
        _, attic = await two_satellites(hass, honest.port, attacker.port)
        await honest_alarm_comes(hass)
        await wait_for(lambda: attacker.connections >= 3, limit=10)
        assert why in (attic.state.last_error or "")
        await arm(hass, False)
    finally:
        await attacker.stop()
    assert caplog.text.count("Attic mic is unreachable") == 1
    no_tracebacks(caplog)


async def test_event_flood_without_audio_is_bounded(
    hass: HomeAssistant, honest: MicServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Endless tiny events (no audio): read at EVENT_RATE, the stall timeout still applies."""
    caplog.set_level(logging.WARNING)

    async def pings(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await attacker.write(writer, START)
        while True:
            await attacker.write(writer, header("ping") * 1000)

    attacker = await HostileMic(pings).start()
    try:
        _, attic = await two_satellites(hass, honest.port, attacker.port)
        started = time.monotonic()
        await honest_alarm_comes(hass)
        await wait_for(lambda: attacker.connections >= 2, limit=10)  # no audio: a stall
        elapsed = time.monotonic() - started
        read = attacker.sent / len(header("ping"))
        socket_buffers = 4 << 20  # what the kernel holds on both sides of one connection
        assert (
            read
            <= (bounds.EVENT_BURST + bounds.EVENT_RATE * elapsed) * attacker.connections
            + (socket_buffers / len(header("ping"))) * attacker.connections
        )
        assert "stopped sending audio" in (attic.state.last_error or "")
        await arm(hass, False)
    finally:
        await attacker.stop()
    no_tracebacks(caplog)
