"""The remote engine: satellites' audio relayed to a Guard Mode engine service (the add-on).

One TCP connection per satellite stream speaks the engine protocol (engine/protocol.py): audio
goes out, detections and status come back into the same decider → entities path as with the
in-process engine. Connections reconnect with backoff like satellites do; while the engine can't
be reached the satellites' detection entities are unavailable and a repair explains why.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
import logging
import random
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import Event, async_write_event
from wyoming.info import Describe

from .const import DOMAIN
from .engine import protocol
from .engine.clips import ClipRecorder
from .engine.decider import DeciderEvent, Floats
from .engine.labels import Sound
from .engine.pcm import AudioFormatError, PcmConverter
from .engine.tagger import DEFAULT_MODEL, ModelError, Tagger, load_shipped_tagger
from .engine.worker import ClipCallback, StreamStats

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
QUEUE_S = 10.0  # audio waiting to be sent before the oldest is dropped
BACKOFF_MAX_S = 30.0
ISSUE_REMOTE = "remote_engine_unreachable"
REPAIR_AFTER_S = 60.0

# (stream, events, stream time when produced): the same shape as the in-process engine's.
RemoteCallback = Callable[["RemoteStream", list[DeciderEvent], float], None]


class RemoteEngineError(Exception):
    """The remote engine can't be used; ``reason`` is a translation key of the options flow."""

    def __init__(self, message: str, reason: str) -> None:
        """Describe the failure (logged) with a reason key (shown)."""
        super().__init__(message)
        self.reason = reason


async def _connect(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await asyncio.open_connection(host, port, limit=protocol.MAX_HEADER)
    except (OSError, TimeoutError) as err:
        raise RemoteEngineError(
            f"cannot connect to {host}:{port}: {err}", "cannot_connect"
        ) from err


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


async def async_describe(host: str, port: int) -> protocol.GuardModeInfo:
    """Ask a remote engine what it is (test-before-configure); RemoteEngineError if it isn't."""
    reader, writer = await _connect(host, port)
    try:
        await async_write_event(Describe().event(), writer)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while True:
                event = await protocol.read_event(reader)
                if event is None:
                    raise RemoteEngineError(f"{host}:{port} closed the connection", "not_engine")
                if event.type == "info":
                    return protocol.GuardModeInfo.from_event(event)
    except TimeoutError as err:
        raise RemoteEngineError(f"{host}:{port} did not answer", "not_engine") from err
    except protocol.ProtocolError as err:
        raise RemoteEngineError(f"{host}:{port}: {err}", "not_engine") from err
    finally:
        await _close(writer)


class RemoteEngine:
    """Relays satellites to a remote engine; tracks whether it can be reached."""

    def __init__(self, hass: HomeAssistant, host: str, port: int, info: protocol.GuardModeInfo):
        """Use the engine at host:port (info: what it said it is)."""
        self.hass = hass
        self.host = host
        self.port = port
        self.info = info
        self.backend = "remote"
        self.available = True
        self._streams: list[RemoteStream] = []
        self._listeners: list[Callable[[], None]] = []
        self._repair_timer: asyncio.TimerHandle | None = None
        self._tagger: Tagger | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # streams' connections, closed or not

    def open_stream(self, name: str, callback: RemoteCallback) -> RemoteStream:
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
        """Return the engine's state (no host)."""
        return {
            "backend": "remote",
            "remote_backend": self.info.backend,
            "remote_version": self.info.version,
            "available": self.available,
            "streams": len(self._streams),
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

    @callback
    def _reachable(self, reachable: bool, error: str | None = None) -> None:
        if not self._streams and not reachable:
            return  # stopping: the last streams' failures mean nothing
        if reachable and not self.available:
            _LOGGER.info("Remote engine %s:%s is back", self.host, self.port)
        if not reachable and self.available:
            _LOGGER.warning("Remote engine %s:%s is unreachable: %s", self.host, self.port, error)
            self._repair_timer = self.hass.loop.call_later(
                REPAIR_AFTER_S, self._raise_repair, error or ""
            )
        if reachable:
            if self._repair_timer is not None:
                self._repair_timer.cancel()
                self._repair_timer = None
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_REMOTE)
        if reachable != self.available:
            self.available = reachable
            for listener in list(self._listeners):
                listener()

    @callback
    def _raise_repair(self, error: str) -> None:
        self._repair_timer = None
        if self.available:
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            ISSUE_REMOTE,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_REMOTE,
            translation_placeholders={"error": error},
        )


class RemoteStream:
    """One satellite's stream to the remote engine (same interface as the in-process stream)."""

    def __init__(self, engine: RemoteEngine, name: str, callback: RemoteCallback) -> None:
        """Create through :meth:`RemoteEngine.open_stream`."""
        self.name = name
        self.stats = StreamStats()
        self.closed = False
        self.recorder: ClipRecorder | None = None
        self._engine = engine
        self._callback = callback
        self._queue: deque[tuple[bytes, int, int, int]] = deque()
        self._queued_s = 0.0
        self._wake = asyncio.Event()
        self._settings = protocol.GuardModeStream(
            name=name, enabled=frozenset(Sound), media_player_playing=False
        )
        self._status: protocol.GuardModeStatus | None = None
        self._peak_db: float | None = None
        self._time_s = 0.0
        self._format: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_clip: ClipCallback | None = None
        self._clip_converter: PcmConverter | None = None
        self._settings_dirty = True
        self._rng = random.Random()

    def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""
        self._task = self._engine.hass.async_create_background_task(
            self._run(), f"{DOMAIN} remote stream {self.name}", eager_start=True
        )
        self._engine._tasks.add(self._task)
        self._task.add_done_callback(self._engine._tasks.discard)

    def push_pcm(self, data: bytes, rate: int, width: int, channels: int) -> None:
        """Queue PCM to send; the oldest is dropped (and counted) if the engine falls behind."""
        if self.closed or not data:
            return
        seconds = len(data) / max(rate * width * channels, 1)
        self._queue.append((data, rate, width, channels))
        self._queued_s += seconds
        self.stats.seconds_in += seconds
        while self._queued_s > QUEUE_S and len(self._queue) > 1:
            old = self._queue.popleft()
            dropped = len(old[0]) / max(old[1] * old[2] * old[3], 1)
            self._queued_s -= dropped
            self.stats.seconds_dropped += dropped
            self.stats.chunks_dropped += 1
        self._record(data, rate, width, channels)
        self._wake.set()

    def mark_gap(self, seconds: float) -> None:
        """Time without audio: the engine counts stream time by audio, nothing to tell it."""

    def set_media_player_playing(self, playing: bool) -> None:
        """Tell the engine whether a media player near this microphone plays."""
        self._send_settings(media_player_playing=playing)

    def set_enabled_sounds(self, sounds: frozenset[str]) -> None:
        """Detect only these sounds."""
        self._send_settings(enabled=sounds)

    def configure(self, **changes: Any) -> None:
        """Apply what the engine protocol carries (enabled sounds); learning stays in-process."""
        if "enabled" in changes:
            self._send_settings(enabled=frozenset(s for s in changes["enabled"] if s in Sound))

    def detection_embeddings(self, detection_id: str) -> None:
        """Return None: the remote engine keeps embeddings to itself."""

    def recent_detection_embeddings(self) -> dict[str, Floats]:
        """Return nothing: the remote engine keeps embeddings to itself."""
        return {}

    def background_embeddings(self) -> None:
        """Return None: the remote engine keeps embeddings to itself."""

    def take_peak_level(self) -> float | None:
        """Return the loudest window level reported since the last call."""
        level, self._peak_db = self._peak_db, None
        return level

    @property
    def time_s(self) -> float:
        """Return the engine's stream time of the latest report."""
        return self._time_s

    def status(self) -> dict[str, Any]:
        """Return counters for diagnostics."""
        status = self._status
        return {
            "engine": "remote",
            "connected": self._format is not None or status is not None,
            "seconds_in": round(self.stats.seconds_in, 1),
            "seconds_dropped": round(self.stats.seconds_dropped, 2),
            "chunks_dropped": self.stats.chunks_dropped,
            "windows": status.windows if status else 0,
            "windows_below_gate": status.gated_windows if status else 0,
            "media_s": status.media_s if status else 0.0,
            "bad_chunks": status.bad_chunks if status else 0,
            "media_player_playing": self._settings.media_player_playing,
            "enabled_sounds": sorted(self._settings.enabled or ()),
        }

    def record_clips(self, recorder: ClipRecorder | None, on_clip: ClipCallback | None) -> None:
        """Keep pre-roll audio locally for evidence clips (None: keep nothing)."""
        self.recorder, self._on_clip = recorder, on_clip
        self._clip_converter = None

    def close(self) -> None:
        """Stop relaying; the connection closes."""
        self.closed = True
        self._engine._forget(self)
        if self._task is not None:
            self._task.cancel()
        recorder, on_clip = self.recorder, self._on_clip
        self.recorder = None
        if recorder is not None and on_clip is not None:
            for clip_id, pcm in recorder.flush():
                on_clip(clip_id, pcm)

    def _send_settings(self, **changes: Any) -> None:
        self._settings = protocol.GuardModeStream(
            name=self.name,
            enabled=changes.get("enabled", self._settings.enabled),
            media_player_playing=changes.get(
                "media_player_playing", self._settings.media_player_playing
            ),
        )
        self._settings_dirty = True
        self._wake.set()

    def _record(self, data: bytes, rate: int, width: int, channels: int) -> None:
        """Feed the local clip recorder (audio goes to the engine; clips stay here)."""
        recorder, on_clip = self.recorder, self._on_clip
        if recorder is None or on_clip is None:
            return
        try:
            if self._clip_converter is None or self._clip_converter.format != (
                rate,
                width,
                channels,
            ):
                self._clip_converter = PcmConverter(rate, width, channels)
            samples = self._clip_converter.convert(data)
        except AudioFormatError:
            return
        for clip_id, pcm in recorder.push(samples):
            on_clip(clip_id, pcm)

    async def _run(self) -> None:
        attempt = 0
        engine = self._engine
        while not self.closed:
            try:
                reader, writer = await _connect(engine.host, engine.port)
            except RemoteEngineError as err:
                engine._reachable(False, str(err))
                attempt += 1
                delay = min(BACKOFF_MAX_S, 2.0 ** min(attempt, 5))
                await asyncio.sleep(delay * self._rng.uniform(0.75, 1.25))
                continue
            engine._reachable(True)
            attempt = 0
            self._format = None
            self._settings_dirty = True
            receiver = asyncio.create_task(self._receive(reader))
            try:
                await self._send(writer, receiver)
            except (OSError, protocol.ProtocolError, ConnectionError) as err:
                engine._reachable(False, str(err))
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
                await _close(writer)
            if not self.closed:
                await asyncio.sleep(self._rng.uniform(0.5, 1.5))

    async def _send(self, writer: asyncio.StreamWriter, receiver: asyncio.Task[None]) -> None:
        while not self.closed:
            if receiver.done():
                receiver.result()  # re-raise what ended it
                raise ConnectionError("the remote engine closed the connection")
            if self._settings_dirty:
                self._settings_dirty = False
                await async_write_event(self._settings.event(), writer)
            while self._queue:
                data, rate, width, channels = self._queue.popleft()
                self._queued_s -= len(data) / max(rate * width * channels, 1)
                if self._format != (rate, width, channels):
                    self._format = (rate, width, channels)
                    await async_write_event(AudioStart(rate, width, channels).event(), writer)
                await async_write_event(AudioChunk(rate, width, channels, data).event(), writer)
            self._wake.clear()
            waiter = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the stream is closed while waiting: no task left behind
                waiter.cancel()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        while True:
            event = await protocol.read_event(reader)
            if event is None:
                return
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if protocol.GuardModeDetection.is_type(event.type):
            detection = protocol.GuardModeDetection.from_event(event)
            self._time_s = max(self._time_s, detection.time_s)
            if not self.closed:
                self._callback(self, [detection.decider_event()], detection.time_s)
        elif protocol.GuardModeStatus.is_type(event.type):
            status = protocol.GuardModeStatus.from_event(event)
            self._status = status
            self._time_s = status.time_s
            if status.level_db is not None and (
                self._peak_db is None or status.level_db > self._peak_db
            ):
                self._peak_db = status.level_db
        elif event.type == "error":
            _LOGGER.debug("Remote engine said about %s: %s", self.name, event.data)
