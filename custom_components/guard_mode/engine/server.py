"""The engine as a Wyoming service: one shared engine, one satellite stream per TCP connection.

``python -m custom_components.guard_mode.engine serve --uri tcp://0.0.0.0:10800`` (or, in the
add-on, ``python -m guard_mode_engine serve``). The events are described in :mod:`.protocol`.

Threads: the event loop reads and writes sockets; the :class:`ServerWorker` thread converts,
tags and decides, and hands its results back with ``loop.call_soon_threadsafe``. Nothing waits
on a client: each connection has a bounded outbox (status events are dropped first, detections
never: a client that lets detections pile up is disconnected), and audio the engine can't keep up
with is dropped and counted by the engine (``seconds_dropped`` in the status).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
from dataclasses import replace
import logging
import math
import signal
import socket
import threading
import time
from typing import TypeGuard
from urllib.parse import urlsplit

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong

from .decider import DeciderConfig, DeciderEvent
from .labels import Sound
from .pcm import MAX_CHANNELS, MAX_RATE, MIN_RATE
from .protocol import (
    DEFAULT_PORT,
    ENGINE_VERSION,
    ERROR_BAD_AUDIO,
    ERROR_BAD_EVENT,
    ERROR_PROTOCOL,
    ERROR_TOO_MANY,
    MAX_HEADER,
    GuardModeDetection,
    GuardModeInfo,
    GuardModeStatus,
    GuardModeStream,
    ProtocolError,
    read_event,
)
from .tagger import Backend, ModelError, Tagger, load_shipped_tagger
from .worker import DEFAULT_QUEUE_S, EngineStream, EngineWorker

_LOGGER = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # a status event per this many seconds of audio
MAX_QUEUED_STATUS = 8  # status events waiting for a slow client; the oldest are dropped
MAX_QUEUED_EVENTS = 1024  # other events waiting: a client this far behind is disconnected
CLOSE_TIMEOUT_S = 1.0  # time to send what is queued when a connection ends
DEFAULT_MAX_STREAMS = 32

# An outgoing event and whether it may be dropped for a slow client (status events).
type _Item = tuple[Event, bool]


class ServerWorker(EngineWorker):
    """The shared worker, plus per-run hooks for the server's streams (on the worker thread).

    After every run it lets each server stream report its status, and it ends the streams whose
    ``audio-stop`` arrived before the run: all their audio has been processed by then, so their
    open detections are closed in stream order, on the thread that owns the stream's state.
    """

    def __init__(self, tagger: Tagger) -> None:
        """Create the worker (call :meth:`start`)."""
        super().__init__(tagger)
        self._segments: dict[EngineStream, _Segment] = {}
        self._ending: list[_Segment] = []
        self._hooks_lock = threading.Lock()

    def attach(self, segment: _Segment) -> None:
        """Run segment's hooks after every run."""
        with self._hooks_lock:
            self._segments[segment.stream] = segment

    def end_segment(self, segment: _Segment) -> None:
        """End segment after the audio pushed so far has been processed."""
        with self._hooks_lock:
            self._ending.append(segment)
        self.wake()

    def run_once(self) -> int:
        """Process everything queued now, then run the server streams' hooks."""
        with self._hooks_lock:
            ending, self._ending = self._ending, []
        try:
            return super().run_once()
        finally:
            with self._hooks_lock:
                for stream in [s for s in self._segments if s.closed]:
                    del self._segments[stream]
                for segment in ending:
                    self._segments.pop(segment.stream, None)
                running = list(self._segments.values())
            for segment in running:
                self._guarded(segment.after_run)
            for segment in ending:
                self._guarded(segment.end)

    def _guarded(self, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:  # a hook must not take the worker down
            self.stats.errors += 1
            _LOGGER.exception("Engine server hook failed")


class _Segment:
    """One EngineStream: a connection's audio from audio-start (or its first chunk) to audio-stop.

    Everything but the constructor runs on the worker thread; results go to ``post``.
    """

    def __init__(
        self,
        worker: ServerWorker,
        name: str,
        post: Callable[[_Segment, list[_Item], bool], None],
        *,
        config: DeciderConfig | None,
        media_player_playing: bool,
        status_interval_s: float,
        queue_s: float,
    ) -> None:
        self._post = post
        self._status_interval_s = status_interval_s
        self._next_status_s = status_interval_s
        self._bad_chunks = 0
        self.stream = worker.open_stream(
            name, self._on_events, decider_config=config, queue_s=queue_s
        )
        self.stream.set_media_player_playing(media_player_playing)
        worker.attach(self)

    def _on_events(
        self, stream: EngineStream, events: list[DeciderEvent], time_s: float | None = None
    ) -> None:
        """Take the decider's events (the worker's event callback)."""
        now = stream.analyzer.time_s if time_s is None else time_s
        items = [(GuardModeDetection.from_decider(e, now).event(), False) for e in events]
        self._post(self, items, False)

    def after_run(self) -> None:
        """Report unusable audio, and the status every status interval of audio."""
        items: list[_Item] = []
        stats = self.stream.stats
        if stats.bad_chunks > self._bad_chunks:
            self._bad_chunks = stats.bad_chunks
            text = f"audio chunk skipped: {self.stream.last_error}"
            items.append((Error(text=text, code=ERROR_BAD_AUDIO).event(), False))
        time_s = self.stream.analyzer.time_s
        if time_s >= self._next_status_s:
            interval = self._status_interval_s
            self._next_status_s = (math.floor(time_s / interval) + 1) * interval
            items.append((self.status().event(), True))
        if items:
            self._post(self, items, False)

    def end(self) -> None:
        """Close the open detections, send a last status and close the stream."""
        now = self.stream.analyzer.time_s
        items: list[_Item] = [
            (GuardModeDetection.from_decider(e, now).event(), False)
            for e in self.stream.analyzer.finish()
        ]
        items.append((self.status().event(), True))
        self.stream.close()
        self._post(self, items, True)

    def status(self) -> GuardModeStatus:
        """Return the stream's status now (takes the peak level)."""
        analyzer, stats = self.stream.analyzer, self.stream.stats
        return GuardModeStatus(
            time_s=analyzer.time_s,
            level_db=analyzer.take_peak_level(),
            windows=analyzer.windows,
            gated_windows=analyzer.gated_windows,
            media_s=analyzer.decider.media_s,
            seconds_dropped=stats.seconds_dropped,
            bad_chunks=stats.bad_chunks,
        )


class Outbox:
    """A connection's outgoing events: bounded, status events dropped first."""

    def __init__(
        self, max_droppable: int = MAX_QUEUED_STATUS, max_events: int = MAX_QUEUED_EVENTS
    ) -> None:
        """Hold at most max_droppable status events and max_events others."""
        self._queue: deque[_Item] = deque()
        self._droppable = 0
        self._max_droppable = max_droppable
        self._max_events = max_events
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # status events dropped because the client didn't read
        self.max_length = 0  # most events ever waiting

    def __len__(self) -> int:
        """Return how many events wait."""
        return len(self._queue)

    def put(self, event: Event, droppable: bool) -> bool:
        """Queue an event; False when the client is too far behind (the caller closes it)."""
        if self._closed:
            return True
        if droppable:
            if self._max_droppable <= 0:
                self.dropped += 1
                return True
            if self._droppable >= self._max_droppable:
                oldest = next(i for i, (_, drop) in enumerate(self._queue) if drop)
                del self._queue[oldest]
                self._droppable -= 1
                self.dropped += 1
            self._droppable += 1
        elif len(self._queue) - self._droppable >= self._max_events:
            return False
        self._queue.append((event, droppable))
        self.max_length = max(self.max_length, len(self._queue))
        self._ready.set()
        return True

    def close(self) -> None:
        """Take no more events; :meth:`get` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Event | None:
        """Wait for the next event; None when closed and empty."""
        while not self._queue:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        event, droppable = self._queue.popleft()
        if droppable:
            self._droppable -= 1
        return event


class Connection:
    """One client: one satellite's stream, its settings and its outbox."""

    def __init__(
        self, server: EngineServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve a client (call :meth:`run`)."""
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "client")
        self.name = self.peer
        self.outbox = Outbox(server.max_queued_status, server.max_queued_events)
        self._loop = asyncio.get_running_loop()
        self._enabled: frozenset[Sound] | None = None
        self._media_player_playing = False
        self._segment: _Segment | None = None
        self._ending: list[_Segment] = []  # audio-stop arrived, offsets not yet
        self._held: list[Event] = []  # the next segment's detections, sent after those offsets
        self._closing = False
        self._abort_reason: str | None = None
        self.seconds_in = 0.0
        self.detections = 0

    async def run(self) -> None:
        """Read events until the client leaves or misbehaves; log one line each way."""
        _LOGGER.info(
            "Client %s connected (%d of %d streams)",
            self.peer,
            len(self.server.connections),
            self.server.max_streams,
        )
        writing = asyncio.create_task(self._write_loop())
        reason = "disconnected"
        try:
            await self._read_loop()
        except ProtocolError as err:
            reason = f"closed: protocol error: {err}"
            self._send(Error(text=str(err), code=ERROR_PROTOCOL).event())
        except (ConnectionError, OSError) as err:
            reason = f"disconnected: {err}"
        except asyncio.CancelledError:
            reason = "closed: server stopping"
            raise
        finally:
            self._closing = True
            if self._segment is not None:
                self._segment.stream.close()
                self._segment = None
            await self._finish_writing(writing)
            _LOGGER.info(
                "Client %s (%s) %s after %.1f s of audio, %d detections",
                self.peer,
                self.name,
                self._abort_reason or reason,
                self.seconds_in,
                self.detections,
            )

    def close(self, reason: str) -> None:
        """Close the connection now (the server stops)."""
        if self._abort_reason is None:
            self._abort_reason = reason
        self.writer.transport.abort()

    async def _read_loop(self) -> None:
        while (event := await read_event(self.reader)) is not None:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if AudioChunk.is_type(event.type):
            self._audio_chunk(event)
        elif AudioStart.is_type(event.type):
            self._open_segment()
        elif AudioStop.is_type(event.type):
            self._end_segment()
        elif GuardModeStream.is_type(event.type):
            try:
                self._apply(GuardModeStream.from_event(event))
            except ProtocolError as err:
                self._send(Error(text=f"{event.type}: {err}", code=ERROR_BAD_EVENT).event())
        elif Describe.is_type(event.type):
            tagger = self.server.worker.tagger
            info = GuardModeInfo(ENGINE_VERSION, tagger.backend, tagger.model_path.name)
            self._send(info.event())
        elif Ping.is_type(event.type):
            self._send(Pong(text=Ping.from_event(event).text).event())
        else:
            _LOGGER.debug("Client %s: ignored a %r event", self.peer, event.type[:40])

    def _audio_chunk(self, event: Event) -> None:
        data = event.data
        rate, width, channels = data.get("rate"), data.get("width"), data.get("channels")
        if not (
            _is_int(rate, MIN_RATE, MAX_RATE)
            and _is_int(width, 1, 4)
            and _is_int(channels, 1, MAX_CHANNELS)
        ):
            text = (
                f"audio chunk skipped: unusable format rate={rate!r:.20} width={width!r:.20} "
                f"channels={channels!r:.20} (rate {MIN_RATE}–{MAX_RATE} Hz, width 1–4 bytes, "
                f"1–{MAX_CHANNELS} channels)"
            )
            self._send(Error(text=text, code=ERROR_BAD_AUDIO).event())
            return
        if not event.payload:
            return
        segment = self._segment or self._open_segment()
        segment.stream.push_pcm(event.payload, rate, width, channels)
        self.seconds_in += len(event.payload) / (rate * width * channels)

    def _open_segment(self) -> _Segment:
        if self._segment is None:
            config = None
            if self._enabled is not None:
                config = replace(DeciderConfig(), enabled=self._enabled)
            self._segment = _Segment(
                self.server.worker,
                self.name,
                self._post,
                config=config,
                media_player_playing=self._media_player_playing,
                status_interval_s=self.server.status_interval_s,
                queue_s=self.server.queue_s,
            )
        return self._segment

    def _end_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is not None:
            self._ending.append(segment)
            self.server.worker.end_segment(segment)

    def _apply(self, settings: GuardModeStream) -> None:
        if settings.name is not None:
            self.name = settings.name
            if self._segment is not None:
                self._segment.stream.name = settings.name
        if settings.enabled is not None:
            self._enabled = settings.enabled
            if self._segment is not None:
                decider = self._segment.stream.analyzer.decider
                decider.config = replace(decider.config, enabled=settings.enabled)
        if settings.media_player_playing is not None:
            self._media_player_playing = settings.media_player_playing
            if self._segment is not None:
                self._segment.stream.set_media_player_playing(settings.media_player_playing)

    def _post(self, segment: _Segment, items: list[_Item], ended: bool) -> None:
        """Hand a segment's events to the event loop (called on the worker thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
            self._loop.call_soon_threadsafe(self._deliver, segment, items, ended)

    def _deliver(self, segment: _Segment, items: list[_Item], ended: bool) -> None:
        if self._closing:
            return
        older = segment in self._ending
        for event, droppable in items:
            if GuardModeDetection.is_type(event.type):
                _LOGGER.debug("Client %s (%s): %s", self.peer, self.name, event.data)
                if event.data.get("kind") == "onset":
                    self.detections += 1
            if not older and self._ending and not droppable:
                self._held.append(event)  # wait for the earlier segment's offsets
            else:
                self._send(event, droppable)
        if ended and older:
            self._ending.remove(segment)
            if not self._ending:
                held, self._held = self._held, []
                for event in held:
                    self._send(event)

    def _send(self, event: Event, droppable: bool = False) -> None:
        if self._abort_reason is not None:
            return
        if not self.outbox.put(event, droppable):
            self._abort_reason = f"disconnected: not reading ({len(self.outbox)} events waiting)"
            self.writer.transport.abort()

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while (event := await self.outbox.get()) is not None:
                await async_write_event(event, self.writer)

    async def _finish_writing(self, writing: asyncio.Task[None]) -> None:
        """Send what is queued (for a moment at most), then close the connection."""
        self.outbox.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(writing)
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.wait_closed()
        except TimeoutError, ConnectionError, OSError:
            self.writer.transport.abort()


def _is_int(value: object, low: int, high: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class EngineServer:
    """The engine as a Wyoming service: one :class:`ServerWorker` for every connection."""

    def __init__(
        self,
        tagger: Tagger,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        status_interval_s: float = STATUS_INTERVAL_S,
        queue_s: float = DEFAULT_QUEUE_S,
        max_queued_status: int = MAX_QUEUED_STATUS,
        max_queued_events: int = MAX_QUEUED_EVENTS,
        send_buffer: int | None = None,
    ) -> None:
        """Serve with tagger; queue_s is the audio a stream may have waiting for the engine.

        ``send_buffer`` caps what is buffered for a client below its outbox (the socket's
        SO_SNDBUF and the transport's high-water mark; None: the defaults); tests use a small one
        to see a slow client's outbox fill.
        """
        self.worker = ServerWorker(tagger)
        self.max_streams = max_streams
        self.status_interval_s = status_interval_s
        self.queue_s = queue_s
        self.max_queued_status = max_queued_status
        self.max_queued_events = max_queued_events
        self.send_buffer = send_buffer
        self.connections: list[Connection] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """Return the port the server listens on (0 before start)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
        """Start the worker and listen on host:port (0: any free port); return the port."""
        self.worker.start()
        try:
            self._server = await asyncio.start_server(self._accept, host, port, limit=MAX_HEADER)
        except OSError:
            await asyncio.to_thread(self.worker.stop)
            raise
        return self.port

    async def stop(self) -> None:
        """Stop listening, close every connection, stop the worker."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close("closed: server stopping")
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=2 * CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()
            self._server = None
        await asyncio.to_thread(self.worker.stop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.send_buffer is not None:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
            writer.transport.set_write_buffer_limits(high=self.send_buffer)
        if len(self.connections) >= self.max_streams:
            await self._refuse(writer)
            return
        connection = Connection(self, reader, writer)
        self.connections.append(connection)
        try:
            await connection.run()
        finally:
            self.connections.remove(connection)

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        _LOGGER.warning(
            "Client %s refused: already %d streams (--max-streams)", peer, len(self.connections)
        )
        text = f"the engine serves at most {self.max_streams} streams"
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await async_write_event(Error(text=text, code=ERROR_TOO_MANY).event(), writer)
                writer.close()
                await writer.wait_closed()
        writer.transport.abort()


async def start_server(server: EngineServer, host: str = "127.0.0.1", port: int = 0) -> int:
    """Start server on host:port (0: any free port); return the bound port."""
    return await server.start(host, port)


def parse_uri(uri: str) -> tuple[str, int]:
    """Return (host, port) of ``tcp://HOST[:PORT]``; ValueError for anything else."""
    parts = urlsplit(uri)
    if parts.scheme != "tcp" or not parts.hostname:
        raise ValueError(f"expected tcp://HOST:PORT, got {uri!r}")
    port = parts.port  # raises ValueError when out of range
    return parts.hostname, DEFAULT_PORT if port is None else port


async def serve(server: EngineServer, uri: str) -> None:
    """Serve on uri until SIGTERM or SIGINT, then shut down cleanly."""
    host, port = parse_uri(uri)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        bound = await server.start(host, port)
        tagger = server.worker.tagger
        _LOGGER.info(
            "Guard Mode engine %s listening on tcp://%s:%d (%s backend, %s, at most %d streams)",
            ENGINE_VERSION,
            host,
            bound,
            tagger.backend,
            tagger.model_path.name,
            server.max_streams,
        )
        await stopping.wait()
        _LOGGER.info("Stopping (%d clients connected)", len(server.connections))
        await server.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(
    uri: str,
    *,
    backend: Backend = "auto",
    max_streams: int = DEFAULT_MAX_STREAMS,
    log_level: str = "info",
) -> int:
    """Load the model and serve (the ``serve`` command); return the exit status."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        parse_uri(uri)
        started = time.perf_counter()
        tagger = load_shipped_tagger(backend=backend)
    except (ModelError, ValueError) as err:
        _LOGGER.error("Cannot start: %s", err)  # noqa: TRY400 - the message is the whole story
        return 2
    _LOGGER.debug("Model loaded in %.2f s", time.perf_counter() - started)
    try:
        asyncio.run(serve(EngineServer(tagger, max_streams=max_streams), uri))
    except OSError as err:
        _LOGGER.error("Cannot listen on %s: %s", uri, err)  # noqa: TRY400
        return 1
    return 0
