"""Arming guard mode: by hand, following an alarm panel, following presence, across restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
)
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.guard_mode.hub import STORAGE_KEY

from ..helpers import make_entry, setup_entry

SWITCH = "switch.guard_mode"
PANEL = "alarm_control_panel.house"


async def _switch(hass: HomeAssistant, on: bool) -> None:
    await hass.services.async_call(
        "switch",
        SERVICE_TURN_ON if on else SERVICE_TURN_OFF,
        {ATTR_ENTITY_ID: SWITCH},
        blocking=True,
    )


def _state(hass: HomeAssistant) -> str:
    state = hass.states.get(SWITCH)
    assert state is not None
    return state.state


async def _set(hass: HomeAssistant, entity_id: str, value: str) -> None:
    hass.states.async_set(entity_id, value)
    await hass.async_block_till_done()


async def test_manual_arm_and_disarm(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await setup_entry(hass, entry)
    assert _state(hass) == STATE_OFF
    await _switch(hass, True)
    assert _state(hass) == STATE_ON
    assert hass.states.get(SWITCH).attributes["changed_by"] == "manual"
    await _switch(hass, False)
    assert _state(hass) == STATE_OFF


async def test_armed_state_survives_a_restart(
    hass: HomeAssistant, hass_storage: dict[str, Any], freezer: FrozenDateTimeFactory
) -> None:
    entry = await setup_entry(hass, make_entry())
    await _switch(hass, True)
    freezer.tick(timedelta(seconds=5))
    async_fire_time_changed(hass)
    await hass.async_block_till_done()
    assert hass_storage[STORAGE_KEY]["data"]["armed"] is True

    # A restart: the entry is set up again from what was stored.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert _state(hass) == STATE_ON


async def test_restored_from_storage_at_start(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "key": STORAGE_KEY,
        "data": {"armed": True, "source": "manual", "followed_verdict": None},
    }
    await setup_entry(hass, make_entry())
    assert _state(hass) == STATE_ON


@pytest.mark.parametrize(
    ("extra_states", "transitions"),
    [
        (
            [],
            [
                ("disarmed", STATE_OFF),
                ("arming", STATE_OFF),
                ("armed_away", STATE_ON),
                ("pending", STATE_ON),
                ("triggered", STATE_ON),
                ("unavailable", STATE_ON),
                ("armed_away", STATE_ON),
                ("armed_home", STATE_OFF),
                ("armed_night", STATE_OFF),
                ("armed_vacation", STATE_OFF),
                ("armed_away", STATE_ON),
                ("disarmed", STATE_OFF),
            ],
        ),
        (
            ["armed_night", "armed_vacation"],
            [
                ("armed_night", STATE_ON),
                ("armed_home", STATE_OFF),
                ("armed_vacation", STATE_ON),
                ("disarmed", STATE_OFF),
            ],
        ),
    ],
)
async def test_follows_alarm_panel(
    hass: HomeAssistant, extra_states: list[str], transitions: list[tuple[str, str]]
) -> None:
    await setup_entry(
        hass,
        make_entry(
            {"arming_mode": "alarm_panel", "alarm_panel": PANEL, "alarm_states": extra_states}
        ),
    )
    for panel_state, expected in transitions:
        await _set(hass, PANEL, panel_state)
        assert _state(hass) == expected, f"panel {panel_state}"
    await _set(hass, PANEL, "armed_away")
    assert hass.states.get(SWITCH).attributes["changed_by"] == "alarm_panel"


async def test_manual_change_lasts_until_the_panel_changes(hass: HomeAssistant) -> None:
    hass.states.async_set(PANEL, "armed_away")
    await setup_entry(hass, make_entry({"arming_mode": "alarm_panel", "alarm_panel": PANEL}))
    assert _state(hass) == STATE_ON  # synced to the panel when set up

    await _switch(hass, False)
    assert _state(hass) == STATE_OFF
    await _set(hass, PANEL, "triggered")  # not a change of the followed verdict
    await _set(hass, PANEL, "armed_away")
    assert _state(hass) == STATE_OFF

    await _set(hass, PANEL, "disarmed")
    await _switch(hass, True)
    assert _state(hass) == STATE_ON
    await _set(hass, PANEL, "armed_away")  # the next change wins
    assert _state(hass) == STATE_ON
    await _set(hass, PANEL, "disarmed")
    assert _state(hass) == STATE_OFF


async def test_follows_presence(hass: HomeAssistant) -> None:
    hass.states.async_set("person.ann", "home")
    hass.states.async_set("person.bob", "not_home")
    await setup_entry(
        hass,
        make_entry({"arming_mode": "presence", "presence_entities": ["person.ann", "person.bob"]}),
    )
    assert _state(hass) == STATE_OFF
    await _set(hass, "person.ann", "work")
    assert _state(hass) == STATE_ON
    assert hass.states.get(SWITCH).attributes["changed_by"] == "presence"
    await _set(hass, "person.ann", "unavailable")  # says nothing: bob is still away
    assert _state(hass) == STATE_ON
    await _set(hass, "person.bob", "home")
    assert _state(hass) == STATE_OFF
    await _switch(hass, True)  # manual override while someone is home
    await _set(hass, "person.ann", "home")
    assert _state(hass) == STATE_ON
    await _set(hass, "person.bob", "not_home")
    await _set(hass, "person.ann", "not_home")
    assert _state(hass) == STATE_ON


async def test_presence_defaults_to_the_home_zone(hass: HomeAssistant) -> None:
    hass.states.async_set("zone.home", "2")
    await setup_entry(hass, make_entry({"arming_mode": "presence"}))
    assert _state(hass) == STATE_OFF
    await _set(hass, "zone.home", "0")
    assert _state(hass) == STATE_ON
    await _set(hass, "zone.home", "1")
    assert _state(hass) == STATE_OFF


async def test_panel_change_while_stopped_is_applied_at_start(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    # Before the restart the panel was armed away and so was guard mode; meanwhile it was disarmed.
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "key": STORAGE_KEY,
        "data": {"armed": True, "source": "alarm_panel", "followed_verdict": True},
    }
    hass.states.async_set(PANEL, "disarmed")
    await setup_entry(hass, make_entry({"arming_mode": "alarm_panel", "alarm_panel": PANEL}))
    assert _state(hass) == STATE_OFF


async def test_manual_override_survives_restart_when_panel_unchanged(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "key": STORAGE_KEY,
        "data": {"armed": False, "source": "manual", "followed_verdict": True},
    }
    hass.states.async_set(PANEL, "armed_away")
    await setup_entry(hass, make_entry({"arming_mode": "alarm_panel", "alarm_panel": PANEL}))
    assert _state(hass) == STATE_OFF


async def test_changing_options_follows_at_once(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    hass.states.async_set(PANEL, "armed_away")
    await setup_entry(hass, entry)
    assert _state(hass) == STATE_OFF
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "arming_mode": "alarm_panel", "alarm_panel": PANEL}
    )
    await hass.async_block_till_done()
    assert _state(hass) == STATE_ON
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "arming_mode": "manual"}
    )
    await hass.async_block_till_done()
    await _set(hass, PANEL, "disarmed")
    assert _state(hass) == STATE_ON  # manual mode no longer follows


async def test_other_option_changes_keep_a_manual_override(hass: HomeAssistant) -> None:
    hass.states.async_set("person.ann", "home")
    entry = await setup_entry(
        hass, make_entry({"arming_mode": "presence", "presence_entities": ["person.ann"]})
    )
    assert _state(hass) == STATE_OFF
    await _switch(hass, True)  # armed by hand while Ann is home
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "clip_retention_days": 3}
    )
    await hass.async_block_till_done()
    assert _state(hass) == STATE_ON  # changing the clip retention doesn't disarm
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "presence_entities": ["person.ann", "person.bob"]}
    )
    await hass.async_block_till_done()
    assert _state(hass) == STATE_OFF  # a change of who is followed syncs to them
