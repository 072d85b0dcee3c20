"""The push source: Home Assistant's authenticated websocket, and the real agent end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
import importlib.util
import os
from pathlib import Path
import shlex
import sys
from types import ModuleType
from typing import Any

from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient
from homeassistant.core import CoreState, HomeAssistant
import numpy as np
import pytest

from custom_components.guard_mode import push_view
from custom_components.guard_mode.engine.audio import Pcm16
from custom_components.guard_mode.push_view import (
    KEY_HEADER,
    MAX_MESSAGE,
    async_register_push_view,
    async_unregister_push_view,
)
from custom_components.guard_mode.sources.base import (
    AudioFormat,
    BadAudio,
    CannotConnect,
    NoAudio,
)
from custom_components.guard_mode.sources.push import PushSource
from custom_components.guard_mode.timeouts import Timeouts

from ..helpers import wait_for
from .push_client import (
    AGENT,
    HELLO,
    KEY,
    PCM,
    PUSH_ID,
    URL,
    Recorder,
    connect,
    expect_closed,
    next_json,
    running,
    start_agent,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


# -- the endpoint ----------------------------------------------------------------------------


async def test_refuses_without_valid_token(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    hass_client_no_auth: Any,
    hass_client: Any,
) -> None:
    assert push_view.PushView.requires_auth
    anonymous: TestClient = await hass_client_no_auth()
    assert (await anonymous.get(URL)).status == 401
    with pytest.raises(WSServerHandshakeError) as err:
        await anonymous.ws_connect(URL)
    assert err.value.status == 401
    forged: TestClient = await hass_client(access_token="not-a-valid-token")
    with pytest.raises(WSServerHandshakeError) as err:
        await forged.ws_connect(URL)
    assert err.value.status == 401
    assert source.connections == 0


async def test_registering_twice_replaces_the_resolver(
    hass: HomeAssistant, sources: dict[str, PushSource], client: TestClient
) -> None:
    other = PushSource("other", "other-key")
    async_register_push_view(hass, {"other": other}.get)
    routes = [
        route
        for route in hass.http.app.router.routes()
        if route.method == "GET"
        and route.resource
        and route.resource.canonical == push_view.PUSH_URL
    ]
    assert len(routes) == 1
    ws = await connect(client, url="/api/guard_mode/push/other", key="other-key")
    assert await next_json(ws) == {"type": "stop"}
    assert other.connected
    await ws.close()


@pytest.mark.parametrize("push_id", ["nobody", "x" * 100, "semi%3Bcolon"])
async def test_unknown_push_id(client: TestClient, source: PushSource, push_id: str) -> None:
    ws = await client.ws_connect(f"/api/guard_mode/push/{push_id}")
    error = await next_json(ws)
    assert error["type"] == "error"
    assert error["code"] == "unknown_push_id"
    assert "--satellite" in error["message"]
    await expect_closed(ws, 4404)
    assert source.connections == 0


async def test_hello_gets_stop_while_not_listening(client: TestClient, source: PushSource) -> None:
    ws = await client.ws_connect(URL, headers={KEY_HEADER: KEY})
    await ws.send_bytes(PCM)  # audio before hello: ignored, counted
    await ws.send_json(HELLO)
    assert await next_json(ws) == {"type": "stop"}
    assert source.connected
    assert source.agent == "test-agent/1"
    assert source.format == AudioFormat(16000, 2, 1)
    assert source.ignored == 1
    await ws.send_bytes(PCM)  # while stopped: ignored, counted
    await wait_for(lambda: source.ignored == 2)
    assert source.messages == 0
    await ws.close()
    await wait_for(lambda: not source.connected)


async def test_run_streams_and_cancel_stops_at_once(
    hass: HomeAssistant, client: TestClient, source: PushSource
) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    task = asyncio.create_task(source.run(sink))
    assert await next_json(ws) == {"type": "start"}
    await ws.send_bytes(PCM)
    await wait_for(lambda: len(sink.chunks) == 1)
    assert sink.chunks[0].tolist() == np.frombuffer(PCM, "<i2").tolist()  # as it was
    await ws.send_json({"type": "format", "rate": 48000, "width": 2, "channels": 2})
    await ws.send_bytes(PCM[:960])
    await wait_for(lambda: len(sink.chunks) == 2)
    assert len(sink.chunks[1]) <= 80  # 5 ms of 48 kHz stereo, converted to 16 kHz mono
    assert source.diagnostics() | {"connections": 1} == {
        "connected": True,
        "agent": "test-agent/1",
        "format": "48000 Hz, 16-bit, stereo",
        "streaming": True,
        "connections": 1,
        "messages": 2,
        "bytes": len(PCM) + 960,
        "ignored": 0,
    }

    started = asyncio.get_running_loop().time()
    task.cancel()
    assert await next_json(ws, within=1.0) == {"type": "stop"}
    assert asyncio.get_running_loop().time() - started < 1.0
    with pytest.raises(asyncio.CancelledError):
        await task
    await ws.send_bytes(PCM)  # in flight when stop was sent: never delivered
    await wait_for(lambda: source.ignored == 1)
    assert len(sink.chunks) == 2
    assert not source.diagnostics()["streaming"]
    await ws.close()


@pytest.mark.parametrize(
    "change",
    [{"rate": 0}, {"width": "2"}, {"channels": 9}, {"rate": 16000.5}, {"rate": None}],
)
async def test_bad_hello_format_closes(
    client: TestClient, source: PushSource, change: dict[str, Any]
) -> None:
    ws = await connect(client, HELLO | change)
    error = await next_json(ws)
    assert error["type"] == "error"
    assert error["code"] == "bad_format"
    await expect_closed(ws, 4415)
    assert not source.connected


async def test_bad_format_message_fails_the_run(client: TestClient, source: PushSource) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    async with running(source, Recorder()) as task:
        assert await next_json(ws) == {"type": "start"}
        await ws.send_json({"type": "format", "rate": 16000, "width": 5, "channels": 1})
        assert (await next_json(ws))["code"] == "bad_format"
        await expect_closed(ws, 4415)
        with pytest.raises(BadAudio):
            await asyncio.wait_for(task, 1)


async def test_oversized_message_is_refused(client: TestClient, source: PushSource) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    await ws.send_bytes(bytes(32000))  # a whole second of audio is fine (ignored: stopped)
    await wait_for(lambda: source.ignored == 1)
    await ws.send_bytes(bytes(MAX_MESSAGE + 1))
    await expect_closed(ws, 1009)
    await wait_for(lambda: not source.connected)


@pytest.mark.parametrize(
    ("first", "after_hello"),
    [("not json", False), ('["hello"]', False), ('{"type": "start"}', False), ("{]", True)],
)
async def test_garbage_closes_and_the_source_recovers(
    client: TestClient, source: PushSource, first: str, after_hello: bool
) -> None:
    ws = await client.ws_connect(URL, headers={KEY_HEADER: KEY})
    if after_hello:
        await ws.send_json(HELLO)
        assert await next_json(ws) == {"type": "stop"}
    await ws.send_str(first)
    error = await next_json(ws)
    assert (error["type"], error["code"]) == ("error", "bad_message")
    await expect_closed(ws, 4400)
    await wait_for(lambda: not source.connected)

    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink):
        assert await next_json(ws) == {"type": "start"}
        await ws.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
    await ws.close()


async def test_unknown_message_types_are_ignored(client: TestClient, source: PushSource) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    await ws.send_json({"type": "status", "cpu": 3})
    await wait_for(lambda: source.ignored == 1)
    assert source.connected
    await ws.close()


async def test_hello_timeout(
    client: TestClient, source: PushSource, use_timeouts: Callable[..., Timeouts]
) -> None:
    use_timeouts(hello_s=0.2)
    ws = await client.ws_connect(URL, headers={KEY_HEADER: KEY})
    error = await next_json(ws)
    assert error["code"] == "bad_message"
    assert "hello" in error["message"]
    await expect_closed(ws, 4400)


async def test_agent_disconnect_fails_the_run(client: TestClient, source: PushSource) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink) as task:
        assert await next_json(ws) == {"type": "start"}
        await ws.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
        await ws.close()
        with pytest.raises(CannotConnect, match="disconnected"):
            await asyncio.wait_for(task, 1)


async def test_no_agent_fails_the_run_after_the_stall_timeout(
    client: TestClient, source: PushSource
) -> None:
    source.timeouts = replace(source.timeouts, stall_s=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CannotConnect, match="no agent connected") as err:
        await asyncio.wait_for(source.run(Recorder()), 2)
    assert err.value.reason == "cannot_connect"
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_agent_arriving_late_is_started(client: TestClient, source: PushSource) -> None:
    sink = Recorder()
    async with running(source, sink):
        await wait_for(lambda: source.wants_audio)  # listening, with no agent yet
        ws = await connect(client)
        assert await next_json(ws) == {"type": "start"}
        await ws.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
    assert await next_json(ws) == {"type": "stop"}
    await ws.close()


async def test_silent_agent_fails_the_run(client: TestClient, source: PushSource) -> None:
    source.timeouts = replace(source.timeouts, stall_s=1.0)
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink) as task:
        assert await next_json(ws) == {"type": "start"}
        for _ in range(3):  # audio keeps it alive …
            await asyncio.sleep(0.3)
            await ws.send_bytes(PCM)
        with pytest.raises(NoAudio, match="sent no audio"):  # … silence doesn't
            await asyncio.wait_for(task, 4)
    assert len(sink.chunks) == 3
    assert await next_json(ws) == {"type": "stop"}
    await ws.close()


async def test_probe(client: TestClient, source: PushSource) -> None:
    with pytest.raises(NoAudio, match=r"no agent connected: run guard_mode_agent\.py"):
        await source.probe()
    ws = await connect(client, HELLO | {"rate": 48000})
    assert await next_json(ws) == {"type": "stop"}
    probe = asyncio.create_task(source.probe())
    assert await next_json(ws) == {"type": "start"}
    await ws.send_bytes(PCM)
    assert await asyncio.wait_for(probe, 1) == AudioFormat(48000, 2, 1)
    assert await next_json(ws) == {"type": "stop"}

    source.timeouts = replace(source.timeouts, probe_s=0.2)
    with pytest.raises(NoAudio, match="sent no audio"):
        await source.probe()
    assert await next_json(ws) == {"type": "start"}
    assert await next_json(ws) == {"type": "stop"}
    await ws.close()


async def test_probe_fails_when_the_agent_leaves(client: TestClient, source: PushSource) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    probe = asyncio.create_task(source.probe())
    assert await next_json(ws) == {"type": "start"}
    await ws.close()
    with pytest.raises(CannotConnect, match="disconnected"):
        await asyncio.wait_for(probe, 1)


async def test_a_failing_sink_ends_the_run(client: TestClient, source: PushSource) -> None:
    def sink(pcm: Pcm16) -> None:
        raise ValueError("sink broke")

    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    assert source.describe() == "the Guard Mode agent (test-agent/1)"
    async with running(source, Recorder()):
        assert await next_json(ws) == {"type": "start"}
        with pytest.raises(RuntimeError, match="already running"):
            await source.run(sink)
    assert await next_json(ws) == {"type": "stop"}
    async with running(source, sink) as task:
        assert await next_json(ws) == {"type": "start"}
        await ws.send_bytes(PCM)
        with pytest.raises(ValueError, match="sink broke"):
            await asyncio.wait_for(task, 1)
    assert await next_json(ws) == {"type": "stop"}
    assert source.connected  # the agent stays; the satellite restarts run() after a backoff
    await ws.close()


async def test_second_agent_replaces_the_first(client: TestClient, source: PushSource) -> None:
    first = await connect(client)
    assert await next_json(first) == {"type": "stop"}
    second = await connect(client, HELLO | {"agent": "second/1"})
    assert await next_json(second) == {"type": "stop"}
    error = await next_json(first)
    assert (error["type"], error["code"]) == ("error", "replaced")
    await expect_closed(first, 4409)
    assert source.agent == "second/1"
    assert source.connected
    sink = Recorder()
    async with running(source, sink):
        assert await next_json(second) == {"type": "start"}
        await second.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
    await second.close()


async def test_agent_follows_the_resolver(
    hass: HomeAssistant,
    client: TestClient,
    sources: dict[str, PushSource],
    source: PushSource,
    use_timeouts: Callable[..., Timeouts],
) -> None:
    use_timeouts(resolve_interval_s=0.1, resolve_grace_s=3600.0)  # a reload is never removal
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    missed = asyncio.Event()
    served = sources.copy()

    def resolve(push_id: str) -> PushSource | None:
        found = served.get(push_id)
        if found is None:
            missed.set()
        return found

    async_register_push_view(hass, resolve)
    del served[PUSH_ID]  # the satellite is being reloaded: the agent stays connected
    await asyncio.wait_for(missed.wait(), 5)  # the connection has seen its push id unserved
    reloaded = served[PUSH_ID] = PushSource(PUSH_ID, KEY)
    sink = Recorder()
    async with running(reloaded, sink):
        assert await next_json(ws) == {"type": "start"}  # within the resolve interval
        assert not source.connected
        assert reloaded.connected
        await ws.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
        reloaded.async_disconnect()
        assert (await next_json(ws))["code"] == "restart"
        await expect_closed(ws, 1012)
        await wait_for(lambda: not reloaded.connected)

    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    use_timeouts(resolve_grace_s=0.0)
    async_unregister_push_view(hass)  # unknown for longer than the grace period: closed
    error = await next_json(ws)
    assert (error["type"], error["code"]) == ("error", "unknown_push_id")
    await expect_closed(ws, 4404)
    assert not reloaded.connected


# -- the real agent --------------------------------------------------------------------------

FAKE_MIC = """
import math, os, signal, struct, sys, time

pid_file = sys.argv[1]
def bye(*_):
    try:
        os.unlink(pid_file)
    finally:
        os._exit(0)
signal.signal(signal.SIGTERM, bye)
with open(pid_file + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(pid_file + ".tmp", pid_file)
rate = 16000
tone = (int(8000 * math.sin(2 * math.pi * 1000 * i / rate)) for i in range(800))
block = struct.pack("<800h", *tone)
out = sys.stdout.buffer
blocks = 0
while True:  # a 1 kHz tone, 50 ms at a time, in real time
    out.write(block)
    out.flush()
    time.sleep(0.05)
    blocks += 1
    if blocks == 5 and sys.argv[2:] == ["die-once"] and not os.path.exists(pid_file + ".died"):
        open(pid_file + ".died", "w").close()
        os.unlink(pid_file)
        sys.stderr.write("fake_mic: device unplugged\\n")
        sys.exit(3)
"""


def load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guard_mode_agent", AGENT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_url_and_command() -> None:
    agent = load_agent()
    assert agent.push_url("http://homeassistant.local:8123", "kitchen-mic") == (
        "ws://homeassistant.local:8123/api/guard_mode/push/kitchen-mic"
    )
    assert agent.push_url("https://user:pw@ha.example.com/", "a b") == (
        "wss://ha.example.com/api/guard_mode/push/a%20b"
    )
    with pytest.raises(ValueError, match="not an http"):
        agent.push_url("homeassistant.local:8123", "x")
    args = agent.parse_args(["--url", "http://h:8123", "--satellite", "x", "--device", "hw:1"])
    assert agent.capture_command(args) == [
        *("arecord", "-q", "-D", "hw:1", "-f", "S16_LE", "-r", "16000", "-c", "1", "-t", "raw"),
    ]
    args = agent.parse_args(["--url", "http://h", "--satellite", "x", "--command", "parec --raw"])
    assert agent.capture_command(args) == ["parec", "--raw"]
    camera = ["ffmpeg", "-i", "rtsp://admin:hunter2@cam:554/live", "-f", "s16le", "-"]
    assert agent.shown_command(camera) == "ffmpeg -i 'rtsp://***@cam:554/live' -f s16le -"


CHATTY_MIC = """
import sys, time
for n in range(400):  # 4 s of audio, and ffmpeg-style progress: lines ended by a carriage return
    sys.stdout.buffer.write(bytes(320))
    sys.stdout.buffer.flush()
    stats = "size=%8dkB time=00:00:%05.2f bitrate= 256.0kbits/s speed=1x    \\r" % (n, n / 100)
    sys.stderr.write(stats * 16)
    sys.stderr.flush()
    time.sleep(0.005)
"""


async def test_the_agent_keeps_sending_while_its_capture_program_prints_progress(
    tmp_path: Path,
) -> None:
    """A progress line never ends in a newline: it must neither stop the audio nor pile up."""
    (chatty := tmp_path / "chatty_mic.py").write_text(CHATTY_MIC)
    sent: list[bytes] = []

    async def send(chunk: bytes) -> None:
        sent.append(chunk)

    capture = load_agent().Capture([sys.executable, str(chatty)], 320, send)
    capture.start()
    try:
        await wait_for(lambda: len(sent) == 400, 20)  # all of it, past 64 KiB of progress
    finally:
        await capture.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dominant_hz(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


async def listen_once(source: PushSource, pid_file: Path) -> None:
    """Arm: the agent's tone arrives; disarm: its capture process is gone."""
    sink = Recorder()
    async with running(source, sink):
        await wait_for(lambda: sink.bytes >= 16000, 10)  # half a second of audio
        pcm = np.concatenate(sink.chunks).tobytes()
        assert abs(dominant_hz(pcm[: len(pcm) // 2 * 2], 16000) - 1000) < 20
        pid = int(pid_file.read_text())
        assert alive(pid)
    # "stop": the capture process is ended (it removes its pid file on SIGTERM).
    await wait_for(lambda: not pid_file.exists() and not alive(pid), 3)


@pytest.mark.slow
async def test_real_agent_end_to_end(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    aiohttp_client: Any,
    hass_access_token: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server: TestClient = await aiohttp_client(hass.http.app)
    url = f"http://127.0.0.1:{server.port}"
    (fake_mic := tmp_path / "fake_mic.py").write_text(FAKE_MIC)
    pid_file = tmp_path / "mic.pid"
    command = shlex.join([sys.executable, str(fake_mic), str(pid_file)])
    agent = await start_agent(url, hass_access_token, "--command", command, "--chunk-ms", "50")
    try:
        await wait_for(lambda: source.connected, 15)
        assert source.agent == "guard-mode-agent/1"
        await asyncio.sleep(0.3)
        assert not pid_file.exists(), "the microphone is open while guard mode doesn't listen"

        await listen_once(source, pid_file)
        # Home Assistant closes the connection: the agent comes back, and works as before.
        source.async_disconnect()
        await wait_for(lambda: source.connections == 2 and source.connected, 10)
        await listen_once(source, pid_file)
        assert "Microphone closed" in agent.log or "microphone closed" in agent.log
    finally:
        code = await agent.stop()
    assert code == 0, agent.log
    assert not pid_file.exists()
    assert "Connected to Home Assistant as satellite kitchen-mic" in agent.log
    assert "Connected to Home Assistant again" in agent.log
    assert "closing the previous one" not in caplog.text  # the old connection was gone


async def test_real_agent_exits_on_a_refused_token(
    hass: HomeAssistant, sources: dict[str, PushSource], aiohttp_client: Any
) -> None:
    server: TestClient = await aiohttp_client(hass.http.app)
    agent = await start_agent(f"http://127.0.0.1:{server.port}", "wrong-token")
    try:
        async with asyncio.timeout(15):
            await agent.proc.wait()
    finally:
        code = await agent.stop()
    assert code == 77, agent.log
    assert "refused the access token" in agent.log
    assert "wrong-token" not in agent.log


async def test_a_real_agent_replaced_by_another_steps_back(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    client: TestClient,
    aiohttp_client: Any,
    hass_access_token: str,
) -> None:
    """Two agents with one satellite's key: the replaced one exits, they don't take turns."""
    server: TestClient = await aiohttp_client(hass.http.app)
    agent = await start_agent(
        f"http://127.0.0.1:{server.port}", hass_access_token, "--command", "cat /dev/zero"
    )
    try:
        await wait_for(lambda: source.connected, 15)
        other = await connect(client)  # another device, the same satellite and key
        assert await next_json(other) == {"type": "stop"}
        async with asyncio.timeout(15):
            await agent.proc.wait()
        assert source.connected  # the newer one stays
        await other.close()
    finally:
        code = await agent.stop()
    assert code == 75, agent.log
    assert "another agent connected for this satellite" in agent.log


async def test_home_assistant_stopping_closes_agents(
    hass: HomeAssistant,
    client: TestClient,
    source: PushSource,
    use_timeouts: Callable[..., Timeouts],
) -> None:
    use_timeouts(resolve_interval_s=0.1)
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    hass.set_state(CoreState.stopping)
    try:
        assert (await next_json(ws))["code"] == "stopping"
        await expect_closed(ws, 1001)
    finally:
        hass.set_state(CoreState.running)
    await wait_for(lambda: not source.connected)


@pytest.mark.slow
async def test_real_agent_restarts_a_dying_capture(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    aiohttp_client: Any,
    hass_access_token: str,
    tmp_path: Path,
) -> None:
    server: TestClient = await aiohttp_client(hass.http.app)
    (fake_mic := tmp_path / "fake_mic.py").write_text(FAKE_MIC)
    pid_file = tmp_path / "mic.pid"
    command = shlex.join([sys.executable, str(fake_mic), str(pid_file), "die-once"])
    agent = await start_agent(
        f"http://127.0.0.1:{server.port}", hass_access_token, "--command", command
    )
    try:
        await wait_for(lambda: source.connected, 15)
        sink = Recorder()
        async with running(source, sink):
            # 5 blocks, the process dies, ~1 s later a new one streams on.
            await wait_for((tmp_path / "mic.pid.died").exists, 10)
            await wait_for(pid_file.exists, 5)
            restarted_at = sink.bytes
            await wait_for(lambda: sink.bytes >= restarted_at + 8000, 5)
            pid = int(pid_file.read_text())
            # SIGTERM while the microphone is open: the agent closes it before it exits.
            assert await agent.stop() == 0
            assert not pid_file.exists()
            assert not alive(pid)
    finally:
        code = await agent.stop()
    assert code == 0, agent.log
    assert agent.log.count("device unplugged") == 1, agent.log
    assert "exited with status 3: fake_mic: device unplugged; restarting it" in agent.log
    assert "Microphone: audio flows again" in agent.log


async def test_a_new_key_closes_the_agent_that_has_the_old_one(
    client: TestClient,
    sources: dict[str, PushSource],
    use_timeouts: Callable[..., Timeouts],
) -> None:
    """The user reconfigured the satellite with a new key: the old agent is shown the door."""
    use_timeouts(resolve_interval_s=0.1, resolve_grace_s=0.0)
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    old = sources[PUSH_ID]
    sources[PUSH_ID] = PushSource(PUSH_ID, "a-new-key-the-old-agent-lacks-0123")
    error = await next_json(ws)
    assert (error["type"], error["code"]) == ("error", "unknown_push_id")
    assert "key changed" in error["message"]
    await expect_closed(ws, 4404)
    assert not old.connected
    assert not sources[PUSH_ID].connected
