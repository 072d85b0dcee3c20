"""A fleet of Wyoming microphone services on loopback for the load test, in its own process.

    python -m scripts.tools.loadtest_mics SPEC_JSON

SPEC_JSON is a list of ``{"name", "port", "profile", "seed"}`` (port 0: any free port). Each
service behaves like wyoming-mic-external (the ``wyoming`` package's server): whoever connects
gets audio-start, then 16 kHz 16-bit mono audio-chunk events of 1024 samples at real-time pace.
The audio is live: a new connection continues at the point the looped recording has reached
since the service started, as a real microphone would.

Talks JSON lines: on stdout ``{"ev": "ready", "ports": {...}}``, then ``connect`` and
``disconnect`` events (with CLOCK_MONOTONIC times, comparable across processes on the host);
on stdin commands ``{"cmd": "behavior", "name": ..., "behavior": ...}`` and ``{"cmd": "stats"}``.
Behaviours: ``normal``; ``stall`` (the connections open now stop sending but stay open; new
connections stream normally); ``garbage`` (every connection, open or new, gets random bytes
instead of the next event, until ``normal`` again). Exits when stdin closes or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioFormat, AudioStart
from wyoming.event import Event
from wyoming.info import Attribution, Info, MicProgram
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from .loadtest_audio import SAMPLE_RATE, pcm16, profile_audio
from .loadtest_hass import die_with_parent

CHUNK_SAMPLES = 1024  # 64 ms, what wyoming-mic-external sends
LOOP_SECONDS = 120.0
_ids = itertools.count(1)


def emit(**event: Any) -> None:
    """Write one JSON line to stdout."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Mic:
    """One Wyoming mic service."""

    def __init__(self, name: str, port: int, profile: str, seed: int) -> None:
        """Prepare the service's looped recording (call start)."""
        self.name = name
        self.port = port
        self.profile = profile
        self.pcm = pcm16(profile_audio(profile, LOOP_SECONDS, seed))
        self.offset = (seed * 7919 % int(LOOP_SECONDS)) * SAMPLE_RATE
        self.behavior = "normal"
        self.handlers: set[Handler] = set()
        self.connections = 0
        self.chunks = 0
        self.max_send_late_s = 0.0  # how far behind real time a chunk was sent, at worst
        self.started = time.monotonic()
        self._server: AsyncTcpServer | None = None

    async def start(self) -> None:
        """Listen on loopback."""
        self._server = AsyncTcpServer("127.0.0.1", self.port)
        await self._server.start(lambda r, w: Handler(self, r, w))
        server = self._server._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]

    def live_position(self) -> int:
        """Return the sample of the looped recording that is 'now'."""
        samples = len(self.pcm) // 2
        return (self.offset + int((time.monotonic() - self.started) * SAMPLE_RATE)) % samples

    def set_behavior(self, behavior: str) -> None:
        """Change how the service behaves (see the module docstring)."""
        if behavior == "stall":
            for handler in self.handlers:
                handler.stalled = True
        else:
            self.behavior = behavior

    def stats(self) -> dict[str, Any]:
        """Return the service's counters."""
        return {
            "port": self.port,
            "profile": self.profile,
            "behavior": self.behavior,
            "connections": self.connections,
            "clients": len(self.handlers),
            "chunks": self.chunks,
            "max_send_late_s": round(self.max_send_late_s, 3),
        }


class Handler(AsyncEventHandler):
    """One connection to a mic service."""

    def __init__(
        self, mic: Mic, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Count the connection and start streaming."""
        super().__init__(reader, writer)
        self.mic = mic
        self.id = next(_ids)
        self.stalled = False
        mic.connections += 1
        mic.handlers.add(self)
        emit(ev="connect", name=mic.name, conn=self.id, t=time.monotonic())
        self._task = asyncio.create_task(self._stream())

    async def handle_event(self, event: Event) -> bool:
        """Answer describe like a mic service; ignore the rest."""
        if event.type == "describe":
            program = MicProgram(
                name="loadtest-mic",
                description="Guard Mode load test microphone",
                attribution=Attribution(name="Guard Mode", url="https://www.home-assistant.io"),
                installed=True,
                version="1",
                mic_format=AudioFormat(rate=SAMPLE_RATE, width=2, channels=1),
            )
            await self.write_event(Info(mic=[program]).event())
        return True

    async def run(self) -> None:
        """Read the client's events until it hangs up."""
        with contextlib.suppress(ConnectionError):
            await super().run()

    async def disconnect(self) -> None:
        """Forget the connection."""
        self.mic.handlers.discard(self)
        self._task.cancel()
        emit(ev="disconnect", name=self.mic.name, conn=self.id, t=time.monotonic())

    async def _stream(self) -> None:
        mic = self.mic
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            if mic.behavior == "garbage":
                await self._garbage()
                return
            await self.write_event(AudioStart(SAMPLE_RATE, 2, 1).event())
            position = mic.live_position()
            total = len(mic.pcm) // 2
            step = CHUNK_SAMPLES / SAMPLE_RATE
            started = time.monotonic()
            for k in itertools.count():
                if self.stalled:
                    await asyncio.Event().wait()  # say nothing, keep the connection open
                if mic.behavior == "garbage":
                    await self._garbage()
                    return
                end = position + CHUNK_SAMPLES
                if end <= total:
                    chunk = mic.pcm[2 * position : 2 * end]
                else:
                    chunk = mic.pcm[2 * position :] + mic.pcm[: 2 * (end - total)]
                position = end % total
                late = time.monotonic() - (started + k * step)
                mic.max_send_late_s = max(mic.max_send_late_s, late)
                await self.write_event(AudioChunk(SAMPLE_RATE, 2, 1, chunk).event())
                mic.chunks += 1
                await asyncio.sleep(max(0.0, started + (k + 1) * step - time.monotonic()))

    async def _garbage(self) -> None:
        """Send random bytes (lines that are not JSON headers), then keep quiet."""
        self.writer.write(np.random.default_rng(self.id).bytes(4096) + b"\n" * 3)
        await self.writer.drain()
        await asyncio.Event().wait()


async def commands(mics: dict[str, Mic], done: asyncio.Event) -> None:
    """Read commands from stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            command = json.loads(line)
            if command["cmd"] == "behavior":
                mics[command["name"]].set_behavior(command["behavior"])
                emit(ev="ack", cmd="behavior", name=command["name"], t=time.monotonic())
            elif command["cmd"] == "stats":
                emit(ev="stats", mics={name: mic.stats() for name, mic in mics.items()})
        except (ValueError, KeyError) as err:
            emit(ev="error", error=str(err))
    done.set()


async def main(spec: list[dict[str, Any]]) -> None:
    """Start every service, report the ports, serve until told to stop."""
    mics = {
        item["name"]: Mic(item["name"], item["port"], item["profile"], item["seed"])
        for item in spec
    }
    for mic in mics.values():
        await mic.start()
    emit(ev="ready", ports={name: mic.port for name, mic in mics.items()}, pid=os.getpid())
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    reader = asyncio.create_task(commands(mics, done))
    await done.wait()
    reader.cancel()


if __name__ == "__main__":
    die_with_parent()
    asyncio.run(main(json.loads(sys.argv[1])))
