"""Event entities: one per satellite, fired for every alert with the sound as event type."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .alerts import SIGNAL_ALERT, Alert
from .engine import Sound
from .entity import SatelliteEntity, async_add_satellite_entities
from .models import GuardModeConfigEntry
from .satellite import Satellite

PARALLEL_UPDATES = 0

DETECTION = EventEntityDescription(
    key="detection", translation_key="detection", event_types=[str(sound) for sound in Sound]
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add an event entity for every satellite."""
    async_add_satellite_entities(
        hass, entry, async_add_entities, lambda sat: [DetectionEvent(sat, DETECTION)]
    )


class DetectionEvent(SatelliteEntity, EventEntity):
    """Fires the sound heard, with confidence, detection id and clip."""

    def __init__(self, satellite: Satellite, description: EventEntityDescription) -> None:
        """Event types: the six sounds and the custom sounds this satellite listens for."""
        super().__init__(satellite, description)
        custom = [sound.key for sound in satellite.learning.custom_for(satellite.id)]
        self._attr_event_types = [*(description.event_types or []), *custom]

    async def async_added_to_hass(self) -> None:
        """Listen for the satellite's alerts."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass, SIGNAL_ALERT.format(self._satellite.id), self._alert
            )
        )

    @callback
    def _alert(self, alert: Alert) -> None:
        self._trigger_event(
            str(alert.sound),
            {
                "confidence": alert.confidence,
                "detection_id": alert.detection_id,
                "clip": alert.clip,
                "simulated": alert.simulated,
            },
        )
        self.async_write_ha_state()
