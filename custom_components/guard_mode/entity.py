"""Base entities for Guard Mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN, NAME, SIGNAL_NEW_SATELLITE
from .hub import GuardHub

if TYPE_CHECKING:
    from .models import GuardModeConfigEntry
    from .satellite import Satellite


class GuardHubEntity(Entity):
    """An entity of the Guard Mode hub device."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, hub: GuardHub, entry_id: str, description: EntityDescription) -> None:
        """Initialize the entity on the hub device."""
        self.entity_description = description
        self._hub = hub
        self._attr_unique_id = f"{entry_id}-{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry_id)},
            name=NAME,
            manufacturer=NAME,
            model="Sound guard",
            entry_type=DeviceEntryType.SERVICE,
        )

    async def async_added_to_hass(self) -> None:
        """Follow the hub's state."""
        await super().async_added_to_hass()
        self.async_on_remove(self._hub.async_add_listener(self.async_write_ha_state))


class SatelliteEntity(Entity):
    """An entity of a satellite's device; unavailable while the satellite can't hear.

    A detection entity that says "clear" while its microphone is unreachable would lie: while the
    satellite should listen and can't (or the remote engine is away), it is unavailable. While
    guard mode is disarmed the microphones are closed by choice, and the entities stay available.
    """

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, satellite: Satellite, description: EntityDescription) -> None:
        """Initialize the entity on the satellite's device."""
        self.entity_description = description
        self._satellite = satellite
        self._attr_unique_id = f"{satellite.id}-{description.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, satellite.id)})

    @property
    def available(self) -> bool:
        """Return False while the microphone or the engine that listens to it can't be reached."""
        return self._satellite.engine.available and not self._satellite.deaf

    async def async_added_to_hass(self) -> None:
        """Follow the satellite's state."""
        await super().async_added_to_hass()
        self.async_on_remove(self._satellite.async_add_listener(self.async_write_ha_state))


@callback
def async_add_satellite_entities(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    create: Callable[[Satellite], Sequence[Entity]],
) -> None:
    """Add a platform's entities for every satellite, now and whenever one is added."""

    @callback
    def add(satellite: Satellite) -> None:
        async_add_entities(create(satellite), config_subentry_id=satellite.id)

    for satellite in entry.runtime_data.satellites.values():
        add(satellite)
    entry.async_on_unload(async_dispatcher_connect(hass, SIGNAL_NEW_SATELLITE, add))
