"""The config flow: one hub, and the options that decide how guard mode is armed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.guard_mode import config_flow, engine_runtime as runtime
from custom_components.guard_mode.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.guard_mode.learned import encode
from custom_components.guard_mode.sources.wyoming import WyomingMicSource

from ..helpers import (
    add_satellite,
    choose_remote_engine,
    make_entry,
    satellite_subentry,
    setup_entry,
)


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
    assert hass.states.get("switch.guard_mode") is not None


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


async def test_a_push_satellite_shows_the_id_for_its_agent(hass: HomeAssistant) -> None:
    entry = await setup_entry(hass, make_entry())
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "push"}
    )
    assert result["step_id"] == "push"
    push_id = result["description_placeholders"]["push_id"]
    key = result["description_placeholders"]["push_key"]  # the satellite's own (issue 13)
    assert len(push_id) == 16  # what the agent is started with
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Garage mic"}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY  # saved first: the agent connects after
    subentry = next(iter(entry.subentries.values()))
    assert subentry.data == {"source": "push", "push_id": push_id, "push_key": key}
    assert subentry.unique_id == f"push:{push_id}"

    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"),
        context={"source": "reconfigure", "subentry_id": subentry.subentry_id},
    )
    assert f"`{push_id}`" in result["description_placeholders"]["push_note"]  # shown again


def learned(kitchen: str) -> dict[str, Any]:
    """What Guard Mode stored after a household marked a dog bark and taught a doorbell."""
    rng = np.random.default_rng(0)
    return {
        "version": 1,
        "data": {
            "false_alarms": {
                kitchen: {
                    "dog_bark": [
                        {
                            "id": "d-1",
                            "added": "2026-01-01T00:00:00+00:00",
                            "vectors": encode(rng.standard_normal((2, 1024)).astype(np.float32)),
                        }
                    ],
                    "custom_doorbell": [
                        {
                            "id": "d-2",
                            "added": "2026-01-02T00:00:00+00:00",
                            "vectors": encode(rng.standard_normal((1, 1024)).astype(np.float32)),
                        }
                    ],
                }
            },
            "custom_sounds": {
                "custom_doorbell": {
                    "name": "Doorbell",
                    "satellites": [kitchen],
                    "prototypes": encode(rng.standard_normal((3, 1024)).astype(np.float32)),
                    "threshold": 0.8,
                    "created": "2026-01-01T00:00:00+00:00",
                    "figures": {},
                }
            },
        },
    }


async def test_what_was_learned_can_be_forgotten_in_the_options(
    hass: HomeAssistant, hass_storage: dict[str, Any]
) -> None:
    kitchen = satellite_subentry("Kitchen mic", "push:k1", source="push", push_id="k1")
    entry = make_entry(satellites=[kitchen])
    entry.add_to_hass(hass)
    kitchen_id = next(iter(entry.subentries))
    hass_storage["guard_mode.learning"] = learned(kitchen_id)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    doorbell = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{kitchen_id}-custom_doorbell"
    )
    assert doorbell is not None

    result = await hass.config_entries.options.async_init(entry.entry_id)
    choices = {
        option["value"]: option["label"]
        for key, selector in result["data_schema"].schema.items()
        if key == "forget_learned"
        for option in selector.config["options"]
    }
    assert choices == {
        f"mark|{kitchen_id}|dog_bark": "Kitchen mic: a dog barking (1 not a threat)",
        f"mark|{kitchen_id}|custom_doorbell": "Kitchen mic: Doorbell (1 not a threat)",
        "custom|custom_doorbell": "Custom sound: Doorbell",
    }
    answers = {"arming_mode": "manual", "always_listen_alarms": False, "evidence_clips": False}
    data = entry.runtime_data
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], answers | {"forget_learned": [f"mark|{kitchen_id}|dog_bark"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.runtime_data is data  # forgetting a mark needs no reload
    assert data.learning.summary()["false_alarms"] == {kitchen_id: {"custom_doorbell": 1}}
    assert hass.states.get(doorbell) is not None

    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], answers | {"forget_learned": ["custom|custom_doorbell"]}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()  # forgetting a custom sound reloads: its entity goes
    assert entry.runtime_data.learning.summary() == {"false_alarms": {}, "custom_sounds": {}}
    assert er.async_get(hass).async_get(doorbell) is None
    assert "forget_learned" not in entry.options


async def test_options_can_be_changed_while_guard_mode_cant_start(
    hass: HomeAssistant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged model keeps Guard Mode from starting; the options still open (to fix it)."""
    monkeypatch.setattr(runtime, "MODEL_FILE", tmp_path / "missing.onnx")
    entry = make_entry()
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert not any(key == "forget_learned" for key in result["data_schema"].schema)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "manual", "always_listen_alarms": True, "evidence_clips": False},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options["always_listen_alarms"] is True


async def test_an_unexpected_failure_while_testing_is_shown_and_logged(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug met while testing a microphone or the engine: the form says so, the log has it."""

    async def broken(*_: Any) -> None:
        raise RuntimeError("a bug in the test")

    monkeypatch.setattr(WyomingMicSource, "probe", broken)
    monkeypatch.setattr(config_flow, "async_describe", broken)
    entry = await setup_entry(hass, make_entry())
    result = await add_satellite(
        hass, entry, "wyoming", {"name": "Mic", "host": "192.0.2.7", "port": 10600}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    assert not entry.subentries
    assert "Unexpected error while testing the microphone" in caplog.text

    result = await choose_remote_engine(hass, entry, 10700)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error while testing the remote engine" in caplog.text
    assert caplog.text.count("RuntimeError: a bug in the test") == 2  # each with its traceback
