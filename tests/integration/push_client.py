"""A push satellite's side of Home Assistant's websocket, for tests.

The real agent (``agent/guard_mode_agent.py``) as a subprocess, a connection driven by hand, and a
sink that keeps what a push source delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
import signal
import sys
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient
import numpy as np

from custom_components.guard_mode.engine.audio import Pcm16
from custom_components.guard_mode.push_view import KEY_HEADER
from custom_components.guard_mode.sources.push import PushSource

AGENT = Path(__file__).resolve().parents[2] / "agent" / "guard_mode_agent.py"
PUSH_ID = "kitchen-mic"
KEY = "kitchen-key-0123456789-abcdefghij"  # the satellite's own key
URL = f"/api/guard_mode/push/{PUSH_ID}"
HELLO = {"type": "hello", "agent": "test-agent/1", "rate": 16000, "width": 2, "channels": 1}
PCM = bytes(range(256)) * 25  # 6400 bytes: 200 ms of 16 kHz s16le mono


class Recorder:
    """A sink that keeps what it is given (16 kHz mono 16-bit)."""

    def __init__(self) -> None:
        self.chunks: list[Pcm16] = []

    def __call__(self, pcm: Pcm16) -> None:
        assert pcm.dtype == np.int16
        self.chunks.append(pcm)

    @property
    def bytes(self) -> int:
        return sum(chunk.nbytes for chunk in self.chunks)


async def next_json(ws: ClientWebSocketResponse, within: float = 2.0) -> dict[str, Any]:
    """The next message from Home Assistant, which must be JSON."""
    msg = await ws.receive(timeout=within)
    assert msg.type is WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def expect_closed(ws: ClientWebSocketResponse, code: int, within: float = 3.0) -> None:
    """Home Assistant closes the websocket with this code."""
    msg = await ws.receive(timeout=within)
    assert msg.type is WSMsgType.CLOSE, msg
    assert msg.data == code
    assert ws.close_code == code


async def connect(
    client: TestClient, hello: dict[str, Any] | None = None, url: str = URL, key: str = KEY
) -> ClientWebSocketResponse:
    """Open the push websocket with the satellite's key and say hello."""
    ws = await client.ws_connect(url, headers={KEY_HEADER: key})
    await ws.send_json(HELLO if hello is None else hello)
    return ws


@contextlib.asynccontextmanager
async def running(source: PushSource, sink: Recorder) -> Any:
    """Run the source into the sink (as an armed satellite does) until the block ends."""
    task = asyncio.create_task(source.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class AgentProcess:
    """The agent as a subprocess, its output kept for failure messages."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace").rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def stop(self) -> int | None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                return None
        await self._reader
        return self.proc.returncode


async def start_agent(url: str, token: str, *extra: str, key: str = KEY) -> AgentProcess:
    """Start the real agent for the kitchen satellite against Home Assistant at url."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(AGENT),
        *("--url", url, "--satellite", PUSH_ID, "--verbose", *extra),
        env={**os.environ, "GUARD_MODE_TOKEN": token, "GUARD_MODE_SATELLITE_KEY": key},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return AgentProcess(proc)
