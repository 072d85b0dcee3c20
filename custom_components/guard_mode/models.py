"""Runtime data of a Guard Mode config entry."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry

from .hub import GuardHub


@dataclass
class GuardModeData:
    """What the platforms of a Guard Mode entry share."""

    hub: GuardHub


type GuardModeConfigEntry = ConfigEntry[GuardModeData]
