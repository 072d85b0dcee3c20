"""The engine service against hostile peers: real server, real sockets on loopback, real model.

Each attack runs next to an honest client that streams a smoke alarm as fast as the service's
bounds let it (RATE_FACTOR × real time after the burst), and asserts the bound (what the attacker
got, what the service held) and that the honest client's alarm was detected as it would be
without the attack. Memory figures are measured by scripts/loadtest hostile, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import logging
from pathlib import Path
import socket
import ssl
import time

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.error import Error
from wyoming.info import Describe
from wyoming.ping import Ping

from custom_components.guard_mode.engine import bounds, server as server_module
from custom_components.guard_mode.engine.decider import EventKind
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.engine.protocol import (
    ERROR_PROTOCOL,
    ERROR_TIMEOUT,
    ERROR_TOO_MANY,
    ERROR_UNAUTHORIZED,
    STATUS_TYPE,
    GuardModeAuth,
    GuardModeStream,
    fingerprint,
)
from custom_components.guard_mode.engine.server import EngineServer, start_server

from .. import synth
from ..certs import make_certificate
from .service_client import TOKEN, Client, Heard, frame, tagger_for, to_pcm, wait_for

pytestmark = pytest.mark.usefixtures("socket_enabled")

ALARM_START_S = 1.0  # synth.alarm's lead
T3_CYCLE_S = 4.0


def honest_alarm() -> bytes:
    """Two T3 cycles of a smoke alarm at 16 kHz mono (9 s of audio)."""
    return to_pcm(synth.alarm("T3", "piezo", cycles=2, peak_db=-12.0).audio, 16000, 1)


@contextlib.asynccontextmanager
async def bounded(**options: object) -> AsyncIterator[EngineServer]:
    """A started server with the service's own bounds, but for the options given."""
    server = EngineServer(tagger_for("numpy"), token=TOKEN, **options)  # type: ignore[arg-type]
    await start_server(server, "127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


async def honest_smoke_alarm(port: int) -> Heard:
    """Stream the alarm (the server paces it); return its onset, checked as without attack."""
    client = await Client.connect(port)
    try:
        await client.send(GuardModeStream(name="Hall").event())
        await client.stream(honest_alarm(), rate=16000, channels=1, speed=1000.0)
        onset = await client.until_heard(kind=EventKind.ONSET, sound=Sound.SMOKE_ALARM)
        await client.until(STATUS_TYPE, ended=True)  # an honest client hears its stream out
    finally:
        await client.close()
    # One full T3 cycle (+ a window) after the alarm starts, as the design promises.
    assert onset.detection.start_s <= ALARM_START_S + 1.0
    assert onset.time_s <= ALARM_START_S + T3_CYCLE_S + 1.5
    return onset


async def raw(port: int, data: bytes, token: bool = True) -> Client:
    """Connect, authenticate (or not) and send data as it is."""
    client = await Client.connect(port, TOKEN if token else None)
    client.writer.write(data)
    await client.writer.drain()
    return client


def errors(client: Client) -> list[str]:
    return [Error.from_event(e).code or "" for e in client.events if Error.is_type(e.type)]


# --- giant chunks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "width", "size", "why"),
    [
        (4000, 1, 16 * 1024 * 1024, "payload of 16777216 bytes is too big"),  # 70 min, 16 MiB
        (4000, 1, bounds.MAX_CHUNK_BYTES, "(4.4 min of audio) is too big"),  # 1 MiB, 262 s
        (16000, 2, 64000, "(2.00 s of audio) is too big"),  # small, but 2 s
    ],
    ids=["16MiB", "1MiB-262s", "2s"],
)
async def test_giant_chunk_is_refused(rate: int, width: int, size: int, why: str) -> None:
    async with bounded() as server:
        header = (
            f'{{"type": "audio-chunk", "data": {{"rate": {rate}, "width": {width}, '
            f'"channels": 1}}, "payload_length": {size}}}\n'
        ).encode()
        attacker = await raw(server.port, header + bytes(min(size, bounds.MAX_CHUNK_BYTES)))
        assert await attacker.closed()
        assert errors(attacker) == [ERROR_PROTOCOL]
        assert why in Error.from_event(attacker.events[-1]).text
        # Nothing of it reached the engine: no stream, no audio held.
        assert all(stream.stats.seconds_in == 0 for stream in server.worker.streams)
        await honest_smoke_alarm(server.port)
        await attacker.close()


# --- peers faster than real time -------------------------------------------------------------


async def test_audio_flood_is_read_at_a_bounded_rate() -> None:
    """A client sending far faster than real time gets RATE_FACTOR × real time, no more."""
    async with bounded() as server:
        loop = asyncio.get_running_loop()
        flood = await Client.connect(server.port)
        chunk = AudioChunk(16000, 2, 1, bytes(32000)).event()  # 1 s of silence a chunk
        await flood.send(AudioStart(16000, 2, 1).event())
        started = loop.time()

        async def pour() -> None:
            with contextlib.suppress(ConnectionError):
                while True:
                    await flood.send(chunk)  # blocks once the server stops reading

        pouring = asyncio.create_task(pour())
        try:
            await honest_smoke_alarm(server.port)
            elapsed = loop.time() - started
            taken = next(c for c in server.connections if c.name != "Hall").seconds_in
            assert taken <= bounds.BURST_S + bounds.RATE_FACTOR * elapsed + 1.0
        finally:
            pouring.cancel()
            await asyncio.gather(pouring, return_exceptions=True)
            await flood.close()


async def test_non_reading_ping_flood_is_disconnected(caplog: pytest.LogCaptureFixture) -> None:
    """Clients that send big pings and never read are cut off at the outbox bound."""
    loop = asyncio.get_running_loop()
    async with bounded(send_buffer=4096) as server:
        ping = frame(Ping(text="x" * (bounds.MAX_EVENT_DATA - 100)).event())
        lazies = []
        for _ in range(3):
            lazy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never read from
            lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lazy.setblocking(False)
            await loop.sock_connect(lazy, ("127.0.0.1", server.port))
            await loop.sock_sendall(lazy, frame(GuardModeAuth(TOKEN).event()))
            lazies.append(lazy)
        peaks: list[int] = []

        async def flood(lazy: socket.socket) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                for _ in range(200):
                    await loop.sock_sendall(lazy, ping)
                    peaks.extend(c.outbox.max_bytes_seen for c in server.connections)

        await asyncio.gather(*(flood(lazy) for lazy in lazies), honest_smoke_alarm(server.port))
        await wait_for(lambda: not server.connections)
        for lazy in lazies:
            lazy.close()
    assert max(peaks) <= bounds.OUTBOX_BYTES
    assert caplog.text.count("disconnected: not reading") == 3


# --- peers that say nothing ------------------------------------------------------------------


async def test_silent_sockets_do_not_lock_out_home_assistant() -> None:
    """32 sockets that never send a token: the honest client still gets in, they time out."""
    async with bounded(max_streams=32, hello_timeout_s=1.0) as server:
        silent = [await Client.connect(server.port, token=None) for _ in range(32)]
        await wait_for(lambda: server.pending == server.max_pending)
        assert len(server.connections) == server.max_pending  # the oldest made room
        await honest_smoke_alarm(server.port)
        for client in silent:
            assert await client.closed()
        await wait_for(lambda: not server.connections)
        timed_out = [c for c in silent if errors(c)]
        assert {code for c in timed_out for code in errors(c)} == {ERROR_UNAUTHORIZED}
        assert len(timed_out) >= 32 - server.max_pending  # the rest was made room for
        await asyncio.gather(*(c.close() for c in silent))


async def test_idle_client_is_closed() -> None:
    async with bounded(idle_timeout_s=0.5) as server:
        idle = await Client.connect(server.port)
        await idle.send(Describe().event())
        await idle.until("info")
        assert await idle.closed()
        assert errors(idle) == [ERROR_TIMEOUT]
        await idle.close()


async def test_streams_beyond_the_limit_are_refused_after_the_token() -> None:
    async with bounded(max_streams=1) as server:
        first = await Client.connect(server.port)
        await first.send(Describe().event())
        await first.until("info")
        second = await Client.connect(server.port)
        assert await second.closed()
        assert errors(second) == [ERROR_TOO_MANY]
        outsider = await Client.connect(server.port, token="wrong-token-0123456789")
        assert await outsider.closed()
        assert errors(outsider) == [ERROR_UNAUTHORIZED]  # told nothing about the streams
        await asyncio.gather(first.close(), second.close(), outsider.close())


# --- malformed events ------------------------------------------------------------------------


MALFORMED = {
    "inf-length": b'{"type": "audio-chunk", "data_length": 1e999}\n',
    "huge-int": b'{"type": "ping", "payload_length": 99999999999999999999999999}\n',
    "deep-nesting": b'{"type": "ping", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    "deep-data": b'{"type": "ping", "data_length": 200000}\n' + b"[" * 100_000 + b"]" * 100_000,
    "bad-utf8-data": b'{"type": "ping", "data_length": 4}\n\xff\xfe\xfd\xfc',
    "bad-utf8-header": b'{"type": "\xff\xfe"}\n',
    "type-not-text": b'{"type": 5}\n',
    "negative": b'{"type": "ping", "data_length": -1}\n',
    "bool": b'{"type": "ping", "data_length": true}\n',
}


async def test_malformed_events_close_that_peer_only(caplog: pytest.LogCaptureFixture) -> None:
    """Every kind of malformed event at once: each closes its own peer, the honest one is heard."""
    async with bounded() as server:
        attackers = {name: await raw(server.port, garbage) for name, garbage in MALFORMED.items()}
        for name, attacker in attackers.items():
            assert await attacker.closed(), name
            assert errors(attacker) == [ERROR_PROTOCOL], name
        await honest_smoke_alarm(server.port)
        await asyncio.gather(*(attacker.close() for attacker in attackers.values()))
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


# --- who may connect -------------------------------------------------------------------------


async def test_clients_without_the_token_get_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with bounded() as server:
        refused = []
        for token in (None, "", "wrong-token-0123456789", TOKEN[:-1]):
            client = await Client.connect(server.port, token=None)
            if token is not None:
                await client.send(GuardModeAuth(token).event())
            with contextlib.suppress(ConnectionError):  # it is closed while it sends
                await client.send(Describe().event())
                await client.stream(honest_alarm(), rate=16000, channels=1, speed=1000.0)
            refused.append(client)
        for client in refused:
            with contextlib.suppress(ConnectionError):
                assert await client.closed()
            assert errors(client) == [ERROR_UNAUTHORIZED]
            assert [e.type for e in client.events] == ["error"]  # no info, no detection
            await client.close()
        # A token JSON allows but no text encoding does (a lone surrogate): refused the same way.
        odd = await raw(
            server.port, b'{"type": "guard-mode-auth", "data": {"token": "\\ud800"}}\n', False
        )
        assert await odd.closed()
        assert errors(odd) == [ERROR_UNAUTHORIZED]
        await odd.close()
        assert server.worker.streams == []
        await honest_smoke_alarm(server.port)
    assert TOKEN not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_refusals_are_logged_once_per_address(caplog: pytest.LogCaptureFixture) -> None:
    async with bounded() as server:
        for _ in range(5):
            client = await Client.connect(server.port, token="wrong-token-0123456789")
            assert await client.closed()
            await client.close()
        await wait_for(lambda: not server.connections)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "wrong token" in warnings[0].getMessage()


async def test_stream_names_are_logged_sanitised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with bounded() as server:
        client = await Client.connect(server.port)
        forged = "Hall\n2026-01-01 00:00:00 ERROR forged line\u202e" + "x" * 500
        await client.send(GuardModeStream(name=forged).event())
        await client.send(Ping().event())
        await client.until("pong")
        await client.close()
        await wait_for(lambda: not server.connections)
    line = next(r.getMessage() for r in caplog.records if "(Hall" in r.getMessage())
    assert "\n" not in line
    assert "\u202e" not in line
    assert "Hall?2026-01-01 00:00:00 ERROR forged line?" in line
    assert len(line) < 200


def test_the_service_needs_a_token() -> None:
    with pytest.raises(ValueError, match="needs a token"):
        EngineServer(tagger_for("numpy"), token="")
    with pytest.raises(ValueError, match="no token"):
        server_module.load_token(None)


def test_the_token_file_is_read_and_judged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the add-on's operator is told when the token file is missing, short or fine."""
    monkeypatch.setenv(server_module.TOKEN_ENV, "the-environment-is-not-used-0123")
    good = tmp_path / "token"
    good.write_text(f"  {TOKEN}\n", encoding="utf-8")
    assert server_module.load_token(str(good)) == TOKEN
    with pytest.raises(ValueError, match="cannot read the token file"):
        server_module.load_token(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("hunter2", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 16 characters without spaces"):
        server_module.load_token(str(short))


def test_the_service_does_not_start_on_a_bad_certificate_or_a_busy_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(server_module.TOKEN_ENV, TOKEN)
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate", encoding="ascii")
    assert server_module.run("tcp://127.0.0.1:0", tls_cert=str(bad)) == 2
    assert "cannot use the certificate" in caplog.text
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert server_module.run(f"tcp://127.0.0.1:{port}") == 1
    assert f"Cannot listen on tcp://127.0.0.1:{port}" in caplog.text


# --- TLS -------------------------------------------------------------------------------------


async def test_tls_only_with_the_certificate(tmp_path: Path) -> None:
    der, cert = make_certificate(tmp_path)
    context, pin = server_module.tls_context(str(cert), str(tmp_path / "key.pem"))
    assert pin == fingerprint(der)
    async with bounded(ssl_context=context) as server:
        client_context = ssl.create_default_context(cafile=str(cert))
        client_context.check_hostname = False
        secure = await Client.connect(server.port, ssl=client_context)
        await secure.send(Describe().event())
        await secure.until("info")
        await secure.close()
        plain = await Client.connect(server.port)  # plain TCP: the handshake fails, nothing read
        with contextlib.suppress(ConnectionError):
            assert await plain.closed()
        assert plain.events == []
        await plain.close()
        assert server.worker.streams == []


async def test_sockets_that_never_start_tls_count_as_waiting(tmp_path: Path) -> None:
    """With TLS, sockets that never begin the handshake are held to the waiting bound too."""
    _, cert = make_certificate(tmp_path)
    context, _ = server_module.tls_context(str(cert), str(tmp_path / "key.pem"))
    async with bounded(ssl_context=context, hello_timeout_s=30.0) as server:
        silent = [await Client.connect(server.port, token=None) for _ in range(32)]
        await wait_for(lambda: server.pending == server.max_pending)
        assert len(server.connections) == server.max_pending  # the oldest made room
        client_context = ssl.create_default_context(cafile=str(cert))
        client_context.check_hostname = False
        secure = await Client.connect(server.port, ssl=client_context)
        await secure.send(Describe().event())
        await secure.until("info")  # in well before the silent sockets' 30 s are up
        await secure.close()
        for client in silent[: 32 - server.max_pending]:
            assert await client.closed()
        await asyncio.gather(*(c.close() for c in silent))


def test_budget_bounds_what_a_peer_gets() -> None:
    """The token bucket itself: the burst at once, then the rate, whatever is offered."""
    now = [0.0]
    budget = bounds.Budget(1.5, 4.0, clock=lambda: now[0])
    assert budget.spend(4.0) == 0.0
    wait = budget.spend(3.0)
    assert wait == pytest.approx(2.0)
    now[0] += wait
    assert budget.spend(0.0) == 0.0
    offered = np.full(100, 1.0)  # 100 s of audio offered at once, waiting as told
    for amount in offered:
        now[0] += budget.spend(float(amount))
    assert now[0] == pytest.approx(2.0 + 100 / 1.5, rel=1e-6)
    assert time.monotonic() > 0  # the default clock is monotonic
