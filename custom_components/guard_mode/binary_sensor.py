"""Binary sensors: one per sound and a connectivity sensor per satellite; the hub's microphones."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .engine.labels import Sound
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
    return sensors


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the hub's microphones sensor and every satellite's sensors."""
    async_add_entities([MicrophonesSensor(entry, MICROPHONES)])
    async_add_satellite_entities(hass, entry, async_add_entities, _satellite_sensors)


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
    def _sound(self) -> Sound:
        return Sound(self.entity_description.key)

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
            "confidence": round(last.confidence, 3),
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
