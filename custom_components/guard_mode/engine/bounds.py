"""What a peer can make Guard Mode hold: one set of bounds for every entrance.

Audio and events come in through four entrances: a Wyoming mic service Home Assistant connects
to, a push agent's websocket, a client of the engine service, and the engine service answering
Home Assistant. Each uses what is here, so that no peer, honest or not, can make Guard Mode hold
more than:

* one audio chunk of :data:`MAX_CHUNK_BYTES` and :data:`MAX_CHUNK_S` of audio (a bigger one
  closes the peer with one log line), in a live format of at most :data:`MAX_BYTE_RATE` bytes
  per second of audio;
* audio at :data:`RATE_FACTOR` × real time after a burst of :data:`BURST_S` (a :class:`Budget`;
  the entrance stops reading until the peer is back within it, so the excess waits in the peer's
  socket, not in memory), and :data:`EVENT_RATE` events a second;
* :data:`QUEUE_BYTES` of audio waiting for the engine per stream and :data:`OUTBOX_BYTES` of
  events waiting for a slow reader per connection;
* a peer that says nothing for :data:`HELLO_TIMEOUT_S` after connecting, or
  :data:`IDLE_TIMEOUT_S` later on, is closed;
* event headers of :data:`MAX_HEADER` bytes and event data of :data:`MAX_EVENT_DATA` bytes,
  parsed so that any failure (bad JSON, a number too big, nesting too deep, bad UTF-8) is a
  :class:`PeerError`, never another exception;
* names a peer gives itself reach logs as :func:`printable` text of bounded length.

No Home Assistant imports: the engine service uses this too.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import time
from typing import Any, Final, TypeIs

MAX_CHUNK_BYTES: Final = 1 << 20
"""Largest audio chunk (PCM bytes) from any peer; honest ones send 2–200 KiB."""
MAX_CHUNK_S: Final = 1.0
"""Most audio in one chunk (seconds); microphones send 10 ms – 1 s."""
MIN_RATE: Final = 4000
MAX_RATE: Final = 192000
MAX_WIDTH: Final = 4
MAX_CHANNELS: Final = 8
MAX_BYTE_RATE: Final = 768_000
"""Most PCM bytes per second of audio a live format may need (48 kHz × 32-bit × 4 channels)."""
RATE_FACTOR: Final = 1.5
"""Audio is taken from a peer at up to this many times real time (after a burst)."""
BURST_S: Final = 4.0
"""Audio a peer may send ahead of real time at once (a network hiccup's backlog)."""
EVENT_RATE: Final = 250.0
"""Events a second a peer may send (a 10 ms-chunk microphone sends 100)."""
EVENT_BURST: Final = 500.0
QUEUE_BYTES: Final = 4 << 20
"""Audio bytes a stream may have waiting for the engine before the oldest is dropped."""
OUTBOX_BYTES: Final = 1 << 20
"""Event bytes waiting for a peer that doesn't read before it is disconnected."""
HELLO_TIMEOUT_S: Final = 10.0
"""A peer must identify itself (or send audio) this soon after connecting."""
IDLE_TIMEOUT_S: Final = 60.0
"""A connected peer that sends nothing this long is closed."""
KEEPALIVE_S: Final = 20.0
"""An idle client pings this often, well within the other side's idle timeout."""
MAX_HEADER: Final = 64 * 1024
"""Longest event header line (bytes)."""
MAX_EVENT_DATA: Final = 64 * 1024
"""Longest event data (bytes) the engine service and its client accept."""
MAX_NAME: Final = 64
"""Longest name a peer gives itself, as logs show it."""


class PeerError(ValueError):
    """A peer sent something out of bounds or unparsable: close it, saying why."""


def _whole(value: object) -> TypeIs[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def format_error(rate: object, width: object, channels: object) -> str | None:
    """Return why a live PCM format can't be used, or None when it can."""
    if not (_whole(rate) and _whole(width) and _whole(channels)):
        return (
            f"rate, width and channels must be whole numbers "
            f"(got {rate!r:.20}, {width!r:.20}, {channels!r:.20})"
        )
    if not MIN_RATE <= rate <= MAX_RATE:
        return f"sample rate {rate} Hz is not usable (use {MIN_RATE}–{MAX_RATE} Hz)"
    if not 1 <= width <= MAX_WIDTH:
        return f"sample width {width} bytes is not usable (use 1–{MAX_WIDTH})"
    if not 1 <= channels <= MAX_CHANNELS:
        return f"{channels} channels is not usable (use 1–{MAX_CHANNELS})"
    if rate * width * channels > MAX_BYTE_RATE:
        return (
            f"{rate} Hz × {width} bytes × {channels} channels is {rate * width * channels} "
            f"bytes a second, more than the {MAX_BYTE_RATE} one microphone may send"
        )
    return None


def check_format(rate: object, width: object, channels: object) -> tuple[int, int, int]:
    """Return a live PCM format as (rate, width, channels); PeerError if it can't be used."""
    if (problem := format_error(rate, width, channels)) is not None:
        raise PeerError(problem)
    assert _whole(rate)
    assert _whole(width)
    assert _whole(channels)
    return rate, width, channels


def chunk_seconds(size: int, rate: int, width: int, channels: int) -> float:
    """Return the seconds of audio in size bytes of PCM of a format."""
    return size / max(rate * width * channels, 1)


def chunk_error(size: int, rate: int, width: int, channels: int) -> str | None:
    """Return why an audio chunk is too big (bytes or seconds), or None when it is not."""
    seconds = chunk_seconds(size, rate, width, channels)
    if size > MAX_CHUNK_BYTES or seconds > MAX_CHUNK_S + 1e-9:
        return (
            f"an audio chunk of {size} bytes ({_duration(seconds)} of audio) is too big: "
            f"at most {MAX_CHUNK_BYTES / 2**20:g} MiB and {MAX_CHUNK_S:g} s per chunk"
        )
    return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


class Budget:
    """A token bucket: what a peer may send at most, as a rate and a burst.

    :meth:`spend` takes what arrived and returns how long the entrance should wait before it
    reads more: zero while the peer keeps within the rate (and the burst), otherwise until it
    is back within it. The excess then waits in the peer's socket and send buffer, not here.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Allow rate units a second after a burst of burst units."""
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._level = burst
        self._at = clock()
        self.waited_s = 0.0  # how long the entrance has held this peer back in all

    def spend(self, amount: float) -> float:
        """Take amount; return the seconds to wait before reading more (0: none)."""
        now = self._clock()
        self._level = min(self.burst, self._level + (now - self._at) * self.rate) - amount
        self._at = now
        wait = max(0.0, -self._level / self.rate)
        self.waited_s += wait
        return wait


def audio_budget() -> Budget:
    """Return a peer's budget in seconds of audio: RATE_FACTOR × real time after BURST_S."""
    return Budget(RATE_FACTOR, BURST_S)


def event_budget() -> Budget:
    """Return a peer's budget in events."""
    return Budget(EVENT_RATE, EVENT_BURST)


def parse_json(text: str | bytes | bytearray, what: str = "message") -> Any:
    """Parse JSON from a peer; PeerError for anything that isn't (whatever the reason)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError, OverflowError, UnicodeError, TypeError) as err:
        raise PeerError(f"{what} is not JSON ({type(err).__name__})") from None


def parse_json_object(text: str | bytes | bytearray, what: str = "message") -> dict[str, Any]:
    """Parse a JSON object from a peer; PeerError for anything else."""
    value = parse_json(text, what)
    if not isinstance(value, dict):
        raise PeerError(f"{what} is not a JSON object")
    return value


def whole_number(value: object, what: str, low: int = 0, high: int = 1 << 62) -> int:
    """Return value if it is a whole number in [low, high]; PeerError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PeerError(f"{what} must be a whole number in {low}–{high}, got {value!r:.40}")
    return value


def printable(text: object, limit: int = MAX_NAME) -> str:
    """Return text as logs may show it: printable characters only, at most limit of them.

    Line breaks, control and format characters (bidirectional overrides included) become "?",
    so that a name can't forge or hide a log line.
    """
    value = text if isinstance(text, str) else str(text)
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
