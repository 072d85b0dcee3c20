"""Push sources: a small agent on another device streams its microphone to Home Assistant.

The agent (``agent/guard_mode_agent.py``) connects to Home Assistant's push endpoint
(:mod:`..push_view`, which describes the protocol) with its satellite's push id and key; the
view hands the connection to the satellite's :class:`PushSource`, which tells the agent to open
its microphone only while guard mode listens, and delivers its audio (converted to 16 kHz mono)
to the satellite. Logs name the satellite, never its push id or key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

from homeassistant.core import callback

from ..timeouts import DEFAULT_TIMEOUTS, Timeouts
from .base import (
    AudioFormat,
    AudioSink,
    AudioSource,
    CannotConnect,
    NoAudio,
    SourceError,
)

if TYPE_CHECKING:
    from ..push_view import AgentConnection

_LOGGER = logging.getLogger(__name__)


def push_key_issue(subentry_id: str) -> str:
    """Return the repair issue id that shows a push satellite's new key (migration)."""
    return f"push_key_created_{subentry_id}"


class PushSource(AudioSource):
    """A microphone on another device, streamed by guard_mode_agent over a websocket."""

    kind = "push"

    def __init__(self, push_id: str, key: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        """Receive audio from the agent that connects with push_id and the satellite's key."""
        self.push_id = push_id
        self.key = key
        self.timeouts = timeouts
        self.key_issue: str | None = None  # a repair showing the key, gone once the agent has it
        self.messages = 0  # audio messages received (delivered or used by a probe)
        self.bytes = 0
        self.ignored = 0  # messages ignored (audio before hello or while stopped, unknown types)
        self.connections = 0
        self._conn: AgentConnection | None = None
        self._sink: AudioSink | None = None
        self._probes: list[asyncio.Future[AudioFormat]] = []
        self._failure: Exception | None = None
        self._changed = asyncio.Event()
        self._since = 0.0  # loop time of the last start, agent arrival or audio while running

    @property
    def connected(self) -> bool:
        """Return whether an agent is connected."""
        return self._conn is not None

    @property
    def agent(self) -> str | None:
        """Return what the connected agent calls itself (from its hello)."""
        return self._conn.agent if self._conn is not None else None

    @property
    def format(self) -> AudioFormat | None:
        """Return the format the connected agent declared."""
        return self._conn.format if self._conn is not None else None

    @property
    def wants_audio(self) -> bool:
        """Return whether the agent should have its microphone open."""
        return self._sink is not None or bool(self._probes)

    def describe(self) -> str:
        """Return what the source is (and the agent, when one is connected); never the push id."""
        agent = f" ({self.agent})" if self.agent else ""
        return f"the Guard Mode agent{agent}"

    def key_matches(self, key: str) -> bool:
        """Return whether key is this satellite's key (compared in constant time).

        surrogatepass: header bytes that are not UTF-8 arrive as lone surrogates, which no key
        holds (and must not raise).
        """
        return bool(self.key) and hmac.compare_digest(
            key.encode(errors="surrogatepass"), self.key.encode()
        )

    def diagnostics(self) -> dict[str, Any]:
        """Return the source's state and counters (no hosts, no tokens)."""
        fmt = self.format
        return {
            "connected": self.connected,
            "agent": self.agent,
            "format": None if fmt is None else str(fmt),
            "streaming": self._conn is not None and bool(self._conn.told_start),
            "connections": self.connections,
            "messages": self.messages,
            "bytes": self.bytes,
            "ignored": self.ignored,
        }

    async def probe(self) -> AudioFormat:
        """Ask the connected agent for audio (a temporary start) and return its format."""
        conn = self._conn
        if conn is None:
            raise NoAudio(
                "no agent connected: run guard_mode_agent.py on the device with this "
                "satellite's id and key (shown when you reconfigure the satellite)"
            )
        future: asyncio.Future[AudioFormat] = asyncio.get_running_loop().create_future()
        self._probes.append(future)
        conn.update()
        try:
            async with asyncio.timeout(self.timeouts.probe_s):
                return await future
        except TimeoutError as err:
            raise NoAudio(
                f"the agent is connected but sent no audio in {self.timeouts.probe_s:.0f} s: "
                "check its microphone and its log"
            ) from err
        finally:
            self._probes.remove(future)
            self._notify_agent()

    async def run(self, sink: AudioSink) -> None:
        """Tell the agent to start and deliver its audio to sink; tell it to stop when cancelled."""
        if self._sink is not None:
            raise RuntimeError(f"{self.describe()} is already running")
        loop = asyncio.get_running_loop()
        self._sink = sink
        self._failure = None
        self._since = loop.time()
        self._notify_agent()
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                remaining = self._since + self.timeouts.stall_s - loop.time()
                if remaining <= 0:
                    raise self._stalled()
                self._changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    pass  # audio may have arrived meanwhile: look again
        finally:
            self._sink = None
            self._failure = None
            self._notify_agent()  # "stop" right away: disarmed means the microphone is closed

    async def wait_before_retry(self, delay_s: float) -> None:
        """Wait for the backoff, but no longer than until an agent connects."""
        if self._conn is not None:
            await asyncio.sleep(delay_s)
            return
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._changed.wait()

    def _stalled(self) -> SourceError:
        stall_s = self.timeouts.stall_s
        if self._conn is None:
            return CannotConnect(
                f"no agent connected for {stall_s:.0f} s: run guard_mode_agent.py on the "
                "device with this satellite's id and key (shown when you reconfigure it)"
            )
        return NoAudio(f"{self.describe()} sent no audio for {stall_s:.0f} s")

    def _notify_agent(self) -> None:
        if self._conn is not None:
            self._conn.update()

    def _wake(self) -> None:
        self._changed.set()

    @callback
    def async_disconnect(self, message: str = "Guard Mode is restarting this satellite") -> None:
        """Close the agent's connection (it reconnects): e.g. when the satellite is reloaded."""
        if self._conn is not None:
            self._conn.request_restart(message)

    # -- called by the view ------------------------------------------------------------------

    @callback
    def attach(self, conn: AgentConnection) -> None:
        """Make conn this source's agent; an agent already connected is closed (replaced)."""
        old, self._conn = self._conn, conn
        conn.source = self
        conn.told_start = None  # tell this connection where we are, whatever it heard before
        self.connections += 1
        if old is not None and old is not conn:
            _LOGGER.warning(
                "Satellite %s: a new agent connected (with its key, user %s), closing the "
                "previous one",
                self.satellite,
                conn.user,
            )
            old.source = None
            old.request_replaced()
        self._since = asyncio.get_running_loop().time()
        conn.update()
        self._wake()

    @callback
    def detach(self, conn: AgentConnection, error: SourceError | None = None) -> None:
        """Forget conn (it closed or moved elsewhere); a running stream fails with error."""
        if conn.source is self:
            conn.source = None
        if self._conn is not conn:
            return
        self._conn = None
        failure = error or CannotConnect("the agent disconnected")
        for future in self._probes:
            if not future.done():
                future.set_exception(failure)
        if self._sink is not None:
            self._failure = failure
            self._wake()

    @callback
    def deliver(self, conn: AgentConnection, data: bytes) -> None:
        """Hand one binary message of conn to the sink (or a waiting probe), else ignore it."""
        if conn is not self._conn or conn.format is None or not self.wants_audio:
            self.ignored += 1
            return
        self.messages += 1
        self.bytes += len(data)
        fmt = conn.format
        for future in self._probes:
            if not future.done():
                future.set_result(fmt)
        if (sink := self._sink) is None or not data:
            return
        self._since = asyncio.get_running_loop().time()
        try:
            sink(conn.converter.convert(data, fmt.rate, fmt.width, fmt.channels))
        except Exception as err:  # surfaces in run(), where the satellite logs it
            self._failure = err
            self._wake()
