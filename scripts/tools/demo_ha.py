"""A small client of Home Assistant's HTTP and WebSocket APIs, as the frontend uses them.

Logs in through the login flow (``/auth/login_flow`` → ``/auth/token``) like the login page does,
so a demo user's documented password is exercised, not bypassed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import itertools
import time
from typing import Any

import aiohttp


class HomeAssistantError(Exception):
    """Home Assistant answered with an error."""


class HomeAssistantClient:
    """REST and WebSocket access to a Home Assistant at base_url (e.g. http://127.0.0.1:8123)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        """Use session for every request."""
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.client_id = f"{self.base_url}/"
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self._expires = 0.0

    async def wait_until_up(self, limit_s: float, alive: Callable[[], bool] = lambda: True) -> None:
        """Wait until the frontend answers (no API call: a request without a token is logged
        and notified as a failed login)."""
        deadline = time.monotonic() + limit_s
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(
                    f"{self.base_url}/manifest.json", timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    if response.status == 200:
                        return
            if not alive():
                raise HomeAssistantError("Home Assistant exited while starting")
            if time.monotonic() > deadline:
                raise HomeAssistantError(f"{self.base_url} did not answer in {limit_s:.0f} s")
            await asyncio.sleep(0.5)

    async def login(self, username: str, password: str) -> None:
        """Log in with the login flow and get tokens."""
        flow = await self._post_json(
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{self.base_url}/?auth_callback=1",
            },
        )
        result = await self._post_json(
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": self.client_id, "username": username, "password": password},
        )
        if result.get("type") != "create_entry":
            raise HomeAssistantError(f"log-in as {username!r} failed: {result.get('errors')}")
        await self._token({"grant_type": "authorization_code", "code": result["result"]})

    async def _token(self, form: dict[str, str]) -> None:
        async with self.session.post(
            f"{self.base_url}/auth/token", data={**form, "client_id": self.client_id}
        ) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise HomeAssistantError(f"/auth/token: {response.status} {body}")
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token", self.refresh_token)
        self._expires = time.monotonic() + float(body.get("expires_in", 1800)) - 60

    async def token(self) -> str:
        """Return a valid access token (refreshed when it is about to expire)."""
        if self.access_token is None:
            raise HomeAssistantError("not logged in")
        if time.monotonic() > self._expires and self.refresh_token:
            await self._token({"grant_type": "refresh_token", "refresh_token": self.refresh_token})
        return self.access_token

    async def logout(self) -> None:
        """Revoke the session (so sessions don't pile up in the user's profile)."""
        if self.refresh_token is None:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.session.post(
                f"{self.base_url}/auth/revoke",
                data={"token": self.refresh_token},
                timeout=aiohttp.ClientTimeout(total=5),
            ):
                pass
        self.access_token = self.refresh_token = None

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.base_url}{path}", json=payload) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise HomeAssistantError(f"{path}: {response.status} {body}")
            return body

    async def get(self, path: str) -> Any:
        """GET an authenticated API path (e.g. /api/states)."""
        headers = {"Authorization": f"Bearer {await self.token()}"}
        async with self.session.get(f"{self.base_url}{path}", headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise HomeAssistantError(f"{path}: {response.status} {body}")
            return body

    async def websocket(self) -> WebSocket:
        """Open an authenticated WebSocket API connection."""
        ws = await self.session.ws_connect(f"{self.base_url}/api/websocket", heartbeat=30)
        hello = await ws.receive_json()
        if hello.get("type") != "auth_required":
            raise HomeAssistantError(f"unexpected websocket greeting {hello}")
        await ws.send_json({"type": "auth", "access_token": await self.token()})
        answer = await ws.receive_json()
        if answer.get("type") != "auth_ok":
            await ws.close()
            raise HomeAssistantError(f"websocket authentication failed: {answer}")
        return WebSocket(ws)


class WebSocket:
    """An authenticated WebSocket API connection: commands and subscriptions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Start reading messages."""
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._reader = asyncio.create_task(self._read())

    @property
    def closed(self) -> bool:
        """Return True once the connection is gone."""
        return self._reader.done()

    async def wait_closed(self) -> None:
        """Wait until the connection is gone."""
        await asyncio.shield(self._reader)

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = message.json()
                for item in data if isinstance(data, list) else [data]:
                    self._dispatch(item)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(HomeAssistantError("websocket closed"))

    def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("type") == "event" and (listener := self._subscriptions.get(item["id"])):
            listener(item["event"])
        elif item.get("type") == "result" and (future := self._pending.pop(item["id"], None)):
            if item.get("success"):
                future.set_result(item.get("result"))
            else:
                future.set_exception(HomeAssistantError(str(item.get("error"))))

    async def command(self, type_: str, **data: Any) -> Any:
        """Send a command; return its result."""
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_json({"id": msg_id, "type": type_, **data})
        return await future

    async def subscribe_events(
        self, event_type: str, listener: Callable[[dict[str, Any]], None]
    ) -> None:
        """Call listener with every event of event_type."""
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._subscriptions[msg_id] = listener
        await self._ws.send_json(
            {"id": msg_id, "type": "subscribe_events", "event_type": event_type}
        )
        await future

    async def close(self) -> None:
        """Close the connection."""
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
