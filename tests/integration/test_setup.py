"""Setting up, reloading and removing the integration leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
import threading
from typing import Any

from aiohttp import WSMsgType
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    mock_restore_cache,
)

from custom_components.guard_mode import engine_runtime as runtime
from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine import (
    head as head_module,
    load_shipped_tagger,
    shipped_head,
)
from custom_components.guard_mode.hub import STORAGE_KEY

from .. import synth
from ..helpers import (
    BreakableTagger,
    arm,
    make_entry,
    push_satellite_entry,
    satellite_entry,
    satellite_subentry,
    setup_entry,
    wait_for,
    zero_block,
)
from .wyoming_mic import MicServer

SWITCH = "switch.guard_mode"
PANEL = "alarm_control_panel.house"


async def test_hub_device_and_switch(hass: HomeAssistant) -> None:
    entry = await setup_entry(hass, push_satellite_entry())
    registry = dr.async_get(hass)
    device = registry.async_get_device_by_identifier(("guard_mode", entry.entry_id), entry.entry_id)
    assert device is not None
    assert device.name == "Guard Mode"
    satellite = registry.async_get_device_by_identifier(
        ("guard_mode", next(iter(entry.subentries))), entry.entry_id
    )
    assert satellite is not None
    assert satellite.model == "Guard Mode agent"  # as the Add satellite menu calls it
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
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=10))
    await hass.async_block_till_done()
    assert STORAGE_KEY not in hass_storage  # no late write brings it back
    assert hass.states.get(SWITCH) is None
    assert er.async_get(hass).async_get(SWITCH) is None


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (None, "model file not found"),
        (lambda data: data[:4096], "not a valid ONNX model"),  # an interrupted copy
        (lambda data: b"", "not a valid ONNX model"),
        (zero_block, "the file is damaged"),
    ],
    ids=["missing", "truncated", "empty", "zeroed"],
)
async def test_unusable_model_file_gives_a_repair_and_recovers(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: Callable[[bytes], bytes] | None,
    says: str,
) -> None:
    model = tmp_path / "yamnet.onnx"
    if damage is not None:
        model.write_bytes(damage(runtime.DEFAULT_MODEL.read_bytes()))
    monkeypatch.setattr(runtime, "MODEL_FILE", model)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert str(model) in entry.reason
    assert entry.reason.count(str(model)) == 1  # the file is named once, with what is wrong
    issue = ir.async_get(hass).async_get_issue(DOMAIN, runtime.ISSUE_MODEL)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["file"] == str(model)
    assert says in issue.translation_placeholders["error"]
    assert hass.states.get(SWITCH) is None

    # The file is restored (a reinstall): the next retry loads it and the issue goes away.
    monkeypatch.setattr(runtime, "MODEL_FILE", runtime.DEFAULT_MODEL)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, runtime.ISSUE_MODEL) is None
    assert hass.states.get(SWITCH) is not None


async def test_a_damaged_detection_head_gives_the_same_repair(
    hass: HomeAssistant, entry: MockConfigEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = tmp_path / "head.npz"
    head.write_bytes(head_module.DEFAULT_HEAD.read_bytes()[:-100])  # an interrupted update
    monkeypatch.setattr(head_module, "DEFAULT_HEAD", head)
    shipped_head.cache_clear()  # as in a fresh Home Assistant
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = ir.async_get(hass).async_get_issue(DOMAIN, runtime.ISSUE_MODEL)
    assert issue is not None
    assert issue.translation_placeholders == {
        "file": str(head),
        "error": "the file is damaged (it is not the head Guard Mode ships)",
    }


@pytest.mark.usefixtures("socket_enabled")
async def test_a_head_replaced_while_running_changes_nothing_until_restart(
    hass: HomeAssistant, alarm_mic: MicServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update (HACS) writes new model files while Home Assistant runs, to be used after a
    restart: the running engine keeps the head it checked at start, and hears on."""
    shipped_head.cache_clear()  # as in a fresh Home Assistant: nothing read yet
    await setup_entry(hass, satellite_entry(alarm_mic.port))
    newer = tmp_path / "head.npz"
    newer.write_bytes(b"a head of another version")
    monkeypatch.setattr(head_module, "DEFAULT_HEAD", newer)
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=15)
    assert detections[0].data["sound"] == "smoke_alarm"
    await arm(hass, False)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    synth.write_wav(alarm := tmp_path / "alarm.wav", synth.smoke_alarm_audio())
    response = await hass.services.async_call(  # files are heard with the same head
        DOMAIN, "analyze_file", {"path": str(alarm)}, blocking=True, return_response=True
    )
    assert [d["sound"] for d in response["detections"]] == ["smoke_alarm"]
    shipped_head.cache_clear()


@pytest.mark.usefixtures("socket_enabled")
async def test_a_failing_model_is_shown_and_clears_when_it_works_again(
    hass: HomeAssistant, mic: MicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only alarm patterns are heard while the model fails: the user must know."""
    tagger = BreakableTagger(load_shipped_tagger())
    monkeypatch.setattr(runtime, "load_shipped_tagger", lambda *_: tagger)
    await setup_entry(hass, satellite_entry(mic.port))
    await arm(hass)
    tagger.broken = True
    registry = ir.async_get(hass)
    await wait_for(lambda: registry.async_get_issue(DOMAIN, runtime.ISSUE_TAGGER) is not None)
    issue = registry.async_get_issue(DOMAIN, runtime.ISSUE_TAGGER)
    assert issue.translation_placeholders == {"error": "the inference session is broken"}
    tagger.broken = False
    await wait_for(lambda: registry.async_get_issue(DOMAIN, runtime.ISSUE_TAGGER) is None)
    await arm(hass, False)


def engine_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "guard_mode_engine"]


async def test_a_failed_set_up_leaves_no_engine_running(
    hass: HomeAssistant, entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """Guard Mode downgraded after a newer version saved its state: it says so, holds nothing."""
    hass_storage[STORAGE_KEY] = {"version": 99, "data": {}}
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    await hass.async_block_till_done()
    assert not engine_threads()  # the worker was started, and stopped
    assert hass.states.get(SWITCH) is None


async def test_an_unreadable_armed_state_starts_disarmed(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state saved by a newer Guard Mode (a way of arming this one doesn't know): disarmed."""
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "data": {"armed": True, "source": "schedule", "followed_verdict": None},
    }
    await setup_entry(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    assert hass.states.get(SWITCH).state == "off"
    assert caplog.text.count("The saved armed state could not be read") == 1


async def test_a_stale_not_a_threat_button_is_only_logged(
    hass: HomeAssistant, entry: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    await setup_entry(hass, entry)
    hass.bus.async_fire("mobile_app_notification_action", {"action": "SOMETHING_ELSE"})
    hass.bus.async_fire(
        "mobile_app_notification_action", {"action": "GUARD_MODE_NOT_A_THREAT::long-gone"}
    )
    await hass.async_block_till_done()
    assert caplog.text.count("Could not mark the detection as not a threat") == 1
    assert "long-gone" in caplog.text


async def test_a_satellite_from_a_newer_version_fails_the_set_up_cleanly(
    hass: HomeAssistant,
) -> None:
    """A satellite kind this version doesn't know (after a downgrade): nothing is left running."""
    known = satellite_subentry("Kitchen mic", "push:k1", source="push", push_id="k1")
    unknown = satellite_subentry("Hall mic", "bluetooth:h1", source="bluetooth", address="h1")
    entry = make_entry({"always_listen_alarms": True}, [known, unknown])
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert not engine_threads()


async def test_an_agent_with_an_unknown_satellite_id_is_told_so(
    hass: HomeAssistant, hass_client: Any
) -> None:
    kitchen = satellite_subentry("Kitchen mic", "push:k1", source="push", push_id="0" * 16)
    await setup_entry(hass, make_entry(satellites=[kitchen]))
    client = await hass_client()
    ws = await client.ws_connect(f"/api/guard_mode/push/{'f' * 16}")
    message = await ws.receive(timeout=2)
    assert "unknown_push_id" in message.data
    assert (await ws.receive(timeout=2)).type is WSMsgType.CLOSE
    assert ws.close_code == 4404


async def test_the_last_detection_is_kept_across_a_restart(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    before = {"satellite": "Kitchen mic", "area": "Kitchen", "confidence": 0.91, "extra": 1}
    mock_restore_cache(hass, [State("sensor.guard_mode_last_detection", "smoke_alarm", before)])
    await setup_entry(hass, entry)
    state = hass.states.get("sensor.guard_mode_last_detection")
    assert state.state == "smoke_alarm"
    assert state.attributes["area"] == "Kitchen"
    assert state.attributes["confidence"] == 0.91
    assert "extra" not in state.attributes  # only what the sensor itself shows
