"""Stand-ins for devices that can't run here, as real Home Assistant entities.

A phone's notify entity, a camera, a speaker, a text-to-speech voice (and the voice satellite
devices of test_voice_satellite.py) are entities of a small
"test" integration set up through a config entry, so Home Assistant's own actions
(notify.send_message, tts.speak → media_player.play_media, the camera's stream source) reach them
exactly as they reach real ones.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from homeassistant.components.assist_satellite import AssistSatelliteEntity
from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.components.media_player import (
    MediaPlayerEntity,
    MediaPlayerEntityFeature,
    MediaPlayerState,
)
from homeassistant.components.notify import NotifyEntity
from homeassistant.components.select import SelectEntity
from homeassistant.components.stt import SpeechToTextEntity
from homeassistant.components.switch import SwitchEntity
from homeassistant.components.tts import TextToSpeechEntity, TtsAudioType
from homeassistant.components.wake_word import WakeWordDetectionEntity
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

DOMAIN = "test"


class Phone(NotifyEntity):
    """A phone's notify entity: keeps what it is sent, or fails like an offline one."""

    def __init__(self, name: str, *, offline: bool = False, hanging: bool = False) -> None:
        self._attr_name = name
        self._attr_unique_id = name
        self.offline = offline
        self.hanging = hanging  # its service never answers (a push server that hangs)
        self.timing_out = False  # its service gives up by itself (its own HTTP time-out)
        self.messages: list[tuple[str | None, str]] = []

    async def async_send_message(self, message: str, title: str | None = None) -> None:
        if self.offline:
            raise HomeAssistantError("the phone is offline")
        if self.hanging:
            await asyncio.Event().wait()
        if self.timing_out:
            raise TimeoutError("the push server timed out")
        self.messages.append((title, message))


class StreamCamera(Camera):
    """A camera whose stream source is a URL (e.g. a local RTSP server)."""

    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, name: str, url: str | None, error: Exception | None = None) -> None:
        super().__init__()
        self._attr_name = name
        self._attr_unique_id = name
        self.url = url
        self.error = error  # what its integration raises when asked for the stream

    async def stream_source(self) -> str | None:
        if self.error is not None:
            raise self.error
        return self.url

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        return None


class Speaker(MediaPlayerEntity):
    """A speaker: keeps what it is asked to play."""

    _attr_supported_features = (
        MediaPlayerEntityFeature.PLAY_MEDIA | MediaPlayerEntityFeature.MEDIA_ANNOUNCE
    )
    _attr_state = MediaPlayerState.IDLE

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = name
        self.played: list[tuple[str, dict[str, Any]]] = []

    async def async_play_media(self, media_type: str, media_id: str, **kwargs: Any) -> None:
        self.played.append((media_id, kwargs))


class Voice(TextToSpeechEntity):
    """A text-to-speech engine (the audio itself is never fetched by these tests)."""

    _attr_default_language = "en"

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = name
        self._attr_supported_languages = ["en"]

    def get_tts_audio(self, message: str, language: str, options: dict[str, Any]) -> TtsAudioType:
        return "mp3", b""


PLATFORMS: dict[type[Entity], str] = {
    NotifyEntity: "notify",
    Camera: "camera",
    MediaPlayerEntity: "media_player",
    TextToSpeechEntity: "tts",
    SpeechToTextEntity: "stt",
    SelectEntity: "select",
    AssistSatelliteEntity: "assist_satellite",
    WakeWordDetectionEntity: "wake_word",
    SwitchEntity: "switch",
}


async def async_add_devices(hass: HomeAssistant, *entities: Entity) -> ConfigEntry:
    """Set up the test integration with entities (grouped by their platform)."""
    by_platform: dict[str, list[Entity]] = defaultdict(list)
    for entity in entities:
        platform = next(name for kind, name in PLATFORMS.items() if isinstance(entity, kind))
        by_platform[platform].append(entity)

    async def setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, list(by_platform))
        return True

    mock_integration(hass, MockModule(DOMAIN, async_setup_entry=setup_entry))
    mock_platform(hass, f"{DOMAIN}.config_flow")
    for platform, platform_entities in by_platform.items():

        async def add(
            hass: HomeAssistant,
            entry: ConfigEntry,
            async_add_entities: AddConfigEntryEntitiesCallback,
            platform_entities: list[Entity] = platform_entities,
        ) -> None:
            async_add_entities(platform_entities)

        mock_platform(hass, f"{DOMAIN}.{platform}", MockPlatform(async_setup_entry=add))
    entry = MockConfigEntry(domain=DOMAIN)
    entry.add_to_hass(hass)
    with mock_config_flow(DOMAIN, ConfigFlow):
        assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
