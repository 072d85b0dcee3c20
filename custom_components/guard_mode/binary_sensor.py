"""Binary sensors: one per sound and a connectivity sensor per satellite; the hub's microphones."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .engine import Sound
from .entity import GuardHubEntity, SatelliteEntity, async_add_satellite_entities
from .models import GuardModeConfigEntry
from .satellite import Satellite

PARALLEL_UPDATES = 0

CONNECTED = BinarySensorEntityDescription(
    key="connected",
    translation_key="connected",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)
MICROPHONES = BinarySensorEntityDescription(key="microphones", translation_key="microphones")
SOUND_DEVICE_CLASS = {
    Sound.GLASS_BREAK: BinarySensorDeviceClass.GLASS_BREAK,
    Sound.SMOKE_ALARM: BinarySensorDeviceClass.SMOKE,
    Sound.CO_ALARM: BinarySensorDeviceClass.CO,
    Sound.DOG_BARK: BinarySensorDeviceClass.SOUND,
    Sound.BABY_CRY: BinarySensorDeviceClass.SOUND,
    Sound.GUNSHOT: BinarySensorDeviceClass.SOUND,
}
SOUND_SENSORS = tuple(
    BinarySensorEntityDescription(
        key=str(sound), translation_key=str(sound), device_class=device_class
    )
    for sound, device_class in SOUND_DEVICE_CLASS.items()
)


def _satellite_sensors(satellite: Satellite) -> list[BinarySensorEntity]:
    sensors: list[BinarySensorEntity] = [SatelliteConnectedSensor(satellite, CONNECTED)]
    sensors += [SoundSensor(satellite, description) for description in SOUND_SENSORS]
    for custom in satellite.learning.custom_for(satellite.id):
        description = BinarySensorEntityDescription(
            key=custom.key, device_class=BinarySensorDeviceClass.SOUND, name=custom.name
        )
        sensors.append(SoundSensor(satellite, description))
    return sensors


@callback
def _remove_forgotten_custom_sensors(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Remove the entities of custom sounds that were forgotten (or moved to other satellites)."""
    registry = er.async_get(hass)
    learning = entry.runtime_data.learning
    wanted = {
        f"{satellite.id}-{custom.key}"
        for satellite in entry.runtime_data.satellites.values()
        for custom in learning.custom_for(satellite.id)
    }
    for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
        custom = entity.domain == "binary_sensor" and "-custom_" in entity.unique_id
        if custom and entity.unique_id not in wanted:
            registry.async_remove(entity.entity_id)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the hub's microphones sensor and every satellite's sensors."""
    async_add_entities([MicrophonesSensor(entry, MICROPHONES)])
    async_add_satellite_entities(hass, entry, async_add_entities, _satellite_sensors)
    _remove_forgotten_custom_sensors(hass, entry)


class SatelliteConnectedSensor(SatelliteEntity, BinarySensorEntity):
    """On while the satellite's audio arrives; off while it is unreachable or not listening."""

    @property
    def available(self) -> bool:
        """Return True: the microphone's connection is known even without an engine."""
        return True

    @property
    def is_on(self) -> bool:
        """Return True while audio arrives."""
        return self._satellite.state.connected

    @property
    def extra_state_attributes(self) -> dict[str, str | bool | None]:
        """Return whether the microphone is open and the last error."""
        state = self._satellite.state
        return {"listening": state.listening, "last_error": state.last_error}


class SoundSensor(SatelliteEntity, BinarySensorEntity):
    """On while the satellite hears one sound (plus its hold time)."""

    @property
    def _sound(self) -> str:
        return self.entity_description.key

    @property
    def is_on(self) -> bool:
        """Return True while the sound is heard."""
        return self._sound in self._satellite.detections.active

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the confidence and time of the latest detection of this sound."""
        last = self._satellite.detections.last.get(self._sound)
        if last is None:
            return {}
        return {
            "confidence": last.confidence,
            "last_detected": last.started.isoformat(),
            "detection_id": last.detection_id,
            "simulated": last.simulated,
        }


class MicrophonesSensor(GuardHubEntity, BinarySensorEntity):
    """On while Guard Mode keeps microphones open (armed, or always listening for alarms)."""

    def __init__(
        self, entry: GuardModeConfigEntry, description: BinarySensorEntityDescription
    ) -> None:
        """Initialize on the hub device."""
        super().__init__(entry.runtime_data.hub, entry.entry_id, description)
        self._entry = entry

    @property
    def is_on(self) -> bool:
        """Return True when satellites are being listened to."""
        return self._hub.listen_state.listening and bool(self._entry.runtime_data.satellites)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return whether only smoke and CO alarms are listened for."""
        return {"alarms_only": self._hub.listen_state.alarms_only}
