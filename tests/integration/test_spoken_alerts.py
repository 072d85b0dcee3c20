"""Spoken alerts: "Smoke alarm heard in Kitchen" on speakers and voice satellites, opt-in."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, device_registry as dr, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_mock_service
from yarl import URL

from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.notifications import issue_notify_failed

from ..helpers import (
    arm,
    gathered,
    hear,
    push_satellite_entry,
    setup_entry,
    simulate,
    the_satellite,
)
from .ha_devices import Speaker, Voice, async_add_devices

SPEAKER = "media_player.kitchen_speaker"
SATELLITE = "assist_satellite.hall_voice"
ANNOUNCE = 1  # AssistSatelliteEntityFeature.ANNOUNCE


def spoken(speaker: Speaker) -> list[str]:
    """Return what the speaker was asked to say (tts.speak plays a media-source id)."""
    said = []
    for media_id, extra in speaker.played:
        assert extra.get("announce") is True  # played as an announcement over what plays
        said.append(URL(media_id).query["message"])
    return said


@pytest.fixture
async def speaker(hass: HomeAssistant) -> Speaker:
    speaker = Speaker("Kitchen speaker")
    await async_add_devices(hass, speaker, Voice("Piper"))
    return speaker


@pytest.fixture
def voice_satellite(hass: HomeAssistant) -> list[Any]:
    """A voice satellite that can announce (the device itself can't run here)."""
    hass.states.async_set(SATELLITE, "idle", {"supported_features": ANNOUNCE})
    return async_mock_service(hass, "assist_satellite", "announce")


async def in_kitchen(hass: HomeAssistant) -> None:
    satellite = the_satellite(hass)
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), satellite.entry_id
    )
    kitchen = ar.async_get(hass).async_create("Kitchen")
    dr.async_get(hass).async_update_device(device.id, area_id=kitchen.id)


async def test_spoken_on_speakers_and_voice_satellites_while_armed(
    hass: HomeAssistant, speaker: Speaker, voice_satellite: list[Any]
) -> None:
    await setup_entry(hass, push_satellite_entry(announce_targets=[SPEAKER, SATELLITE]))
    await in_kitchen(hass)
    await arm(hass)

    hear(hass, Sound.GLASS_BREAK)
    await gathered(hass)
    assert spoken(speaker) == ["Glass breaking heard in Kitchen"]
    assert [call.data["message"] for call in voice_satellite] == ["Glass breaking heard in Kitchen"]
    assert [call.data["entity_id"] for call in voice_satellite] == [SATELLITE]

    await simulate(hass, "dog_bark")  # a test says so
    await gathered(hass)
    assert spoken(speaker)[-1] == "Test. A dog barking heard in Kitchen"
    assert not ir.async_get(hass).issues


async def test_never_spoken_while_disarmed_unless_smoke_or_co(
    hass: HomeAssistant, speaker: Speaker, voice_satellite: list[Any]
) -> None:
    await setup_entry(
        hass,
        push_satellite_entry(announce_targets=[SPEAKER, SATELLITE], always_listen_alarms=True),
    )
    await in_kitchen(hass)
    hear(hass, Sound.DOG_BARK)  # someone is home: the dog is no news
    await simulate(hass, "glass_break")
    await gathered(hass)
    assert speaker.played == []
    assert voice_satellite == []

    hear(hass, Sound.CO_ALARM)
    await gathered(hass)
    assert spoken(speaker) == ["Carbon monoxide alarm heard in Kitchen"]
    assert len(voice_satellite) == 1


async def test_off_by_default(hass: HomeAssistant, speaker: Speaker) -> None:
    entry = await setup_entry(hass, push_satellite_entry())
    assert entry.options["announce_targets"] == []
    await arm(hass)
    hear(hass, Sound.SMOKE_ALARM)
    await gathered(hass)
    assert speaker.played == []


async def test_speakers_that_cant_speak_are_surfaced(hass: HomeAssistant, speaker: Speaker) -> None:
    hass.states.async_set(SATELLITE, "idle", {"supported_features": 0})  # no announcements
    await setup_entry(hass, push_satellite_entry(announce_targets=[SPEAKER, SATELLITE]))
    speaker._attr_available = False
    speaker.async_write_ha_state()
    await arm(hass)
    hear(hass, Sound.SMOKE_ALARM)
    await gathered(hass)
    issues = ir.async_get(hass)
    for target, error in ((SATELLITE, "can't make announcements"), (SPEAKER, "unavailable")):
        issue = issues.async_get_issue(DOMAIN, issue_notify_failed(target))
        assert issue is not None, target
        assert error in issue.translation_placeholders["error"]


async def options_form(hass: HomeAssistant, entry_id: str, **answers: Any) -> dict[str, Any]:
    result = await hass.config_entries.options.async_init(entry_id)
    return await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "manual", "always_listen_alarms": False, "evidence_clips": False} | answers,
    )


async def test_options_ask_for_a_voice_when_speakers_need_one(hass: HomeAssistant) -> None:
    hass.states.async_set(SPEAKER, "idle")
    entry = await setup_entry(hass, push_satellite_entry())
    result = await options_form(hass, entry.entry_id, announce_targets=[SPEAKER])
    assert result["errors"] == {"announce_targets": "no_tts_engine"}  # nothing could speak

    await async_add_devices(hass, Voice("Piper"))
    result = await options_form(
        hass, entry.entry_id, announce_targets=[SPEAKER], tts_engine="tts.piper"
    )
    assert entry.options["announce_targets"] == [SPEAKER]
    assert entry.options["tts_engine"] == "tts.piper"

    result = await options_form(hass, entry.entry_id)  # both fields cleared in the form
    assert entry.options["announce_targets"] == []
    assert "tts_engine" not in entry.options


async def test_speakers_that_went_away_are_surfaced(hass: HomeAssistant) -> None:
    hass.states.async_set(SPEAKER, "idle")  # no text-to-speech engine is set up any more
    await setup_entry(hass, push_satellite_entry(announce_targets=[SPEAKER, "media_player.gone"]))
    await arm(hass)
    hear(hass, Sound.GLASS_BREAK)
    await gathered(hass)
    issues = ir.async_get(hass)
    for target, error in ((SPEAKER, "no text-to-speech engine"), ("media_player.gone", "exist")):
        issue = issues.async_get_issue(DOMAIN, issue_notify_failed(target))
        assert issue is not None, target
        assert error in issue.translation_placeholders["error"]
