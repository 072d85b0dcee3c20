"""Runtime data of a Guard Mode config entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeassistant.config_entries import ConfigEntry

from .alerts import AlertManager
from .clips import ClipJanitor
from .engine_runtime import Engine
from .hub import GuardHub
from .learned import Learning
from .notifications import Notifier
from .satellite import Satellite


@dataclass
class GuardModeData:
    """What the platforms of a Guard Mode entry share."""

    hub: GuardHub
    engine: Engine
    engine_settings: tuple[Any, ...]
    alerts: AlertManager
    notifier: Notifier
    janitor: ClipJanitor
    learning: Learning
    satellites: dict[str, Satellite] = field(default_factory=dict)  # by subentry id


type GuardModeConfigEntry = ConfigEntry[GuardModeData]
