"""Device triggers: "Glass break detected" (and every other sound) on a satellite's device."""

from __future__ import annotations

from typing import Any

from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import (
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_EVENT,
    CONF_EVENT_DATA,
    CONF_PLATFORM,
    CONF_TYPE,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType
import probatio as vol

from .alerts import EVENT_DETECTION
from .const import DOMAIN, SUBENTRY_SATELLITE
from .engine import Sound

TRIGGER_TYPES: tuple[str, ...] = tuple(str(sound) for sound in Sound)

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_DOMAIN): DOMAIN,
        vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES),
    }
)


@callback
def is_satellite_device(hass: HomeAssistant, device: dr.DeviceEntry) -> bool:
    """Return True if device is a Guard Mode satellite (not the hub, not another device)."""
    entry = hass.config_entries.async_get_entry(device.config_entry_id)
    if entry is None or entry.domain != DOMAIN or device.config_subentry_id is None:
        return False
    subentry = entry.subentries.get(device.config_subentry_id)
    return (
        subentry is not None
        and subentry.subentry_type == SUBENTRY_SATELLITE
        and (DOMAIN, subentry.subentry_id) in device.identifiers
    )


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """Return one trigger per sound for a satellite's device; none for the hub."""
    device = dr.async_get(hass).async_get(device_id, include_child_devices=False)
    if device is None or not is_satellite_device(hass, device):
        return []
    return [
        {
            CONF_PLATFORM: "device",
            CONF_DOMAIN: DOMAIN,
            CONF_DEVICE_ID: device_id,
            CONF_TYPE: trigger_type,
        }
        for trigger_type in TRIGGER_TYPES
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Fire on guard_mode_detection events of this device and sound."""
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: CONF_EVENT,
            event_trigger.CONF_EVENT_TYPE: EVENT_DETECTION,
            CONF_EVENT_DATA: {
                CONF_DEVICE_ID: config[CONF_DEVICE_ID],
                "sound": config[CONF_TYPE],
            },
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )
