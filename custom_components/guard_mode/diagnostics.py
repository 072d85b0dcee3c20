"""Diagnostics: the hub, the engine and every satellite, with no host, address or secret.

Settings are redacted by key; messages (a satellite's last error) have every setting value of
the satellite replaced wherever it appears (redact.py), and are built without the addresses a
host name resolved to in the first place.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST, CONF_URL
from homeassistant.core import HomeAssistant
from yarl import URL

from .const import (
    CONF_ENGINE_HOST,
    CONF_ENGINE_TOKEN,
    CONF_NOTIFY_TARGETS,
    CONF_PUSH_ID,
    CONF_PUSH_KEY,
)
from .models import GuardModeConfigEntry
from .redact import redact_url, scrub
from .satellite import Satellite
from .sources.voice import VoiceSource
from .voice_devices import DATA_VOICE_DEVICES

TO_REDACT = {
    CONF_HOST,
    CONF_URL,
    CONF_PUSH_ID,
    CONF_PUSH_KEY,
    CONF_ENGINE_HOST,
    CONF_ENGINE_TOKEN,
    CONF_NOTIFY_TARGETS,
    "token",
    "access_token",
}


def _scrub(text: str | None, satellite: Satellite) -> str | None:
    """Remove the satellite's host, URL, push id and key from a message."""
    if text is None:
        return None
    data = satellite.subentry.data
    secrets = [
        str(data[key])
        for key in (CONF_URL, CONF_HOST, CONF_PUSH_ID, CONF_PUSH_KEY)
        if data.get(key)
    ]
    if url := data.get(CONF_URL):
        secrets.append(redact_url(str(url)))
        with contextlib.suppress(ValueError):
            secrets.extend(part for part in (URL(str(url)).host, URL(str(url)).raw_host) if part)
    return scrub(text, secrets)


def _satellite(satellite: Satellite) -> dict[str, Any]:
    state = satellite.state
    stream = satellite.stream
    info: dict[str, Any] = {
        "name": satellite.name,
        "source": satellite.source_type,
        "settings": async_redact_data(dict(satellite.subentry.data), TO_REDACT),
        "listening": state.listening,
        "connected": state.connected,
        "outage_s": None
        if state.outage_since is None
        else round(time.monotonic() - state.outage_since, 1),
        "reconnects": state.reconnects,
        "last_error": _scrub(state.last_error, satellite),
        "level_db": state.level_db,
    }
    if stream is not None and satellite.decision is not None:
        info["stream"] = {**stream.status(), **satellite.decision.status()}
    if isinstance(source := satellite.source, VoiceSource):
        devices = satellite.hass.data.get(DATA_VOICE_DEVICES)
        info["voice"] = {
            "streams": source.streams,
            "dropped_chunks": source.dropped,
            "device": devices.diagnostics(satellite.id) if devices is not None else None,
        }
    return info


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: GuardModeConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for the Guard Mode hub."""
    data = entry.runtime_data
    return {
        "options": async_redact_data(dict(entry.options), TO_REDACT),
        "armed": data.hub.armed,
        "changed_by": data.hub.source,
        "engine": data.engine.diagnostics(),
        "satellites": [_satellite(satellite) for satellite in data.satellites.values()],
        "learning": data.learning.summary(
            {satellite.id: satellite.name for satellite in data.satellites.values()}
        ),
    }
