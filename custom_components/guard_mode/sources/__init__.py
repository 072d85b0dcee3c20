"""Audio sources: Wyoming microphones, cameras and stream URLs, the push agent, voice satellites."""

from __future__ import annotations

from collections.abc import Mapping
import secrets
from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT, CONF_URL
from homeassistant.core import HomeAssistant

from ..const import (
    CONF_CAMERA,
    CONF_PUSH_ID,
    CONF_PUSH_KEY,
    CONF_SOURCE,
    CONF_VOICE_SATELLITE,
    SourceType,
)
from ..timeouts import timeouts
from .base import AudioSource


def new_push_key() -> str:
    """Return a new push satellite key: what binds the satellite to its own agent."""
    return secrets.token_urlsafe(32)


def source_unique_id(data: Mapping[str, Any]) -> str:
    """Return the unique id of a satellite with these settings: what it listens to."""
    kind = SourceType(data[CONF_SOURCE])
    if kind is SourceType.WYOMING:
        return f"wyoming:{data[CONF_HOST].lower()}:{data[CONF_PORT]}"
    if kind is SourceType.STREAM and CONF_CAMERA in data:
        return f"camera:{data[CONF_CAMERA]}"
    if kind is SourceType.STREAM:
        return f"stream:{data[CONF_URL]}"
    if kind is SourceType.VOICE:
        return f"voice:{data[CONF_VOICE_SATELLITE]}"
    return f"push:{data[CONF_PUSH_ID]}"


def create_source(data: Mapping[str, Any], hass: HomeAssistant) -> AudioSource:
    """Return the source a satellite's settings describe, with this hass's timeouts."""
    kind = SourceType(data[CONF_SOURCE])
    waits = timeouts(hass)
    if kind is SourceType.STREAM and data.get(CONF_CAMERA):
        from .camera import CameraSource  # noqa: PLC0415

        return CameraSource(hass, data[CONF_CAMERA], timeouts=waits)
    if kind is SourceType.WYOMING:
        from .wyoming import WyomingMicSource  # noqa: PLC0415

        return WyomingMicSource(data[CONF_HOST], int(data[CONF_PORT]), timeouts=waits)
    if kind is SourceType.VOICE:
        from .voice import VoiceSource  # noqa: PLC0415

        return VoiceSource(hass, data[CONF_VOICE_SATELLITE], timeouts=waits)
    if kind is SourceType.STREAM:
        from .stream import StreamSource  # noqa: PLC0415

        return StreamSource(data[CONF_URL], timeouts=waits)
    from .push import PushSource  # noqa: PLC0415

    return PushSource(data[CONF_PUSH_ID], str(data.get(CONF_PUSH_KEY) or ""), timeouts=waits)
