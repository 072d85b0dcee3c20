"""What users automate on: detection entities, events, notifications, media awareness, actions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
    async_mock_service,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.guard_mode.alerts import EVENT_DETECTION, EVENT_SUPPRESSED
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.decider import DeciderEvent, Detection, EventKind, Reason
from custom_components.guard_mode.engine.labels import Sound
from tests import synth

from ..helpers import (
    arm,
    entity_id,
    persistent_notifications,
    satellite_entry,
    setup_entry,
    the_satellite,
    wait_for,
)
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def test_a_smoke_alarm_goes_all_the_way(
    hass: HomeAssistant, alarm_mic: MicServer, hass_ws_client: WebSocketGenerator
) -> None:
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    entry = await setup_entry(
        hass, satellite_entry(alarm_mic.port, notify_targets=["notify.mobile_app_phone"])
    )
    kitchen = ar.async_get(hass).async_create("Kitchen")
    satellite = the_satellite(hass)
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), entry.entry_id
    )
    assert device is not None
    dr.async_get(hass).async_update_device(device.id, area_id=kitchen.id)
    smoke = entity_id(hass, "binary_sensor", f"{satellite.id}-smoke_alarm")
    event_entity = entity_id(hass, "event", f"{satellite.id}-detection")
    last = entity_id(hass, "sensor", f"{entry.entry_id}-last_detection")
    detections = async_capture_events(hass, EVENT_DETECTION)

    await arm(hass)
    await wait_for(lambda: hass.states.get(smoke).state == "on", limit=15)

    assert hass.states.get(smoke).attributes["device_class"] == "smoke"
    assert detections, "no guard_mode_detection event"
    data = detections[0].data
    assert data["sound"] == "smoke_alarm"
    assert data["satellite"] == satellite.name
    assert data["area"] == "Kitchen"
    assert data["device_id"] == device.id
    assert data["simulated"] is False
    assert 0.5 <= data["confidence"] <= 1.0
    assert hass.states.get(event_entity).attributes["event_type"] == "smoke_alarm"
    assert hass.states.get(last).state == "smoke_alarm"
    assert hass.states.get(last).attributes["area"] == "Kitchen"

    await wait_for(lambda: len(phone) == 1, limit=5)  # gathered for a moment, then sent once
    call: ServiceCall = phone[0]
    assert "smoke alarm" in call.data["message"]
    assert "Kitchen" in call.data["message"]
    assert call.data["data"]["push"]["sound"]["critical"] == 1  # a critical alert
    shown = (await persistent_notifications(hass, hass_ws_client))["guard_mode_smoke_alarm"]
    assert "smoke alarm" in shown["message"]
    assert "Kitchen" in shown["message"]

    # The alarm stops (the recording goes quiet): after the hold time the sensor goes off.
    await wait_for(lambda: hass.states.get(smoke).state == "off", limit=20)
    assert len(phone) == 1  # the same alarm is not notified twice


async def test_disarm_and_rearm_at_once(hass: HomeAssistant, alarm_mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    satellite = the_satellite(hass)
    smoke = entity_id(hass, "binary_sensor", f"{satellite.id}-smoke_alarm")
    await arm(hass)
    await wait_for(lambda: hass.states.get(smoke).state == "on", limit=15)

    await arm(hass, False)  # home again while the alarm is still held on
    assert hass.states.get(smoke).state == "off"  # the microphone is closed: nothing is heard

    await arm(hass)  # changed their mind at once: the new session must listen
    await hass.async_block_till_done()
    assert satellite.state.listening
    assert satellite.stream is not None
    assert len(entry.runtime_data.engine.worker.streams) == 1
    await wait_for(lambda: hass.states.get(smoke).state == "on", limit=20)
    await arm(hass, False)
    await hass.async_block_till_done()
    assert not entry.runtime_data.engine.worker.streams


async def test_always_listening_hears_alarms_while_disarmed(
    hass: HomeAssistant, alarm_mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, always_listen_alarms=True))
    satellite = the_satellite(hass)
    smoke = entity_id(hass, "binary_sensor", f"{satellite.id}-smoke_alarm")
    microphones = entity_id(hass, "binary_sensor", f"{entry.entry_id}-microphones")
    assert hass.states.get(microphones).state == "on"
    assert hass.states.get(microphones).attributes["alarms_only"] is True
    await wait_for(lambda: hass.states.get(smoke).state == "on", limit=15)


async def test_suppressed_detections_fire_their_own_event(
    hass: HomeAssistant, alarm_mic: MicServer
) -> None:
    await setup_entry(hass, satellite_entry(alarm_mic.port))
    satellite = the_satellite(hass)
    suppressed = async_capture_events(hass, EVENT_SUPPRESSED)
    detections = async_capture_events(hass, EVENT_DETECTION)
    gunshot = Detection("x-1", Sound.GUNSHOT, 1.0, 1.5, 0.8, "Gunshot, gunfire", -20.0)
    gunshot.suppressed, gunshot.reason = True, Reason.MEDIA
    satellite.alerts.async_handle(satellite, DeciderEvent(EventKind.ONSET, gunshot))
    await hass.async_block_till_done()
    assert [e.data["reason"] for e in suppressed] == ["media"]
    assert suppressed[0].data["sound"] == "gunshot"
    assert not detections
    sensor = entity_id(hass, "binary_sensor", f"{satellite.id}-gunshot")
    assert hass.states.get(sensor).state == "off"  # heard, but not alerted on


async def test_media_players_in_the_area_reach_the_decider(
    hass: HomeAssistant, alarm_mic: MicServer
) -> None:
    living = ar.async_get(hass).async_create("Living room")
    registry = er.async_get(hass)
    tv = registry.async_get_or_create("media_player", "test", "tv-1", suggested_object_id="tv")
    registry.async_update_entity(tv.entity_id, area_id=living.id)
    hass.states.async_set(tv.entity_id, "paused")
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    satellite = the_satellite(hass)
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), entry.entry_id
    )
    dr.async_get(hass).async_update_device(device.id, area_id=living.id)
    await arm(hass)
    await wait_for(lambda: satellite.stream is not None)
    await hass.async_block_till_done()
    decider = satellite.decision.decider
    assert decider.media_player_playing is False
    hass.states.async_set(tv.entity_id, "playing")
    await hass.async_block_till_done()
    assert decider.media_player_playing is True
    hass.states.async_set(tv.entity_id, "idle")
    await hass.async_block_till_done()
    assert decider.media_player_playing is False


async def test_simulate_runs_the_whole_chain(hass: HomeAssistant, alarm_mic: MicServer) -> None:
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    entry = await setup_entry(
        hass, satellite_entry(alarm_mic.port, notify_targets=["notify.mobile_app_phone"])
    )
    satellite = the_satellite(hass)
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), entry.entry_id
    )
    glass = entity_id(hass, "binary_sensor", f"{satellite.id}-glass_break")
    detections = async_capture_events(hass, EVENT_DETECTION)
    await hass.services.async_call(
        DOMAIN, "simulate", {"device_id": device.id, "sound": "glass_break"}, blocking=True
    )
    assert hass.states.get(glass).state == "on"
    assert hass.states.get(glass).attributes["simulated"] is True
    assert detections[0].data["simulated"] is True
    await wait_for(lambda: len(phone) == 1)
    assert phone[0].data["title"].startswith("Test:")
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    await hass.async_block_till_done()
    assert hass.states.get(glass).state == "off"  # the simulated sound ends after its hold

    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN,
            "simulate",
            {"device_id": "not-a-device", "sound": "glass_break"},
            blocking=True,
        )


async def test_analyze_file_returns_detections(
    hass: HomeAssistant, entry: MockConfigEntry, tmp_path: Path
) -> None:
    await setup_entry(hass, entry)
    media = tmp_path / "media"
    media.mkdir()
    hass.config.allowlist_external_dirs = {str(media)}
    alarm = media / "alarm.wav"
    synth.write_wav(alarm, synth.smoke_alarm_audio())
    response = await hass.services.async_call(
        DOMAIN, "analyze_file", {"path": str(alarm)}, blocking=True, return_response=True
    )
    assert response["file"] == str(alarm)
    assert [d["sound"] for d in response["detections"]] == ["smoke_alarm"]

    outside = tmp_path / "secret.wav"
    synth.write_wav(outside, synth.smoke_alarm_audio())
    with pytest.raises(ServiceValidationError, match="not in a folder"):
        await hass.services.async_call(
            DOMAIN, "analyze_file", {"path": str(outside)}, blocking=True, return_response=True
        )
    broken = media / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(
        ServiceValidationError, match=r"can't use this audio: cannot read .*broken\.wav"
    ):
        await hass.services.async_call(
            DOMAIN, "analyze_file", {"path": str(broken)}, blocking=True, return_response=True
        )
