"""Actions: simulate a detection (to test automations) and analyze an audio file."""

from __future__ import annotations

from typing import Any

from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.event import async_call_later
import probatio as vol

from .alerts import simulated_detection
from .const import DOMAIN
from .engine.analyze import analyze_file
from .engine.decider import DeciderEvent, EventKind
from .engine.labels import Sound
from .engine.pcm import AudioFormatError
from .models import GuardModeConfigEntry
from .satellite import Satellite

SERVICE_SIMULATE = "simulate"
SERVICE_ANALYZE_FILE = "analyze_file"
ATTR_SOUND = "sound"
ATTR_CONFIDENCE = "confidence"
ATTR_PATH = "path"
SIMULATED_HOLD_S = 10.0

SIMULATE_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_SOUND): vol.In([str(sound) for sound in Sound]),
        vol.Optional(ATTR_CONFIDENCE, default=0.9): vol.All(
            vol.Coerce(float), vol.Range(min=0.0, max=1.0)
        ),
    }
)
ANALYZE_SCHEMA = vol.Schema({vol.Required(ATTR_PATH): cv.string})


def _entry(hass: HomeAssistant) -> GuardModeConfigEntry:
    entries: list[GuardModeConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if not entries:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_loaded")
    return entries[0]


def _satellite(hass: HomeAssistant, device_id: str) -> Satellite:
    entry = _entry(hass)
    device = dr.async_get(hass).async_get(device_id)
    for domain, identifier in device.identifiers if device else ():
        if domain == DOMAIN and identifier in entry.runtime_data.satellites:
            return entry.runtime_data.satellites[identifier]
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_satellite",
        translation_placeholders={"device_id": device_id},
    )


async def _simulate(call: ServiceCall) -> None:
    """Run the whole chain for a satellite and sound, marked as simulated."""
    hass = call.hass
    satellite = _satellite(hass, call.data[ATTR_DEVICE_ID])
    detection = simulated_detection(Sound(call.data[ATTR_SOUND]), call.data[ATTR_CONFIDENCE])
    satellite.alerts.async_handle(
        satellite, DeciderEvent(EventKind.ONSET, detection), simulated=True
    )

    @callback
    def _end(_now: Any) -> None:
        satellite.alerts.async_handle(satellite, DeciderEvent(EventKind.OFFSET, detection))

    _entry(hass).async_on_unload(async_call_later(hass, SIMULATED_HOLD_S, _end))


async def _analyze(call: ServiceCall) -> ServiceResponse:
    """Run the engine on an audio file under an allowed folder; return what it heard."""
    hass = call.hass
    entry = _entry(hass)
    path = call.data[ATTR_PATH]
    if not await hass.async_add_executor_job(hass.config.is_allowed_path, path):
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="path_not_allowed",
            translation_placeholders={"path": path},
        )
    tagger = await entry.runtime_data.engine.async_tagger(hass)
    try:
        result = await hass.async_add_executor_job(analyze_file, path, tagger)
    except (AudioFormatError, OSError) as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_read_file",
            translation_placeholders={"path": path, "error": str(err)},
        ) from err
    return result.as_json()


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register Guard Mode's actions."""
    hass.services.async_register(DOMAIN, SERVICE_SIMULATE, _simulate, schema=SIMULATE_SCHEMA)
    hass.services.async_register(
        DOMAIN,
        SERVICE_ANALYZE_FILE,
        _analyze,
        schema=ANALYZE_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
