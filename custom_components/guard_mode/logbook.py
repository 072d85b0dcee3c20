"""Logbook: one Guard Mode line per alert, and one per detection that was ignored.

"Kitchen mic heard glass breaking in Kitchen (confidence 87 %)": the sound, the place and the
confidence, rounded as everywhere else (see alerts.confidence_text).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_ENTITY_ID,
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er

from .alerts import EVENT_DETECTION, EVENT_SUPPRESSED, SOUND_PHRASES, confidence_text
from .const import DOMAIN, NAME
from .engine import Reason

# Why a detection was ignored, as it reads after "ignored: ".
REASON_PHRASES: dict[str, str] = {
    Reason.MEDIA: "it came from a TV or radio",
    Reason.MEDIA_PLAYER: "a media player near it was playing",
    Reason.COOLDOWN: "heard again moments after an alert",
    Reason.LEARNED: 'it was marked "not a threat" before',
}


def sound_phrase(data: Mapping[str, Any]) -> str:
    """Return how an event's sound reads ("glass breaking"; a taught sound: its name)."""
    sound = str(data.get("sound"))
    return SOUND_PHRASES.get(sound) or str(data.get("label") or sound.replace("_", " "))


def detection_message(data: Mapping[str, Any]) -> str:
    """Return the message of a guard_mode_detection event (after the satellite's name)."""
    message = f"heard {sound_phrase(data)}"
    if area := data.get("area"):
        message += f" in {area}"
    if isinstance(confidence := data.get("confidence"), int | float):
        message += f" ({confidence_text(confidence)})"
    if data.get("simulated"):
        message += " (simulated)"
    return message


def suppressed_message(data: Mapping[str, Any]) -> str:
    """Return the message of a guard_mode_suppressed event (after the satellite's name)."""
    reason = data.get("reason")
    why = REASON_PHRASES.get(str(reason), str(reason).replace("_", " ") if reason else "")
    message = f"heard {sound_phrase(data)}, ignored"
    if why:
        message += f": {why}"
    if data.get("simulated"):
        message += " (simulated)"
    return message


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, Any]]], None],
) -> None:
    """Describe Guard Mode's detection events for the logbook."""

    @callback
    def entity_id(data: Mapping[str, Any]) -> str | None:
        if not (satellite_id := data.get("satellite_id")):
            return None
        return er.async_get(hass).async_get_entity_id("event", DOMAIN, f"{satellite_id}-detection")

    @callback
    def describe(event: Event, message: Callable[[Mapping[str, Any]], str]) -> dict[str, Any]:
        data = event.data
        described: dict[str, Any] = {
            LOGBOOK_ENTRY_NAME: data.get("satellite") or NAME,
            LOGBOOK_ENTRY_MESSAGE: message(data),
        }
        if (found := entity_id(data)) is not None:
            described[LOGBOOK_ENTRY_ENTITY_ID] = found
        return described

    @callback
    def describe_detection(event: Event) -> dict[str, Any]:
        return describe(event, detection_message)

    @callback
    def describe_suppressed(event: Event) -> dict[str, Any]:
        return describe(event, suppressed_message)

    async_describe_event(DOMAIN, EVENT_DETECTION, describe_detection)
    async_describe_event(DOMAIN, EVENT_SUPPRESSED, describe_suppressed)
