"""Camera and network streams: RTSP, HTTP(S) and go2rtc restreams, audio track only, via PyAV.

Why PyAV and not the ``ffmpeg`` binary: Home Assistant OS and the Home Assistant container are
Alpine Linux (musl) on x86_64 and aarch64, where no ``ffmpeg`` binary can be counted on, while
PyPI has ``av`` wheels for musllinux and manylinux on both architectures with FFmpeg built in,
and Home Assistant core already depends on ``av`` (its ``stream`` integration) with a pinned
version, so it is installed on every system anyway. In process there is also no subprocess to
start, supervise, reap and kill, no pipe to parse, and errors arrive as typed exceptions (HTTP
404 or 401, connection refused, timeout) instead of log lines.

How a connection runs:

* Threading: one dedicated thread per connection opens the URL, demuxes and decodes (it runs
  for hours, so not in the executor pool); nothing of PyAV ever runs on the event loop. The
  thread resamples each frame with ``av.AudioResampler`` (libswresample) to 16 kHz mono s16 in
  100 ms chunks and hands them to the loop with ``loop.call_soon_threadsafe``; the sink is only
  ever called on the loop. Like every source it delivers 16 kHz mono, what the engine works on;
  here the conversion runs on the stream's own thread, and a 48 kHz stereo stream crosses to the
  loop at a sixth of the size.
* Back-pressure: at most ``MAX_IN_FLIGHT`` chunks (2 s) wait on the loop; when the loop falls
  further behind, new chunks are dropped and counted (``stats``), never queued without bound.
* Only the audio track: RTSP sets up the audio track alone (``allowed_media_types=audio``), so
  a camera doesn't even send its video; in other containers the other streams are marked
  discarded (demuxers that honour it skip them) and their packets are never decoded.
* Stalls: PyAV's interrupt callback gives each packet read the stall timeout (each open step
  the open timeout, ``timeouts.py``); a stream whose packets keep coming without audio is caught
  by the thread.
* Cancellation: PyAV has no way to abort a blocking read from another thread (its interrupt
  callback only checks the timeouts above, and closing a container while another thread reads
  from it frees memory under that thread's feet). So a cancelled ``run()`` sets a stop flag,
  stops delivering at once, and waits up to ``STOP_WAIT_S`` for the thread, which closes the
  container (RTSP TEARDOWN, socket closed) as soon as its current read returns. While the stream
  flows that is the next packet, milliseconds later; a peer that has gone silent holds the thread
  until its read times out, and no audio reaches anyone meanwhile. Home Assistant's ``stream``
  integration stops its PyAV worker thread the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ..engine.audio import SAMPLE_RATE, Pcm16
from ..redact import redact_url
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

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer

_LOGGER = logging.getLogger(__name__)

CHUNK_SAMPLES: Final = 1600  # 100 ms per chunk handed to the loop
STOP_WAIT_S = 0.8  # a cancelled run() waits this long for its thread (satellites allow 1 s)
MAX_IN_FLIGHT = 20  # chunks on their way to the loop (2 s) before new ones are dropped
MAX_BAD_PACKETS = 100  # audio packets in a row that fail to decode before giving up
ANALYZE_US: Final = "2000000"  # how much of a live stream FFmpeg reads to learn its streams

SCHEMES: Final = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps"})
# What FFmpeg may open on the way (redirects, playlists): never files, pipes or the like.
PROTOCOLS: Final = "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy,crypto,rtmp,rtmps"


@dataclass(slots=True)
class StreamStats:
    """What a stream source has done, for diagnostics."""

    connections: int = 0
    chunks: int = 0  # delivered to the sink
    chunks_dropped: int = 0  # the event loop was too far behind
    bad_packets: int = 0  # audio packets that failed to decode (skipped)
    source_format: str | None = None  # the stream's own audio, e.g. "48000 Hz, 16-bit, stereo"


class StreamSource(AudioSource):
    """The audio track of a camera or network stream URL."""

    kind = "stream"

    def __init__(self, url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        """Listen to the stream at url (rtsp://, rtsps://, http://, https://, rtmp://)."""
        self.url = url
        self.timeouts = timeouts
        self.stats = StreamStats()

    def describe(self) -> str:
        """Return the URL without credentials or host (redact.py: parsed, not pattern-matched)."""
        return redact_url(self.url, host=False)

    async def probe(self) -> AudioFormat:
        """Connect, decode the first audio and return its format (as decoded, 16-bit)."""
        session = _Session(self, asyncio.get_running_loop(), None)
        session.start()
        try:
            async with asyncio.timeout(self.timeouts.probe_s):
                error = await asyncio.shield(session.done)
        except TimeoutError as err:
            raise NoAudio(
                f"{self.describe()} sent no audio in {self.timeouts.probe_s:.0f} s"
            ) from err
        finally:
            session.stop.set()
        if error is not None:
            raise error
        if session.format is None:
            raise NoAudio(f"{self.describe()} sent no audio")
        return session.format

    async def run(self, sink: AudioSink) -> None:
        """Stream 16 kHz mono s16 chunks into sink until cancelled; raise when the stream fails."""
        session = _Session(self, asyncio.get_running_loop(), sink)
        session.start()
        try:
            error = await asyncio.shield(session.done)
        except asyncio.CancelledError:
            session.stop.set()
            await asyncio.wait([session.done], timeout=STOP_WAIT_S)
            if not session.done.done():
                _LOGGER.debug("%s: decoder thread still waiting on a read", self.describe())
            raise
        if error is not None:
            raise error


class _Session:
    """One connection: its decoder thread, and what the event loop waits on."""

    def __init__(
        self, source: StreamSource, loop: asyncio.AbstractEventLoop, sink: AudioSink | None
    ) -> None:
        self.source = source
        self.where = source.describe()
        self.loop = loop
        self.sink = sink  # None: probe (stop after the first audio)
        self.stop = threading.Event()
        self.done: asyncio.Future[BaseException | None] = loop.create_future()
        self.format: AudioFormat | None = None
        self.sent = 0  # chunks handed to the loop (written by the thread only)
        self.received = 0  # chunks the loop has taken (written by the loop only)
        self.thread = threading.Thread(
            target=self._main, name=f"guard_mode stream {self.where}", daemon=True
        )

    def start(self) -> None:
        self.source.stats.connections += 1
        self.thread.start()

    # --- event loop side

    def _finish(self, error: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(error)

    def _deliver(self, pcm: Pcm16) -> None:
        self.received += 1
        if self.stop.is_set() or self.sink is None or self.done.done():
            return
        self.source.stats.chunks += 1
        try:
            self.sink(pcm)
        except Exception as err:  # run() raises it: not ours to judge
            self.stop.set()
            self._finish(err)

    # --- decoder thread side

    def _call(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: Home Assistant is stopping
            self.stop.set()

    def _main(self) -> None:
        error: BaseException | None = None
        try:
            self._connect_and_decode()
        except Exception as err:  # probe()/run() raise it on the loop, traceback and all
            error = err
        finally:
            self._call(self._finish, error)

    def _connect_and_decode(self) -> None:
        container = self._open()
        try:
            if not self.stop.is_set():
                self._decode(container, _audio_stream(container, self.where))
        finally:
            container.close()

    def _open(self) -> InputContainer:
        import av  # noqa: PLC0415  (heavy: only when a stream source is used)

        url = self.source.url
        scheme = urlsplit(url).scheme.lower()
        if scheme not in SCHEMES:
            raise CannotConnect(
                f"{self.where} is not a stream URL (rtsp://, rtsps://, http://, https://)"
            )
        options = {"protocol_whitelist": PROTOCOLS, "analyzeduration": ANALYZE_US}
        if scheme.startswith("rtsp"):
            options |= {"rtsp_transport": "tcp", "allowed_media_types": "audio"}
        waits = self.source.timeouts
        started = time.monotonic()
        try:
            return av.open(
                url,
                mode="r",
                container_options=options,
                timeout=(waits.open_s, waits.stall_s),
            )
        except Exception as err:
            if time.monotonic() - started >= waits.open_s * 0.95:
                raise CannotConnect(
                    f"{self.where} did not answer within {waits.open_s:.0f} s"
                ) from err
            raise _open_error(err, self.where, url) from err

    def _decode(self, container: InputContainer, audio: AudioStream) -> None:
        import av  # noqa: PLC0415

        for stream in container.streams:
            if stream.index != audio.index:
                stream.discard = av.stream.Discard.all
        stall = self.source.timeouts.stall_s
        resampler: av.AudioResampler | None = None
        layout: tuple[str, str, int] | None = None
        last_packet = last_audio = time.monotonic()
        bad = 0
        try:
            for packet in container.demux():
                if self.stop.is_set():
                    return
                now = last_packet = time.monotonic()
                if packet.stream_index != audio.index or not packet.size:
                    if now - last_audio > stall:
                        raise NoAudio(f"{self.where} sent no audio for {stall:.0f} s")
                    continue
                try:
                    frames = audio.decode(packet)
                except av.FFmpegError as err:
                    bad += 1
                    self.source.stats.bad_packets += 1
                    if bad >= MAX_BAD_PACKETS:
                        raise BadAudio(
                            f"{self.where}: {bad} audio packets in a row failed to decode"
                        ) from err
                    continue
                bad = 0
                for frame in frames:
                    last_audio = now
                    rate = int(frame.sample_rate)
                    channels = int(frame.layout.nb_channels)
                    if self.format is None:
                        self.format = check_format(rate, 2, channels)
                        self.source.stats.source_format = str(self.format)
                        if self.sink is None:
                            return  # probe: the first audio is all it wants
                    if layout != (key := (frame.format.name, frame.layout.name, rate)):
                        layout = key
                        resampler = av.AudioResampler(
                            format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=CHUNK_SAMPLES
                        )
                    assert resampler is not None
                    for chunk in resampler.resample(frame):
                        self._hand_over(chunk.to_ndarray()[0])
                if now - last_audio > stall:
                    raise NoAudio(f"{self.where} sent no decodable audio for {stall:.0f} s")
        except (av.FFmpegError, OSError) as err:
            if self.stop.is_set():
                return
            if time.monotonic() - last_packet >= stall * 0.95:
                raise NoAudio(f"{self.where} sent nothing for {stall:.0f} s") from err
            raise CannotConnect(f"{self.where} failed: {_strerror(err)}") from err
        if not self.stop.is_set():
            raise CannotConnect(f"{self.where} ended the stream")

    def _hand_over(self, pcm: Pcm16) -> None:
        if self.sent - self.received >= MAX_IN_FLIGHT:
            if not self.source.stats.chunks_dropped:
                _LOGGER.debug("%s: the event loop is behind; dropping audio", self.where)
            self.source.stats.chunks_dropped += 1
            return
        self.sent += 1
        self._call(self._deliver, pcm)


def _audio_stream(container: InputContainer, where: str) -> AudioStream:
    """Return the first audio stream FFmpeg can decode; say in plain words why there is none."""
    streams = container.streams.audio
    if not streams:
        raise NotAMicrophone(f"{where}: stream has no audio track")
    for stream in streams:
        if stream.codec_context is not None:
            return stream
    raise BadAudio(f"{where}: FFmpeg has no decoder for its audio codec")


def _resolves(url: str) -> bool:
    """Return whether the URL's host name resolves (called in the decoder thread)."""
    try:
        host = urlsplit(url).hostname
        if host:
            socket.getaddrinfo(host, None)
    except OSError, ValueError:
        return False
    return True


def _open_error(err: Exception, where: str, url: str) -> SourceError:
    """Turn PyAV's error on opening into one the user understands (never showing the URL)."""
    import av  # noqa: PLC0415

    http = {
        av.error.HTTPUnauthorizedError: "refused the user name or password (HTTP 401)",
        av.error.HTTPForbiddenError: "refused access (HTTP 403)",
        av.error.HTTPNotFoundError: "was not found (HTTP 404)",
    }
    for kind, what in http.items():
        if isinstance(err, kind):
            return CannotConnect(f"{where} {what}")
    if isinstance(err, av.error.InvalidDataError):
        return NotAMicrophone(f"{where} is not an audio or video stream FFmpeg can read")
    if isinstance(err, av.error.ProtocolNotFoundError):
        return CannotConnect(f"{where}: this kind of URL isn't supported")
    if not isinstance(err, ConnectionError) and not _resolves(url):  # FFmpeg just says "I/O error"
        return CannotConnect(f"cannot connect to {where}: its host name is not known")
    return CannotConnect(f"cannot connect to {where}: {_strerror(err)}")


def _strerror(err: BaseException) -> str:
    """Return the error's description without the file name (the URL, with credentials)."""
    text = getattr(err, "strerror", None)
    if isinstance(text, str) and text:
        return text[0].lower() + text[1:]
    return type(err).__name__
