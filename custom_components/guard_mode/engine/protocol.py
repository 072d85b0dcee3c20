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
``audio-start`` / ``audio-chunk`` / ``audio-stop`` (any PCM format), ``ping``.

Server → client: ``guard-mode-evidence`` (:class:`GuardModeEvidence`: what the engine heard, see
:mod:`.evidence`), ``guard-mode-status`` (:class:`GuardModeStatus`, about every 5 s of audio),
``error`` (wyoming's Error) and ``pong``. The engine decides nothing: the client runs the
stream's decider on the evidence, exactly as on the in-process engine's, so sensitivity, "not a
threat" and custom sounds work the same with both.

A segment begins with the first ``audio-start`` or ``audio-chunk`` after connecting or after an
``audio-stop``; segments are numbered from 0 on each connection, and their times (``time_s``,
``start_s``, ``end_s``) are seconds of audio since the segment began, audio the engine had to
drop included. The evidence of a segment is all sent before any of the next one; after
``audio-stop`` the segment's last status (``"ended": true``) follows all its evidence.

Protocol 2 (this one) carries evidence; protocol 1 engines decided themselves and sent
detections: a client refuses them (:data:`PROTOCOL_VERSION`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import hashlib
import math
from typing import Any, Final

import numpy as np
from wyoming.event import Event, Eventable
from wyoming.info import Info

from . import bounds
from .alarm_pattern import AlarmHit
from .evidence import Embedding, Evidence, Gap, WindowEvidence
from .labels import Sound
from .learning import EMBEDDING_SIZE
from .onset import Onset

ENGINE_VERSION: Final = "0.1.0"  # kept equal to manifest.json and addon/config.yaml (tested)
PROTOCOL_VERSION: Final = 2  # bumped when an event or field changes meaning
DEFAULT_PORT: Final = 10800
MIN_TOKEN_LENGTH: Final = 16

MAX_HEADER: Final = bounds.MAX_HEADER  # one JSON line
MAX_DATA: Final = bounds.MAX_EVENT_DATA
MAX_PAYLOAD: Final = bounds.MAX_CHUNK_BYTES
MAX_EVIDENCE_ITEMS: Final = 16  # windows, alarm hits and gaps in one evidence event
MAX_MAP: Final = 64  # entries in one of a window's score maps
EMBEDDING_BYTES: Final = EMBEDDING_SIZE * 2  # one float16 embedding
MAX_MODEL_ERROR: Final = 200  # characters of a status's model error

AUTH_TYPE: Final = "guard-mode-auth"
STREAM_TYPE: Final = "guard-mode-stream"
EVIDENCE_TYPE: Final = "guard-mode-evidence"
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


def token_ok(token: str) -> bool:
    """Return whether a token is one the engine takes: 16 printable characters or more, no space."""
    return len(token) >= MIN_TOKEN_LENGTH and token.isprintable() and " " not in token


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


def _optional_flag[T](data: Mapping[str, Any], key: str, missing: T) -> bool | T:
    """Return the flag, or missing when the field is absent or null (older peers omit it)."""
    return _flag(data, key) if data.get(key) is not None else missing


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
    embeddings: bool | None = None  # send each window's embedding (the client's learning)
    every_window: bool | None = None  # tag calm windows' successors too (until set: yes)

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-stream``."""
        return event_type == STREAM_TYPE

    def event(self) -> Event:
        """Return the event (only the fields that are set)."""
        data: dict[str, Any] = {}
        if self.name is not None:
            data["name"] = self.name
        if self.embeddings is not None:
            data["embeddings"] = self.embeddings
        if self.every_window is not None:
            data["every_window"] = self.every_window
        return Event(type=STREAM_TYPE, data=data)

    @staticmethod
    def from_event(event: Event) -> GuardModeStream:
        """Parse the event; ProtocolError when a field has the wrong type."""
        data = event.data
        name = bounds.printable(_text(data, "name")) if data.get("name") is not None else None
        return GuardModeStream(
            name=name,
            embeddings=_optional_flag(data, "embeddings", None),
            every_window=_optional_flag(data, "every_window", None),
        )


@dataclass(frozen=True)
class GuardModeEvidence(Eventable):
    """``guard-mode-evidence``: what the engine heard in a segment, in stream-time order.

    Data: ``segment``, ``time_s`` (segment time when the engine produced it) and ``items``, each
    a window (``"kind": "window"``), an alarm-pattern hit (``"alarm"``) or a gap (``"gap"``).
    Numbers are JSON's, which carries floats exactly: the client's decider sees what an
    in-process one would. A window with ``"embedding": true`` has its embedding in the payload:
    float16 little-endian, 1024 per window, in the order of those windows.
    """

    segment: int
    time_s: float
    items: tuple[Evidence, ...]

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-evidence``."""
        return event_type == EVIDENCE_TYPE

    @staticmethod
    def batches(segment: int, time_s: float, items: list[Evidence]) -> list[GuardModeEvidence]:
        """Return the items as events of at most MAX_EVIDENCE_ITEMS each."""
        return [
            GuardModeEvidence(segment, time_s, tuple(items[i : i + MAX_EVIDENCE_ITEMS]))
            for i in range(0, len(items), MAX_EVIDENCE_ITEMS)
        ]

    def event(self) -> Event:
        """Return the event."""
        embeddings: list[bytes] = []
        items = []
        for item in self.items:
            if isinstance(item, WindowEvidence):
                if item.embedding is not None:
                    embeddings.append(np.asarray(item.embedding, "<f2").tobytes())
                items.append(_window_data(item))
            elif isinstance(item, Gap):
                items.append({"kind": "gap", "time_s": float(item.time_s)})
            else:
                items.append(
                    {
                        "kind": "alarm",
                        "sound": item.sound,
                        "pattern": item.pattern,
                        "carrier_hz": float(item.carrier_hz),
                        "start_s": float(item.start_s),
                        "end_s": float(item.end_s),
                        "confidence": float(item.confidence),
                    }
                )
        return Event(
            type=EVIDENCE_TYPE,
            data={"segment": self.segment, "time_s": self.time_s, "items": items},
            payload=b"".join(embeddings) or None,
        )

    @staticmethod
    def from_event(event: Event) -> GuardModeEvidence:
        """Parse the event; ProtocolError when anything is missing, mistyped, unknown or too big."""
        data = event.data
        raw = data.get("items")
        if not isinstance(raw, list) or len(raw) > MAX_EVIDENCE_ITEMS:
            raise ProtocolError(f"'items' must be a list of at most {MAX_EVIDENCE_ITEMS}")
        payload = event.payload or b""
        wanted = sum(1 for item in raw if isinstance(item, dict) and item.get("embedding") is True)
        if len(payload) != wanted * EMBEDDING_BYTES:
            raise ProtocolError(
                f"{EVIDENCE_TYPE}: {len(payload)} payload bytes for {wanted} embeddings"
            )
        vectors = np.frombuffer(payload, "<f2").reshape(wanted, EMBEDDING_SIZE)
        if not np.isfinite(vectors).all():
            raise ProtocolError(f"{EVIDENCE_TYPE}: an embedding that is not finite")
        items: list[Evidence] = []
        used = 0
        for item in raw:
            if not isinstance(item, dict):
                raise ProtocolError(f"{EVIDENCE_TYPE}: an item that is not an object")
            kind = item.get("kind")
            if kind == "window":
                embedding = None
                if item.get("embedding") is True:
                    embedding = vectors[used].astype(np.float16)
                    used += 1
                items.append(_window_from(item, embedding))
            elif kind == "gap":
                items.append(Gap(_number(item, "time_s")))
            elif kind == "alarm":
                items.append(_alarm_from(item))
            else:
                raise ProtocolError(f"{EVIDENCE_TYPE}: unknown item kind {kind!r:.40}")
        return GuardModeEvidence(_count(data, "segment"), _number(data, "time_s"), tuple(items))


def _window_data(window: WindowEvidence) -> dict[str, Any]:
    onset = window.onset
    return {
        "kind": "window",
        "start_s": float(window.start_s),
        "end_s": float(window.end_s),
        "level_db": float(window.level_db),
        "peak_db": float(window.peak_db),
        "onset_s": float(window.onset_s),
        "media": float(window.media),
        "aligned": window.aligned,
        "scores": {str(k): float(v) for k, v in window.scores.items()},
        "confidence": {str(k): float(v) for k, v in window.confidence.items()},
        "labels": {str(k): v for k, v in window.labels.items()},
        "head": {k: float(v) for k, v in window.head.items()},
        "onset": None
        if onset is None
        else [
            int(onset.frame),
            float(onset.rise_db),
            float(onset.peak_db),
            float(onset.decay_db),
            int(onset.shower),
            float(onset.background_db),
        ],
        "embedding": window.embedding is not None,
    } | ({"skipped": True} if window.skipped else {})


def _numbers(data: Mapping[str, Any], key: str, *, sounds: bool) -> dict[str, float]:
    value = data.get(key)
    if not isinstance(value, dict) or len(value) > MAX_MAP:
        raise ProtocolError(f"{key!r} must be a map of at most {MAX_MAP} numbers")
    return {_key(name, sounds): _number(value, name) for name in value}


def _key(name: Any, sound: bool) -> str:
    if sound:
        if not isinstance(name, str) or name not in Sound:
            raise ProtocolError(f"unknown sound key {name!r:.40}")
        return Sound(name)
    if not isinstance(name, str) or bounds.printable(name, 40) != name:
        raise ProtocolError(f"a class name that is not short printable text: {name!r:.40}")
    return name


def _window_from(data: Mapping[str, Any], embedding: Embedding | None) -> WindowEvidence:
    labels = data.get("labels")
    if not isinstance(labels, dict) or len(labels) > MAX_MAP:
        raise ProtocolError(f"'labels' must be a map of at most {MAX_MAP} class names")
    onset = data.get("onset")
    measured = None
    if onset is not None:
        if not isinstance(onset, list) or len(onset) != 6:
            raise ProtocolError("'onset' must be a list of 6 numbers")
        names = ("frame", "rise", "peak", "decay", "shower", "background")
        fields = dict(zip(names, onset, strict=True))
        measured = Onset(
            frame=_count(fields, "frame"),
            rise_db=_number(fields, "rise"),
            peak_db=_number(fields, "peak"),
            decay_db=_number(fields, "decay"),
            shower=_count(fields, "shower"),
            background_db=_number(fields, "background"),
        )
    return WindowEvidence(
        start_s=_number(data, "start_s"),
        end_s=_number(data, "end_s"),
        level_db=_number(data, "level_db"),
        peak_db=_number(data, "peak_db"),
        scores=_numbers(data, "scores", sounds=True),
        confidence=_numbers(data, "confidence", sounds=True),
        labels={_key(k, True): bounds.printable(_text(labels, k), 100) for k in labels},
        media=_number(data, "media"),
        onset_s=_number(data, "onset_s"),
        embedding=embedding,
        aligned=_flag(data, "aligned"),
        onset=measured,
        head=_numbers(data, "head", sounds=False),
        skipped=_optional_flag(data, "skipped", False),
    )


def _alarm_from(data: Mapping[str, Any]) -> AlarmHit:
    sound = data.get("sound")
    pattern = data.get("pattern")
    if sound not in ("smoke_alarm", "co_alarm") or pattern not in ("T3", "T4"):
        raise ProtocolError("an alarm hit must be smoke_alarm/T3 or co_alarm/T4")
    return AlarmHit(
        sound=sound,
        pattern=pattern,
        carrier_hz=_number(data, "carrier_hz"),
        start_s=_number(data, "start_s"),
        end_s=_number(data, "end_s"),
        confidence=_number(data, "confidence"),
    )


@dataclass(frozen=True)
class GuardModeStatus(Eventable):
    """``guard-mode-status``: how the engine is doing with the stream, about every 5 s of audio."""

    segment: int  # the segment it is about
    time_s: float  # segment time (seconds of audio since the segment began, gaps included)
    seconds_dropped: float  # audio dropped because the engine fell behind
    bad_chunks: int  # chunks that could not be converted
    ended: bool = False  # after audio-stop: all the segment's evidence has been sent
    model_error: str = ""  # why the engine's model fails, while it does (alarms only meanwhile)

    @staticmethod
    def is_type(event_type: str) -> bool:
        """Return True for ``guard-mode-status``."""
        return event_type == STATUS_TYPE

    def event(self) -> Event:
        """Return the event."""
        return Event(
            type=STATUS_TYPE,
            data={
                "segment": self.segment,
                "time_s": round(_finite(self.time_s, 0.0), 3),
                "seconds_dropped": round(_finite(self.seconds_dropped, 0.0), 2),
                "bad_chunks": self.bad_chunks,
                "ended": self.ended,
                **({"model_error": self.model_error[:MAX_MODEL_ERROR]} if self.model_error else {}),
            },
        )

    @staticmethod
    def from_event(event: Event) -> GuardModeStatus:
        """Parse the event; ProtocolError when a field is missing or mistyped."""
        data = event.data
        return GuardModeStatus(
            segment=_count(data, "segment"),
            time_s=_number(data, "time_s"),
            seconds_dropped=_number(data, "seconds_dropped"),
            bad_chunks=_count(data, "bad_chunks"),
            ended=_optional_flag(data, "ended", False),
            model_error=_text(data, "model_error")[:MAX_MODEL_ERROR]
            if data.get("model_error") is not None
            else "",
        )
