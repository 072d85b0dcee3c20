"""Sensors: a satellite's sound level; the hub's last detection, microphones heard, backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .alerts import sound_phrase
from .const import SIGNAL_NEW_SATELLITE
from .engine import Sound
from .entity import GuardHubEntity, SatelliteEntity, async_add_satellite_entities
from .models import GuardModeConfigEntry
from .satellite import Satellite

PARALLEL_UPDATES = 0
DBFS = "dBFS"
BACKENDS = ["onnxruntime", "numpy", "remote"]

SOUND_LEVEL = SensorEntityDescription(
    key="sound_level",
    translation_key="sound_level",
    native_unit_of_measurement=DBFS,
    state_class=SensorStateClass.MEASUREMENT,
    entity_category=EntityCategory.DIAGNOSTIC,
    entity_registry_enabled_default=False,  # a new state every 5 s: enable it when setting up
    suggested_display_precision=0,
)
LAST_DETECTION = SensorEntityDescription(
    key="last_detection",
    translation_key="last_detection",
    device_class=SensorDeviceClass.ENUM,
    options=[str(sound) for sound in Sound],
)
BACKEND = SensorEntityDescription(
    key="backend",
    translation_key="backend",
    device_class=SensorDeviceClass.ENUM,
    options=BACKENDS,
    entity_category=EntityCategory.DIAGNOSTIC,
)
MICROPHONES_LISTENING = SensorEntityDescription(
    key="microphones_listening",
    translation_key="microphones_listening",
    state_class=SensorStateClass.MEASUREMENT,
)
LAST_ATTRIBUTES = ("sound_name", "satellite", "area", "time", "confidence", "simulated")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the hub's sensors and every satellite's level sensor."""
    async_add_entities(
        [
            LastDetectionSensor(entry, LAST_DETECTION),
            ListeningMicrophonesSensor(entry, MICROPHONES_LISTENING),
            BackendSensor(entry, BACKEND),
        ]
    )
    async_add_satellite_entities(
        hass, entry, async_add_entities, lambda sat: [SatelliteLevelSensor(sat, SOUND_LEVEL)]
    )


class SatelliteLevelSensor(SatelliteEntity, SensorEntity):
    """The loudest 0.96 s window of the last 5 s, in dB below full scale."""

    @property
    def available(self) -> bool:
        """Return False while the microphone is closed: there is no level to show."""
        return super().available and self._satellite.state.connected

    @property
    def native_value(self) -> float | None:
        """Return the level."""
        return self._satellite.state.level_db


class LastDetectionSensor(GuardHubEntity, RestoreSensor):
    """The last sound Guard Mode alerted on, with where and when (kept across restarts)."""

    def __init__(self, entry: GuardModeConfigEntry, description: SensorEntityDescription) -> None:
        """Initialize on the hub device."""
        super().__init__(entry.runtime_data.hub, entry.entry_id, description)
        self._alerts = entry.runtime_data.alerts
        self._attr_extra_state_attributes: dict[str, Any] = {}
        custom = entry.runtime_data.learning.custom_sounds()
        self._attr_options = [*(description.options or []), *custom]

    async def async_added_to_hass(self) -> None:
        """Restore the last detection, then follow new ones."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_state()) is not None and last.state in (
            self.options or []
        ):
            self._attr_native_value = last.state
            self._attr_extra_state_attributes = {
                key: last.attributes[key] for key in LAST_ATTRIBUTES if key in last.attributes
            }
        self.async_on_remove(self._alerts.async_add_listener(self._updated))

    def _updated(self) -> None:
        alert = self._alerts.last
        if alert is None:
            return
        self._attr_native_value = str(alert.sound)
        self._attr_extra_state_attributes = {
            "sound_name": sound_phrase(alert),
            "satellite": alert.satellite,
            "area": alert.area,
            "time": alert.started.isoformat(),
            "confidence": alert.confidence,
            "simulated": alert.simulated,
        }
        self.async_write_ha_state()


class ListeningMicrophonesSensor(GuardHubEntity, SensorEntity):
    """How many satellites Guard Mode hears right now, and which ones it should but can't."""

    def __init__(self, entry: GuardModeConfigEntry, description: SensorEntityDescription) -> None:
        """Initialize on the hub device."""
        super().__init__(entry.runtime_data.hub, entry.entry_id, description)
        self._satellites = entry.runtime_data.satellites
        self._followed: dict[str, Callable[[], None]] = {}  # satellite id: stop following

    async def async_added_to_hass(self) -> None:
        """Follow every satellite, also the ones added later."""
        await super().async_added_to_hass()
        self.async_on_remove(self._hub.async_add_listener(self._follow))
        self.async_on_remove(
            async_dispatcher_connect(self.hass, SIGNAL_NEW_SATELLITE, self._satellite_added)
        )
        self.async_on_remove(self._unfollow)
        self._follow()

    @callback
    def _satellite_added(self, _satellite: Satellite) -> None:
        self._follow()

    @callback
    def _follow(self) -> None:
        """Follow the satellites there are (a removed one's listener goes)."""
        for satellite_id in set(self._followed) - set(self._satellites):
            self._followed.pop(satellite_id)()
        for satellite_id, satellite in self._satellites.items():
            if satellite_id not in self._followed:
                self._followed[satellite_id] = satellite.async_add_listener(
                    self.async_write_ha_state
                )
        self.async_write_ha_state()

    @callback
    def _unfollow(self) -> None:
        for unsubscribe in self._followed.values():
            unsubscribe()
        self._followed.clear()

    @property
    def native_value(self) -> int:
        """Return how many satellites' audio arrives."""
        return sum(satellite.state.connected for satellite in self._satellites.values())

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return how many satellites there are and the ones that can't be heard."""
        satellites = self._satellites.values()
        return {
            "satellites": len(self._satellites),
            "not_heard": sorted(satellite.name for satellite in satellites if satellite.deaf),
        }


class BackendSensor(GuardHubEntity, SensorEntity):
    """Which tagger backend runs the model: onnxruntime, numpy or a remote engine."""

    def __init__(self, entry: GuardModeConfigEntry, description: SensorEntityDescription) -> None:
        """Initialize on the hub device."""
        super().__init__(entry.runtime_data.hub, entry.entry_id, description)
        self._engine = entry.runtime_data.engine

    @property
    def native_value(self) -> str:
        """Return the backend."""
        return self._engine.backend
