"""The remote engine: satellites' audio relayed to a Guard Mode engine service (the add-on).

One TCP connection per satellite stream speaks the engine protocol (engine/protocol.py): the
token first, then audio out, evidence and status back into the same path as the in-process
engine's evidence: the satellite's decider, on the event loop. With a certificate fingerprint in
the options the connection is TLS, and the engine's certificate must be exactly that one (pinned)
before the token is sent.

The engine is a peer like any other (engine/bounds.py): its events are read with bounded sizes
and rates, and anything wrong on a connection — a refused token, a malformed or out-of-bounds
event, silence past the idle timeout, a broken connection, or a bug — ends that connection and
the stream reconnects with backoff. While any stream is down the satellites' detection entities
are unavailable, the outage is logged once, and a repair explains it after a minute; both go
when every stream is back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
import contextlib
from dataclasses import dataclass, replace
import hmac
import logging
import random
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.util.ssl import client_context_no_verify
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Describe
from wyoming.ping import Ping

from .const import (
    CONF_ENGINE_FINGERPRINT,
    CONF_ENGINE_HOST,
    CONF_ENGINE_PORT,
    CONF_ENGINE_TOKEN,
    DOMAIN,
)
from .engine import (
    DEFAULT_MODEL,
    SAMPLE_RATE,
    Evidence,
    EvidenceCallback,
    Gap,
    ModelError,
    Pcm16,
    StreamStats,
    Tagger,
    WindowEvidence,
    bounds,
    load_shipped_tagger,
    protocol,
)
from .redact import error_text

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
QUEUE_S = 10.0  # audio waiting to be sent before the oldest is dropped
BACKOFF_MAX_S = 30.0
ISSUE_REMOTE = "remote_engine_unreachable"
REPAIR_AFTER_S = 60.0
# Evidence an honest engine sends: about 2 windows a second and a stream, a few more at onsets,
# and a backlog after a stall; more than this is throttled (each item is decider work).
EVIDENCE_RATE = 8.0
EVIDENCE_BURST = 64.0


class RemoteEngineError(Exception):
    """The remote engine can't be used; ``reason`` is a translation key of the options flow."""

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
    """Where the engine service is and how Guard Mode proves itself to it."""

    host: str
    port: int
    token: str
    fingerprint: str | None = None  # 64 hex digits: TLS, and only this certificate

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RemoteSettings:
        """Return the settings the integration's options hold."""
        pin = options.get(CONF_ENGINE_FINGERPRINT) or None
        return cls(
            host=str(options[CONF_ENGINE_HOST]),
            port=int(options[CONF_ENGINE_PORT]),
            token=str(options.get(CONF_ENGINE_TOKEN) or ""),
            fingerprint=normalize_fingerprint(pin) if pin else None,
        )

    def __repr__(self) -> str:
        """Show neither host nor token."""
        return f"RemoteSettings(tls={self.fingerprint is not None})"


async def _connect(
    settings: RemoteSettings,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect (TLS with the pinned certificate, if any) and send the token."""
    context = client_context_no_verify() if settings.fingerprint else None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                settings.host, settings.port, limit=protocol.MAX_HEADER, ssl=context
            )
    except (OSError, TimeoutError) as err:
        raise RemoteEngineError(
            f"cannot connect to the remote engine: {error_text(err)}", "cannot_connect"
        ) from err
    if settings.fingerprint is not None:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        seen = normalize_fingerprint(protocol.fingerprint(der)) if der else None
        if seen is None or not hmac.compare_digest(seen, settings.fingerprint):
            await _close(writer)
            raise RemoteEngineError(
                "the remote engine's TLS certificate is not the one whose fingerprint is in "
                "the options (nothing was sent)",
                "tls_mismatch",
            )
    try:
        await async_write_event(protocol.GuardModeAuth(settings.token).event(), writer)
        await async_write_event(Describe().event(), writer)
    except (OSError, ConnectionError) as err:
        await _close(writer)
        raise RemoteEngineError(
            f"the remote engine closed the connection: {error_text(err)}", "cannot_connect"
        ) from err
    return reader, writer


async def _handshake(
    settings: RemoteSettings,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, protocol.GuardModeInfo]:
    """Connect, authenticate and read the engine's info; RemoteEngineError otherwise."""
    reader, writer = await _connect(settings)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            info = await _read_info(reader)
    except BaseException as err:
        await _close(writer)
        if isinstance(err, TimeoutError):
            raise RemoteEngineError("the remote engine did not answer", "not_engine") from err
        if isinstance(err, protocol.ProtocolError):
            raise RemoteEngineError(f"the remote engine: {err}", "not_engine") from err
        if isinstance(err, OSError):
            raise RemoteEngineError(
                f"the remote engine closed the connection: {error_text(err)}", "cannot_connect"
            ) from err
        raise
    if info.protocol < protocol.PROTOCOL_VERSION:
        await _close(writer)
        raise RemoteEngineError(
            f"the remote engine speaks protocol {info.protocol}, Guard Mode needs "
            f"{protocol.PROTOCOL_VERSION}: update the Guard Mode engine add-on",
            "not_engine",
        )
    return reader, writer, info


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
        error = Error.from_event(event)
        if error.code == protocol.ERROR_UNAUTHORIZED:
            raise RemoteEngineError(
                "the remote engine refused the token: set the same token in its "
                "configuration and in Guard Mode's options",
                "invalid_auth",
            )
        raise RemoteEngineError(
            f"the remote engine said: {bounds.printable(error.text, 200)}", "not_engine"
        )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


async def async_describe(settings: RemoteSettings) -> protocol.GuardModeInfo:
    """Ask a remote engine what it is (test-before-configure); RemoteEngineError if it isn't."""
    _, writer, info = await _handshake(settings)
    await _close(writer)
    return info


class RemoteEngine:
    """Relays satellites to a remote engine; tracks whether every stream reaches it."""

    def __init__(
        self, hass: HomeAssistant, settings: RemoteSettings, info: protocol.GuardModeInfo
    ) -> None:
        """Use the engine the settings name (info: what it said it is)."""
        self.hass = hass
        self.settings = settings
        self.info = info
        self.backend = "remote"
        self.available = True
        self._streams: list[RemoteStream] = []
        self._failing: dict[RemoteStream, str] = {}  # streams whose connection is down: why
        self._listeners: list[Callable[[], None]] = []
        self._repair_timer: asyncio.TimerHandle | None = None
        self._tagger: Tagger | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # streams' connections, closed or not

    def open_stream(self, name: str, callback: EvidenceCallback) -> RemoteStream:
        """Open a satellite's stream to the engine (connects in the background)."""
        stream = RemoteStream(self, name, callback)
        self._streams.append(stream)
        stream.start()
        return stream

    def check_load(self, hass: HomeAssistant, satellites: int) -> None:
        """Do nothing: the remote engine has its own CPU."""

    async def async_tagger(self, hass: HomeAssistant) -> Tagger:
        """Return a local tagger for analyzing files (loaded on first use)."""
        if self._tagger is None:
            try:
                self._tagger = await hass.async_add_executor_job(load_shipped_tagger)
            except ModelError as err:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="model_unusable",
                    translation_placeholders={
                        "file": str(DEFAULT_MODEL),
                        "error": str(err).removeprefix(f"{DEFAULT_MODEL}: "),
                    },
                ) from err
        return self._tagger

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener when availability changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def diagnostics(self) -> dict[str, Any]:
        """Return the engine's state (no host, no token)."""
        return {
            "backend": "remote",
            "remote_backend": self.info.backend,
            "remote_version": self.info.version,
            "tls": self.settings.fingerprint is not None,
            "available": self.available,
            "streams": len(self._streams),
            "streams_down": len(self._failing),
        }

    async def async_stop(self, hass: HomeAssistant) -> None:
        """Close every stream and wait until their connections are gone."""
        for stream in list(self._streams):
            stream.close()
        tasks, self._tasks = self._tasks, set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._repair_timer is not None:
            self._repair_timer.cancel()
            self._repair_timer = None
        ir.async_delete_issue(hass, DOMAIN, ISSUE_REMOTE)

    def _forget(self, stream: RemoteStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        if self._failing.pop(stream, None) is not None:
            self._update()

    @callback
    def _down(self, stream: RemoteStream, error: str, exc: BaseException | None = None) -> None:
        """Note that a stream's connection failed (it reconnects by itself)."""
        if stream.closed:
            return  # stopping: the last streams' failures mean nothing
        self._failing[stream] = error
        if not self.available:
            _LOGGER.debug("Remote engine still unreachable (%s): %s", stream.name, error)
        self._update(exc)

    @callback
    def _up(self, stream: RemoteStream) -> None:
        """Note that a stream's connection works."""
        if self._failing.pop(stream, None) is not None:
            self._update()

    @callback
    def _update(self, exc: BaseException | None = None) -> None:
        available = not self._failing
        if available == self.available:
            return
        self.available = available
        if available:
            _LOGGER.info("The remote engine is back")
            if self._repair_timer is not None:
                self._repair_timer.cancel()
                self._repair_timer = None
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_REMOTE)
        else:
            error = next(iter(self._failing.values()))
            # Once per outage; a bug (not a network or protocol failure) with its traceback.
            _LOGGER.warning("The remote engine is unreachable: %s", error, exc_info=exc)
            self._repair_timer = self.hass.loop.call_later(REPAIR_AFTER_S, self._raise_repair)
        for listener in list(self._listeners):
            listener()

    @callback
    def _raise_repair(self) -> None:
        self._repair_timer = None
        if self.available or not self._failing:
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            ISSUE_REMOTE,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_REMOTE,
            translation_placeholders={"error": next(iter(self._failing.values()))},
        )


class RemoteStream:
    """One satellite's stream to the remote engine (same interface as the in-process stream)."""

    def __init__(self, engine: RemoteEngine, name: str, callback: EvidenceCallback) -> None:
        """Create through :meth:`RemoteEngine.open_stream`."""
        self.name = name
        self.stats = StreamStats()
        self.closed = False
        self._engine = engine
        self._callback = callback
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

    def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""
        self._task = self._engine.hass.async_create_background_task(
            self._run(), f"{DOMAIN} remote stream {self.name}", eager_start=True
        )
        self._engine._tasks.add(self._task)
        self._task.add_done_callback(self._engine._tasks.discard)
        self._task.add_done_callback(self._ended)

    @callback
    def _ended(self, task: asyncio.Task[None]) -> None:
        """Note the end of the connection loop: fine when closed, an outage otherwise."""
        if not self.closed and not task.cancelled():
            error = task.exception()
            self._engine._down(self, f"the stream to it stopped: {error!r}", error)

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
        if wanted != self._settings.embeddings:
            self._settings = replace(self._settings, embeddings=wanted)
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
        self._engine._forget(self)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        attempt = 0
        engine = self._engine
        while not self.closed:
            try:
                reader, writer, _ = await _handshake(engine.settings)
            except RemoteEngineError as err:
                engine._down(self, str(err))
                attempt += 1
                delay = min(BACKOFF_MAX_S, 2.0 ** min(attempt, 5))
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
                engine._down(self, f"the connection failed: {error_text(err)}")
            except RemoteEngineError as err:
                engine._down(self, str(err))
            except protocol.ProtocolError as err:
                engine._down(self, f"it sent something Guard Mode can't use: {err}")
            except Exception as err:  # a bug must not end the stream: reconnect, log once
                engine._down(self, f"unexpected error: {err!r}", err)
            finally:
                self._end_segment()  # the evidence of audio in flight is lost
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
                await _close(writer)
            if not self.closed:
                await asyncio.sleep(self._rng.uniform(0.5, 1.5))

    async def _send(self, writer: asyncio.StreamWriter, receiver: asyncio.Task[None]) -> None:
        await async_write_event(Ping().event(), writer)  # its pong shows the stream works
        while not self.closed:
            if receiver.done():
                receiver.result()  # re-raise what ended it
                raise ConnectionError("the remote engine closed the connection")
            sent = False
            if self._settings_dirty:
                self._settings_dirty = False
                await async_write_event(self._settings.event(), writer)
            if self._stop:
                self._stop = False
                if self._started:
                    self._end_segment()
                    await async_write_event(AudioStop().event(), writer)
            while self._queue:
                pcm = self._queue.popleft()
                self._queued_s -= len(pcm) / SAMPLE_RATE
                self._queued_bytes -= pcm.nbytes
                if not self._started:
                    self._begin_segment()
                    await async_write_event(AudioStart(SAMPLE_RATE, 2, 1).event(), writer)
                chunk = AudioChunk(SAMPLE_RATE, 2, 1, pcm.astype("<i2").tobytes())
                await async_write_event(chunk.event(), writer)
                self._sent_s += len(pcm) / SAMPLE_RATE
                sent = True
            self._wake.clear()
            waiter = asyncio.create_task(self._wake.wait())
            try:
                done, _ = await asyncio.wait(
                    {waiter, receiver},
                    timeout=bounds.KEEPALIVE_S,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:  # also when the stream is closed while waiting: no task left behind
                waiter.cancel()
            if not done and not sent:  # nothing to say for a while: show we are here
                await async_write_event(Ping().event(), writer)

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
        while True:
            try:
                async with asyncio.timeout(bounds.IDLE_TIMEOUT_S):
                    event = await protocol.read_event(reader)
            except TimeoutError:
                raise RemoteEngineError(
                    f"the remote engine said nothing for {bounds.IDLE_TIMEOUT_S:.0f} s",
                    "cannot_connect",
                ) from None
            if event is None:
                return
            wait = max(events.spend(1), evidence.spend(self._handle(event)))
            self._engine._up(self)  # an event it could use: the connection works
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
