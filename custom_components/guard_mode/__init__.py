"""Guard Mode: local sound detection while the home is armed."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant

from .hub import GuardHub, state_store
from .models import GuardModeConfigEntry, GuardModeData

PLATFORMS: list[Platform] = [Platform.SWITCH]


async def async_setup_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> bool:
    """Set up Guard Mode from a config entry."""
    hub = GuardHub(hass, entry)
    await hub.async_load()
    entry.runtime_data = GuardModeData(hub=hub)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    hub.async_start()
    entry.async_on_unload(hub.async_stop)
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> bool:
    """Unload a config entry."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Forget the saved armed state when the integration is removed."""
    await state_store(hass).async_remove()


async def _async_entry_updated(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Apply changed options without a reload."""
    entry.runtime_data.hub.async_options_updated()
