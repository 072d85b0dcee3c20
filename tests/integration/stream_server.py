"""Real streams on loopback for the stream-source tests, encoded live by the ffmpeg binary.

* :class:`RtspServer`: a small RTSP server (RFC 2326; RTP over the RTSP connection only, as
  cameras and go2rtc offer it) that relays RTP packets an ``ffmpeg -f rtp`` process encodes.
  ffmpeg itself can't serve RTSP to a player (its RTSP muxer only pushes to a server).
* :class:`HttpStreamServer`: an aiohttp server whose paths stream what an ffmpeg process writes
  to its stdout (MP3, MPEG-TS with video and audio, video only), one process per request.
* :class:`SilentServer`: accepts connections, reads what comes, never answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
import functools
from pathlib import Path
import re
import shutil
import socket
import struct
import threading
import time

from aiohttp import web

FFMPEG = shutil.which("ffmpeg")

SINE = ["-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]
TESTSRC = ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]
AAC_STEREO = ["-ac", "2", "-c:a", "aac", "-b:a", "96k"]
MPEG4 = ["-c:v", "mpeg4", "-q:v", "10", "-g", "25"]
QUIET = ["-hide_banner", "-nostdin", "-loglevel", "error"]
# How long ffmpeg may take to open its RTP outputs: seconds on an idle host, far more when the
# test suite shares two cores with another one. The wait ends early if ffmpeg exits.
SDP_TIMEOUT_S = 60


async def _ffmpeg(
    *args: str | Path, stdout: int | None = None, stderr: int | None = None
) -> asyncio.subprocess.Process:
    assert FFMPEG is not None
    return await asyncio.create_subprocess_exec(
        FFMPEG,
        *QUIET,
        *map(str, args),
        stdout=stdout,
        stderr=stderr,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def _stop(process: asyncio.subprocess.Process | None) -> None:
    if process is None or process.returncode is not None:
        return
    process.kill()
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


class _Sink(asyncio.DatagramProtocol):
    """Receives ffmpeg's RTP (or RTCP) packets for one track."""

    def __init__(self, server: RtspServer, track: int) -> None:
        self.server = server
        self.track = track

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server.relay(self.track, data)


@dataclass
class _Client:
    writer: asyncio.StreamWriter
    channels: dict[int, int] = field(default_factory=dict)  # track -> interleaved channel
    playing: bool = False


class RtspServer:
    """Serve ``rtsp://127.0.0.1:PORT/live`` with the tracks one ffmpeg process encodes."""

    def __init__(self, *, audio: bool = True, video: bool = False, silent: bool = False) -> None:
        """Audio: 1 kHz sine, stereo AAC 48 kHz; video: MPEG-4 test pattern; silent: no answers."""
        self.audio = audio
        self.video = video
        self.silent = silent
        self.port = 0
        self.sdp = ""
        self.requests: list[str] = []  # "METHOD url" of every request
        self.setups: list[str] = []  # the track URLs clients set up
        self.packets_sent = 0
        self.paused = False  # True: keep the connections open but send nothing (a stall)
        self._clients: list[_Client] = []
        self._server: asyncio.Server | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._transports: list[asyncio.DatagramTransport] = []

    @property
    def url(self) -> str:
        """Return the stream's URL."""
        return f"rtsp://127.0.0.1:{self.port}/live"

    async def start(self, sdp_file: Path) -> RtspServer:
        """Start ffmpeg and listen; return once the SDP is known."""
        loop = asyncio.get_running_loop()
        args: list[str | Path] = []
        outputs: list[str | Path] = []
        tracks = [kind for kind, on in (("v", self.video), ("a", self.audio)) if on]
        for index, kind in enumerate(tracks):
            args += TESTSRC if kind == "v" else SINE
            ports = []
            for rtcp in (False, True):  # RTCP (sender reports) isn't needed by players: dropped
                protocol = asyncio.DatagramProtocol() if rtcp else _Sink(self, index)
                transport, _protocol = await loop.create_datagram_endpoint(
                    functools.partial(_same, protocol), local_addr=("127.0.0.1", 0)
                )
                self._transports.append(transport)
                ports.append(transport.get_extra_info("sockname")[1])
            codec = MPEG4 if kind == "v" else AAC_STEREO
            outputs += ["-map", f"{index}:{kind}", *codec, "-f", "rtp"]
            outputs.append(f"rtp://127.0.0.1:{ports[0]}?rtcpport={ports[1]}&pkt_size=1200")
        log = sdp_file.with_suffix(".log")
        with log.open("wb") as stderr:
            self._process = await _ffmpeg(*args, *outputs, "-sdp_file", sdp_file, stderr=stderr)
        process = self._process
        sdp = await asyncio.to_thread(
            _wait_for_sdp, sdp_file, len(tracks), lambda: process.returncode is not None
        )
        if sdp is None:
            raise RuntimeError(f"ffmpeg exited without an SDP: {log.read_text()!r}")
        self.sdp = _with_controls(sdp)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop ffmpeg, the listener and every client connection."""
        await _stop(self._process)
        for transport in self._transports:
            transport.close()
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_clients(self) -> None:
        """End every client's connection at once, as a camera that reboots does."""
        for client in self._clients:
            client.writer.transport.abort()
        self._clients.clear()

    def relay(self, track: int, packet: bytes) -> None:
        """Send one RTP packet to every playing client, interleaved on the track's channel."""
        if self.paused:
            return
        for client in self._clients:
            channel = client.channels.get(track)
            if client.playing and channel is not None and not client.writer.is_closing():
                client.writer.write(b"$" + struct.pack(">BH", channel, len(packet)) + packet)
                self.packets_sent += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        self._clients.append(client)
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved RTCP from the player
                    _channel, length = struct.unpack(">BH", await reader.readexactly(3))
                    await reader.readexactly(length)
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, url, _version = lines[0].split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                if length := int(headers.get("content-length", 0)):
                    await reader.readexactly(length)
                self.requests.append(f"{method} {url}")
                if self.silent:
                    continue
                self._answer(client, method, url, headers)
        except asyncio.IncompleteReadError, ConnectionError:
            pass
        finally:
            if client in self._clients:
                self._clients.remove(client)
            writer.close()

    def _answer(self, client: _Client, method: str, url: str, headers: dict[str, str]) -> None:
        extra: dict[str, str] = {}
        body = b""
        status = "200 OK"
        if method == "OPTIONS":
            extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
        elif method == "DESCRIBE":
            extra["Content-Base"] = f"{self.url}/"
            extra["Content-Type"] = "application/sdp"
            body = self.sdp.encode()
        elif method == "SETUP":
            match = re.search(r"trackID=(\d+)", url)
            transport = headers.get("transport", "")
            interleaved = re.search(r"interleaved=(\d+)", transport)
            if match is None or "TCP" not in transport or interleaved is None:
                status = "461 Unsupported Transport"
            else:
                self.setups.append(url)
                channel = int(interleaved.group(1))
                client.channels[int(match.group(1))] = channel
                extra["Transport"] = (
                    f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1};ssrc=00000001"
                )
        elif method == "PLAY":
            client.playing = True
        elif method == "TEARDOWN":
            client.playing = False
        elif method != "GET_PARAMETER":
            status = "405 Method Not Allowed"
        reply = [f"RTSP/1.0 {status}", f"CSeq: {headers.get('cseq', '0')}", "Session: 4242"]
        reply += [f"{name}: {value}" for name, value in extra.items()]
        reply += [f"Content-Length: {len(body)}", "", ""]
        client.writer.write("\r\n".join(reply).encode() + body)


def _same(protocol: asyncio.DatagramProtocol) -> asyncio.DatagramProtocol:
    return protocol


def _wait_for_sdp(path: Path, tracks: int, exited: Callable[[], bool]) -> str | None:
    """Return the SDP ffmpeg writes once its RTP outputs are open; None if ffmpeg exits first."""
    deadline = time.monotonic() + SDP_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists() and (sdp := path.read_text()).count("a=rtpmap") == tracks:
            return sdp
        if exited():
            return None
        time.sleep(0.02)
    raise TimeoutError(f"ffmpeg wrote no SDP in {SDP_TIMEOUT_S} s")


def _with_controls(sdp: str) -> str:
    """Name each track ``trackID=N`` (ffmpeg's plain RTP SDP has no control attributes)."""
    lines: list[str] = []
    track = 0
    for line in sdp.splitlines():
        if line.startswith("c="):
            line = "c=IN IP4 0.0.0.0"  # noqa: PLW2901
        lines.append(line)
        if line.startswith("m="):
            lines.append(f"a=control:trackID={track}")
            track += 1
    return "\r\n".join(lines) + "\r\n"


HTTP_STREAMS: dict[str, list[str]] = {
    "audio.mp3": [*SINE, "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
    "av.ts": [*TESTSRC, *SINE, "-map", "0:v", "-map", "1:a", *MPEG4, *AAC_STEREO, "-f", "mpegts"],
    "video.ts": [*TESTSRC, *MPEG4, "-f", "mpegts"],
}


class HttpStreamServer:
    """Serve ``http://127.0.0.1:PORT/NAME`` for each name in HTTP_STREAMS, live."""

    def __init__(self) -> None:
        """Prepare the app: streams, plus ``?seconds=N`` to cut the connection after N s."""
        self.port = 0
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None
        self._processes: set[asyncio.subprocess.Process] = set()
        self._responses: set[web.StreamResponse] = set()

    def url(self, name: str) -> str:
        """Return the URL of one stream."""
        return f"http://127.0.0.1:{self.port}/{name}"

    async def start(self) -> HttpStreamServer:
        """Listen on a free port."""
        app = web.Application()
        app.router.add_get("/{name}", self._stream)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = _listening_socket()
        await web.SockSite(self._runner, sock).start()
        self.port = sock.getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop every encoder and the server."""
        for process in list(self._processes):
            await _stop(process)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append(request.path_qs)
        if name == "locked.mp3":  # a camera that wants another user name or password
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="camera"'})
        if name == "forbidden.mp3":
            raise web.HTTPForbidden
        if name == "index.html":  # the camera's web page, not its stream
            return web.Response(text="<html><body>Camera login</body></html>\n" * 200)
        if name not in HTTP_STREAMS:
            raise web.HTTPNotFound
        seconds = float(request.query.get("seconds", "0"))
        process = await _ffmpeg(*HTTP_STREAMS[name], "pipe:1", stdout=asyncio.subprocess.PIPE)
        self._processes.add(process)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds if seconds else None
        try:
            while data := await process.stdout.read(4096):
                await response.write(data)
                if deadline is not None and loop.time() > deadline:
                    assert request.transport is not None
                    request.transport.abort()  # the server "dies" mid-stream
                    break
        except ConnectionError:
            pass
        finally:
            await _stop(process)
            self._processes.discard(process)
        return response


@contextlib.contextmanager
def rtsp_in_thread(sdp_file: Path) -> Iterator[RtspServer]:
    """Run an RtspServer on an event loop of its own thread, so the test's loop may block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test RTSP server")
    thread.start()
    server = RtspServer()
    try:
        asyncio.run_coroutine_threadsafe(server.start(sdp_file), loop).result(SDP_TIMEOUT_S + 10)
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        # close() would leave the loop's executor thread (its getaddrinfo) to end on its own,
        # after the test's thread check: join it here.
        asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class SilentServer:
    """Accept TCP connections and read them, but never send a byte."""

    def __init__(self) -> None:
        """Prepare; call start()."""
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> SilentServer:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        for writer in self._writers:
            writer.transport.abort()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        self._writers.discard(writer)
        writer.close()


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock
