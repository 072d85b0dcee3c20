"""A real Wyoming microphone service on loopback, for tests (wyoming's AsyncServer).

It behaves like wyoming-mic-external: whoever connects gets audio-start, then audio-chunk
events at real-time pace, looping over the audio it was given. ``behavior`` makes it misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import AsrProgram, Attribution, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from ..synth import pcm16

Behavior = Literal[
    "normal",  # stream the audio
    "silent",  # accept, say nothing
    "asr",  # a speech-to-text service: answers describe with info, never streams
    "garbage",  # random bytes instead of events
    "stall",  # stream 1 s, then go silent (connection stays open)
    "close_mid_chunk",  # stream 1 s, then close in the middle of a chunk's payload
    "odd_chunks",  # chunks of odd byte length (a sample split across chunks)
    "huge_chunk",  # one 10 MB chunk, then normal audio
    "bad_rate",  # chunks that declare a rate of 0
    "stops",  # stream 1 s, then audio-stop (its microphone turned off), connection open
    "one_chunk",  # one chunk, then hang up
]


@dataclass
class MicServer:
    """A Wyoming mic service; start() it, point a satellite at 127.0.0.1:port."""

    audio: bytes = field(default_factory=lambda: pcm16(np.zeros(16000, np.float32)))
    rate: int = 16000
    width: int = 2
    channels: int = 1
    chunk_samples: int = 1024
    behavior: Behavior = "normal"
    speed: float = 1.0  # 2.0: twice real time
    info: Info | None = None  # the answer to describe (wyoming-mic-external gives none)
    port: int = 0
    connections: int = 0  # connections accepted so far
    connected_at: list[float] = field(default_factory=list)  # the loop's time of each one
    clients: int = 0  # connected now
    _server: AsyncTcpServer | None = None

    async def start(self) -> MicServer:
        """Listen on loopback: on self.port, or a free port when it is 0."""
        self._server = AsyncTcpServer("127.0.0.1", self.port)
        await self._server.start(lambda r, w: _Handler(self, r, w))
        assert self._server._server is not None
        self.port = self._server._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every client."""
        if self._server is not None:
            await self._server.stop()
            self._server = None


class _Handler(AsyncEventHandler):
    def __init__(
        self, mic: MicServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.mic = mic
        mic.connections += 1
        mic.connected_at.append(asyncio.get_running_loop().time())
        mic.clients += 1
        self._task = asyncio.create_task(self._stream())

    async def handle_event(self, event: Event) -> bool:
        if self.mic.info is not None and event.type == "describe":
            await self.write_event(self.mic.info.event())
        if self.mic.behavior == "asr" and event.type == "describe":
            info = Info(
                asr=[
                    AsrProgram(
                        name="whisper",
                        description="speech to text",
                        attribution=Attribution(name="test", url="http://localhost"),
                        installed=True,
                        version="1",
                        models=[],
                    )
                ]
            )
            await self.write_event(info.event())
        return True

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that hangs up mid-read
            await super().run()

    async def disconnect(self) -> None:
        self.mic.clients -= 1
        self._task.cancel()

    async def _stream(self) -> None:
        mic = self.mic
        if mic.behavior in ("silent", "asr"):
            return
        if mic.behavior == "garbage":
            self.writer.write(np.random.default_rng(0).bytes(4096) + b"\n" * 3)
            await self.writer.drain()
            return
        await self.write_event(AudioStart(mic.rate, mic.width, mic.channels).event())
        if mic.behavior == "huge_chunk":
            await self.write_event(
                AudioChunk(mic.rate, mic.width, mic.channels, bytes(10 * 1024 * 1024)).event()
            )
        step = mic.chunk_samples * mic.width * mic.channels
        sent = 0.0
        position = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            chunk = mic.audio[position : position + step] or mic.audio[:step]
            position = (position + step) % max(len(mic.audio), 1)
            if mic.behavior == "odd_chunks":
                chunk = chunk[:-1] if len(chunk) % 2 == 0 else chunk
            rate = 0 if mic.behavior == "bad_rate" else mic.rate
            if sent >= 1.0 and mic.behavior == "stall":
                await asyncio.sleep(3600)
            if sent >= 1.0 and mic.behavior == "stops":
                await self.write_event(AudioStop().event())
                await asyncio.sleep(3600)
            if sent >= 1.0 and mic.behavior == "close_mid_chunk":
                header = b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, '
                header += b'"channels": 1}, "payload_length": 4096}\n'
                await _raw(self.writer, header + bytes(100))
                await self.stop()
                return
            await self.write_event(AudioChunk(rate, mic.width, mic.channels, chunk).event())
            if mic.behavior == "one_chunk":
                await self.stop()
                return
            sent += len(chunk) / (mic.rate * mic.width * mic.channels)
            await asyncio.sleep(max(0.0, started + sent / mic.speed - loop.time()))


async def _raw(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
