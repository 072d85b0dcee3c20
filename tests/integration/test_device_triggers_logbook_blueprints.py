"""Device triggers, logbook descriptions and the shipped blueprints, in a real Home Assistant."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
import shutil
from typing import Any

from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.blueprint.models import Blueprint
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.config_entries import ConfigSubentryDataWithId
from homeassistant.core import Event, HomeAssistant, ServiceCall
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util, yaml as yaml_util
import probatio as vol
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_get_device_automations,
    async_mock_service,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.guard_mode import device_trigger
from custom_components.guard_mode.alerts import EVENT_DETECTION, EVENT_SUPPRESSED
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.labels import Sound

from ..helpers import make_entry, setup_entry, wait_for

REPO = Path(__file__).resolve().parents[2]
BLUEPRINTS = REPO / "blueprints" / "automation" / "guard_mode"
NOTIFY_BLUEPRINT = "notify_on_detection.yaml"
BREAK_IN_BLUEPRINT = "lights_and_siren_on_break_in.yaml"
SWITCH = "switch.guard_mode"
KITCHEN, HALL = "kitchen-sub", "hall-sub"


def two_satellites() -> MockConfigEntry:
    """A Guard Mode entry with two push satellites (no audio needed: they just wait)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Guard Mode",
        unique_id=DOMAIN,
        data={},
        options=make_entry().options,
        subentries_data=[
            ConfigSubentryDataWithId(
                data={"source": "push", "push_id": push_id},
                subentry_type="satellite",
                title=title,
                unique_id=f"push:{push_id}",
                subentry_id=subentry_id,
            )
            for subentry_id, title, push_id in (
                (KITCHEN, "Kitchen mic", "k1"),
                (HALL, "Hall mic", "h1"),
            )
        ],
    )


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A config folder of the test's own, for the blueprints copied into it."""
    return hass_tmp_config_dir


@pytest.fixture
async def mock_recorder_before_hass(async_test_recorder: Any) -> None:
    """Prepare the recorder before Home Assistant starts (the logbook tests need it)."""


@pytest.fixture
async def entry(hass: HomeAssistant) -> MockConfigEntry:
    """Guard Mode set up with the Kitchen mic (in the Kitchen) and the Hall mic."""
    entry = await setup_entry(hass, two_satellites())
    kitchen = ar.async_get(hass).async_create("Kitchen")
    dr.async_get(hass).async_update_device(device_id(hass, KITCHEN), area_id=kitchen.id)
    return entry


def device_id(hass: HomeAssistant, identifier: str) -> str:
    entry_id = hass.config_entries.async_entries(DOMAIN)[0].entry_id
    device = dr.async_get(hass).async_get_device_by_identifier((DOMAIN, identifier), entry_id)
    assert device is not None, identifier
    return device.id


async def simulate(hass: HomeAssistant, satellite: str, sound: str, *, settle: bool = True) -> None:
    """Simulate a detection; settle: wait until every automation run it started has finished
    (else the caller waits for what it expects: a run that waits, the siren's delay, would hold
    async_block_till_done)."""
    await hass.services.async_call(
        DOMAIN,
        "simulate",
        {"device_id": device_id(hass, satellite), "sound": sound},
        blocking=True,
    )
    if settle:
        await hass.async_block_till_done()


async def arm(hass: HomeAssistant) -> None:
    await hass.services.async_call("switch", "turn_on", {"entity_id": SWITCH}, blocking=True)
    await hass.async_block_till_done()


# Device triggers


async def test_satellites_offer_one_trigger_per_sound(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    kitchen = device_id(hass, KITCHEN)
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, kitchen)
    ours = [t for t in triggers if t["domain"] == DOMAIN]
    assert sorted(t["type"] for t in ours) == sorted(str(sound) for sound in Sound)
    assert all(t["device_id"] == kitchen and t["platform"] == "device" for t in ours)
    for trigger in ours:  # what the editor lists is what it can save
        device_trigger.TRIGGER_SCHEMA({k: v for k, v in trigger.items() if k != "metadata"})

    hub = device_id(hass, entry.entry_id)
    hub_triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, hub)
    assert [t for t in hub_triggers if t["domain"] == DOMAIN] == []


def test_trigger_schema_rejects_unknown_sounds() -> None:
    base = {"platform": "device", "domain": DOMAIN, "device_id": "abc"}
    assert device_trigger.TRIGGER_SCHEMA({**base, "type": "glass_break"})["type"] == "glass_break"
    with pytest.raises(vol.Invalid):
        device_trigger.TRIGGER_SCHEMA({**base, "type": "doorbell"})
    with pytest.raises(vol.Invalid):
        device_trigger.TRIGGER_SCHEMA({**base, "domain": "other", "type": "glass_break"})


async def test_device_trigger_fires_for_its_sound_and_satellite_only(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    calls = async_mock_service(hass, "test", "automation")
    kitchen = device_id(hass, KITCHEN)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "alias": "Glass in the kitchen",
                "triggers": [
                    {
                        "trigger": "device",
                        "domain": DOMAIN,
                        "device_id": kitchen,
                        "type": "glass_break",
                    }
                ],
                "actions": [
                    {
                        "action": "test.automation",
                        "data": {
                            "sound": "{{ trigger.event.data.sound }}",
                            "satellite": "{{ trigger.event.data.satellite }}",
                            "area": "{{ trigger.event.data.area }}",
                            "simulated": "{{ trigger.event.data.simulated }}",
                        },
                    }
                ],
            }
        },
    )
    await hass.async_block_till_done()
    assert hass.states.get("automation.glass_in_the_kitchen").state == "on"

    await simulate(hass, KITCHEN, "dog_bark")  # another sound
    await simulate(hass, HALL, "glass_break")  # another satellite
    assert calls == []

    await simulate(hass, KITCHEN, "glass_break")
    assert len(calls) == 1
    assert calls[0].data == {
        "sound": "glass_break",
        "satellite": "Kitchen mic",
        "area": "Kitchen",
        "simulated": True,
    }


# Logbook


def detection_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "detection_id": "d-1",
        "satellite_id": KITCHEN,
        "satellite": "Kitchen mic",
        "device_id": None,
        "area_id": None,
        "area": "Kitchen",
        "sound": "glass_break",
        "confidence": 0.873,
        "label": "Shatter",
        "started": "2026-01-01T12:00:00+00:00",
        "peak_db": -18.0,
        "clip": None,
        "simulated": False,
    }
    return {**data, **changes}


async def test_logbook_describes_detections_and_suppressions(
    recorder_mock: Any, hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    assert await async_setup_component(hass, "logbook", {})
    await hass.async_block_till_done()
    external = hass.data["logbook"].external_events
    domain, describe_detection = external[EVENT_DETECTION]
    assert domain == DOMAIN
    _, describe_suppressed = external[EVENT_SUPPRESSED]
    event_entity = er.async_get(hass).async_get_entity_id("event", DOMAIN, f"{KITCHEN}-detection")
    assert event_entity is not None

    def describe(describer: Any, data: dict[str, Any]) -> dict[str, Any]:
        described: dict[str, Any] = describer(Event(EVENT_DETECTION, data))
        return described

    assert describe(describe_detection, detection_data()) == {
        "name": "Kitchen mic",
        "message": "heard glass breaking in Kitchen (confidence 87 %)",
        "entity_id": event_entity,
    }
    simulated = describe(describe_detection, detection_data(sound="gunshot", simulated=True))
    assert simulated["message"] == "heard a gunshot in Kitchen (confidence 87 %) (simulated)"

    reasons = {
        "media": "it came from a TV or radio",
        "media_player": "a media player near it was playing",
        "cooldown": "heard again moments after an alert",
        "learned": 'it was marked "not a threat" before',
    }
    for reason, why in reasons.items():
        described = describe(describe_suppressed, detection_data(sound="gunshot", reason=reason))
        assert described["name"] == "Kitchen mic"
        assert described["message"] == f"heard a gunshot, ignored: {why}"
        assert described["entity_id"] == event_entity

    # A taught sound reads as the name it was taught under.
    taught = detection_data(sound="custom_front_door", label="Front door")
    assert describe(describe_detection, taught)["message"] == (
        "heard Front door in Kitchen (confidence 87 %)"
    )
    # A satellite that is gone (or an event recorded by an older version) still reads well.
    gone = describe(
        describe_detection,
        detection_data(
            satellite_id="gone", satellite="Garage mic", sound="doorbell", area=None, label=None
        ),
    )
    assert gone == {"name": "Garage mic", "message": "heard doorbell (confidence 87 %)"}
    oldest = describe(describe_suppressed, {"sound": "dog_bark", "simulated": True})
    assert oldest == {"name": "Guard Mode", "message": "heard a dog barking, ignored (simulated)"}


async def test_one_logbook_line_per_alert_with_sound_place_and_confidence(
    recorder_mock: Any,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    assert await async_setup_component(hass, "logbook", {})
    await hass.async_block_till_done()
    start = dt_util.utcnow()
    await hass.services.async_call(
        DOMAIN,
        "simulate",
        {"device_id": device_id(hass, KITCHEN), "sound": "smoke_alarm", "confidence": 0.845},
        blocking=True,
    )
    await hass.async_block_till_done()
    await async_wait_recording_done(hass)

    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "logbook/get_events",
            "start_time": start.isoformat(),
            "device_ids": [device_id(hass, KITCHEN)],
        }
    )
    response = await client.receive_json()
    assert response["success"], response
    ours = [(e["name"], e["message"]) for e in response["result"] if e.get("domain") == DOMAIN]
    # 0.845 is 84 % here as in the notification, the event and the entities' attributes
    assert ours == [("Kitchen mic", "heard a smoke alarm in Kitchen (confidence 84 %) (simulated)")]


# Blueprints


@pytest.mark.parametrize("name", [NOTIFY_BLUEPRINT, BREAK_IN_BLUEPRINT])
def test_blueprints_are_valid(name: str) -> None:
    path = BLUEPRINTS / name
    blueprint = Blueprint(
        yaml_util.load_yaml_dict(path),
        path=str(path),
        expected_domain="automation",
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )
    assert blueprint.validate() is None  # this Home Assistant is new enough
    assert blueprint.metadata["input"]


async def blueprint_automation(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> str:
    """Set up an automation from one of the repository's blueprints; return its entity id."""
    folder = Path(hass.config.path("blueprints", "automation", "guard_mode"))
    await hass.async_add_executor_job(lambda: folder.mkdir(parents=True, exist_ok=True))
    await hass.async_add_executor_job(shutil.copy, BLUEPRINTS / name, folder / name)
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "id": "from_blueprint",
                "alias": "From blueprint",
                "use_blueprint": {"path": f"guard_mode/{name}", "input": inputs},
            }
        },
    )
    await hass.async_block_till_done()
    state = hass.states.get("automation.from_blueprint")
    assert state is not None
    assert state.state == "on"
    return state.entity_id


async def test_notify_blueprint(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    await blueprint_automation(
        hass,
        NOTIFY_BLUEPRINT,
        {
            "notify_action": "notify.mobile_app_phone",
            "sounds": ["glass_break", "dog_bark"],
            "satellites": [device_id(hass, KITCHEN)],
            "guard_switch": SWITCH,
        },
    )
    await simulate(hass, KITCHEN, "glass_break")
    assert phone == []  # disarmed, and asked for "only while armed"

    await arm(hass)
    await simulate(hass, KITCHEN, "glass_break")
    assert len(phone) == 1
    call: ServiceCall = phone[0]
    assert call.data["title"] == "Test: Guard Mode heard glass breaking"
    message = call.data["message"]
    assert message.startswith("Test: Kitchen mic heard glass breaking in Kitchen at ")
    assert message.endswith("(confidence 90 %).")
    assert call.data["data"]["push"]["sound"]["critical"] == 1
    # Never Guard Mode's own notification's tag, a test's never a real alert's.
    assert call.data["data"]["tag"] == "guard_mode_automation_glass_break_test"

    await simulate(hass, KITCHEN, "gunshot")  # not one of the chosen sounds
    await simulate(hass, HALL, "glass_break")  # not one of the chosen microphones
    assert len(phone) == 1

    await simulate(hass, KITCHEN, "dog_bark")
    assert len(phone) == 2
    assert phone[1].data["title"] == "Test: Guard Mode heard a dog barking"
    assert "push" not in phone[1].data["data"]  # not critical
    assert phone[1].data["data"]["tag"] == "guard_mode_automation_dog_bark_test"


async def test_notify_blueprint_defaults(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Without the optional inputs: every microphone, armed or not, critical sounds."""
    phone = async_mock_service(hass, "notify", "notify")
    await blueprint_automation(hass, NOTIFY_BLUEPRINT, {"notify_action": "notify.notify"})
    await simulate(hass, HALL, "smoke_alarm")
    await simulate(hass, HALL, "baby_cry")  # not in the default sounds
    assert len(phone) == 1
    assert phone[0].data["message"].startswith("Test: Hall mic heard a smoke alarm at ")
    assert phone[0].data["data"]["channel"] == "alarm_stream"


async def test_notify_blueprint_without_app_extras(
    hass: HomeAssistant, entry: MockConfigEntry
) -> None:
    """For notify actions other than the Home Assistant app: no app options in the data."""
    email = async_mock_service(hass, "notify", "email")
    await blueprint_automation(
        hass, NOTIFY_BLUEPRINT, {"notify_action": "notify.email", "app_extras": False}
    )
    await simulate(hass, KITCHEN, "co_alarm")
    assert len(email) == 1
    assert email[0].data["data"] == {}
    assert email[0].data["title"] == "Test: Guard Mode heard a carbon monoxide alarm"


async def test_break_in_blueprint(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    light_on = async_mock_service(hass, "light", "turn_on")
    siren_on = async_mock_service(hass, "siren", "turn_on")
    siren_off = async_mock_service(hass, "siren", "turn_off")
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    await blueprint_automation(
        hass,
        BREAK_IN_BLUEPRINT,
        {
            "lights": {"entity_id": ["light.hall", "light.porch"]},
            "siren": "siren.alarm",
            "siren_seconds": 30,
            "notify_action": "notify.mobile_app_phone",
        },
    )
    await simulate(hass, HALL, "glass_break")
    assert light_on == []  # disarmed

    await arm(hass)
    await simulate(hass, HALL, "dog_bark")
    assert light_on == []  # not a break-in sound

    await simulate(hass, HALL, "glass_break", settle=False)
    await wait_for(lambda: len(phone) == 1)  # the run waits for the siren's time after that
    assert len(light_on) == 1
    assert light_on[0].data["entity_id"] == ["light.hall", "light.porch"]
    assert light_on[0].data["brightness_pct"] == 100
    assert [c.data["entity_id"] for c in siren_on] == [["siren.alarm"]]
    assert len(phone) == 1
    assert phone[0].data["message"] == (
        "Test: Hall mic heard glass breaking while Guard Mode is armed: "
        "the lights are on and the siren sounds."
    )
    assert phone[0].data["data"]["push"]["sound"]["critical"] == 1

    await simulate(hass, KITCHEN, "gunshot", settle=False)  # while the siren sounds: ignored
    assert len(light_on) == 1
    assert siren_off == []
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=31))
    await hass.async_block_till_done()
    assert [c.data["entity_id"] for c in siren_off] == [["siren.alarm"]]

    await simulate(hass, KITCHEN, "gunshot", settle=False)  # the siren is off again: a new run
    await wait_for(lambda: len(phone) == 2)
    assert len(light_on) == 2  # (a run of the ignored gunshot would have made it 3)
    assert "in Kitchen" in phone[1].data["message"]
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=31))
    await hass.async_block_till_done()
    assert len(siren_off) == 2


async def test_break_in_blueprint_with_the_switch_id_of_an_older_install(
    hass: HomeAssistant,
) -> None:
    """Installed before the switch was named after its device: Home Assistant kept its id
    (switch.guard_mode_guard_mode); the blueprint's default still finds it."""
    config = two_satellites()
    config.add_to_hass(hass)
    er.async_get(hass).async_get_or_create(
        "switch",
        DOMAIN,
        f"{config.entry_id}-guard_mode",
        suggested_object_id="guard_mode_guard_mode",
        config_entry=config,
    )
    assert await hass.config_entries.async_setup(config.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get("switch.guard_mode_guard_mode") is not None
    light_on = async_mock_service(hass, "light", "turn_on")
    await blueprint_automation(hass, BREAK_IN_BLUEPRINT, {"lights": {"area_id": "hall"}})
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.guard_mode_guard_mode"}, blocking=True
    )
    await simulate(hass, HALL, "gunshot")
    assert len(light_on) == 1


async def test_break_in_blueprint_lights_only(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Only lights chosen: no siren, no notification, and nothing waits."""
    light_on = async_mock_service(hass, "light", "turn_on")
    siren_on = async_mock_service(hass, "siren", "turn_on")
    automation = await blueprint_automation(
        hass, BREAK_IN_BLUEPRINT, {"lights": {"area_id": "hall"}}
    )
    await arm(hass)
    await simulate(hass, HALL, "gunshot")
    assert [c.data.get("area_id") for c in light_on] == [["hall"]]
    assert siren_on == []
    state = hass.states.get(automation)
    assert state is not None
    assert state.attributes["current"] == 0  # finished: no siren to wait for
