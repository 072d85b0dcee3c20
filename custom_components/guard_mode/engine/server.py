"""The engine as a Wyoming service: one shared engine, one satellite stream per TCP connection.

``python -m custom_components.guard_mode.engine serve --uri tcp://127.0.0.1:10800`` with the
token in ``$GUARD_MODE_ENGINE_TOKEN`` or ``--token-file`` (in the add-on: ``python -m
guard_mode_engine serve``, on the add-on network). The events are described in :mod:`.protocol`.

Who may connect: clients that send the token first (compared in constant time), within
``bounds.HELLO_TIMEOUT_S``. At most ``max_pending`` connections wait for their token at once (a
new one closes the longest-waiting), and at most ``max_streams`` are authenticated; a client
that says nothing for ``bounds.IDLE_TIMEOUT_S`` is closed. With a certificate the service speaks
TLS only; a connection's handshake counts as waiting for its token. Names that clients give
their streams are logged as :func:`.bounds.printable` text.

Threads: the event loop reads and writes sockets; the :class:`ServerWorker` thread tags and
hands each stream's evidence back with ``loop.call_soon_threadsafe``. The service decides
nothing: the client runs the stream's decider on the evidence (:mod:`.protocol`). Nothing waits
on a client, and no client gets more than its share (:mod:`.bounds`): each connection reads
audio at most ``RATE_FACTOR`` × real time and a bounded number of events a second (it stops
reading until the client is back within that), refuses chunks over the chunk bounds, and has an
outbox bounded in bytes (status events are dropped first, evidence never: a client that lets
it pile up is disconnected). Audio the engine can't keep up with is dropped and counted by the
engine (``seconds_dropped`` in the status).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
import hmac
import json
import logging
import math
import os
from pathlib import Path
import signal
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong

from . import bounds
from .audio import PcmConverter
from .evidence import Evidence, EvidenceStream
from .head import shipped_head
from .protocol import (
    AUTH_TYPE,
    DEFAULT_PORT,
    ENGINE_VERSION,
    ERROR_BAD_AUDIO,
    ERROR_BAD_EVENT,
    ERROR_PROTOCOL,
    ERROR_TIMEOUT,
    ERROR_TOO_MANY,
    ERROR_UNAUTHORIZED,
    MAX_HEADER,
    MIN_TOKEN_LENGTH,
    GuardModeAuth,
    GuardModeEvidence,
    GuardModeInfo,
    GuardModeStatus,
    GuardModeStream,
    ProtocolError,
    fingerprint,
    read_event,
    token_ok,
)
from .tagger import Backend, ModelError, Tagger, load_shipped_tagger
from .worker import DEFAULT_QUEUE_S, EngineStream, EngineWorker

_LOGGER = logging.getLogger(__name__)

STATUS_INTERVAL_S = 5.0  # a status event per this many seconds of audio
MAX_QUEUED_STATUS = 8  # status events waiting for a slow client; the oldest are dropped
CLOSE_TIMEOUT_S = 1.0  # time to send what is queued when a connection ends
DEFAULT_MAX_STREAMS = 32
DEFAULT_MAX_PENDING = 16  # connections waiting for their token at once
TOKEN_ENV = "GUARD_MODE_ENGINE_TOKEN"
REFUSAL_LOG_INTERVAL_S = 600.0  # refusals are logged once per address in this time

# An outgoing event and whether it may be dropped for a slow client (status events).
type _Item = tuple[Event, bool]


class ServerWorker(EngineWorker):
    """The shared worker, plus per-run hooks for the server's streams (on the worker thread).

    After every run it lets each server stream report its status, and it ends the streams whose
    ``audio-stop`` arrived before the run: all their audio has been processed by then, so their
    last status follows all their evidence.
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
        number: int,
        embeddings: bool,
        every_window: bool,
        status_interval_s: float,
        queue_s: float,
    ) -> None:
        self.number = number
        self._worker = worker
        self._post = post
        self._status_interval_s = status_interval_s
        self._next_status_s = status_interval_s
        self.stream = worker.open_stream(name, self._on_evidence, queue_s=queue_s)
        self.stream.set_embeddings(embeddings)
        self.stream.set_every_window(every_window)
        worker.attach(self)

    def _on_evidence(self, stream: EvidenceStream, evidence: list[Evidence], time_s: float) -> None:
        """Send the stream's evidence (the worker's callback)."""
        batches = GuardModeEvidence.batches(self.number, time_s, evidence)
        self._post(self, [(batch.event(), False) for batch in batches], False)

    def after_run(self) -> None:
        """Report the status every status interval of audio."""
        time_s = self.stream.analyzer.time_s
        if time_s >= self._next_status_s:
            interval = self._status_interval_s
            self._next_status_s = (math.floor(time_s / interval) + 1) * interval
            self._post(self, [(self.status().event(), True)], False)

    def end(self) -> None:
        """Send the last status (the segment's evidence is complete) and close the stream."""
        items: list[_Item] = [(self.status(ended=True).event(), False)]
        self.stream.close()
        self._post(self, items, True)

    def status(self, *, ended: bool = False) -> GuardModeStatus:
        """Return the stream's status now (bad chunks: the connection's, filled in later)."""
        return GuardModeStatus(
            segment=self.number,
            time_s=self.stream.analyzer.time_s,
            seconds_dropped=self.stream.stats.seconds_dropped,
            bad_chunks=0,
            ended=ended,
            model_error=self._worker.tagger_error or "",
        )


def event_size(event: Event) -> int:
    """Return about how many bytes an event takes on the wire."""
    data = len(json.dumps(event.data)) if event.data else 0
    return 64 + len(event.type) + data + len(event.payload or b"")


class Outbox:
    """A connection's outgoing events: bounded in bytes, status events dropped first."""

    def __init__(
        self, max_droppable: int = MAX_QUEUED_STATUS, max_bytes: int = bounds.OUTBOX_BYTES
    ) -> None:
        """Hold at most max_droppable status events and max_bytes of events in all."""
        self._queue: deque[tuple[Event, bool, int]] = deque()
        self._droppable = 0
        self._bytes = 0
        self._max_droppable = max_droppable
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # status events dropped because the client didn't read
        self.max_length = 0  # most events ever waiting
        self.max_bytes_seen = 0  # most bytes ever waiting

    def __len__(self) -> int:
        """Return how many events wait."""
        return len(self._queue)

    @property
    def bytes(self) -> int:
        """Return how many bytes wait."""
        return self._bytes

    def put(self, event: Event, droppable: bool) -> bool:
        """Queue an event; False when the client is too far behind (the caller closes it)."""
        if self._closed:
            return True
        size = event_size(event)
        if droppable and self._max_droppable <= 0:
            self.dropped += 1
            return True
        while self._droppable and (
            self._bytes + size > self._max_bytes
            or (droppable and self._droppable >= self._max_droppable)
        ):
            self._drop_oldest_status()
        if self._bytes + size > self._max_bytes:
            if droppable:
                self.dropped += 1
                return True
            return False
        self._queue.append((event, droppable, size))
        self._droppable += droppable
        self._bytes += size
        self.max_length = max(self.max_length, len(self._queue))
        self.max_bytes_seen = max(self.max_bytes_seen, self._bytes)
        self._ready.set()
        return True

    def _drop_oldest_status(self) -> None:
        oldest = next(i for i, item in enumerate(self._queue) if item[1])
        self._bytes -= self._queue[oldest][2]
        del self._queue[oldest]
        self._droppable -= 1
        self.dropped += 1

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
        event, droppable, size = self._queue.popleft()
        self._droppable -= droppable
        self._bytes -= size
        return event


class _Refused(Exception):
    """The connection is closed for a reason the client is told (an error event)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


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
        self.host = str(peer[0]) if isinstance(peer, tuple) else "client"
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "client"
        self.name = self.peer
        self.outbox = Outbox(server.max_queued_status, server.outbox_bytes)
        self.authenticated = False
        self.connected_at = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._audio = bounds.Budget(server.audio_rate, bounds.BURST_S)
        self._events = bounds.event_budget()
        self._throttled = False
        self._embeddings = False
        self._every_window = True  # until the client says (an older client never does)
        self._segment: _Segment | None = None
        self._segments = 0  # segments begun on this connection
        self._converter = PcmConverter()  # the segment's audio, to 16 kHz mono
        self._ending: list[_Segment] = []  # audio-stop arrived, offsets not yet
        self._held: list[Event] = []  # the next segment's evidence, sent after the ending one's
        self._closing = False
        self._handshake: asyncio.Future[None] | None = None  # the TLS handshake, while it runs
        self._abort_reason: str | None = None
        self.seconds_in = 0.0
        self.bad_chunks = 0  # audio chunks skipped: a format that can't be used

    async def run(self) -> None:
        """Read events until the client leaves or misbehaves; log one line each way."""
        if self.server.ssl_context is not None and not await self._start_tls(
            self.server.ssl_context
        ):
            return
        writing = asyncio.create_task(self._write_loop())
        reason = "disconnected"
        try:
            await self._read_loop()
        except _Refused as err:
            reason = f"closed: {err}"
            self._send(Error(text=str(err), code=err.code).event())
        except ProtocolError as err:
            reason = f"closed: protocol error: {err}"
            self._send(Error(text=str(err), code=ERROR_PROTOCOL).event())
        except (ConnectionError, OSError) as err:
            reason = f"disconnected: {err.strerror or err or type(err).__name__}"
        except asyncio.CancelledError:
            reason = "closed: server stopping"
            raise
        finally:
            self._closing = True
            if self._segment is not None:
                self._segment.stream.close()
                self._segment = None
            await self._finish_writing(writing, linger=not self.authenticated)
            if self.authenticated:
                _LOGGER.info(
                    "Client %s (%s) %s after %.1f s of audio",
                    self.peer,
                    self.name,
                    self._abort_reason or reason,
                    self.seconds_in,
                )
            else:
                message = f"Client {self.peer} {self._abort_reason or reason}"
                self.server.log_refusal(self.host, message)

    def close(self, reason: str) -> None:
        """Close the connection now (the server stops, or it waited too long for its token)."""
        if self._abort_reason is None:
            self._abort_reason = reason
        if self._handshake is not None:
            # Cancelled, not aborted: a transport aborted under start_tls makes it fail with
            # an AttributeError (it returns no transport); cancelling closes the socket.
            self._handshake.cancel()
            return
        self.writer.transport.abort()

    async def _start_tls(self, context: ssl.SSLContext) -> bool:
        """Take the TLS handshake within the hello timeout; False (logged) if it did not finish.

        Taken here rather than by the listening server, so that a connection counts as
        waiting for its token from the moment it is accepted: peers that never finish a
        handshake are held to the same bound as those that never send a token.
        """
        self._handshake = asyncio.ensure_future(
            self.writer.start_tls(context, ssl_handshake_timeout=self.server.hello_timeout_s)
        )
        try:
            await self._handshake
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            reason = self._abort_reason or "closed"
        except (ConnectionError, OSError) as err:  # ssl.SSLError and TimeoutError are OSErrors
            reason = f"failed the TLS handshake: {err}"
        else:
            return True
        finally:
            self._handshake = None
        self.server.log_refusal(self.host, f"Client {self.peer} {reason}")
        return False

    async def _next_event(self, timeout_s: float, code: str, what: str) -> Event | None:
        """Read an event within timeout_s; refuse the client with code otherwise."""
        try:
            async with asyncio.timeout(timeout_s):
                return await read_event(self.reader)
        except TimeoutError:
            raise _Refused(code, f"{what} within {timeout_s:.0f} s") from None

    async def _read_loop(self) -> None:
        await self._authenticate()
        while True:
            event = await self._next_event(self.server.idle_timeout_s, ERROR_TIMEOUT, "nothing")
            if event is None:
                return
            wait = max(self._events.spend(1), self._handle(event))
            if wait:
                if not self._throttled:
                    self._throttled = True
                    _LOGGER.warning(
                        "Client %s (%s) sends faster than real time: reading it at %g× real time",
                        self.peer,
                        self.name,
                        self.server.audio_rate,
                    )
                await asyncio.sleep(wait)

    async def _authenticate(self) -> None:
        """Read the token (the first event, within the hello timeout) and check it."""
        event = await self._next_event(self.server.hello_timeout_s, ERROR_UNAUTHORIZED, "no token")
        if event is None:
            raise ConnectionError("closed before sending a token")
        if not GuardModeAuth.is_type(event.type):
            raise _Refused(ERROR_UNAUTHORIZED, f"the first event must be {AUTH_TYPE}")
        token = GuardModeAuth.from_event(event).token
        # surrogatepass: JSON may carry a lone surrogate, which no token holds (and must not raise)
        if not hmac.compare_digest(
            token.encode(errors="surrogatepass"), self.server.token.encode()
        ):
            raise _Refused(ERROR_UNAUTHORIZED, "wrong token")
        if len(self.server.connections) - self.server.pending >= self.server.max_streams:
            raise _Refused(
                ERROR_TOO_MANY,
                f"the engine serves at most {self.server.max_streams} streams (--max-streams)",
            )
        self.authenticated = True
        _LOGGER.info(
            "Client %s connected (%d of %d streams)",
            self.peer,
            len(self.server.connections) - self.server.pending,
            self.server.max_streams,
        )

    def _handle(self, event: Event) -> float:
        """Act on an event; return how long to wait before reading more (audio budget)."""
        if AudioChunk.is_type(event.type):
            return self._audio_chunk(event)
        if AudioStart.is_type(event.type):
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
        return 0.0

    def _audio_chunk(self, event: Event) -> float:
        data = event.data
        try:
            rate, width, channels = bounds.check_format(
                data.get("rate"), data.get("width"), data.get("channels")
            )
        except bounds.PeerError as err:
            self.bad_chunks += 1
            self._send(Error(text=f"audio chunk skipped: {err}", code=ERROR_BAD_AUDIO).event())
            return 0.0
        if not event.payload:
            return 0.0
        if (problem := bounds.chunk_error(len(event.payload), rate, width, channels)) is not None:
            raise ProtocolError(problem)
        segment = self._segment or self._open_segment()
        segment.stream.push(self._converter.convert(event.payload, rate, width, channels))
        seconds = bounds.chunk_seconds(len(event.payload), rate, width, channels)
        self.seconds_in += seconds
        return self._audio.spend(seconds)

    def _open_segment(self) -> _Segment:
        if self._segment is None:
            self._converter.reset()
            self._segment = _Segment(
                self.server.worker,
                self.name,
                self._post,
                number=self._segments,
                embeddings=self._embeddings,
                every_window=self._every_window,
                status_interval_s=self.server.status_interval_s,
                queue_s=self.server.queue_s,
            )
            self._segments += 1
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
        if settings.embeddings is not None:
            self._embeddings = settings.embeddings
            if self._segment is not None:
                self._segment.stream.set_embeddings(settings.embeddings)
        if settings.every_window is not None:
            self._every_window = settings.every_window
            if self._segment is not None:
                self._segment.stream.set_every_window(settings.every_window)

    def _post(self, segment: _Segment, items: list[_Item], ended: bool) -> None:
        """Hand a segment's events to the event loop (called on the worker thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
            self._loop.call_soon_threadsafe(self._deliver, segment, items, ended)

    def _deliver(self, segment: _Segment, items: list[_Item], ended: bool) -> None:
        if self._closing:
            return
        older = segment in self._ending
        for event, droppable in items:
            if GuardModeStatus.is_type(event.type):
                event.data["bad_chunks"] = self.bad_chunks
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
            self._abort_reason = (
                f"disconnected: not reading ({len(self.outbox)} events, "
                f"{self.outbox.bytes} bytes waiting)"
            )
            self.writer.transport.abort()

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while (event := await self.outbox.get()) is not None:
                await async_write_event(event, self.writer)

    async def _finish_writing(self, writing: asyncio.Task[None], *, linger: bool) -> None:
        """Send what is queued (for a moment at most), then close the connection.

        With linger (a refused client), half-close and read what the client still sends for
        a moment before closing: closing with unread data resets the connection, and the
        client could lose the error that says why it was refused.
        """
        self.outbox.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(writing)
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        if linger and self._abort_reason is None and self.writer.can_write_eof():
            with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                self.writer.write_eof()
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    drained = 0
                    while drained < bounds.MAX_CHUNK_BYTES:
                        data = await self.reader.read(1 << 16)
                        if not data:
                            break
                        drained += len(data)
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.wait_closed()
        except TimeoutError, ConnectionError, OSError:
            self.writer.transport.abort()


class EngineServer:
    """The engine as a Wyoming service: one :class:`ServerWorker` for every connection."""

    def __init__(
        self,
        tagger: Tagger,
        *,
        token: str,
        ssl_context: ssl.SSLContext | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_pending: int = DEFAULT_MAX_PENDING,
        status_interval_s: float = STATUS_INTERVAL_S,
        queue_s: float = DEFAULT_QUEUE_S,
        max_queued_status: int = MAX_QUEUED_STATUS,
        outbox_bytes: int = bounds.OUTBOX_BYTES,
        audio_rate: float = bounds.RATE_FACTOR,
        send_buffer: int | None = None,
        hello_timeout_s: float = bounds.HELLO_TIMEOUT_S,
        idle_timeout_s: float = bounds.IDLE_TIMEOUT_S,
    ) -> None:
        """Serve with tagger to clients that send token; queue_s is audio waiting per stream.

        ``audio_rate`` is how much faster than real time a client's audio is read (tests of
        detection stream faster). ``send_buffer`` caps what is buffered for a client below its
        outbox (the socket's SO_SNDBUF and the transport's high-water mark; None: the
        defaults); tests use a small one to see a slow client's outbox fill.
        """
        if not token:
            raise ValueError("the engine service needs a token")
        self.worker = ServerWorker(tagger)
        self.token = token
        self.ssl_context = ssl_context
        self.max_streams = max_streams
        self.max_pending = max_pending
        self.status_interval_s = status_interval_s
        self.queue_s = queue_s
        self.max_queued_status = max_queued_status
        self.outbox_bytes = outbox_bytes
        self.audio_rate = audio_rate
        self.send_buffer = send_buffer
        self.hello_timeout_s = hello_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connections: list[Connection] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self._server: asyncio.Server | None = None
        self._refusals: dict[str, float] = {}  # address: when a refusal was last logged

    @property
    def port(self) -> int:
        """Return the port the server listens on (0 before start)."""
        if self._server is None or not self._server.sockets:
            return 0
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def pending(self) -> int:
        """Return how many connections wait for their token."""
        return sum(not c.authenticated for c in self.connections)

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
        """Start the worker and listen on host:port (0: any free port); return the port."""
        self.worker.start()
        try:
            self._server = await asyncio.start_server(
                self._accept,
                host,
                port,
                limit=MAX_HEADER,
            )  # TLS is taken per connection (Connection._authenticate), within the bounds
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

    def log_refusal(self, host: str, message: str) -> None:
        """Log a connection that never authenticated: once per address every 10 minutes."""
        now = time.monotonic()
        if now - self._refusals.get(host, -math.inf) < REFUSAL_LOG_INTERVAL_S:
            _LOGGER.debug("%s", message)
            return
        if len(self._refusals) >= 256:
            self._refusals.clear()
        self._refusals[host] = now
        _LOGGER.warning("%s (logged once per address every 10 min)", message)

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
        waiting = [c for c in self.connections if not c.authenticated]
        if len(waiting) >= self.max_pending:  # the longest-waiting makes room: not the newest
            oldest = min(waiting, key=lambda c: c.connected_at)
            oldest.close(f"closed: no token after {time.monotonic() - oldest.connected_at:.1f} s")
        connection = Connection(self, reader, writer)
        self.connections.append(connection)
        try:
            await connection.run()
        finally:
            self.connections.remove(connection)


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


def load_token(token_file: str | None) -> str:
    """Return the token from token_file, else from $GUARD_MODE_ENGINE_TOKEN; ValueError if bad."""
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as err:
            raise ValueError(f"cannot read the token file: {err}") from err
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ValueError(
            f"no token: set ${TOKEN_ENV} or use --token-file (the same token as in Guard "
            "Mode's options): the engine never listens without one"
        )
    if not token_ok(token):
        raise ValueError(
            f"the token must be at least {MIN_TOKEN_LENGTH} characters without spaces "
            "(Guard Mode's options suggest one)"
        )
    return token


def tls_context(cert: str, key: str | None) -> tuple[ssl.SSLContext, str]:
    """Return a server TLS context and the certificate's SHA-256 fingerprint; ValueError if bad."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text(encoding="ascii"))
    except (OSError, ssl.SSLError, ValueError, UnicodeError) as err:
        raise ValueError(f"cannot use the certificate {cert}: {err}") from err
    return context, fingerprint(der)


async def serve(server: EngineServer, uri: str, tls_fingerprint: str | None = None) -> None:
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
            "Guard Mode engine %s listening on tcp://%s:%d (%s backend, %s, at most %d streams, "
            "token required, %s)",
            ENGINE_VERSION,
            host,
            bound,
            tagger.backend,
            tagger.model_path.name,
            server.max_streams,
            "no TLS" if tls_fingerprint is None else f"TLS, certificate SHA-256 {tls_fingerprint}",
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
    token_file: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> int:
    """Load the model and serve (the ``serve`` command); return the exit status."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        parse_uri(uri)
        token = load_token(token_file)
        context, pin = tls_context(tls_cert, tls_key) if tls_cert else (None, None)
        started = time.perf_counter()
        tagger = load_shipped_tagger(backend=backend)
        shipped_head()  # checked now: a damaged head would stop every stream's evidence
    except (ModelError, ValueError) as err:  # HeadError is a ValueError
        _LOGGER.error("Cannot start: %s", err)  # noqa: TRY400 - the message is the whole story
        return 2
    _LOGGER.debug("Model loaded in %.2f s", time.perf_counter() - started)
    server = EngineServer(tagger, token=token, ssl_context=context, max_streams=max_streams)
    try:
        asyncio.run(serve(server, uri, pin))
    except OSError as err:
        _LOGGER.error("Cannot listen on %s: %s", uri, err)  # noqa: TRY400
        return 1
    return 0
