"""The remote engine in Home Assistant: satellites' audio relayed to a Guard Mode engine service.

The client itself (connection loop, TLS pinning, token, segments, evidence, bounds) is
:class:`.engine.client.EngineClient`, without Home Assistant. Here is what Home Assistant adds:
the streams' tasks as background tasks, Home Assistant's TLS context, error texts without
addresses, and availability. While any stream is down the satellites' detection entities are
unavailable, the outage is logged once, and a repair explains it after a minute; both go when
every stream is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
import logging
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.util.ssl import client_context_no_verify

from .const import (
    CONF_ENGINE_FINGERPRINT,
    CONF_ENGINE_HOST,
    CONF_ENGINE_PORT,
    CONF_ENGINE_TOKEN,
    DOMAIN,
)
from .engine import (
    DEFAULT_MODEL,
    ClientTimeouts,
    Connector,
    EngineClient,
    EvidenceCallback,
    ModelError,
    RemoteSettings,
    Tagger,
    load_shipped_tagger,
    normalize_fingerprint,
    protocol,
)
from .redact import error_text

_LOGGER = logging.getLogger(__name__)

ISSUE_REMOTE = "remote_engine_unreachable"
ISSUE_REMOTE_MODEL = "remote_model_failing"


@callback
def async_engine_repair(
    hass: HomeAssistant, issue: str, placeholders: dict[str, str] | None
) -> None:
    """Show an engine's repair issue (its own translation key) with what it says, or clear it."""
    if placeholders is None:
        ir.async_delete_issue(hass, DOMAIN, issue)
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue,
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=issue,
        translation_placeholders=placeholders,
    )


def settings_from_options(options: Mapping[str, Any]) -> RemoteSettings:
    """Return the remote engine's settings that the integration's options hold."""
    pin = options.get(CONF_ENGINE_FINGERPRINT) or None
    return RemoteSettings(
        host=str(options[CONF_ENGINE_HOST]),
        port=int(options[CONF_ENGINE_PORT]),
        token=str(options.get(CONF_ENGINE_TOKEN) or ""),
        fingerprint=normalize_fingerprint(pin) if pin else None,
    )


def connector(settings: RemoteSettings, timeouts: ClientTimeouts | None = None) -> Connector:
    """Return how Home Assistant connects: its TLS context, errors without addresses."""
    return Connector(
        settings,
        timeouts or ClientTimeouts(),
        tls_context=client_context_no_verify,
        error_text=error_text,
    )


async def async_describe(settings: RemoteSettings) -> protocol.GuardModeInfo:
    """Ask a remote engine what it is (test-before-configure); RemoteEngineError if it isn't."""
    return await connector(settings).describe()


class RemoteEngine:
    """Relays satellites to a remote engine; tracks whether every stream reaches it."""

    def __init__(
        self,
        hass: HomeAssistant,
        settings: RemoteSettings,
        info: protocol.GuardModeInfo,
        *,
        timeouts: ClientTimeouts,
        repair_after_s: float,
    ) -> None:
        """Use the engine the settings name (info: what it said it is).

        ``timeouts`` are the streams' (connect, idle, keepalive, backoff); a repair is raised
        when the engine has been unreachable for ``repair_after_s``.
        """
        self.hass = hass
        self.settings = settings
        self.info = info
        self.backend = "remote"
        self.available = True
        self._connector = connector(settings, timeouts)
        self._repair_after_s = repair_after_s
        self._model_error = ""  # why the engine's model fails, as its last status said
        self._streams: list[RemoteStream] = []
        self._failing: dict[EngineClient, str] = {}  # streams whose connection is down: why
        self._listeners: list[Callable[[], None]] = []
        self._repair_timer: asyncio.TimerHandle | None = None
        self._tagger: Tagger | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # streams' connections, closed or not

    def open_stream(self, name: str, callback: EvidenceCallback) -> RemoteStream:
        """Open a satellite's stream to the engine (connects in the background)."""
        stream = RemoteStream(self, name, callback)
        self._streams.append(stream)
        task = stream.start()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream

    def _start_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self.hass.async_create_background_task(coro, name, eager_start=True)

    def check_load(self, hass: HomeAssistant, satellites: int) -> None:
        """Do nothing: the remote engine has its own CPU."""

    async def async_tagger(self, hass: HomeAssistant) -> Tagger:
        """Return a local tagger for analyzing files (loaded on first use)."""
        if self._tagger is None:
            try:
                self._tagger = await hass.async_add_executor_job(load_shipped_tagger)
            except ModelError as err:
                raise HomeAssistantError(
                    translation_domain=DOMAIN,
                    translation_key="model_unusable",
                    translation_placeholders={
                        "file": str(DEFAULT_MODEL),
                        "error": str(err).removeprefix(f"{DEFAULT_MODEL}: "),
                    },
                ) from err
        return self._tagger

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener when availability changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def diagnostics(self) -> dict[str, Any]:
        """Return the engine's state (no host, no token)."""
        return {
            "backend": "remote",
            "remote_backend": self.info.backend,
            "remote_version": self.info.version,
            "tls": self.settings.fingerprint is not None,
            "available": self.available,
            "streams": len(self._streams),
            "streams_down": len(self._failing),
        }

    async def async_stop(self, hass: HomeAssistant) -> None:
        """Close every stream and wait until their connections are gone."""
        for stream in list(self._streams):
            stream.close()
        tasks, self._tasks = self._tasks, set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._repair_timer is not None:
            self._repair_timer.cancel()
            self._repair_timer = None
        ir.async_delete_issue(hass, DOMAIN, ISSUE_REMOTE)
        ir.async_delete_issue(hass, DOMAIN, ISSUE_REMOTE_MODEL)

    def _forget(self, stream: RemoteStream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
        if self._failing.pop(stream, None) is not None:
            self._update(heard=False)

    @callback
    def _down(self, stream: EngineClient, error: str, exc: BaseException | None) -> None:
        """Note that a stream's connection failed (it reconnects by itself)."""
        if stream.closed:
            return  # stopping: the last streams' failures mean nothing
        self._failing[stream] = error
        if not self.available:
            _LOGGER.debug("Remote engine still unreachable (%s): %s", stream.name, error)
        self._update(exc)

    @callback
    def _model(self, error: str) -> None:
        """Follow what the engine's statuses say of its model: a repair while it fails."""
        if error == self._model_error:
            return
        self._model_error = error
        if error:
            _LOGGER.warning("The remote engine's sound model fails: %s", error)
        else:
            _LOGGER.info("The remote engine's sound model works again")
        async_engine_repair(self.hass, ISSUE_REMOTE_MODEL, {"error": error} if error else None)

    @callback
    def _refused(self) -> None:
        """Ask the user for the new token: the engine refused this one (its own was changed)."""
        for entry in self.hass.config_entries.async_loaded_entries(DOMAIN):
            entry.async_start_reauth(self.hass)  # once: a reauth flow in progress is not doubled

    @callback
    def _up(self, stream: EngineClient) -> None:
        """Note that a stream's connection works."""
        if self._failing.pop(stream, None) is not None:
            self._update()

    @callback
    def _update(self, exc: BaseException | None = None, *, heard: bool = True) -> None:
        """Follow whether every stream's connection works.

        heard: a connection worked (else failing streams were closed: that says nothing of the
        engine, and is not logged as its return).
        """
        available = not self._failing
        if available == self.available:
            return
        self.available = available
        if available:
            if heard:
                _LOGGER.info("The remote engine is back")
            else:
                _LOGGER.debug("No stream waits for the remote engine any more")
            if self._repair_timer is not None:
                self._repair_timer.cancel()
                self._repair_timer = None
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_REMOTE)
        else:
            error = next(iter(self._failing.values()))
            # Once per outage; a bug (not a network or protocol failure) with its traceback.
            _LOGGER.warning("The remote engine is unreachable: %s", error, exc_info=exc)
            self._repair_timer = self.hass.loop.call_later(self._repair_after_s, self._raise_repair)
        for listener in list(self._listeners):
            listener()

    @callback
    def _raise_repair(self) -> None:
        self._repair_timer = None
        if self.available or not self._failing:
            return
        async_engine_repair(self.hass, ISSUE_REMOTE, {"error": next(iter(self._failing.values()))})


class RemoteStream(EngineClient):
    """One satellite's stream to the remote engine, as a background task of Home Assistant."""

    def __init__(self, engine: RemoteEngine, name: str, callback: EvidenceCallback) -> None:
        """Create through :meth:`RemoteEngine.open_stream`."""
        super().__init__(
            engine._connector,
            name,
            callback,
            start_task=engine._start_task,
            on_up=engine._up,
            on_down=engine._down,
            on_refused=engine._refused,
            on_model=engine._model,
        )
        self._engine = engine

    def close(self) -> None:
        """Stop relaying; the connection closes and its outage (if any) is forgotten."""
        super().close()
        self._engine._forget(self)
