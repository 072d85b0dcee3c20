#!/usr/bin/env python3
"""Guard Mode agent: stream this device's microphone to Home Assistant while guard mode listens.

Runs on the device with the microphone (e.g. a Raspberry Pi with a USB microphone); needs Python
3.9 or later and aiohttp (Debian: ``apt install python3-aiohttp alsa-utils``). It keeps a
websocket to Home Assistant open, authenticated with a long-lived access token and the
satellite's own key (shown in the satellite's settings: only an agent with it may feed or
replace that satellite), and opens the microphone only while Home Assistant says "start" (guard
mode armed); on "stop", or when the connection drops, the capture process is ended: disarmed
means the microphone is closed.

Protocol (``/api/guard_mode/push/<push id>``, text messages are JSON objects):

    agent → HA  {"type": "hello", "agent": "guard-mode-agent/1", "rate": 16000, "width": 2,
                 "channels": 1}
    HA → agent  {"type": "start"} or {"type": "stop"}, now and whenever it changes
    agent → HA  binary messages of raw PCM (s16le) between "start" and "stop"
    HA → agent  {"type": "error", "code": ..., "message": ...} before HA closes the connection

See agent/README.md for installation.
"""

# asyncio.TimeoutError is the builtin TimeoutError only from Python 3.11; this runs on 3.9.
# ruff: noqa: UP041

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
import contextlib
import json
import logging
import os
import random
import re
import shlex
import signal
import ssl
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

try:
    import aiohttp
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("guard_mode_agent needs aiohttp: apt install python3-aiohttp (or pip install aiohttp)")

AGENT = "guard-mode-agent/1"
PUSH_PATH = "/api/guard_mode/push/"
WIDTH = 2  # s16le
TOKEN_ENV = "GUARD_MODE_TOKEN"
KEY_ENV = "GUARD_MODE_SATELLITE_KEY"
KEY_HEADER = "X-Guard-Mode-Key"
REFUSED_HEADER = "X-Guard-Mode-Refused"  # Home Assistant's 403 says what it refused
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
STABLE_S = 30.0  # a connection that lasted this long resets the backoff
CAPTURE_RETRY_MAX_S = 30.0
CONNECT_TIMEOUT_S = 15.0
HEARTBEAT_S = 30.0
TERMINATE_TIMEOUT_S = 2.0
STDERR_BLOCK = 4096  # the capture process's stderr is read in blocks of this many bytes
MAX_MESSAGE = 1024 * 1024
MAX_BYTE_RATE = 768_000  # what Home Assistant takes from one microphone (bytes per second)

EXIT_AUTH = 77  # EX_NOPERM: the token was refused; retrying would not help (and may get banned)
EXIT_CONFIG = 78  # EX_CONFIG: missing token, bad URL
EXIT_REPLACED = 75  # another agent took this satellite over: taking it back would start a tug
CLOSE_REPLACED = 4409

_LOGGER = logging.getLogger("guard_mode_agent")


class TokenRefusedError(Exception):
    """Home Assistant refused the token."""


class ReplacedError(Exception):
    """Another agent connected for this satellite (with its key): Home Assistant listens to it."""


class Backoff:
    """Exponential backoff (1, 2, 4 … max seconds) with ±25 % jitter."""

    def __init__(self, start: float, maximum: float) -> None:
        self.start = start
        self.maximum = maximum
        self.attempt = 0
        self._rng = random.Random()

    def reset(self) -> None:
        """Start again at the shortest delay."""
        self.attempt = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt."""
        self.attempt += 1
        base = min(self.start * 2.0 ** (self.attempt - 1), self.maximum)
        return base * self._rng.uniform(0.75, 1.25)


def push_url(base: str, push_id: str) -> str:
    """Return the websocket URL of push_id on the Home Assistant at base (http/https/ws/wss)."""
    parts = urlsplit(base.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base!r}")
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    path = parts.path.rstrip("/") + PUSH_PATH + quote(push_id, safe="")
    return urlunsplit((scheme, netloc, path, "", ""))


def capture_command(args: argparse.Namespace) -> list[str]:
    """Return the capture program's argv: --command, or arecord on the ALSA device."""
    if args.command:
        return shlex.split(args.command)
    return [
        "arecord", "-q", "-D", args.device, "-f", "S16_LE",
        "-r", str(args.rate), "-c", str(args.channels), "-t", "raw",
    ]  # fmt: skip


def shown_command(argv: list[str]) -> str:
    """Return the capture command as logged: a URL's user and password replaced by ***."""
    return shlex.join(re.sub(r"(?<=://)[^/@\s]*@", "***@", arg) for arg in argv)


class Capture:
    """The microphone: a capture process whose stdout is sent on while started."""

    def __init__(
        self, argv: list[str], chunk_bytes: int, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self.argv = argv
        self.chunk_bytes = chunk_bytes
        self._send = send
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # a failure was reported; say so when audio flows again

    @property
    def running(self) -> bool:
        """Return whether the microphone is open (or being reopened)."""
        return self._task is not None

    def start(self) -> None:
        """Open the microphone (start the capture process), if it isn't open."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Close the microphone: end the capture process and wait until it is gone."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(1.0, CAPTURE_RETRY_MAX_S)
        while True:
            try:
                sent, problem = await self._capture_once()
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as err:
                _LOGGER.debug("Stopped sending audio: %s", err)
                return  # the connection is going away; the session notices it too
            if sent:
                backoff.reset()
            if not self._failing:
                self._failing = True
                _LOGGER.warning("Microphone: %s; restarting it while guard mode listens", problem)
            else:
                _LOGGER.debug("Microphone: %s", problem)
            await asyncio.sleep(backoff.next_delay())

    async def _capture_once(self) -> tuple[int, str]:
        """Run the capture process once; return the bytes sent and why it ended."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: ended as a whole
            )
        except OSError as err:
            return 0, f"cannot start {self.argv[0]!r}: {err}"
        _LOGGER.debug("Capture process %d started: %s", proc.pid, shown_command(self.argv))
        tail: deque[str] = deque(maxlen=5)
        stderr = asyncio.ensure_future(_collect(proc.stderr, tail))
        sent = 0
        try:
            assert proc.stdout is not None
            while True:
                try:
                    chunk = await proc.stdout.readexactly(self.chunk_bytes)
                except asyncio.IncompleteReadError as end:
                    chunk = end.partial
                if chunk:
                    await self._send(chunk)
                    if not sent and self._failing:
                        self._failing = False
                        _LOGGER.info("Microphone: audio flows again")
                    sent += len(chunk)
                if len(chunk) < self.chunk_bytes:
                    break  # end of its output: it exited (or is about to)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), TERMINATE_TIMEOUT_S)
        finally:
            await _terminate(proc)
            stderr.cancel()
            await asyncio.gather(stderr, return_exceptions=True)
        said = f": {' | '.join(tail)}" if tail else ""
        return sent, f"{self.argv[0]} exited with status {proc.returncode}{said}"


async def _collect(stream: asyncio.StreamReader | None, tail: deque[str]) -> None:
    """Keep the last lines the capture process writes to stderr (for the report).

    Read in blocks, and a carriage return ends a line too: progress lines (ffmpeg's stats) end
    in one alone, and a line that never ends must not stop the reading; unread, the pipe fills
    and the capture process stops.
    """
    if stream is None:
        return
    pending = b""
    while block := await stream.read(STDERR_BLOCK):
        *lines, pending = re.split(rb"[\r\n]", pending + block)
        pending = pending[-STDERR_BLOCK:]
        _keep(lines, tail)
    _keep([pending], tail)


def _keep(lines: list[bytes], tail: deque[str]) -> None:
    for line in lines:
        if text := line.decode(errors="replace").strip():
            tail.append(text[:200])


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """End the capture process group: SIGTERM, then SIGKILL; wait until it is gone."""
    if proc.returncode is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), TERMINATE_TIMEOUT_S)
        except asyncio.TimeoutError:
            _signal_group(proc, signal.SIGKILL)
            await proc.wait()
        except asyncio.CancelledError:
            _signal_group(proc, signal.SIGKILL)  # no time to wait: the microphone must close
            raise
    _LOGGER.debug("Capture process %d ended (status %s)", proc.pid, proc.returncode)


def _signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Agent:
    """Keeps the connection to Home Assistant and opens the microphone when told to."""

    def __init__(self, args: argparse.Namespace, token: str, key: str) -> None:
        self.args = args
        self.url = push_url(args.url, args.satellite)
        self._token = token
        self._key = key
        self.argv = capture_command(args)
        frame = WIDTH * args.channels
        self.chunk_bytes = max(frame, args.rate * args.chunk_ms // 1000 * frame)
        self._tls: dict[str, Any] = {}  # aiohttp's default: verify against the system CAs
        if args.ca_file:
            self._tls = {"ssl": ssl.create_default_context(cafile=args.ca_file)}
        self._server_error: str | None = None
        self._answered = False

    async def run_forever(self) -> None:
        """Connect, serve and reconnect with backoff; raise TokenRefusedError on a bad token."""
        backoff = Backoff(BACKOFF_START_S, BACKOFF_MAX_S)
        logged = ""
        outage_since: float | None = None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                began = time.monotonic()
                try:
                    error = await self._session(session, outage_since)
                except aiohttp.WSServerHandshakeError as err:
                    if err.status == 401:
                        raise TokenRefusedError(
                            "Home Assistant refused the access token (HTTP 401): create a new "
                            "long-lived access token in your Home Assistant profile (Security "
                            "tab) and put it in the token file"
                        ) from err
                    headers = err.headers
                    if err.status == 403 and headers and headers.get(REFUSED_HEADER) == "key":
                        raise TokenRefusedError(
                            "Home Assistant refused this satellite's key (HTTP 403): copy the "
                            "key shown in the satellite's settings (Reconfigure) into the key "
                            "file"
                        ) from err
                    if err.status == 403:
                        raise TokenRefusedError(
                            "Home Assistant refused this device (HTTP 403): is its address "
                            "banned after failed logins (ip_bans.yaml)?"
                        ) from err
                    error = _handshake_problem(err)
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as err:
                    error = f"cannot connect to {self.url}: {_plain(err)}"
                if self._answered:
                    outage_since = None
                    if time.monotonic() - began >= STABLE_S:
                        backoff.reset()
                delay = backoff.next_delay()
                if outage_since is None:  # once per outage (and Home Assistant's own words)
                    outage_since = time.monotonic()
                    logged = error
                    _LOGGER.warning("%s; retrying until it works", error)
                elif self._server_error is not None and error != logged:
                    logged = error
                    _LOGGER.warning("%s", error)
                else:
                    _LOGGER.debug("%s; retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)

    async def _session(self, session: aiohttp.ClientSession, outage_since: float | None) -> str:
        """Serve one connection; return why it ended."""
        self._forget_session()
        headers = {"Authorization": f"Bearer {self._token}", KEY_HEADER: self._key}
        ws = await asyncio.wait_for(
            session.ws_connect(
                self.url,
                headers=headers,
                heartbeat=HEARTBEAT_S,
                compress=0,
                max_msg_size=MAX_MESSAGE,
                **self._tls,
            ),
            CONNECT_TIMEOUT_S,
        )
        capture = Capture(self.argv, self.chunk_bytes, ws.send_bytes)
        try:
            hello = {
                "type": "hello",
                "agent": AGENT,
                "rate": self.args.rate,
                "width": WIDTH,
                "channels": self.args.channels,
            }
            await ws.send_str(json.dumps(hello))
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await self._handle(msg.data, capture, outage_since)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    continue
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    return f"connection error: {_plain(msg.data)}"
                else:  # close, closing, closed
                    break
        finally:
            if capture.running:
                await capture.stop()
                _LOGGER.info("Microphone closed (disconnected)")
            await ws.close()
        if ws.close_code == CLOSE_REPLACED:
            raise ReplacedError(
                "another agent connected for this satellite with its key, and Home Assistant "
                "now listens to that one: this one stops (run one agent per satellite)"
            )
        if self._server_error:
            return self._server_error
        return f"Home Assistant closed the connection (code {ws.close_code})"

    def _forget_session(self) -> None:
        self._answered = False  # set when Home Assistant answers the hello
        self._server_error = None  # the error Home Assistant sent before closing

    async def _handle(self, text: str, capture: Capture, outage_since: float | None) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, TypeError, KeyError) as err:  # keep "as": Python 3.9 needs ( )
            _LOGGER.debug("Ignoring a message that isn't understood (%s): %.100r", err, text)
            return
        if kind in ("start", "stop") and not self._answered:
            self._answered = True
            if outage_since is None:
                _LOGGER.info("Connected to Home Assistant as satellite %s", self.args.satellite)
            else:
                _LOGGER.info(
                    "Connected to Home Assistant again after %.0f s",
                    time.monotonic() - outage_since,
                )
        if kind == "start":
            if not capture.running:
                _LOGGER.info("Guard mode listens: microphone open")
                capture.start()
        elif kind == "stop":
            if capture.running:
                await capture.stop()
                _LOGGER.info("Guard mode stopped listening: microphone closed")
            else:
                _LOGGER.debug("Guard mode is not listening: microphone closed")
        elif kind == "error":
            self._server_error = (
                f"Home Assistant: {str(message.get('message'))[:200]} ({message.get('code')})"
            )
        else:
            _LOGGER.debug("Ignoring a %r message", kind)


def _handshake_problem(err: aiohttp.WSServerHandshakeError) -> str:
    if err.status == 404:
        return (
            "Home Assistant has no Guard Mode push endpoint (is Guard Mode installed and set up?)"
        )
    return f"Home Assistant refused the connection: HTTP {err.status} {err.message}"


def _plain(err: object) -> str:
    return str(err) or type(err).__name__


def load_token(args: argparse.Namespace) -> str:
    """Return the access token from --token-file, $GUARD_MODE_TOKEN or --token (warned about)."""
    return _secret(args.token_file, TOKEN_ENV, args.token, "--token", "access token")


def load_key(args: argparse.Namespace) -> str:
    """Return the satellite's key from --key-file, $GUARD_MODE_SATELLITE_KEY or --key."""
    return _secret(args.key_file, KEY_ENV, args.key, "--key", "satellite key")


def _secret(path: str | None, env: str, given: str | None, option: str, what: str) -> str:
    """Return a secret from a file, else the environment, else the command line (warned)."""
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                secret = file.read().strip()
            mode = os.stat(path).st_mode
        except OSError as err:
            raise SystemExit(_config_error(f"cannot read the {what} file: {err}")) from err
        if mode & 0o004:
            _LOGGER.warning("%s is readable by every user on this machine: chmod 600 it", path)
    elif os.environ.get(env):
        secret = os.environ[env].strip()
    elif given:
        _LOGGER.warning(
            "%s is visible to every user of this machine (ps, shell history): "
            "prefer %s-file or $%s",
            option,
            option,
            env,
        )
        secret = given.strip()
    else:
        raise SystemExit(_config_error(f"no {what}: use {option}-file FILE or set ${env}"))
    if not secret or any(ch.isspace() for ch in secret):
        raise SystemExit(_config_error(f"the {what} is empty or has spaces in it"))
    return secret


def _config_error(message: str) -> int:
    _LOGGER.error("%s", message)
    return EXIT_CONFIG


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="guard_mode_agent.py",
        description="Stream this device's microphone to Guard Mode in Home Assistant while "
        "guard mode listens (the microphone is closed otherwise).",
    )
    parser.add_argument(
        "--url", required=True, help="Home Assistant, e.g. http://homeassistant.local:8123"
    )
    parser.add_argument(
        "--satellite", required=True, metavar="PUSH_ID", help="the satellite's push id"
    )
    parser.add_argument("--token-file", help="file holding a long-lived access token")
    parser.add_argument(
        "--token",
        help=f"the token itself (visible to other users: prefer --token-file or ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--key-file", help="file holding the satellite's key (shown in the satellite's settings)"
    )
    parser.add_argument(
        "--key",
        help=f"the key itself (visible to other users: prefer --key-file or ${KEY_ENV})",
    )
    parser.add_argument(
        "--device", default="default", help="ALSA capture device for arecord (default: default)"
    )
    parser.add_argument("--rate", type=int, default=16000, help="sample rate in Hz (default 16000)")
    parser.add_argument("--channels", type=int, default=1, help="channels (default 1)")
    parser.add_argument(
        "--command",
        help="capture program writing raw s16le at --rate/--channels to stdout, used instead of "
        'arecord, e.g. "parec --raw --format=s16le --rate=16000 --channels=1"',
    )
    parser.add_argument("--chunk-ms", type=int, default=100, help="audio per message (default 100)")
    parser.add_argument("--ca-file", help="CA certificate to trust for https (self-signed)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if not 4000 <= args.rate <= 192000:
        parser.error("--rate must be between 4000 and 192000")
    if not 1 <= args.channels <= 8:
        parser.error("--channels must be between 1 and 8")
    if args.rate * WIDTH * args.channels > MAX_BYTE_RATE:
        parser.error(f"--rate × 2 bytes × --channels must be at most {MAX_BYTE_RATE} a second")
    if not 10 <= args.chunk_ms <= 1000:
        parser.error("--chunk-ms must be between 10 and 1000")
    if args.command is not None and not shlex.split(args.command):
        parser.error("--command is empty")
    try:
        push_url(args.url, args.satellite)
    except ValueError as err:
        parser.error(str(err))
    return args


async def amain(args: argparse.Namespace, token: str, key: str) -> int:
    """Run until SIGINT/SIGTERM (0), or until it must stop: exit status EXIT_AUTH, EXIT_REPLACED."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    agent = Agent(args, token, key)
    _LOGGER.info(
        "Guard Mode agent for satellite %s at %s; capture: %s",
        args.satellite,
        agent.url,
        shown_command(agent.argv),
    )
    running = asyncio.ensure_future(agent.run_forever())
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not running.done():
        _LOGGER.info("Stopping")
        running.cancel()
    ended: Exception | None = None
    try:
        await running  # on cancel: the microphone is closed on the way out
    except asyncio.CancelledError:
        pass
    except (TokenRefusedError, ReplacedError) as err:
        ended = err
    if ended is None:
        return 0
    _LOGGER.error("%s", ended)
    return EXIT_REPLACED if isinstance(ended, ReplacedError) else EXIT_AUTH


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parse_args(argv)
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(message)s" if journald else "%(asctime)s %(levelname)s %(message)s",
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    token = load_token(args)
    key = load_key(args)
    return asyncio.run(amain(args, token, key))


if __name__ == "__main__":
    sys.exit(main())
