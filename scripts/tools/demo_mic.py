"""A simulated Wyoming microphone that hears the scenario recording, in a loop, in real time.

It speaks the Wyoming protocol like wyoming-mic-external (the ``wyoming`` package's server): whoever
connects gets audio-start, then audio-chunk events at real-time pace. The recording starts from
the beginning whenever a listener connects while nobody else is listening (so arming guard mode
plays the story from the start), and loops. ``on_chunk`` is told, for every chunk, which stretch
of the recording it held and the wall time it was sent at: the demo narrates the story from it
and the end-to-end test measures latencies against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass, field
import time

from wyoming.audio import AudioChunk, AudioFormat, AudioStart
from wyoming.event import Event
from wyoming.info import Attribution, Info, MicProgram
from wyoming.server import AsyncEventHandler, AsyncTcpServer

# (first sample, end sample, loop number, wall time sent) of one chunk
ChunkListener = Callable[[int, int, int, float], None]


@dataclass
class RoomMic:
    """A Wyoming mic service on host:port streaming pcm (16-bit mono) in a loop."""

    pcm: bytes
    rate: int = 16000
    host: str = "127.0.0.1"
    port: int = 0
    chunk_samples: int = 1024
    loop: bool = True  # False: the recording once, then silence (the connection stays open)
    on_chunk: ChunkListener | None = None
    connections: int = 0  # connections accepted so far
    clients: int = 0  # connected now
    _server: AsyncTcpServer | None = None
    _handlers: list[_Handler] = field(default_factory=list)

    async def start(self) -> RoomMic:
        """Listen (port 0: a free port, written back to self.port)."""
        self._server = AsyncTcpServer(self.host, self.port)
        await self._server.start(lambda r, w: _Handler(self, r, w))
        assert self._server._server is not None
        self.port = self._server._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and hang up on every listener."""
        for handler in list(self._handlers):
            handler.cancel()
        if self._server is not None:
            await self._server.stop()
            self._server = None

    @property
    def samples(self) -> int:
        """Return the recording's length in samples."""
        return len(self.pcm) // 2


def _info(rate: int) -> Info:
    return Info(
        mic=[
            MicProgram(
                name="guard-mode-demo-mic",
                description="Guard Mode demo: the scenario recording as a microphone",
                attribution=Attribution(name="Guard Mode", url="https://www.home-assistant.io"),
                installed=True,
                version="1",
                mic_format=AudioFormat(rate=rate, width=2, channels=1),
            )
        ]
    )


class _Handler(AsyncEventHandler):
    def __init__(
        self, mic: RoomMic, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.mic = mic
        self.primary = mic.clients == 0  # the story (re)starts for the first listener
        mic.connections += 1
        mic.clients += 1
        mic._handlers.append(self)
        self._task = asyncio.create_task(self._stream())

    def cancel(self) -> None:
        self._task.cancel()

    async def handle_event(self, event: Event) -> bool:
        if event.type == "describe":
            await self.write_event(_info(self.mic.rate).event())
        return True

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError):  # a listener that hangs up mid-read
            await super().run()

    async def disconnect(self) -> None:
        self.mic.clients -= 1
        with contextlib.suppress(ValueError):
            self.mic._handlers.remove(self)
        self._task.cancel()

    async def _stream(self) -> None:
        mic = self.mic
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await self.write_event(AudioStart(mic.rate, 2, 1).event())
            total = mic.samples
            silence = bytes(2 * mic.chunk_samples)
            loop = asyncio.get_running_loop()
            started = loop.time()
            sent = 0  # samples sent on this connection
            while True:
                position = sent % total
                number = sent // total
                end = min(position + mic.chunk_samples, total)
                over = number >= 1 and not mic.loop
                chunk = silence if over else mic.pcm[2 * position : 2 * end]
                await self.write_event(AudioChunk(mic.rate, 2, 1, chunk).event())
                if self.primary and mic.on_chunk is not None and (mic.loop or number == 0):
                    mic.on_chunk(position, end, number, time.time())
                sent += len(chunk) // 2
                await asyncio.sleep(max(0.0, started + sent / mic.rate - loop.time()))
