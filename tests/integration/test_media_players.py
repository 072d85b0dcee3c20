"""Which media players count as "near" a satellite: the ones chosen for it, else its area's."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from ..helpers import arm, make_entry, satellite_subentry, setup_entry, wait_for
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled", "fast_timeouts")


def kitchen_mic(port: int, **data: Any) -> MockConfigEntry:
    kitchen = satellite_subentry(
        "Kitchen mic",
        f"wyoming:127.0.0.1:{port}",
        source="wyoming",
        host="127.0.0.1",
        port=port,
        **data,
    )
    return make_entry(satellites=[kitchen])


async def playing_near(hass: HomeAssistant, entry: MockConfigEntry) -> Any:
    """Arm and return a function telling whether the decider hears a media player playing."""
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await arm(hass)
    await wait_for(lambda: satellite.stream is not None)
    await hass.async_block_till_done()
    return lambda: satellite.decision.decider.media_player_playing


async def test_media_players_chosen_for_a_satellite_count_wherever_they_are(
    hass: HomeAssistant, mic: MicServer
) -> None:
    hass.states.async_set("media_player.living_room_tv", "idle")
    hass.states.async_set("media_player.kitchen_radio", "playing")  # in no list: ignored
    entry = await setup_entry(
        hass, kitchen_mic(mic.port, media_players=["media_player.living_room_tv"])
    )
    playing = await playing_near(hass, entry)
    assert playing() is False
    hass.states.async_set("media_player.living_room_tv", "playing")  # open-plan: it is heard
    await hass.async_block_till_done()
    assert playing() is True


async def test_a_tv_that_only_says_on_counts_as_playing(
    hass: HomeAssistant, mic: MicServer
) -> None:
    """Samsung, Bravia, webOS live TV: "on" while showing a programme, never "playing"."""
    tv, speaker = "media_player.samsung_tv", "media_player.kitchen_speaker"
    hass.states.async_set(tv, "off", {"device_class": "tv"})
    hass.states.async_set(speaker, "on", {"device_class": "speaker"})  # on, but silent
    entry = await setup_entry(hass, kitchen_mic(mic.port, media_players=[tv, speaker]))
    playing = await playing_near(hass, entry)
    assert playing() is False
    hass.states.async_set(tv, "on", {"device_class": "tv"})
    await hass.async_block_till_done()
    assert playing() is True
    await arm(hass, False)


async def test_a_chosen_media_player_is_followed_when_renamed(
    hass: HomeAssistant, mic: MicServer
) -> None:
    tv = er.async_get(hass).async_get_or_create(
        "media_player", "test", "tv", suggested_object_id="living_room_tv"
    )
    hass.states.async_set(tv.entity_id, "idle")
    entry = await setup_entry(hass, kitchen_mic(mic.port, media_players=[tv.entity_id]))
    satellite = next(iter(entry.runtime_data.satellites.values()))
    er.async_get(hass).async_update_entity(tv.entity_id, new_entity_id="media_player.tv")
    await hass.async_block_till_done()  # renamed while guard mode is off, as it mostly is
    playing = await playing_near(hass, entry)
    assert satellite.subentry.data["media_players"] == ["media_player.tv"]  # kept, renamed
    assert entry.runtime_data.satellites[satellite.id] is satellite  # no reload for it
    hass.states.async_set("media_player.tv", "playing")
    await hass.async_block_till_done()
    assert playing() is True


async def test_a_speaker_counts_by_its_device_s_area(hass: HomeAssistant, mic: MicServer) -> None:
    kitchen = ar.async_get(hass).async_create("Kitchen")
    other = MockConfigEntry(domain="test")
    other.add_to_hass(hass)
    speaker_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=other.entry_id, identifiers={("test", "speaker")}, name="Speaker"
    )
    dr.async_get(hass).async_update_device(speaker_device.id, area_id=kitchen.id)
    speaker = er.async_get(hass).async_get_or_create(
        "media_player",
        "test",
        "speaker",
        device_id=speaker_device.id,
        suggested_object_id="speaker",
    )
    hass.states.async_set(speaker.entity_id, "playing")
    entry = await setup_entry(hass, kitchen_mic(mic.port, area=kitchen.id))
    playing = await playing_near(hass, entry)
    assert playing() is True  # the entity has no area of its own: its device's counts
    hass.states.async_set(speaker.entity_id, "paused")
    await hass.async_block_till_done()
    assert playing() is False
