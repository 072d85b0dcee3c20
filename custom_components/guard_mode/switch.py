"""The guard mode switch: armed or disarmed."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import GuardHubEntity
from .hub import ArmSource
from .models import GuardModeConfigEntry

PARALLEL_UPDATES = 0

# The hub's main feature: named after its device ("Guard Mode", switch.guard_mode).
GUARD_SWITCH = SwitchEntityDescription(key="guard_mode", translation_key="guard_mode", name=None)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the guard mode switch."""
    async_add_entities([GuardModeSwitch(entry.runtime_data.hub, entry.entry_id, GUARD_SWITCH)])


class GuardModeSwitch(GuardHubEntity, SwitchEntity):
    """Arms and disarms guard mode; follows the alarm panel or presence when set up to."""

    @property
    def is_on(self) -> bool:
        """Return True when guard mode is armed."""
        return self._hub.armed

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return what armed or disarmed guard mode last."""
        return {"changed_by": self._hub.source}

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Arm guard mode."""
        self._hub.async_set_armed(True, ArmSource.MANUAL)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Disarm guard mode."""
        self._hub.async_set_armed(False, ArmSource.MANUAL)
