"""The config flow: one hub, and the options that decide how guard mode is armed."""

from __future__ import annotations

from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.guard_mode.const import DEFAULT_OPTIONS, DOMAIN

from .conftest import setup_entry


async def test_user_flow_creates_the_hub(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Guard Mode"
    entry = result["result"]
    assert entry.unique_id == DOMAIN
    assert entry.options == DEFAULT_OPTIONS
    assert hass.states.get("switch.guard_mode_guard_mode") is not None


async def test_second_hub_is_refused(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await setup_entry(hass, entry)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "single_instance_allowed"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_options_manual(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    hass.services.async_register("notify", "mobile_app_phone", lambda call: None)
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "arming_mode": "manual",
            "always_listen_alarms": True,
            "evidence_clips": False,
            "notify_targets": ["notify.mobile_app_phone"],
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["always_listen_alarms"] is True
    assert entry.options["notify_targets"] == ["notify.mobile_app_phone"]

    # Every target removed: the frontend sends no notify_targets at all.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "manual", "always_listen_alarms": True, "evidence_clips": False},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["notify_targets"] == []


async def test_options_alarm_panel(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "alarm_panel", "always_listen_alarms": False, "evidence_clips": False},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "alarm_panel"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"alarm_panel": "alarm_control_panel.house", "alarm_states": ["armed_night"]},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["arming_mode"] == "alarm_panel"
    assert entry.options["alarm_panel"] == "alarm_control_panel.house"
    assert entry.options["alarm_states"] == ["armed_night"]


async def test_options_presence(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await setup_entry(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "presence", "always_listen_alarms": False, "evidence_clips": False},
    )
    assert result["step_id"] == "presence"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"presence_entities": ["person.ann", "person.bob"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["arming_mode"] == "presence"
    assert entry.options["presence_entities"] == ["person.ann", "person.bob"]
