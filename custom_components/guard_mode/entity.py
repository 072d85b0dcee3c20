"""Base entities for Guard Mode."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription

from .const import DOMAIN, NAME
from .hub import GuardHub


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
