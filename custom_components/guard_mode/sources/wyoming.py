"""Wyoming microphone services (e.g. wyoming-mic-external): audio-start / audio-chunk over TCP.

A mic service is a peer on the network, bounded like every entrance (engine/bounds.py): events
are read with bounded sizes and any parsing failure is a protocol error; a chunk over the chunk
bounds, or in an unusable format, ends the connection with one clear reason (the satellite logs
it once per outage and reconnects); audio is read at most ``RATE_FACTOR`` × real time (the rest
waits in the socket); a service that sends no audio for the stall timeout is reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_write_event
from wyoming.info import Describe, Info

from ..engine import bounds, protocol
from ..engine.audio import PcmConverter
from ..redact import error_text
from ..timeouts import DEFAULT_TIMEOUTS, Timeouts
from .base import (
    AudioFormat,
    AudioSink,
    AudioSource,
    BadAudio,
    CannotConnect,
    NoAudio,
    NotAMicrophone,
    SourceError,
    check_format,
)

CONNECT_TIMEOUT_S = 5.0
MAX_INFO = 1 << 20  # a service's info (a text-to-speech service lists all its voices)


class ProtocolError(SourceError):
    """The peer doesn't speak the Wyoming protocol (or lies about lengths)."""

    reason = "not_a_microphone"


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """Read one Wyoming event with bounded sizes; None when the peer closed the connection."""
    try:
        return await protocol.read_event(reader, max_data=MAX_INFO)
    except protocol.ProtocolError as err:
        raise ProtocolError(str(err)) from err


class WyomingMicSource(AudioSource):
    """A Wyoming mic service streams audio to whoever connects; we connect as a client."""

    kind = "wyoming"

    def __init__(self, host: str, port: int, *, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        """Listen to the Wyoming mic service at host:port."""
        self.host = host
        self.port = port
        self.timeouts = timeouts

    def describe(self) -> str:
        """Return what the source is (not its host: logs name the satellite instead)."""
        return "the Wyoming mic service"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=protocol.MAX_HEADER
                )
        except (OSError, TimeoutError) as err:
            raise CannotConnect(f"cannot connect to {self.describe()}: {error_text(err)}") from err
        try:  # mic services ignore it; other Wyoming services answer with what they are
            await async_write_event(Describe().event(), writer)
        except OSError as err:
            await _close(writer)
            raise _lost(err) from err
        return reader, writer

    async def probe(self) -> AudioFormat:
        """Connect and return the format of the first audio; tell what else it is otherwise."""
        reader, writer = await self._connect()
        try:
            async with asyncio.timeout(self.timeouts.probe_s):
                while True:
                    event = await read_event(reader)
                    if event is None:
                        raise NotAMicrophone(f"{self.describe()} closed the connection")
                    if AudioStart.is_type(event.type) or AudioChunk.is_type(event.type):
                        return _format(event)
                    if Info.is_type(event.type):
                        info = Info.from_event(event)
                        if not info.mic:
                            raise NotAMicrophone(f"{self.describe()} is {_what(info)}")
        except TimeoutError as err:
            raise NoAudio(
                f"{self.describe()} sent no audio in {self.timeouts.probe_s:.0f} s"
            ) from err
        except OSError as err:
            raise _lost(err) from err
        finally:
            await _close(writer)

    async def run(self, sink: AudioSink) -> None:
        """Stream chunks into sink until cancelled; raise when the service fails or stalls."""
        reader, writer = await self._connect()
        audio, events = bounds.audio_budget(), bounds.event_budget()
        converter = PcmConverter()
        loop = asyncio.get_running_loop()
        stall_s = self.timeouts.stall_s
        stall_at = loop.time() + stall_s  # no audio by then: stalled, whatever else
        try:
            while True:
                if loop.time() >= stall_at:  # no audio, whatever else kept coming
                    raise NoAudio(f"{self.describe()} stopped sending audio")
                try:
                    async with asyncio.timeout_at(stall_at):
                        event = await read_event(reader)
                except TimeoutError as err:
                    raise NoAudio(f"{self.describe()} stopped sending audio") from err
                except OSError as err:  # reset by the peer: a lost connection, not a bug
                    raise _lost(err) from err
                if event is None:
                    raise CannotConnect(f"{self.describe()} closed the connection")
                wait = events.spend(1)
                if AudioChunk.is_type(event.type) and event.payload:
                    fmt = _format(event)
                    size = len(event.payload)
                    if problem := bounds.chunk_error(size, fmt.rate, fmt.width, fmt.channels):
                        raise ProtocolError(f"{self.describe()} sent {problem}")
                    sink(converter.convert(event.payload, fmt.rate, fmt.width, fmt.channels))
                    seconds = bounds.chunk_seconds(size, fmt.rate, fmt.width, fmt.channels)
                    wait = max(wait, audio.spend(seconds))
                    stall_at = loop.time() + wait + stall_s
                elif AudioStop.is_type(event.type):
                    raise NoAudio(f"{self.describe()} stopped its microphone")
                if wait:
                    self.throttled(wait)
                    await asyncio.sleep(wait)
        finally:
            await _close(writer)


def _lost(err: OSError) -> CannotConnect:
    return CannotConnect(f"the connection was lost: {error_text(err)}")


def _format(event: Event) -> AudioFormat:
    try:
        return check_format(
            int(event.data["rate"]), int(event.data["width"]), int(event.data["channels"])
        )
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise BadAudio(f"audio event without a valid format: {event.data!r:.200}") from err


def _what(info: Info) -> str:
    kinds = [
        name
        for name, programs in (
            ("speech-to-text", info.asr),
            ("text-to-speech", info.tts),
            ("wake word", info.wake),
            ("intent", info.intent),
            ("sound output", info.snd),
        )
        if programs
    ]
    if info.satellite is not None:
        kinds.append("voice satellite")
    what = " and ".join(kinds)
    return f"a Wyoming {what} service, not a microphone" if what else "not a microphone"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()
