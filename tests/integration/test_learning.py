"""Guard Mode learns the home: "not a threat", custom sounds by example, sensitivity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
import json
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)
import voluptuous as vol

from custom_components.guard_mode.alerts import EVENT_DETECTION, EVENT_SUPPRESSED
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics
from custom_components.guard_mode.engine import WindowEvidence
from custom_components.guard_mode.engine.server import EngineServer
from custom_components.guard_mode.learned import STORAGE_KEY, encode
from custom_components.guard_mode.satellite import Satellite
from tests import synth

from ..helpers import (
    arm,
    device_id,
    make_entry,
    remote_options,
    satellite_entry,
    satellite_subentry,
    setup_entry,
    the_satellite,
    wait_for,
)
from ..synth import pcm16
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")


def repeating(sound: np.ndarray, quiet_s: float = 9.0, seconds: float = 60.0) -> np.ndarray:
    """The same sound again and again, with a quiet room in between (a recurring non-threat)."""
    gap = (synth.rng(5).standard_normal(int(quiet_s * 16000)) * 3e-4).astype(np.float32)
    one = np.concatenate([sound, gap])
    return np.tile(one, int(seconds / (len(one) / 16000)) + 1)


@pytest.fixture
async def shatter_mic() -> AsyncIterator[MicServer]:
    server = await MicServer(audio=pcm16(repeating(synth.shattering(8))), speed=3.0).start()
    yield server
    await server.stop()


async def _high_sensitivity(hass: HomeAssistant) -> None:
    """A quiet home: the user set the satellite to high sensitivity (the tinkles then alert)."""
    satellite = the_satellite(hass)
    select = er.async_get(hass).async_get_entity_id("select", DOMAIN, f"{satellite.id}-sensitivity")
    await hass.services.async_call(
        "select", "select_option", {"entity_id": select, "option": "high"}, blocking=True
    )


async def _mark(hass: HomeAssistant, detection_id: str) -> Any:
    """Mark a detection "not a threat"; return the action's answer."""
    return await hass.services.async_call(
        DOMAIN,
        "mark_false_alarm",
        {"detection_id": detection_id},
        blocking=True,
        return_response=True,
    )


async def _armed_until_the_first_alert(hass: HomeAssistant, mic: MicServer) -> list[Any]:
    """Set up a satellite on mic at high sensitivity, arm; return the alerts once one came."""
    await setup_entry(hass, satellite_entry(mic.port))
    await _high_sensitivity(hass)
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=30)
    return detections


async def _mark_the_first_alert(hass: HomeAssistant) -> tuple[list[Any], dict[str, Any]]:
    """Arm at high sensitivity, mark the first alert "not a threat", hear it come round ignored."""
    await _high_sensitivity(hass)
    detections = async_capture_events(hass, EVENT_DETECTION)
    suppressed = async_capture_events(hass, EVENT_SUPPRESSED)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=30)
    first = detections[0].data
    result = await _mark(hass, first["detection_id"])
    assert result == {"satellite": "Kitchen mic", "sound": first["sound"], "marks": 1}
    # The same sound again (the loop comes round, 10 s later): heard, but ignored as learned.
    await wait_for(lambda: any(e.data["reason"] == "learned" for e in suppressed), limit=30)
    assert _alerts_of(detections, first["sound"]) == 1
    return detections, first


def _alerts_of(detections: list[Any], sound: str) -> int:
    """Return how many alerts were for sound (the crash is heard as glass, a shot, or both)."""
    return sum(e.data["sound"] == sound for e in detections)


def _flush(hass_storage: dict[str, Any]) -> dict[str, Any]:
    return hass_storage.get(STORAGE_KEY, {}).get("data", {})


async def test_not_a_threat_is_learned_kept_and_forgotten(
    hass: HomeAssistant,
    shatter_mic: MicServer,
    hass_storage: dict[str, Any],
    tmp_path: Path,
) -> None:
    entry = await setup_entry(hass, satellite_entry(shatter_mic.port))
    detections, first = await _mark_the_first_alert(hass)

    # Only embeddings were stored, never audio.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await hass.async_block_till_done()
    stored = _flush(hass_storage)
    satellite = the_satellite(hass)
    sound = first["sound"]
    marks = stored["false_alarms"][satellite.id][sound]
    assert [mark["id"] for mark in marks] == [first["detection_id"]]
    assert set(marks[0]) == {"id", "added", "vectors"}
    vectors = np.frombuffer(__import__("base64").b64decode(marks[0]["vectors"]), "<f2")
    assert vectors.size % 1024 == 0
    assert 1 <= vectors.size // 1024 <= 16  # a few windows' fingerprints, nothing like audio
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".wav", ".part")]

    listing = await hass.services.async_call(
        DOMAIN, "list_learned", {}, blocking=True, return_response=True
    )
    assert listing["false_alarms"] == {"Kitchen mic": {sound: 1}}
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["learning"]["false_alarms"] == {"Kitchen mic": {sound: 1}}
    assert "vectors" not in json.dumps(diagnostics)

    # A restart keeps it.
    await arm(hass, False)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    learned = entry.runtime_data.learning.false_alarms_for(the_satellite(hass).id)
    assert learned[sound].shape[1] == 1024

    # Forgotten: it alerts again.
    result = await hass.services.async_call(
        DOMAIN, "forget_learned", {}, blocking=True, return_response=True
    )
    assert result == {"removed": 1}
    detections.clear()
    await _high_sensitivity(hass)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=25)
    await arm(hass, False)


async def test_not_a_threat_and_sensitivity_through_the_remote_engine(
    hass: HomeAssistant,
    shatter_mic: MicServer,
    engine_server: EngineServer,
) -> None:
    """The remote engine sends evidence; the satellite's decider learns as with the local one."""
    await setup_entry(hass, satellite_entry(shatter_mic.port, **remote_options(engine_server.port)))
    await _mark_the_first_alert(hass)
    assert engine_server.worker.stats.windows_tagged > 0  # the remote engine did the hearing
    await arm(hass, False)


async def test_marked_after_coming_home(hass: HomeAssistant, shatter_mic: MicServer) -> None:
    await setup_entry(hass, satellite_entry(shatter_mic.port))
    await _high_sensitivity(hass)
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    await arm(hass, False)  # home: the microphones close, then the button is tapped
    result = await _mark(hass, detections[0].data["detection_id"])
    assert result == {"satellite": "Kitchen mic", "sound": detections[0].data["sound"], "marks": 1}


async def test_not_a_threat_for_an_alert_whose_sound_came_again_since(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    """The notification's button still works after the sound was heard again (in its cooldown:
    no new alert, but the sensor's last detection is the new one)."""
    detections = await _armed_until_the_first_alert(hass, shatter_mic)
    first, sound = detections[0].data["detection_id"], detections[0].data["sound"]
    last = the_satellite(hass).detections.last
    await wait_for(lambda: last[sound].detection_id != first, limit=30)
    assert _alerts_of(detections, sound) == 1  # heard again, not alerted again
    result = await _mark(hass, first)
    assert result == {"satellite": "Kitchen mic", "sound": sound, "marks": 1}
    # A second mark while the microphone is open reaches the open decider too.
    again = last[sound].detection_id
    result = await _mark(hass, again)
    assert result == {"satellite": "Kitchen mic", "sound": sound, "marks": 2}
    decision = the_satellite(hass).decision
    assert decision is not None
    assert len(decision.config.learned[sound]) == len(
        the_satellite(hass).learning.false_alarms_for(the_satellite(hass).id)[sound]
    )
    await arm(hass, False)


async def test_an_alert_of_an_earlier_away_period_can_still_be_marked(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    """Presence arming arms and disarms every day: yesterday's alert can still be marked."""
    detections = await _armed_until_the_first_alert(hass, shatter_mic)
    await arm(hass, False)
    await arm(hass)  # the next away period: a new listening session
    satellite = the_satellite(hass)
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows > 0)
    await arm(hass, False)
    result = await _mark(hass, detections[0].data["detection_id"])
    assert result == {"satellite": "Kitchen mic", "sound": detections[0].data["sound"], "marks": 1}


async def test_what_two_satellites_named_alike_learned_is_listed_apart(
    hass: HomeAssistant,
) -> None:
    mics = [satellite_subentry("Mic", f"push:{key}", source="push", push_id=key) for key in "ab"]
    entry = await setup_entry(hass, make_entry({}, mics))
    first, second = entry.runtime_data.satellites
    vectors = np.ones((1, 1024), np.float32) / 32.0
    entry.runtime_data.learning.async_mark(first, "glass_break", "d-1", vectors)
    entry.runtime_data.learning.async_mark(second, "dog_bark", "d-2", vectors)
    listing = await hass.services.async_call(
        DOMAIN, "list_learned", {}, blocking=True, return_response=True
    )
    assert listing["false_alarms"] == {"Mic": {"glass_break": 1}, "Mic (2)": {"dog_bark": 1}}


async def test_a_custom_sound_is_forgotten_for_one_satellite_or_everywhere(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    mics = [
        satellite_subentry(name, f"push:{key}", source="push", push_id=key)
        for name, key in (("Hall mic", "a"), ("Porch mic", "b"))
    ]
    entry = await setup_entry(hass, make_entry({}, mics))
    hall, porch = entry.runtime_data.satellites.values()
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    await _teach_doorbell(hass, tmp_path, hall, porch)
    marks = entry.runtime_data.learning
    marks.async_mark(hall.id, "custom_doorbell", "d-1", np.ones((1, 1024), np.float32) / 32)

    async def forget(**data: Any) -> Any:
        result = await hass.services.async_call(
            DOMAIN, "forget_learned", data, blocking=True, return_response=True
        )
        await hass.async_block_till_done()
        return result

    # The porch no longer listens for it; the hall still does.
    assert await forget(custom_sound="custom_doorbell", device_id=device_id(hass, porch)) == {
        "removed": 1
    }
    listing = await hass.services.async_call(
        DOMAIN, "list_learned", {}, blocking=True, return_response=True
    )
    assert listing["custom_sounds"]["custom_doorbell"]["satellites"] == ["Hall mic"]
    # Forgotten: the sound, and the marks made on it.
    assert await forget(custom_sound="custom_doorbell") == {"removed": 2}
    listing = await hass.services.async_call(
        DOMAIN, "list_learned", {}, blocking=True, return_response=True
    )
    assert listing == {"false_alarms": {}, "custom_sounds": {}}


async def test_alarms_can_not_be_marked(hass: HomeAssistant, alarm_mic: MicServer) -> None:
    await setup_entry(hass, satellite_entry(alarm_mic.port))
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    with pytest.raises(ServiceValidationError, match="can't be marked"):
        await hass.services.async_call(
            DOMAIN,
            "mark_false_alarm",
            {"detection_id": detections[0].data["detection_id"]},
            blocking=True,
        )
    await arm(hass, False)


async def test_unknown_detection_is_refused(hass: HomeAssistant, shatter_mic: MicServer) -> None:
    await setup_entry(hass, satellite_entry(shatter_mic.port))
    with pytest.raises(ServiceValidationError, match="not among the recent detections"):
        await hass.services.async_call(
            DOMAIN, "mark_false_alarm", {"detection_id": "nope-1"}, blocking=True
        )


async def _teach_doorbell(hass: HomeAssistant, folder: Path, *satellites: Satellite) -> None:
    """Teach the doorbell of doorbell_examples to the satellites; the entry reloads with it."""
    await hass.services.async_call(
        DOMAIN,
        "teach",
        {
            "name": "Doorbell",
            "satellites": [device_id(hass, satellite) for satellite in satellites],
            "files": doorbell_examples(folder),
        },
        blocking=True,
        return_response=True,
    )
    await hass.async_block_till_done()


def doorbell_examples(folder: Path) -> list[str]:
    """Three recordings of the same doorbell at slightly different levels and pitches."""
    return [
        str(
            synth.write_wav(folder / f"doorbell_{n}.wav", synth.chime(550 * s, 660 * s, peak_db=db))
        )
        for n, (s, db) in enumerate([(1.0, -10.0), (1.01, -14.0), (0.99, -8.0)])
    ]


async def test_teach_a_doorbell_from_files(hass: HomeAssistant, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    files = doorbell_examples(media)
    ringing = np.concatenate(
        [np.zeros(16000, np.float32), synth.chime(), np.zeros(4 * 16000, np.float32)]
    )
    server = await MicServer(audio=pcm16(ringing), speed=3.0).start()
    try:
        await setup_entry(hass, satellite_entry(server.port))
        hass.config.allowlist_external_dirs = {str(media)}
        satellite = the_satellite(hass)
        device = device_id(hass, satellite)
        result = await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Doorbell", "satellites": [device], "files": files},
            blocking=True,
            return_response=True,
        )
        assert result["key"] == "custom_doorbell"
        assert result["examples"] == 3
        await hass.async_block_till_done()  # the entry reloads with the new sound's entities
        doorbell = er.async_get(hass).async_get_entity_id(
            "binary_sensor", DOMAIN, f"{satellite.id}-custom_doorbell"
        )
        assert doorbell is not None
        event_entity = er.async_get(hass).async_get_entity_id(
            "event", DOMAIN, f"{satellite.id}-detection"
        )
        assert "custom_doorbell" in hass.states.get(event_entity).attributes["event_types"]

        detections = async_capture_events(hass, EVENT_DETECTION)
        await arm(hass)
        await wait_for(lambda: any(e.data["sound"] == "custom_doorbell" for e in detections), 20)
        assert hass.states.get(doorbell).state == "on"
        await arm(hass, False)

        # A recording checked with analyze_file hears it too, as the satellite does.
        recording = str(synth.write_wav(media / "ring.wav", ringing))
        for target in ({}, {"device_id": device}):
            result = await hass.services.async_call(
                DOMAIN,
                "analyze_file",
                {"path": recording, **target},
                blocking=True,
                return_response=True,
            )
            assert [d["sound"] for d in result["detections"]] == ["custom_doorbell"]

        # Forgetting it removes its entities.
        await hass.services.async_call(
            DOMAIN, "forget_learned", {"custom_sound": "custom_doorbell"}, blocking=True
        )
        await hass.async_block_till_done()
        assert (
            er.async_get(hass).async_get_entity_id(
                "binary_sensor", DOMAIN, f"{satellite.id}-custom_doorbell"
            )
            is None
        )
    finally:
        await server.stop()


async def test_a_taught_sound_marked_not_a_threat_is_ignored_after(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """The notification offers "Not a threat" for a taught sound too: it must work for one."""
    media = tmp_path / "media"
    media.mkdir()
    ringing = np.concatenate(  # rung every 14 s: each ring is a detection of its own
        [np.zeros(16000, np.float32), synth.chime(), np.zeros(12 * 16000, np.float32)]
    )
    server = await MicServer(audio=pcm16(ringing), speed=3.0).start()
    try:
        await setup_entry(hass, satellite_entry(server.port))
        hass.config.allowlist_external_dirs = {str(media)}
        await _teach_doorbell(hass, media, the_satellite(hass))
        detections = async_capture_events(hass, EVENT_DETECTION)
        suppressed = async_capture_events(hass, EVENT_SUPPRESSED)
        await arm(hass)
        await wait_for(lambda: bool(detections), 20)
        first = detections[0].data
        assert first["sound"] == "custom_doorbell"
        doorbell = er.async_get(hass).async_get_entity_id(
            "binary_sensor", DOMAIN, f"{the_satellite(hass).id}-custom_doorbell"
        )
        await wait_for(lambda: hass.states.get(doorbell).state == "off", 20)  # the ring is over
        result = await _mark(hass, first["detection_id"])
        assert result == {"satellite": "Kitchen mic", "sound": "custom_doorbell", "marks": 1}
        # The same chime again (the loop comes round): heard, but ignored as learned.
        await wait_for(lambda: any(e.data["reason"] == "learned" for e in suppressed), 30)
        assert len(detections) == 1
        await arm(hass, False)
    finally:
        await server.stop()


async def test_removing_a_satellite_forgets_what_it_learned(
    hass: HomeAssistant, shatter_mic: MicServer, tmp_path: Path, hass_storage: dict[str, Any]
) -> None:
    detections = await _armed_until_the_first_alert(hass, shatter_mic)
    await arm(hass, False)
    await _mark(hass, detections[0].data["detection_id"])
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    satellite = the_satellite(hass)
    await _teach_doorbell(hass, tmp_path, satellite)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert hass.config_entries.async_remove_subentry(entry, satellite.id)
    await hass.async_block_till_done()

    listing = await hass.services.async_call(
        DOMAIN, "list_learned", {}, blocking=True, return_response=True
    )
    assert listing["false_alarms"] == {}  # its marks went with it
    assert listing["custom_sounds"]["custom_doorbell"]["satellites"] == []  # taught, kept
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=5))
    await hass.async_block_till_done()
    stored = _flush(hass_storage)
    assert satellite.id not in json.dumps(stored)


async def test_teaching_says_when_examples_are_not_enough(
    hass: HomeAssistant, shatter_mic: MicServer, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    await setup_entry(hass, satellite_entry(shatter_mic.port))
    hass.config.allowlist_external_dirs = {str(media)}
    satellite = the_satellite(hass)
    device = device_id(hass, satellite)
    two = doorbell_examples(media)[:2]
    with pytest.raises(ServiceValidationError, match="at least 3"):
        await hass.services.async_call(
            DOMAIN, "teach", {"name": "Bell", "satellites": [device], "files": two}, blocking=True
        )
    mixed = [
        two[0],
        str(synth.write_wav(media / "noise.wav", synth.white_noise(1.0, -20.0, synth.rng(1)))),
        str(synth.write_wav(media / "beep.wav", synth.tone(3000.0, 1.0, -10.0))),
    ]
    with pytest.raises(ServiceValidationError, match="don't sound enough alike"):
        await hass.services.async_call(
            DOMAIN, "teach", {"name": "Bell", "satellites": [device], "files": mixed}, blocking=True
        )
    notes = media / "notes.wav"
    notes.write_text("not a recording\n" * 100)
    ten = [
        str(
            synth.write_wav(
                media / f"ring_{n}.wav", synth.chime(550 + n, 660 + n, peak_db=-10.0 - n / 4)
            )
        )
        for n in range(10)
    ]
    eleven = [*ten, str(notes)]  # refused before any is decoded: notes.wav is not even read
    with pytest.raises(ServiceValidationError, match="at most 10 examples, got 11"):
        await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Bell", "satellites": [device], "files": [*eleven, ten[0]]},  # one twice
            blocking=True,
        )
    with pytest.raises(vol.Invalid, match="seconds to record, or files"):
        await hass.services.async_call(  # the files box left empty
            DOMAIN, "teach", {"name": "Bell", "satellites": [device], "files": []}, blocking=True
        )
    with pytest.raises(ServiceValidationError, match=r"notes\.wav") as raised:
        await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Bell", "satellites": [device], "files": [*two, str(notes)]},
            blocking=True,
        )
    assert raised.value.translation_key == "cannot_read_file"


async def test_teach_a_doorbell_rung_near_the_satellite(hass: HomeAssistant) -> None:
    """Teaching live: each ring heard while listening is an example, then the bell alerts."""
    rings = repeating(synth.chime(), quiet_s=2.5, seconds=40.0)
    server = await MicServer(audio=pcm16(rings), speed=4.0).start()
    try:
        await setup_entry(hass, satellite_entry(server.port))
        satellite = the_satellite(hass)
        device = device_id(hass, satellite)
        with pytest.raises(ServiceValidationError, match="is not listening"):
            await hass.services.async_call(
                DOMAIN, "teach", {"name": "Bell", "satellites": [device], "seconds": 5}, True
            )
        await arm(hass)
        await wait_for(lambda: satellite.state.connected, limit=10)
        result = await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Bell", "satellites": [device], "seconds": 5},
            blocking=True,
            return_response=True,
        )
        assert result["key"] == "custom_bell"
        assert result["examples"] >= 3  # about 20 s of audio: five rings or so
        await hass.async_block_till_done()  # the entry reloads with the bell's entities
        bell = er.async_get(hass).async_get_entity_id(
            "binary_sensor", DOMAIN, f"{satellite.id}-custom_bell"
        )
        assert bell is not None
        detections = async_capture_events(hass, EVENT_DETECTION)
        await arm(hass)
        await wait_for(lambda: any(e.data["sound"] == "custom_bell" for e in detections), 20)
        await arm(hass, False)
    finally:
        await server.stop()


async def test_teaching_live_in_a_quiet_room_hears_nothing(hass: HomeAssistant) -> None:
    hum = synth.white_noise(10.0, -40.0, synth.rng(3))
    server = await MicServer(audio=pcm16(hum), speed=4.0).start()
    try:
        await setup_entry(hass, satellite_entry(server.port))
        satellite = the_satellite(hass)
        device = device_id(hass, satellite)
        await arm(hass)
        await wait_for(lambda: satellite.state.connected, limit=10)
        with pytest.raises(ServiceValidationError, match="no sound was 10 dB louder"):
            await hass.services.async_call(
                DOMAIN, "teach", {"name": "Bell", "satellites": [device], "seconds": 5}, True
            )
        assert (
            er.async_get(hass).async_get_entity_id(
                "binary_sensor", DOMAIN, f"{satellite.id}-custom_bell"
            )
            is None
        )  # nothing was learned
        await arm(hass, False)
    finally:
        await server.stop()


async def test_sensitivity_select_tunes_the_decider(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    await setup_entry(hass, satellite_entry(shatter_mic.port))
    satellite = the_satellite(hass)
    select = er.async_get(hass).async_get_entity_id("select", DOMAIN, f"{satellite.id}-sensitivity")
    assert hass.states.get(select).state == "normal"
    await arm(hass)
    await wait_for(lambda: satellite.stream is not None)
    await hass.services.async_call(
        "select", "select_option", {"entity_id": select, "option": "high"}, blocking=True
    )
    config = satellite.decision.decider.config
    assert config.sensitivity > 1.0
    assert config.noise_margin_db < 6.0
    assert hass.states.get(select).state == "high"
    await arm(hass, False)


async def test_notification_button_marks_the_detection(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    detections = await _armed_until_the_first_alert(hass, shatter_mic)
    detection_id = detections[0].data["detection_id"]
    hass.bus.async_fire(
        "mobile_app_notification_action",
        {"action": f"GUARD_MODE_NOT_A_THREAT::{detection_id}"},
    )
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    learned = entry.runtime_data.learning.false_alarms_for(the_satellite(hass).id)
    assert detections[0].data["sound"] in learned
    await arm(hass, False)


async def test_not_a_threat_by_entity_while_the_microphone_is_unreachable(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    """The mic went away after the alert: its entities are unavailable, the mark still works."""
    detections = await _armed_until_the_first_alert(hass, shatter_mic)
    satellite = the_satellite(hass)
    registry = er.async_get(hass)
    event = registry.async_get_entity_id("event", DOMAIN, f"{satellite.id}-detection")
    await shatter_mic.stop()
    await wait_for(lambda: hass.states.get(event).state == "unavailable", limit=15)
    assert "detection_id" not in hass.states.get(event).attributes
    # The alert the user saw last (the crash may alert as glass and as a shot at once).
    shown, sound = detections[-1].data["detection_id"], detections[-1].data["sound"]
    sensor = registry.async_get_entity_id("binary_sensor", DOMAIN, f"{satellite.id}-{sound}")
    result = await hass.services.async_call(
        DOMAIN, "mark_false_alarm", {"entity_id": event}, blocking=True, return_response=True
    )
    assert result == {"satellite": "Kitchen mic", "sound": sound, "marks": 1}
    learning = hass.config_entries.async_entries(DOMAIN)[0].runtime_data.learning
    marked = learning.data["false_alarms"][satellite.id][sound]
    assert [mark["id"] for mark in marked] == [shown]  # the alert the user saw
    result = await hass.services.async_call(
        DOMAIN, "mark_false_alarm", {"entity_id": sensor}, blocking=True, return_response=True
    )
    assert result["marks"] >= 1  # the sensor's last detection (maybe a later repeat)
    await arm(hass, False)


async def test_not_a_threat_from_the_sensor_a_user_looks_at(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    """Mark by entity: the sensor's last detection is marked; an entity without one is refused."""
    await setup_entry(hass, satellite_entry(shatter_mic.port))
    satellite = the_satellite(hass)
    glass = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-glass_break"
    )
    with pytest.raises(ServiceValidationError, match="Sound event entity that has fired"):
        await hass.services.async_call(
            DOMAIN, "mark_false_alarm", {"entity_id": glass}, blocking=True
        )
    await _high_sensitivity(hass)
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=30)
    sound = detections[0].data["sound"]
    sensor = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-{sound}"
    )
    result = await hass.services.async_call(
        DOMAIN, "mark_false_alarm", {"entity_id": sensor}, blocking=True, return_response=True
    )
    assert result == {"satellite": "Kitchen mic", "sound": sound, "marks": 1}
    await arm(hass, False)
    result = await hass.services.async_call(
        DOMAIN,
        "forget_learned",
        {"device_id": device_id(hass, satellite), "sound": sound},
        blocking=True,
        return_response=True,
    )
    assert result == {"removed": 1}  # forgotten on that satellite


async def test_actions_refuse_devices_that_are_not_satellites_and_an_unloaded_guard(
    hass: HomeAssistant, shatter_mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(shatter_mic.port))
    hub = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, entry.entry_id), entry.entry_id
    )
    assert hub is not None  # Guard Mode's own device: not a microphone
    with pytest.raises(ServiceValidationError, match="not a Guard Mode satellite"):
        await hass.services.async_call(
            DOMAIN, "forget_learned", {"device_id": hub.id}, blocking=True
        )
    await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError, match="not set up"):
        await hass.services.async_call(
            DOMAIN, "list_learned", {}, blocking=True, return_response=True
        )


async def test_damaged_learned_data_loses_only_what_is_damaged(
    hass: HomeAssistant,
    shatter_mic: MicServer,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hand-edited or half-written file: Guard Mode starts, arms and hears with the rest."""
    entry = satellite_entry(shatter_mic.port)
    satellite_id = next(iter(entry.subentries))
    good = encode(synth.rng(1).standard_normal((2, 1024)).astype(np.float32))
    mark = {"id": "d-1", "added": "2026-01-01T00:00:00+00:00", "vectors": good}
    doorbell = {
        "name": "Doorbell",
        "satellites": [satellite_id],
        "prototypes": good,
        "threshold": 0.8,
        "created": "2026-01-01T00:00:00+00:00",
        "figures": {},
    }
    hass_storage[STORAGE_KEY] = {
        "version": 1,
        "data": {
            "false_alarms": {
                satellite_id: {
                    "dog_bark": [mark, {**mark, "id": "d-2", "vectors": "not base64!"}],
                    "baby_cry": [{**mark, "vectors": encode(np.ones((1, 7), np.float32))}],
                    "gunshot": "a string, not marks",
                },
                "another": ["not", "a", "dict"],
            },
            "custom_sounds": {
                "custom_doorbell": doorbell,
                "custom_empty": {**doorbell, "name": "Empty", "prototypes": ""},
                "custom_odd": {**doorbell, "name": "Odd", "threshold": "high"},
            },
        },
    }
    await setup_entry(hass, entry)
    learning = entry.runtime_data.learning
    assert learning.data["false_alarms"] == {satellite_id: {"dog_bark": [mark]}}
    assert list(learning.data["custom_sounds"]) == ["custom_doorbell"]
    assert caplog.text.count("could not be read (6 damaged item(s)") == 1
    detections = async_capture_events(hass, EVENT_DETECTION)
    await _high_sensitivity(hass)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=30)  # it hears as before
    await arm(hass, False)
    await learning.async_flush()
    assert set(_flush(hass_storage)["custom_sounds"]) == {"custom_doorbell"}  # saved without


@pytest.mark.parametrize("engine", ["local", "remote"])
async def test_calm_audio_is_tagged_sparsely_but_a_custom_sound_hears_every_window(
    hass: HomeAssistant, tmp_path: Path, engine_server: EngineServer, engine: str
) -> None:
    """A fan's hum costs half the tagging, unless a recording or a taught sound needs all."""
    media = tmp_path / "media"
    media.mkdir()
    fan = synth.pink_noise(20.0, -35.0, synth.rng(5))
    server = await MicServer(audio=pcm16(fan), speed=4.0).start()
    options = remote_options(engine_server.port) if engine == "remote" else {}
    try:
        await setup_entry(hass, satellite_entry(server.port, **options))
        hass.config.allowlist_external_dirs = {str(media)}
        await arm(hass)
        satellite = the_satellite(hass)
        await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 8)
        assert satellite.decision is not None
        assert satellite.decision.skipped_windows > 0
        recorded: list[WindowEvidence] = []  # a teaching recording matches every window
        stop = satellite.async_record(recorded.append)
        await wait_for(lambda: len(recorded) >= 14)
        stop()
        assert not any(window.skipped for window in recorded[-8:])
        await _teach_doorbell(hass, media, satellite)
        taught = the_satellite(hass)
        await wait_for(lambda: taught.decision is not None and taught.decision.windows >= 8)
        assert taught.decision is not None
        assert taught.decision.skipped_windows == 0
    finally:
        await server.stop()
