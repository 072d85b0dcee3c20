"""The push endpoint: the websocket a push satellite's agent streams its microphone to.

The satellite's side is :class:`.sources.push.PushSource`; this is Home Assistant's HTTP view
the agents connect to, and the protocol they speak.

The agent (``agent/guard_mode_agent.py``) connects to a websocket on Home Assistant's own HTTP
server and authenticates the way every Home Assistant API client does, with
``Authorization: Bearer <long-lived access token>``; unauthenticated requests are refused with
401 before any websocket exists. A push satellite is fed only by its own agent: the satellite
has a key of its own (created when it is added, shown in its settings), and a request for its
push id without that key in ``X-Guard-Mode-Key`` is refused with 403 before any websocket exists
— whichever Home Assistant user's token it carries — so another user can neither feed it nor
close its agent. The microphone is opened only while guard mode listens.

Protocol (``GET /api/guard_mode/push/{push_id}``, websocket; text messages are JSON objects)::

    agent → HA  {"type": "hello", "agent": "guard-mode-agent/1",
                 "rate": 16000, "width": 2, "channels": 1}      first message, within 10 s
    HA → agent  {"type": "start"} | {"type": "stop"}             answer to hello, then on change
    agent → HA  binary messages: raw PCM in the declared format  only between start and stop
    agent → HA  {"type": "format", "rate": …, "width": …, "channels": …}   change the format
    HA → agent  {"type": "error", "code": "…", "message": "…"}  then HA closes the websocket

The agent opens its microphone on "start" and closes it (ends the capture process) on "stop";
"stop" is sent the moment guard mode disarms. Limits (engine/bounds.py): one message is at most
1 MiB (close code 1009 otherwise) and 1 s of audio (4413 ``chunk_too_big``); audio is taken at
most ``RATE_FACTOR`` × real time and text messages at a bounded rate (the websocket is read no
faster: the rest waits in the agent's socket); a bad format (``check_format``) closes with 4415
``bad_format``; anything that isn't a JSON object with a type (bad JSON, numbers too big,
nesting too deep), a missing hello, more than 1 MiB of audio before it or the hello timeout
close with 4400 ``bad_message``; an
unexpected error closes with 1011 (logged once); an unknown push id
closes with 4404 ``unknown_push_id``; a second agent for the same push id replaces the first,
which is closed with 4409 ``replaced`` (both hold the satellite's key); a removed satellite
closes with 4404, a reloaded one
with 1012 ``restart`` (reconnect), Home Assistant stopping with 1001 ``stopping``. Audio that
arrives before the hello or while stopped is ignored and counted; messages of an unknown type
are ignored (and counted) so that later agents may add some. Websocket pings are sent every 30 s.
Logs name the satellite, never its push id or key.

No audio is buffered here beyond the one message being converted (and a partial frame). Format
limits are engine/bounds.py's (``check_format``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import dataclass
import logging
import re
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSMsgType, web
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.http import KEY_HASS, HomeAssistantView
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN
from .engine import bounds
from .engine.audio import PcmConverter
from .sources.base import AudioFormat, BadAudio, check_format
from .timeouts import timeouts

if TYPE_CHECKING:
    from .sources.push import PushSource

_LOGGER = logging.getLogger(__name__)

PUSH_URL: Final = "/api/guard_mode/push/{push_id}"
KEY_HEADER: Final = "X-Guard-Mode-Key"
REFUSED_HEADER: Final = "X-Guard-Mode-Refused"  # on the 403: what was refused (the agent's cue)
KEY_REFUSED: Final = "key"
MAX_MESSAGE: Final = bounds.MAX_CHUNK_BYTES  # one websocket message (100 ms of audio is ~3 KiB)
MAX_TEXT: Final = 8192  # one text (control) message: a hello or a format is under 200 bytes
HEARTBEAT_S: Final = 30.0
CLOSE_TIMEOUT_S: Final = 2.0
AGENT_NAME_MAX: Final = 64

CLOSE_GOING_AWAY: Final = 1001
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_RESTART: Final = 1012
CLOSE_BAD_MESSAGE: Final = 4400
CLOSE_UNKNOWN_PUSH_ID: Final = 4404
CLOSE_REPLACED: Final = 4409
CLOSE_CHUNK_TOO_BIG: Final = 4413
CLOSE_BAD_FORMAT: Final = 4415

_PUSH_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

type PushResolver = Callable[[str], "PushSource | None"]

DATA_PUSH_VIEW: HassKey[PushView] = HassKey(f"{DOMAIN}_push_view")


@callback
def async_register_push_view(hass: HomeAssistant, resolve: PushResolver) -> None:
    """Serve the push endpoint (once per hass); later calls only replace the resolver.

    ``resolve`` maps a push id to the satellite's PushSource, or None when there is none.
    Connected agents re-resolve their push id every second, so a reloaded satellite (a new
    PushSource) gets its agent back and a removed one (unknown for 5 s) has its agent closed.
    """
    if (view := hass.data.get(DATA_PUSH_VIEW)) is not None:
        view.resolve = resolve
        return
    view = PushView(resolve)
    hass.data[DATA_PUSH_VIEW] = view
    hass.http.register_view(view)


@callback
def async_unregister_push_view(hass: HomeAssistant) -> None:
    """Serve no push id any more (views can't be removed); connected agents are closed."""
    if (view := hass.data.get(DATA_PUSH_VIEW)) is not None:
        view.resolve = _resolve_nothing


def _resolve_nothing(_push_id: str) -> PushSource | None:
    return None


@dataclass(frozen=True, slots=True)
class _Close:
    """Why and how a connection is closed."""

    code: int
    error: str  # the "code" of the error message sent before closing
    message: str


class _ProtocolError(Exception):
    """The agent broke the protocol: tell it why and close."""

    def __init__(self, close: _Close) -> None:
        super().__init__(close.message)
        self.close = close


class AgentConnection:
    """One connected agent: its websocket, what it declared and what it was last told."""

    def __init__(
        self, ws: web.WebSocketResponse, push_id: str, user: str | None, key: str = ""
    ) -> None:
        """Wrap the prepared websocket of an agent for push_id (with key), of user."""
        self.ws = ws
        self.push_id = push_id
        self.key = key
        self.key_issue: str | None = None  # a repair showing the key, gone once the agent has it
        self.user = user
        self.agent: str | None = None
        self.format: AudioFormat | None = None
        self.converter = PcmConverter()  # its audio, to 16 kHz mono
        self.source: PushSource | None = None
        self.told_start: bool | None = None  # the last start (True) / stop (False) sent
        self.unserved_since: float | None = None  # when the resolver stopped knowing push_id
        self._close: _Close | None = None
        self._wake = asyncio.Event()

    @property
    def close_request(self) -> _Close | None:
        """Return why the connection is to be closed, if it is."""
        return self._close

    async def wait(self, limit_s: float) -> None:
        """Wait until update() or request_close() is called, at most limit_s seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit_s):
                await self._wake.wait()
        self._wake.clear()

    @callback
    def update(self) -> None:
        """Wake the control task: start/stop may have to be sent."""
        self._wake.set()

    @callback
    def request_close(self, code: int, error: str, message: str) -> None:
        """Close the connection soon, telling the agent why."""
        if self._close is None:
            self._close = _Close(code, error, message)
        self._wake.set()

    @callback
    def request_restart(self, message: str) -> None:
        """Close the connection soon; the agent reconnects (its satellite is reloaded)."""
        self.request_close(CLOSE_RESTART, "restart", message)

    @callback
    def request_replaced(self) -> None:
        """Close the connection soon: another agent connected for its satellite."""
        self.request_close(CLOSE_REPLACED, "replaced", "another agent connected for this satellite")


class PushView(HomeAssistantView):
    """The websocket agents push audio to; Home Assistant authentication required."""

    url = PUSH_URL
    name = "api:guard_mode:push"
    requires_auth = True

    def __init__(self, resolve: PushResolver) -> None:
        """Serve the push ids resolve knows."""
        self.resolve = resolve
        self._warned: set[str] = set()  # problems logged once: agents retry forever

    async def get(self, request: web.Request, push_id: str) -> web.StreamResponse:
        """Accept an agent, answer its hello, relay start/stop and its audio."""
        hass = request.app[KEY_HASS]
        user = request.get("hass_user")
        user_name = bounds.printable(user.name) if user is not None and user.name else "?"
        source = self.resolve(push_id) if _PUSH_ID.fullmatch(push_id) else None
        if source is not None and not source.key_matches(request.headers.get(KEY_HEADER, "")):
            # Before any websocket: another user's token can't feed or close this satellite.
            self._warn_once(
                f"Satellite {source.satellite}: refused an agent without this satellite's key "
                f"(Home Assistant user {user_name})"
            )
            return web.Response(
                status=403,
                headers={REFUSED_HEADER: KEY_REFUSED},
                text="This satellite's key is missing or wrong: give the agent the key shown "
                "in the satellite's settings (Reconfigure).",
            )
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S,
            max_msg_size=MAX_MESSAGE + 1,  # aiohttp refuses a message of max_msg_size bytes
            compress=False,
        )
        await ws.prepare(request)
        try:
            await self._serve(hass, ws, request, push_id, source=source, user=user_name)
        finally:  # however it ends (cancelled too): no heartbeat left to ping a closed socket
            _disarm_heartbeat(ws)
        return ws

    async def _serve(
        self,
        hass: HomeAssistant,
        ws: web.WebSocketResponse,
        request: web.Request,
        push_id: str,
        *,
        source: PushSource | None,
        user: str,
    ) -> None:
        """Run one agent's connection on its prepared websocket."""
        conn = AgentConnection(ws, push_id, user, request.headers.get(KEY_HEADER, ""))
        if source is None:
            self._warn_once("Guard Mode push: an agent asked for a push id no satellite has")
            await _close(
                ws,
                _Close(
                    CLOSE_UNKNOWN_PUSH_ID,
                    "unknown_push_id",
                    "no Guard Mode satellite has this push id: check --satellite",
                ),
            )
            return
        label = source.satellite
        if source.key_issue is not None:
            ir.async_delete_issue(hass, DOMAIN, source.key_issue)
        control: asyncio.Task[None] | None = None
        close: _Close | None = None
        try:
            await _hello(ws, conn, source, timeouts(hass).hello_s)
            source.attach(conn)
            control = hass.async_create_background_task(
                self._control(hass, conn), f"{DOMAIN} push {label} control", eager_start=False
            )
            _LOGGER.debug("Satellite %s: agent %s connected", label, conn.agent)
            await self._receive(conn)
        except _ProtocolError as err:
            close = err.close
            if ws.closed:  # gone before its hello: nothing to tell, nothing to warn about
                _LOGGER.debug("Satellite %s: agent: %s", label, close.message)
            else:
                self._warn_once(f"Satellite {label}: agent {conn.agent}: {close.message}")
        except Exception as err:  # a bug must not leave the agent without a reason
            close = _Close(CLOSE_INTERNAL_ERROR, "internal_error", "internal error")
            self._warn_once(f"Satellite {label}: agent connection failed: {err!r}", exc=err)
        finally:
            # First what can't be interrupted: the handler is cancelled when the peer is gone.
            if conn.source is not None:
                error = BadAudio(close.message) if close and close.error == "bad_format" else None
                conn.source.detach(conn, error)
            if control is not None:
                try:
                    if conn.close_request is not None and not control.done():
                        # The control task is closing the websocket: let it finish that.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(control), CLOSE_TIMEOUT_S)
                finally:
                    control.cancel()
        if close is not None:
            await _close(ws, close)
        elif not ws.closed:
            await ws.close()
        _LOGGER.debug("Satellite %s: agent %s disconnected", label, conn.agent)

    def _warn_once(self, message: str, exc: BaseException | None = None) -> None:
        """Log a warning the first time (later at debug level: a broken agent retries)."""
        if message in self._warned:
            _LOGGER.debug("%s", message)
            return
        if len(self._warned) >= 100:
            self._warned.clear()
        self._warned.add(message)
        _LOGGER.warning("%s", message, exc_info=exc)

    async def _receive(self, conn: AgentConnection) -> None:
        """Handle the agent's messages until the websocket closes (within the agent's budget)."""
        audio, events = bounds.audio_budget(), bounds.event_budget()
        while True:
            msg = await conn.ws.receive()
            wait = events.spend(1)
            if msg.type is WSMsgType.BINARY:
                source = conn.source
                if source is not None and (fmt := conn.format) is not None:
                    size = len(msg.data)
                    if problem := bounds.chunk_error(size, fmt.rate, fmt.width, fmt.channels):
                        raise _ProtocolError(
                            _Close(CLOSE_CHUNK_TOO_BIG, "chunk_too_big", f"it sent {problem}")
                        )
                    source.deliver(conn, msg.data)
                    seconds = bounds.chunk_seconds(size, fmt.rate, fmt.width, fmt.channels)
                    wait = max(wait, audio.spend(seconds))
            elif msg.type is WSMsgType.TEXT:
                message = _parse(msg.data)
                kind = message.get("type")
                if kind == "format":
                    conn.format = _format(message)
                elif conn.source is not None:
                    conn.source.ignored += 1
                    _LOGGER.debug("Guard Mode push: ignoring a %r message", kind)
            else:  # close, closing, closed, error (too big, broken connection)
                if msg.type is WSMsgType.ERROR and conn.source is not None:
                    _LOGGER.warning(
                        "Satellite %s: agent connection error: %s",
                        conn.source.satellite,
                        bounds.printable(msg.data, 200),
                    )
                return
            if wait:
                if conn.source is not None:
                    conn.source.throttled(wait)
                await asyncio.sleep(wait)

    async def _control(self, hass: HomeAssistant, conn: AgentConnection) -> None:
        """Tell the agent start/stop as it changes; follow the resolver; close on request."""
        ws = conn.ws
        try:
            while not ws.closed:
                await conn.wait(timeouts(hass).resolve_interval_s)
                if conn.close_request is None:
                    self._follow(hass, conn)
                if (close := conn.close_request) is not None:
                    await _close(ws, close)
                    return
                source = conn.source
                want = source is not None and source.wants_audio
                if want != conn.told_start:
                    await ws.send_json({"type": "start" if want else "stop"})
                    conn.told_start = want
        except ConnectionError:
            pass  # the receive loop sees the connection end
        except Exception:
            # Without this task the agent would not hear "stop": close, so that it stops.
            _LOGGER.exception("Guard Mode push: unexpected error")
            await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
            _disarm_heartbeat(ws)

    def _follow(self, hass: HomeAssistant, conn: AgentConnection) -> None:
        """Move conn to the source now serving its push id (a reloaded satellite), if any."""
        if hass.is_stopping:
            conn.request_close(CLOSE_GOING_AWAY, "stopping", "Home Assistant is stopping")
            return
        source = self.resolve(conn.push_id)
        if source is not None and source is not conn.source and not source.key_matches(conn.key):
            source = None  # reconfigured with a new key: this agent's key is no longer it
        if source is None:  # removed, or being reloaded: give it a moment to come back
            now = hass.loop.time()
            if conn.unserved_since is None:
                conn.unserved_since = now
            if now - conn.unserved_since < timeouts(hass).resolve_grace_s:
                return
            if conn.source is not None:
                conn.source.detach(conn)
            conn.request_close(
                CLOSE_UNKNOWN_PUSH_ID,
                "unknown_push_id",
                "this Guard Mode satellite was removed (or its key changed)",
            )
            return
        conn.unserved_since = None
        if source is conn.source:
            return
        if conn.source is not None:
            conn.source.detach(conn)
        source.attach(conn)


async def _hello(
    ws: web.WebSocketResponse, conn: AgentConnection, source: PushSource, timeout_s: float
) -> None:
    """Read the agent's hello; raise _ProtocolError otherwise.

    Audio before it is ignored, up to one chunk's bytes in all (no format says what it is).
    """
    events = bounds.event_budget()
    ignored_bytes = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await ws.receive()
                if msg.type is not WSMsgType.BINARY:
                    break
                source.ignored += 1  # audio before hello
                ignored_bytes += len(msg.data)
                if ignored_bytes > MAX_MESSAGE:
                    raise _ProtocolError(
                        _Close(
                            CLOSE_BAD_MESSAGE,
                            "bad_message",
                            f"over {MAX_MESSAGE} bytes of audio before its hello",
                        )
                    )
                if wait := events.spend(1):
                    await asyncio.sleep(wait)
    except TimeoutError as err:
        raise _ProtocolError(
            _Close(CLOSE_BAD_MESSAGE, "bad_message", f"no hello within {timeout_s:g} s")
        ) from err
    if msg.type is not WSMsgType.TEXT:
        raise _ProtocolError(_Close(CLOSE_BAD_MESSAGE, "bad_message", "closed before hello"))
    message = _parse(msg.data)
    if message.get("type") != "hello":
        raise _ProtocolError(
            _Close(CLOSE_BAD_MESSAGE, "bad_message", "the first message must be a hello")
        )
    conn.format = _format(message)
    agent = message.get("agent")
    conn.agent = bounds.printable(agent, AGENT_NAME_MAX) if isinstance(agent, str) else "unknown"


def _parse(text: str) -> dict[str, Any]:
    if len(text) > MAX_TEXT:  # refused before it is parsed on the event loop
        raise _ProtocolError(
            _Close(
                CLOSE_BAD_MESSAGE,
                "bad_message",
                f"a text message of {len(text)} characters (at most {MAX_TEXT})",
            )
        )
    try:
        message = bounds.parse_json_object(text, "a text message")
    except bounds.PeerError as err:
        raise _ProtocolError(
            _Close(CLOSE_BAD_MESSAGE, "bad_message", f"text messages must be JSON objects: {err}")
        ) from None
    if not isinstance(message.get("type"), str):
        raise _ProtocolError(
            _Close(CLOSE_BAD_MESSAGE, "bad_message", "text messages must be objects with a type")
        )
    return message


def _format(message: dict[str, Any]) -> AudioFormat:
    rate, width, channels = (message.get(key) for key in ("rate", "width", "channels"))
    if not (type(rate) is int and type(width) is int and type(channels) is int):
        raise _ProtocolError(
            _Close(CLOSE_BAD_FORMAT, "bad_format", "rate, width and channels must be integers")
        )
    try:
        return check_format(rate, width, channels)
    except BadAudio as err:
        raise _ProtocolError(_Close(CLOSE_BAD_FORMAT, "bad_format", str(err))) from err


async def _close(ws: web.WebSocketResponse, close: _Close) -> None:
    """Send the error message (when the socket is still open) and close with close.code."""
    if not ws.closed:
        try:
            await ws.send_json({"type": "error", "code": close.error, "message": close.message})
            await ws.close(code=close.code, message=close.error.encode()[:120])
        except ConnectionError:
            pass
    _disarm_heartbeat(ws)


def _disarm_heartbeat(ws: web.WebSocketResponse) -> None:
    """Cancel the heartbeat timer aiohttp re-arms when the close reply arrives after close().

    aiohttp 3.14 resets the heartbeat on any data received, even the peer's answer to our close
    frame (aio-libs/aiohttp#12030), leaving a timer that pings a closed socket 30 s later.
    """
    cancel = getattr(ws, "_cancel_heartbeat", None)
    if callable(cancel):
        cancel()
