"""Setting up, reloading and removing the integration leaves nothing behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.guard_mode.hub import STORAGE_KEY

from .conftest import make_entry, setup_entry

SWITCH = "switch.guard_mode_guard_mode"
PANEL = "alarm_control_panel.house"


async def test_hub_device_and_switch(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await setup_entry(hass, entry)
    device = dr.async_get(hass).async_get_device_by_identifier(
        ("guard_mode", entry.entry_id), entry.entry_id
    )
    assert device is not None
    assert device.name == "Guard Mode"
    reg_entry = er.async_get(hass).async_get(SWITCH)
    assert reg_entry is not None
    assert reg_entry.unique_id == f"{entry.entry_id}-guard_mode"
    assert reg_entry.translation_key == "guard_mode"
    assert reg_entry.device_id == device.id


def _flush_delayed_saves(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    freezer.tick(timedelta(seconds=10))
    async_fire_time_changed(hass)


async def test_unload_and_reload_leave_nothing_behind(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    hass.states.async_set(PANEL, "disarmed")
    entry = await setup_entry(
        hass, make_entry({"arming_mode": "alarm_panel", "alarm_panel": PANEL})
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    _flush_delayed_saves(hass, freezer)
    await hass.async_block_till_done()
    # What Home Assistant itself keeps once the switch platform is loaded.
    listeners_before = hass.bus.async_listeners()

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.bus.async_listeners() != listeners_before
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(SWITCH).state == STATE_UNAVAILABLE
    _flush_delayed_saves(hass, freezer)
    await hass.async_block_till_done()
    assert hass.bus.async_listeners() == listeners_before
    hass.states.async_set(PANEL, "armed_away")  # nobody follows it any more
    await hass.async_block_till_done()
    assert hass.states.get(SWITCH).state == STATE_UNAVAILABLE

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert hass.states.get(SWITCH).state == "on"  # caught up with the panel
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(SWITCH).state == "on"


async def test_remove_forgets_everything(
    hass: HomeAssistant, entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    await setup_entry(hass, entry)
    await hass.services.async_call("switch", "turn_on", {"entity_id": SWITCH}, blocking=True)
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert STORAGE_KEY not in hass_storage
    assert hass.states.get(SWITCH) is None
    assert er.async_get(hass).async_get(SWITCH) is None
