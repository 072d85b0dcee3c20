"""The engine service's protocol: Wyoming events between the engine server and its clients.

One TCP connection (TLS where the service is given a certificate) carries one satellite's
stream. Framing is Wyoming's (a JSON header line, optional JSON data, optional payload);
:func:`read_event` reads it with bounded sizes (see :mod:`.bounds`).

The first event of a client is ``guard-mode-auth`` (:class:`GuardModeAuth`) with the service's
token, within ``bounds.HELLO_TIMEOUT_S``; anything else, or a wrong token, is answered with an
``error`` (code ``unauthorized``) and the connection is closed. A client then says something at
least every ``bounds.IDLE_TIMEOUT_S`` (a ``ping`` when it has no audio), or it is closed.

Client → server: ``describe`` (answered with ``info`` carrying a ``guard_mode`` block, see
:class:`GuardModeInfo`), ``guard-mode-stream`` (:class:`GuardModeStream`, optional, any time),
``audio-start`` / ``audio-chunk`` / ``audio-stop`` (any PCM format; ``audio-stop`` closes the
open detections), ``ping``.

Server → client: ``guard-mode-detection`` (:class:`GuardModeDetection`), ``guard-mode-status``
(:class:`GuardModeStatus`, about every 5 s of audio), ``error`` (wyoming's Error) and ``pong``.

A stream begins with the first ``audio-start`` or ``audio-chunk`` after connecting or after an
``audio-stop``; its times (``time_s``, ``start_s``, ``end_s``) are seconds of audio since then,
audio the engine had to drop included. After ``audio-stop`` the server sends the offsets of the
open detections and a last status, before any event of the next stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import hashlib
import math
from typing import Any, Final

from wyoming.event import Event, Eventable
from wyoming.info import Info

from . import bounds
from .decider import DeciderEvent, Detection, EventKind, Reason
from .labels import Sound

ENGINE_VERSION: Final = "0.1.0"  # kept equal to manifest.json and addon/config.yaml (tested)
PROTOCOL_VERSION: Final = 1  # bumped when an event or field changes meaning
DEFAULT_PORT: Final = 10800
MIN_TOKEN_LENGTH: Final = 16

MAX_HEADER: Final = bounds.MAX_HEADER  # one JSON line
MAX_DATA: Final = bounds.MAX_EVENT_DATA
MAX_PAYLOAD: Final = bounds.MAX_CHUNK_BYTES

AUTH_TYPE: Final = "guard-mode-auth"
STREAM_TYPE: Final = "guard-mode-stream"
DETECTION_TYPE: Final = "guard-mode-detection"
STATUS_TYPE: Final = "guard-mode-status"
INFO_KEY: Final = "guard_mode"

# Error codes the server sends (wyoming Error.code).
ERROR_BAD_AUDIO: Final = "bad-audio"  # a chunk that can't be used; it was skipped
ERROR_BAD_EVENT: Final = "bad-event"  # an event whose data can't be used; it was ignored
ERROR_PROTOCOL: Final = "protocol"  # not Wyoming: the server closes the connection
ERROR_TOO_MANY: Final = "too-many-streams"  # the server is full: it closes the connection
ERROR_UNAUTHORIZED: Final = "unauthorized"  # no or a wrong token: it closes the connection
ERROR_TIMEOUT: Final = "timeout"  # nothing said in time: it closes the connection


class ProtocolError(bounds.PeerError):
    """Bytes that are not Wyoming events, or event data that can't be used."""


async def read_event(
    reader: asyncio.StreamReader, *, max_data: int = MAX_DATA, max_payload: int = MAX_PAYLOAD
) -> Event | None:
    """Read one Wyoming event with bounded sizes; None when the peer closed the connection.

    Whatever the bytes are, a failure is a ProtocolError (see :mod:`.bounds`). The reader must
    have been created with ``limit=MAX_HEADER`` for the header bound to hold.
    """
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial.strip():
            return None
        raise ProtocolError("connection closed in the middle of an event") from err
    except asyncio.LimitOverrunError as err:
        raise ProtocolError(f"event header longer than {MAX_HEADER // 1024} KiB") from err
    try:
        header = bounds.parse_json_object(line, "event header")
        kind = header.get("type")
        data = header.get("data") or {}
        if not isinstance(kind, str) or not kind or not isinstance(data, dict):
            raise ProtocolError("not a Wyoming event header")
        data_length = bounds.whole_number(header.get("data_length") or 0, "data_length")
        payload_length = bounds.whole_number(header.get("payload_length") or 0, "payload_length")
        if data_length > max_data:
            raise ProtocolError(
                f"{kind[:40]!r} event data of {data_length} bytes is too big (at most {max_data})"
            )
        if payload_length > max_payload:
            raise ProtocolError(
                f"{kind[:40]!r} event payload of {payload_length} bytes is too big "
                f"(at most {max_payload})"
            )
        if data_length:
            data.update(bounds.parse_json_object(await reader.readexactly(data_length), "data"))
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError as err:
        raise ProtocolError("connection closed in the middle of an event") from err
    except bounds.PeerError as err:
        raise ProtocolError(str(err)) from None
    return Event(type=kind, data=data, payload=payload)


def fingerprint(der: bytes) -> str:
    """Return a certificate's SHA-256 fingerprint as colon-separated hex (what clients pin)."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


# --- field helpers -------------------------------------------------------------------------


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{key!r} must be a finite number, got {value!r:.40}")
    return float(value)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{key!r} must be a count, got {value!r:.40}")
    return value


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{key!r} must be a string, got {value!r:.40}")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise ProtocolError(f"{key!r} must be true or false, got {value!r:.40}")
    return value


def _sounds(value: Any, key: str) -> frozenset[Sound]:
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"{key!r} must be a list of sound keys")
    try:
        return frozenset(Sound(item) for item in value)
    except (ValueError, TypeError) as err:
        known = ", ".join(Sound)
        raise ProtocolError(f"{key!r} has an unknown sound key (known: {known})") from err


def _finite(value: float, default: float) -> float:
    """Return value, or default when it is NaN or infinite (JSON has neither)."""
    return value if math.isfinite(value) else default


def _sorted(sounds: Iterable[Sound]) -> list[str]:
    order = list(Sound)
    return [str(sound) for sound in sorted(sounds, key=order.index)]


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardModeInfo:
    """The ``guard_mode`` block of the server's ``info`` answer to ``describe``."""

    version: str  # engine version
    backend: str  # "onnxruntime" or "numpy"
    model: str  # model file name, "yamnet.onnx"
    sounds: tuple[Sound, ...] = tuple(Sound)
    protocol: int = PROTOCOL_VERSION

    def event(self) -> Event:
        """Return the whole ``info`` event: wyoming's empty service lists plus this block."""
        event = Info().event()
        event.data[INFO_KEY] = {
            "version": self.version,
            "backend": self.backend,
            "model": self.model,
            "sounds": _sorted(self.sounds),
            "protocol": self.protocol,
        }
        return event

    @staticmethod
    def from_event(event: Event) -> GuardModeInfo:
        """Read the block of an ``info`` event; ProtocolError if it isn't a Guard Mode engine."""
        if not Info.is_type(event.type):
            raise ProtocolError(f"expected info, got {event.type!r:.40}")
        block = event.data.get(INFO_KEY)
        if not isinstance(block, dict):
            raise ProtocolError("not a Guard Mode engine (no guard_mode block in its info)")
        sounds = block.get("sounds")
        listed = sounds if isinstance(sounds, list) else []
        known = [Sound(item) for item in listed if isinstance(item, str) and item in Sound]
        protocol = block.get("protocol", 1)
        return GuardModeInfo(
            version=_text(block, "version"),
            backend=_text(block, "backend"),
            model=_text(block, "model"),
            sounds=tuple(known),  # a newer engine's extra sounds are left out
            protocol=protocol if isinstance(protocol, int) else 1,
        )


@dataclass(frozen=True)
class GuardModeAuth(Eventable):
    """``guard-mode-auth``: the client's first event, with the service's token."""

    token: str

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-auth``."""
        return event_type == AUTH_TYPE

    def event(self) -> Event:
        """Return the event."""
        return Event(type=AUTH_TYPE, data={"token": self.token})

    @staticmethod
    def from_event(event: Event) -> GuardModeAuth:
        """Parse the event; ProtocolError when the token is missing."""
        return GuardModeAuth(_text(event.data, "token"))

    def __repr__(self) -> str:
        """Never show the token."""
        return "GuardModeAuth(token=***)"


@dataclass(frozen=True)
class GuardModeStream(Eventable):
    """``guard-mode-stream``: settings of the connection's stream; None leaves one unchanged."""

    name: str | None = None  # the satellite's name (logs)
    enabled: frozenset[Sound] | None = None  # sounds to detect (others are not reported)
    media_player_playing: bool | None = None  # a media player near the microphone plays

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-stream``."""
        return event_type == STREAM_TYPE

    def event(self) -> Event:
        """Return the event (only the fields that are set)."""
        data: dict[str, Any] = {}
        if self.name is not None:
            data["name"] = self.name
        if self.enabled is not None:
            data["enabled"] = _sorted(self.enabled)
        if self.media_player_playing is not None:
            data["media_player_playing"] = self.media_player_playing
        return Event(type=STREAM_TYPE, data=data)

    @staticmethod
    def from_event(event: Event) -> GuardModeStream:
        """Parse the event; ProtocolError when a field has the wrong type or an unknown sound."""
        data = event.data
        name = bounds.printable(_text(data, "name")) if data.get("name") is not None else None
        enabled = _sounds(data["enabled"], "enabled") if data.get("enabled") is not None else None
        playing = (
            _flag(data, "media_player_playing")
            if data.get("media_player_playing") is not None
            else None
        )
        return GuardModeStream(name=name, enabled=enabled, media_player_playing=playing)


@dataclass(frozen=True)
class GuardModeDetection(Eventable):
    """``guard-mode-detection``: a detection started (onset) or ended (offset)."""

    kind: EventKind
    detection: Detection
    time_s: float  # stream time when the engine produced the event

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-detection``."""
        return event_type == DETECTION_TYPE

    @staticmethod
    def from_decider(event: DeciderEvent, time_s: float) -> GuardModeDetection:
        """Wrap a decider event produced at stream time time_s."""
        return GuardModeDetection(event.kind, event.detection, time_s)

    def decider_event(self) -> DeciderEvent:
        """Return the decider event this carries."""
        return DeciderEvent(self.kind, self.detection)

    def event(self) -> Event:
        """Return the event."""
        d = self.detection
        return Event(
            type=DETECTION_TYPE,
            data={
                "kind": str(self.kind),
                "id": d.id,
                "sound": str(d.sound),
                "start_s": round(_finite(d.start_s, 0.0), 3),
                "end_s": round(_finite(d.end_s, 0.0), 3),
                "confidence": round(_finite(d.confidence, 0.0), 4),
                "label": d.label,
                "peak_db": round(_finite(d.peak_db, -120.0), 1),
                "suppressed": d.suppressed,
                "reason": str(d.reason) if d.reason is not None else None,
                "time_s": round(_finite(self.time_s, 0.0), 3),
            },
        )

    @staticmethod
    def from_event(event: Event) -> GuardModeDetection:
        """Parse the event; ProtocolError when a field is missing, mistyped or unknown."""
        data = event.data
        try:
            kind = EventKind(_text(data, "kind"))
            sound = Sound(_text(data, "sound"))
            reason_key = data.get("reason")
            reason = Reason(reason_key) if reason_key is not None else None
        except ValueError as err:
            raise ProtocolError(f"{DETECTION_TYPE}: {err}") from err
        detection = Detection(
            id=bounds.printable(_text(data, "id")),
            sound=sound,
            start_s=_number(data, "start_s"),
            end_s=_number(data, "end_s"),
            confidence=_number(data, "confidence"),
            label=bounds.printable(_text(data, "label"), 100),
            peak_db=_number(data, "peak_db"),
            suppressed=_flag(data, "suppressed"),
            reason=reason,
        )
        return GuardModeDetection(kind, detection, _number(data, "time_s"))


@dataclass(frozen=True)
class GuardModeStatus(Eventable):
    """``guard-mode-status``: how the stream is doing, about every 5 s of audio."""

    time_s: float  # stream time (seconds of audio since the stream started, gaps included)
    level_db: float | None  # loudest window since the last status (dBFS), None if no window
    windows: int  # windows analysed so far
    gated_windows: int  # ... of which too quiet for the tagger
    media_s: float  # seconds spent hearing media (TV, radio, music)
    seconds_dropped: float  # audio dropped because the engine fell behind
    bad_chunks: int  # chunks that could not be converted

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-status``."""
        return event_type == STATUS_TYPE

    def event(self) -> Event:
        """Return the event."""
        level = self.level_db
        return Event(
            type=STATUS_TYPE,
            data={
                "time_s": round(_finite(self.time_s, 0.0), 3),
                "level_db": round(level, 1) if level is not None and math.isfinite(level) else None,
                "windows": self.windows,
                "gated_windows": self.gated_windows,
                "media_s": round(_finite(self.media_s, 0.0), 1),
                "seconds_dropped": round(_finite(self.seconds_dropped, 0.0), 2),
                "bad_chunks": self.bad_chunks,
            },
        )

    @staticmethod
    def from_event(event: Event) -> GuardModeStatus:
        """Parse the event; ProtocolError when a field is missing or mistyped."""
        data = event.data
        return GuardModeStatus(
            time_s=_number(data, "time_s"),
            level_db=_number(data, "level_db") if data.get("level_db") is not None else None,
            windows=_count(data, "windows"),
            gated_windows=_count(data, "gated_windows"),
            media_s=_number(data, "media_s"),
            seconds_dropped=_number(data, "seconds_dropped"),
            bad_chunks=_count(data, "bad_chunks"),
        )
