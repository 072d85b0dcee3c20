"""Select entities: each satellite's sensitivity."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .entity import SatelliteEntity, async_add_satellite_entities
from .models import GuardModeConfigEntry
from .satellite import SENSITIVITY

PARALLEL_UPDATES = 0

SENSITIVITY_SELECT = SelectEntityDescription(
    key="sensitivity",
    translation_key="sensitivity",
    options=list(SENSITIVITY),
    entity_category=EntityCategory.CONFIG,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: GuardModeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add a sensitivity select for every satellite."""
    async_add_satellite_entities(
        hass, entry, async_add_entities, lambda sat: [SensitivitySelect(sat, SENSITIVITY_SELECT)]
    )


class SensitivitySelect(SatelliteEntity, RestoreEntity, SelectEntity):
    """How easily the satellite alerts: low (loud homes), normal, high (quiet homes)."""

    @property
    def available(self) -> bool:
        """Return True: the setting can be changed even while the engine is away."""
        return True

    @property
    def current_option(self) -> str:
        """Return the sensitivity."""
        return self._satellite.sensitivity

    async def async_added_to_hass(self) -> None:
        """Restore the sensitivity chosen before the restart."""
        await super().async_added_to_hass()
        if (last := await self.async_get_last_state()) is not None and last.state in SENSITIVITY:
            self._satellite.async_set_sensitivity(last.state)

    async def async_select_option(self, option: str) -> None:
        """Change the sensitivity."""
        self._satellite.async_set_sensitivity(option)
