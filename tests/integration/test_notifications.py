"""Notifications that arrive: notify entities and actions, failures surfaced, tests kept apart."""

from __future__ import annotations

from collections.abc import Callable
import logging
from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.data_entry_flow import InvalidData
from homeassistant.helpers import area_registry as ar, device_registry as dr, issue_registry as ir
from homeassistant.util import dt as dt_util
import probatio as vol
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.decider import DeciderEvent, Detection, EventKind
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.notifications import issue_notify_failed
from custom_components.guard_mode.timeouts import Timeouts

from ..helpers import (
    gathered,
    hear,
    make_entry,
    persistent_notifications,
    push_satellite_entry,
    satellite_subentry,
    setup_entry,
    simulate,
    the_satellite,
    wait_for,
)
from .ha_devices import Phone, async_add_devices

PHONE = "notify.ann_s_phone"
APP = "notify.mobile_app_bob"


def notify_options(result: dict[str, Any]) -> list[str]:
    for key, selector in result["data_schema"].schema.items():
        if key == "notify_targets":
            return [option["value"] for option in selector.config["options"]]
    raise AssertionError("no notify_targets field")


async def test_options_offer_only_targets_that_work(hass: HomeAssistant) -> None:
    await async_add_devices(hass, Phone("Ann's phone"))
    async_mock_service(hass, "notify", "mobile_app_bob")
    entry = await setup_entry(hass, push_satellite_entry(notify_targets=["notify.gone"]))
    result = await hass.config_entries.options.async_init(entry.entry_id)
    # send_message needs an entity, persistent_notification is always created: neither is offered
    assert notify_options(result) == [PHONE, APP]
    assert hass.services.has_service("notify", "send_message")
    assert hass.services.has_service("notify", "persistent_notification")

    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                "arming_mode": "manual",
                "always_listen_alarms": False,
                "evidence_clips": False,
                "notify_targets": ["notify.send_message"],
            },
        )
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "arming_mode": "manual",
            "always_listen_alarms": False,
            "evidence_clips": False,
            "notify_targets": [PHONE, APP],
        },
    )
    assert entry.options["notify_targets"] == [PHONE, APP]


async def test_an_alert_reaches_notify_entities_and_actions(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator
) -> None:
    (phone,) = phones = [Phone("Ann's phone")]
    await async_add_devices(hass, *phones)
    app = async_mock_service(hass, "notify", "mobile_app_bob")
    await setup_entry(hass, push_satellite_entry(notify_targets=[PHONE, APP]))
    kitchen = ar.async_get(hass).async_create("Kitchen")
    satellite = the_satellite(hass)
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), satellite.entry_id
    )
    dr.async_get(hass).async_update_device(device.id, area_id=kitchen.id)
    detections = async_capture_events(hass, EVENT_DETECTION)

    hear(hass, Sound.GLASS_BREAK, confidence=0.845)
    await gathered(hass)

    title, message = phone.messages[0]
    assert title == "Guard Mode heard glass breaking"
    assert message.startswith("Kitchen mic heard glass breaking in Kitchen at ")
    assert message.endswith("(confidence 84 %).")  # 0.845, rounded once: 84 % everywhere
    call: ServiceCall = app[0]
    assert (call.data["title"], call.data["message"]) == (title, message)
    assert call.data["data"]["push"]["sound"]["critical"] == 1  # the companion app's extras
    assert detections[0].data["confidence"] == 0.84
    sensor = hass.states.get("binary_sensor.kitchen_mic_glass_break")
    assert sensor.attributes["confidence"] == 0.84
    assert hass.states.get("event.kitchen_mic_sound").attributes["confidence"] == 0.84
    notifications = await persistent_notifications(hass, hass_ws_client)
    assert notifications["guard_mode_glass_break"]["message"] == message
    assert not ir.async_get(hass).issues


async def test_a_notify_action_that_takes_no_companion_app_extras_gets_the_text(
    hass: HomeAssistant,
) -> None:
    """Signal, Slack, Matrix: their own data schema refuses the app's tag, group and actions."""
    received: list[dict[str, Any]] = []
    strict = vol.Schema({vol.Optional("attachments"): [str]})  # as signal_messenger's

    async def signal(call: ServiceCall) -> None:
        strict(call.data.get("data") or {})  # raises vol.Invalid inside the action, as theirs
        received.append(dict(call.data))

    hass.services.async_register("notify", "signal_home", signal)
    await setup_entry(hass, push_satellite_entry(notify_targets=["notify.signal_home"]))
    detections = async_capture_events(hass, EVENT_DETECTION)
    await hass.config.async_set_time_zone("Pacific/Kiritimati")  # UTC+14: not the process's

    hear(hass, Sound.GLASS_BREAK)
    await gathered(hass)
    assert len(received) == 1
    assert received[0]["title"] == "Guard Mode heard glass breaking"
    assert "data" not in received[0]
    assert not ir.async_get(hass).issues
    started = dt_util.as_local(dt_util.parse_datetime(detections[0].data["started"]))
    assert f" at {started:%H:%M:%S} " in received[0]["message"]  # Home Assistant's time zone


async def test_a_target_that_never_answers_is_surfaced(
    hass: HomeAssistant, use_timeouts: Callable[..., Timeouts]
) -> None:
    """A notify action that hangs: reported like a failure, not left waiting for ever."""
    use_timeouts(notify_s=0.3)
    await async_add_devices(hass, phone := Phone("Ann's phone", hanging=True))
    await setup_entry(hass, push_satellite_entry(notify_targets=[PHONE]))
    hear(hass, Sound.GLASS_BREAK)
    await gathered(hass)
    issues = ir.async_get(hass)
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_notify_failed(PHONE)) is not None)
    issue = issues.async_get_issue(DOMAIN, issue_notify_failed(PHONE))
    assert issue.translation_placeholders == {
        "target": PHONE,
        "error": "it did not answer within 0.3 s",
    }
    phone.hanging, phone.timing_out = False, True  # its own time-out is told as it is
    hear(hass, Sound.DOG_BARK)
    await gathered(hass)
    await wait_for(
        lambda: (
            issues.async_get_issue(DOMAIN, issue_notify_failed(PHONE)).translation_placeholders[
                "error"
            ]
            == "the push server timed out"
        )
    )


async def test_a_failing_target_is_surfaced_and_recovers(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    phone = Phone("Ann's phone", offline=True)
    await async_add_devices(hass, phone)
    async_mock_service(hass, "notify", "mobile_app_bob")
    entry = await setup_entry(
        hass, push_satellite_entry(notify_targets=[PHONE, APP, "notify.send_message"])
    )
    caplog.set_level(logging.WARNING)

    hear(hass, Sound.GLASS_BREAK)
    await gathered(hass)
    issues = ir.async_get(hass)
    issue = issues.async_get_issue(DOMAIN, issue_notify_failed(PHONE))
    assert issue is not None
    assert issue.translation_key == "notify_failed"
    assert issue.translation_placeholders == {"target": PHONE, "error": "the phone is offline"}
    assert "Guard Mode could not send its alert to notify.ann_s_phone" in caplog.text
    # An option saved by an older version: send_message is no target by itself.
    stale = issues.async_get_issue(DOMAIN, issue_notify_failed("notify.send_message"))
    assert stale is not None
    assert "not a notify entity" in stale.translation_placeholders["error"]
    assert issues.async_get_issue(DOMAIN, issue_notify_failed(APP)) is None  # that one worked

    hass.services.async_remove("notify", "mobile_app_bob")  # the app was removed meanwhile
    hear(hass, Sound.DOG_BARK)
    await gathered(hass)
    assert caplog.text.count("could not send its alert to notify.ann_s_phone") == 1  # logged once
    gone = issues.async_get_issue(DOMAIN, issue_notify_failed(APP))
    assert gone is not None
    assert "does not exist" in gone.translation_placeholders["error"]

    phone.offline = False  # back online: the next alert gets through and the repair goes
    hear(hass, Sound.GUNSHOT)
    await gathered(hass)
    assert phone.messages
    assert issues.async_get_issue(DOMAIN, issue_notify_failed(PHONE)) is None

    # Targets no longer chosen take their repairs with them.
    hass.config_entries.async_update_entry(entry, options={**entry.options, "notify_targets": []})
    await hass.async_block_till_done()
    assert not [key for key in issues.issues if key[0] == DOMAIN]


async def test_a_simulation_never_replaces_a_real_alert(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator
) -> None:
    app = async_mock_service(hass, "notify", "mobile_app_bob")
    await setup_entry(hass, push_satellite_entry(notify_targets=[APP]))

    hear(hass, Sound.SMOKE_ALARM)
    await simulate(hass, "smoke_alarm")  # someone tests their automations at the same moment
    await gathered(hass)

    notifications = await persistent_notifications(hass, hass_ws_client)
    real = notifications["guard_mode_smoke_alarm"]
    test = notifications["guard_mode_smoke_alarm_test"]
    assert real["title"] == "Guard Mode heard a smoke alarm"
    assert test["title"] == "Test: Guard Mode heard a smoke alarm"
    titles = sorted(call.data["title"] for call in app)
    assert titles == ["Guard Mode heard a smoke alarm", "Test: Guard Mode heard a smoke alarm"]
    tags = {call.data["data"]["tag"] for call in app}
    assert tags == {"guard_mode_smoke_alarm", "guard_mode_smoke_alarm_test"}  # apps keep both


async def test_one_notification_for_a_sound_heard_by_several_satellites(
    hass: HomeAssistant,
) -> None:
    app = async_mock_service(hass, "notify", "mobile_app_bob")
    kitchen = satellite_subentry("Kitchen mic", "push:k1", source="push", push_id="k1")
    hall = satellite_subentry("Hall mic", "push:h1", source="push", push_id="h1")
    entry = await setup_entry(hass, make_entry({"notify_targets": [APP]}, [kitchen, hall]))
    first, second = entry.runtime_data.satellites.values()
    for satellite, peak_db in ((first, -30.0), (second, -12.0)):  # loudest in the hall
        detection = Detection(f"d-{satellite.name}", Sound.GLASS_BREAK, 1.0, 1.5, 0.9, "x", peak_db)
        satellite.alerts.async_handle(satellite, DeciderEvent(EventKind.ONSET, detection))
    await gathered(hass)
    assert len(app) == 1
    message = app[0].data["message"]
    assert message.startswith("Hall mic heard glass breaking at ")  # no area: the mic says where
    assert message.endswith(" Also heard by Kitchen mic.")

    hear(hass, Sound.GLASS_BREAK)  # again a minute later: not notified again so soon
    await gathered(hass)
    assert len(app) == 1
