"""The engine service's client: one satellite stream relayed to a remote engine (no Home Assistant).

One TCP connection per stream speaks the engine protocol (:mod:`.protocol`): the token first,
then audio out, evidence and status back. With a certificate fingerprint in the settings the
connection is TLS, and the engine's certificate must be exactly that one (pinned) before the
token is sent.

The engine is a peer like any other (:mod:`.bounds`): its events are read with bounded sizes and
rates, and anything wrong on a connection — a refused token, a malformed or out-of-bounds event,
silence past the idle timeout, a broken connection, or a bug — ends that connection and the
stream reconnects with backoff. Audio is sent in segments (audio-start … audio-stop); the
engine's segment times are shifted back to stream time, with a :class:`.Gap` between segments.

What the host adds is injected: how a background task is started, the TLS context (the
fingerprint is checked here, so it verifies nothing itself), how an error is described in logs
(network errors name addresses), the timeouts, and ``on_up``/``on_down`` hooks that hear whether
the stream's connection works. Home Assistant's glue is ``remote.py``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
import contextlib
from dataclasses import dataclass, field, replace
import hmac
import logging
import random
import ssl
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping

from . import bounds, protocol
from .audio import SAMPLE_RATE, Pcm16
from .evidence import Evidence, EvidenceCallback, Gap, WindowEvidence
from .worker import StreamStats

_LOGGER = logging.getLogger(__name__)

QUEUE_S = 10.0  # audio waiting to be sent before the oldest is dropped
# Evidence an honest engine sends: about 2 windows a second and a stream, up to 3 more for an
# onset (at most one per 0.48 s: 8.3 a second in all), and a backlog after a stall; more than
# this is throttled (each item is decider work).
EVIDENCE_RATE = 10.0
EVIDENCE_BURST = 64.0

type TaskStarter = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
type ErrorText = Callable[[BaseException], str]
type UpHook = Callable[[EngineClient], None]
type DownHook = Callable[[EngineClient, str, BaseException | None], None]
type RefusedHook = Callable[[], None]
type ModelHook = Callable[[str], None]


class RemoteEngineError(Exception):
    """The remote engine can't be used; ``reason`` says why in one word (a translation key)."""

    def __init__(self, message: str, reason: str) -> None:
        """Describe the failure (logged, without host or address) with a reason key (shown)."""
        super().__init__(message)
        self.reason = reason


def normalize_fingerprint(text: str) -> str | None:
    """Return a SHA-256 fingerprint as 64 upper-case hex digits; None if it isn't one."""
    digits = "".join(ch for ch in text if ch not in ": \t").upper()
    if len(digits) != 64 or any(ch not in "0123456789ABCDEF" for ch in digits):
        return None
    return digits


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """Where the engine service is and how the client proves itself to it."""

    host: str
    port: int
    token: str
    fingerprint: str | None = None  # 64 hex digits: TLS, and only this certificate

    def __repr__(self) -> str:
        """Show neither host nor token."""
        return f"RemoteSettings(tls={self.fingerprint is not None})"


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """How long the client waits (seconds)."""

    connect_s: float = 5.0  # to connect, and for the engine's info
    idle_s: float = bounds.IDLE_TIMEOUT_S  # an engine silent this long is dropped
    keepalive_s: float = bounds.KEEPALIVE_S  # the client pings this often when it has nothing
    backoff_max_s: float = 30.0  # longest wait before reconnecting


def unverified_context() -> ssl.SSLContext:
    """Return a TLS context that checks no chain or name (the certificate is pinned instead)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def error_class(err: BaseException) -> str:
    """Describe an error by its class only (its text may name addresses)."""
    return type(err).__name__


@dataclass(frozen=True, slots=True)
class Connector:
    """Connects to the engine named by settings: TLS pinning, token, and the engine's info."""

    settings: RemoteSettings
    timeouts: ClientTimeouts = field(default_factory=ClientTimeouts)
    tls_context: Callable[[], ssl.SSLContext] = unverified_context
    error_text: ErrorText = error_class

    async def describe(self) -> protocol.GuardModeInfo:
        """Ask the engine what it is (test-before-configure); RemoteEngineError if it isn't."""
        _, writer, info = await self.open()
        await close_writer(writer)
        return info

    async def open(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, protocol.GuardModeInfo]:
        """Connect, authenticate and read the engine's info; RemoteEngineError otherwise."""
        reader, writer = await self._connect()
        try:
            async with asyncio.timeout(self.timeouts.connect_s):
                info = await _read_info(reader)
        except BaseException as err:
            await close_writer(writer)
            if isinstance(err, TimeoutError):
                raise RemoteEngineError("the remote engine did not answer", "not_engine") from err
            if isinstance(err, protocol.ProtocolError):
                raise RemoteEngineError(f"the remote engine: {err}", "not_engine") from err
            if isinstance(err, OSError):
                raise RemoteEngineError(
                    f"the remote engine closed the connection: {self.error_text(err)}",
                    "cannot_connect",
                ) from err
            raise
        if info.protocol < protocol.PROTOCOL_VERSION:
            await close_writer(writer)
            raise RemoteEngineError(
                f"the remote engine speaks protocol {info.protocol}, Guard Mode needs "
                f"{protocol.PROTOCOL_VERSION}: update the Guard Mode engine add-on",
                "not_engine",
            )
        return reader, writer, info

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect (TLS with the pinned certificate, if any) and send the token."""
        settings = self.settings
        context = self.tls_context() if settings.fingerprint else None
        try:
            async with asyncio.timeout(self.timeouts.connect_s):
                reader, writer = await asyncio.open_connection(
                    settings.host, settings.port, limit=protocol.MAX_HEADER, ssl=context
                )
        except (OSError, TimeoutError) as err:
            raise RemoteEngineError(
                f"cannot connect to the remote engine: {self.error_text(err)}", "cannot_connect"
            ) from err
        if settings.fingerprint is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            seen = normalize_fingerprint(protocol.fingerprint(der)) if der else None
            if seen is None or not hmac.compare_digest(seen, settings.fingerprint):
                await close_writer(writer)
                raise RemoteEngineError(
                    "the remote engine's TLS certificate is not the one whose fingerprint is in "
                    "the options (nothing was sent)",
                    "tls_mismatch",
                )
        try:
            await async_write_event(protocol.GuardModeAuth(settings.token).event(), writer)
            await async_write_event(Describe().event(), writer)
        except (OSError, ConnectionError) as err:
            await close_writer(writer)
            raise RemoteEngineError(
                f"the remote engine closed the connection: {self.error_text(err)}",
                "cannot_connect",
            ) from err
        return reader, writer


async def _read_info(reader: asyncio.StreamReader) -> protocol.GuardModeInfo:
    """Read events until the engine's info (or its refusal)."""
    while True:
        event = await protocol.read_event(reader)
        if event is None:
            raise RemoteEngineError("the remote engine closed the connection", "not_engine")
        if event.type == "info":
            return protocol.GuardModeInfo.from_event(event)
        if not Error.is_type(event.type):
            continue
        try:
            error = Error.from_event(event)
        except (KeyError, TypeError, ValueError) as err:
            raise protocol.ProtocolError(f"a malformed error event ({err!r})") from err
        if error.code == protocol.ERROR_UNAUTHORIZED:
            raise RemoteEngineError(
                "the remote engine refused the token: set the same token in its "
                "configuration and in Guard Mode's options",
                "invalid_auth",
            )
        raise RemoteEngineError(
            f"the remote engine said: {bounds.printable(error.text, 200)}", "not_engine"
        )


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection, waiting a second at most."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


def _create_task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro, name=name)


def _ignore(*_: object) -> None:
    """Hear nothing (the default hooks)."""


class EngineClient:
    """One satellite's stream to a remote engine (the same interface as the in-process stream).

    ``callback`` gets the stream's evidence in stream time, on the event loop. ``on_down`` hears
    why the connection failed (and the exception when it was a bug); ``on_up`` that an event the
    client could use arrived; ``on_refused`` that the engine refused the token (it was changed);
    ``on_model`` each status's model error ("" while the engine's model works).
    """

    def __init__(
        self,
        connector: Connector,
        name: str,
        callback: EvidenceCallback,
        *,
        start_task: TaskStarter = _create_task,
        on_up: UpHook = _ignore,
        on_down: DownHook = _ignore,
        on_refused: RefusedHook = _ignore,
        on_model: ModelHook = _ignore,
    ) -> None:
        """Relay the stream called name through connector (call :meth:`start`)."""
        self.name = name
        self.stats = StreamStats()
        self.closed = False
        self._connector = connector
        self._callback = callback
        self._start_task = start_task
        self._on_up = on_up
        self._on_down = on_down
        self._on_refused = on_refused
        self._on_model = on_model
        self._queue: deque[Pcm16] = deque()
        self._queued_s = 0.0
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._settings = protocol.GuardModeStream(name=name, embeddings=False)
        self._status: protocol.GuardModeStatus | None = None
        self._started = False  # audio-start sent: a segment is open on this connection
        # Stream time: each segment's evidence is shifted by where the segment began.
        self._bases: dict[int, float] = {}  # this connection's segments: their start time
        self._segments = 0  # segments begun on this connection
        self._sent_s = 0.0  # audio sent in the open segment
        self._next_base_s = 0.0  # where the next segment begins
        self._gap_s = 0.0  # time without audio to put before the next segment
        self._stop = False  # end the open segment (a gap follows)
        self._gap_before: set[int] = set()  # segments whose evidence begins with a Gap
        self._any_segment = False  # a segment was begun on any connection
        self._task: asyncio.Task[None] | None = None
        self._settings_dirty = True
        self._rng = random.Random()

    def start(self) -> asyncio.Task[None]:
        """Connect (and keep reconnecting) in the background; return the task doing it."""
        self._task = self._start_task(self._run(), f"guard_mode remote stream {self.name}")
        self._task.add_done_callback(self._ended)
        return self._task

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Note the end of the connection loop: fine when closed, an outage otherwise."""
        if not self.closed and not task.cancelled():
            error = task.exception()
            self._on_down(self, f"the stream to it stopped: {error!r}", error)

    def push(self, pcm: Pcm16) -> None:
        """Queue 16 kHz mono audio to send; the oldest is dropped (and counted) when it lags."""
        if self.closed or not len(pcm):
            return
        seconds = len(pcm) / SAMPLE_RATE
        self._queue.append(pcm)
        self._queued_s += seconds
        self._queued_bytes += pcm.nbytes
        self.stats.seconds_in += seconds
        while self._queue and (self._queued_s > QUEUE_S or self._queued_bytes > bounds.QUEUE_BYTES):
            old = self._queue.popleft()
            dropped = len(old) / SAMPLE_RATE
            self._queued_s -= dropped
            self._queued_bytes -= old.nbytes
            self.stats.seconds_dropped += dropped
            self.stats.chunks_dropped += 1
        self._wake.set()

    def mark_gap(self, seconds: float) -> None:
        """Time without audio (a reconnect): the segment ends, the next begins after a gap."""
        self._gap_s += max(seconds, 0.0)
        self._stop = True
        self._wake.set()

    def set_embeddings(self, wanted: bool) -> None:
        """Ask the engine to send each window's embedding (learning needs them) or not."""
        self._change(replace(self._settings, embeddings=wanted))

    def set_every_window(self, wanted: bool) -> None:
        """Ask the engine to tag every regular window, calm ones too (learning needs it) or not."""
        self._change(replace(self._settings, every_window=wanted))

    def _change(self, settings: protocol.GuardModeStream) -> None:
        if settings != self._settings:
            self._settings = settings
            self._settings_dirty = True
            self._wake.set()

    def status(self) -> dict[str, Any]:
        """Return counters for diagnostics."""
        status = self._status
        return {
            "engine": "remote",
            "connected": self._started or status is not None,
            "seconds_in": round(self.stats.seconds_in, 1),
            "seconds_dropped": round(
                self.stats.seconds_dropped + (status.seconds_dropped if status else 0.0), 2
            ),
            "chunks_dropped": self.stats.chunks_dropped,
            "bad_chunks": status.bad_chunks if status else 0,
        }

    def close(self) -> None:
        """Stop relaying; the connection closes."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        attempt = 0
        timeouts = self._connector.timeouts
        error_text = self._connector.error_text
        while not self.closed:
            try:
                reader, writer, _ = await self._connector.open()
            except RemoteEngineError as err:
                self._on_down(self, str(err), None)
                if err.reason == "invalid_auth":
                    self._on_refused()
                attempt += 1
                delay = min(timeouts.backoff_max_s, 2.0 ** min(attempt, 5))
                await asyncio.sleep(delay * self._rng.uniform(0.75, 1.25))
                continue
            attempt = 0
            self._bases.clear()
            self._segments = 0
            self._settings_dirty = True
            receiver = asyncio.create_task(self._receive(reader))
            try:
                await self._send(writer, receiver)
            except (OSError, ConnectionError, TimeoutError) as err:
                why = error_text(err)
                lost = why if why.startswith("the connection") else f"the connection failed: {why}"
                self._on_down(self, lost, None)
            except RemoteEngineError as err:
                self._on_down(self, str(err), None)
            except protocol.ProtocolError as err:
                self._on_down(self, f"it sent something Guard Mode can't use: {err}", None)
            except Exception as err:  # a bug must not end the stream: reconnect, log once
                self._on_down(self, f"unexpected error: {err!r}", err)
            finally:
                self._end_segment()  # the evidence of audio in flight is lost
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
                await close_writer(writer)
            if not self.closed:
                await asyncio.sleep(self._rng.uniform(0.5, 1.5))

    async def _send(self, writer: asyncio.StreamWriter, receiver: asyncio.Task[None]) -> None:
        await self._write(writer, Ping().event())  # its pong shows the stream works
        while not self.closed:
            if receiver.done():
                receiver.result()  # re-raise what ended it
                raise ConnectionError("the remote engine closed the connection")
            sent = False
            if self._settings_dirty:
                self._settings_dirty = False
                await self._write(writer, self._settings.event())
            if self._stop:
                self._stop = False
                if self._started:
                    self._end_segment()
                    await self._write(writer, AudioStop().event())
            while self._queue:
                pcm = self._queue.popleft()
                self._queued_s -= len(pcm) / SAMPLE_RATE
                self._queued_bytes -= pcm.nbytes
                if not self._started:
                    self._begin_segment()
                    await self._write(writer, AudioStart(SAMPLE_RATE, 2, 1).event())
                chunk = AudioChunk(SAMPLE_RATE, 2, 1, pcm.astype("<i2").tobytes())
                await self._write(writer, chunk.event())
                self._sent_s += len(pcm) / SAMPLE_RATE
                sent = True
            self._wake.clear()
            waiter = asyncio.create_task(self._wake.wait())
            try:
                done, _ = await asyncio.wait(
                    {waiter, receiver},
                    timeout=self._connector.timeouts.keepalive_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:  # also when the stream is closed while waiting: no task left behind
                waiter.cancel()
            if not done and not sent:  # nothing to say for a while: show we are here
                await self._write(writer, Ping().event())

    async def _write(self, writer: asyncio.StreamWriter, event: Event) -> None:
        """Send an event; an engine that takes nothing for the idle timeout is dropped.

        (A host that vanished without closing the connection stops taking audio once the
        buffers are full; the write would otherwise wait until TCP gives up, many minutes.)
        """
        idle_s = self._connector.timeouts.idle_s
        try:
            async with asyncio.timeout(idle_s):
                await async_write_event(event, writer)
        except TimeoutError:
            writer.transport.abort()  # what is buffered for it will never be taken: drop it
            raise RemoteEngineError(
                f"the remote engine took nothing for {idle_s:.0f} s", "cannot_connect"
            ) from None

    def _begin_segment(self) -> None:
        """Begin a segment: its evidence is shifted to where it begins in the stream."""
        self._started = True
        number = self._segments
        self._segments += 1
        self._next_base_s += self._gap_s
        self._gap_s = 0.0
        self._bases[number] = self._next_base_s
        if self._any_segment:  # frames and persistence must not span the break
            self._gap_before.add(number)
        self._any_segment = True
        self._sent_s = 0.0

    def _end_segment(self) -> None:
        """End the open segment (audio-stop, or the connection is gone)."""
        if self._started:
            self._started = False
            self._next_base_s += self._sent_s
            self._sent_s = 0.0

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        events = bounds.event_budget()
        evidence = bounds.Budget(EVIDENCE_RATE, EVIDENCE_BURST)
        idle_s = self._connector.timeouts.idle_s
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    event = await protocol.read_event(reader)
            except TimeoutError:
                raise RemoteEngineError(
                    f"the remote engine said nothing for {idle_s:.0f} s", "cannot_connect"
                ) from None
            if event is None:
                return
            wait = max(events.spend(1), evidence.spend(self._handle(event)))
            self._on_up(self)  # an event it could use: the connection works
            if wait:
                _LOGGER.debug("The remote engine sends too much for %s: waiting", self.name)
                await asyncio.sleep(wait)

    def _handle(self, event: Event) -> int:
        """Act on an event from the engine; return how many evidence items it held."""
        if protocol.GuardModeEvidence.is_type(event.type):
            message = protocol.GuardModeEvidence.from_event(event)
            base = self._bases.get(message.segment)
            if base is None:
                raise protocol.ProtocolError(f"evidence of segment {message.segment}, never begun")
            items = [_shifted(item, base) for item in message.items]
            if message.segment in self._gap_before:
                self._gap_before.discard(message.segment)
                items.insert(0, Gap(base))
            if not self.closed:
                self._callback(self, items, message.time_s + base)
            return len(message.items)
        if protocol.GuardModeStatus.is_type(event.type):
            self._status = protocol.GuardModeStatus.from_event(event)
            self._on_model(self._status.model_error)
        elif Error.is_type(event.type):
            error = Error.from_event(event)
            if error.code in (protocol.ERROR_UNAUTHORIZED, protocol.ERROR_TIMEOUT):
                raise RemoteEngineError(
                    f"the remote engine closed the stream: {bounds.printable(error.text, 200)}",
                    "cannot_connect",
                )
            _LOGGER.debug("Remote engine said about %s: %s", self.name, error.code)
        return 0


def _shifted(item: Evidence, base_s: float) -> Evidence:
    """Return item with its segment times moved to stream times (a segment began at base_s)."""
    if not base_s:
        return item
    if isinstance(item, Gap):
        return Gap(item.time_s + base_s)
    if isinstance(item, WindowEvidence):
        return replace(
            item,
            start_s=item.start_s + base_s,
            end_s=item.end_s + base_s,
            onset_s=item.onset_s + base_s,
        )
    return replace(item, start_s=item.start_s + base_s, end_s=item.end_s + base_s)
