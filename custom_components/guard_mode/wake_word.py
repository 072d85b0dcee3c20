"""Guard Mode's listener: the wake-word engine voice satellites stream to while guard mode listens.

Home Assistant's assist pipeline hands a voice satellite's stream (16 kHz mono 16-bit) to the
pipeline's wake-word engine. Each voice satellite gets a pipeline whose engine is this entity and
whose wake-word id is the satellite's id (:mod:`.voice_devices`), so each stream reaches its own
satellite. The entity never reports a wake word: it is a listener, and the device's voice
assistant is paused while its stream is Guard Mode's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from homeassistant.components.wake_word import (
    DetectionResult,
    WakeWord,
    WakeWordDetectionEntity,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN, NAME
from .models import GuardModeConfigEntry
from .satellite import voice_listener_unique_id
from .sources.voice import VoiceSource
from .voice_devices import LISTENER_ENTITY_KEY, pipeline_name

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the hub's listener entity."""
    async_add_entities([VoiceSatelliteListener(entry)])


class VoiceSatelliteListener(WakeWordDetectionEntity):
    """Receives voice satellites' streams for their Guard Mode satellites; detects no wake word."""

    _attr_has_entity_name = True
    _attr_translation_key = LISTENER_ENTITY_KEY

    def __init__(self, entry: GuardModeConfigEntry) -> None:
        """Listen for the satellites of entry."""
        self._entry = entry
        self._attr_unique_id = voice_listener_unique_id(entry.entry_id)
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=NAME,
            manufacturer=NAME,
            model="Sound guard",
            entry_type=DeviceEntryType.SERVICE,
        )

    def _voice_sources(self) -> dict[str, VoiceSource]:
        return {
            satellite.id: satellite.source
            for satellite in self._entry.runtime_data.satellites.values()
            if isinstance(satellite.source, VoiceSource)
        }

    async def get_supported_wake_words(self) -> list[WakeWord]:
        """Return one "wake word" per voice satellite: its id, named for its pipeline."""
        return [
            WakeWord(id=satellite_id, name=pipeline_name(source.satellite))
            for satellite_id, source in self._voice_sources().items()
        ]

    async def _async_process_audio_stream(
        self, stream: AsyncIterable[tuple[bytes, int]], wake_word_id: str | None
    ) -> DetectionResult | None:
        """Hand the stream to the satellite whose id is wake_word_id; never detect anything.

        A stream for no voice satellite of Guard Mode (a pipeline pointed here by hand, a
        removed satellite) is drained unseen, so that its device doesn't retry in a loop.
        """
        source = self._voice_sources().get(wake_word_id or "")
        if source is None:
            async for _chunk in stream:
                pass
            return None
        await source.receive(stream)
        return None
