"""The Guard Mode hub: armed state, its persistence and who gets told when it changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import logging
from typing import TYPE_CHECKING, Any, TypedDict

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store

from .arming import ArmingFollower, arming_options
from .const import CONF_ALWAYS_LISTEN_ALARMS, CONF_ARMING_MODE, DEFAULT_OPTIONS, DOMAIN
from .storage import DelayedStore

if TYPE_CHECKING:
    from .models import GuardModeConfigEntry

_LOGGER = logging.getLogger(__name__)
STORAGE_VERSION = 1
STORAGE_KEY = f"{DOMAIN}.state"
SAVE_DELAY = 1.0


class ArmSource(StrEnum):
    """What last changed the armed state."""

    MANUAL = "manual"
    ALARM_PANEL = "alarm_panel"
    PRESENCE = "presence"
    RESTORED = "restored"


class _StoredState(TypedDict):
    armed: bool
    source: str
    followed_verdict: bool | None


@dataclass(slots=True)
class ListenState:
    """Whether microphones are open, and for what."""

    armed: bool
    always_listen_alarms: bool

    @property
    def listening(self) -> bool:
        """Return True when satellites should stream audio."""
        return self.armed or self.always_listen_alarms

    @property
    def alarms_only(self) -> bool:
        """Return True when only smoke/CO alarms are listened for (disarmed, opted in)."""
        return not self.armed and self.always_listen_alarms


def state_store(hass: HomeAssistant) -> Store[_StoredState]:
    """Return the store that keeps the armed state across restarts."""
    return Store(hass, STORAGE_VERSION, STORAGE_KEY)


class GuardHub:
    """Holds guard mode's armed state, keeps it across restarts, follows panel or presence."""

    def __init__(self, hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
        """Create the hub for a config entry; call async_load before use."""
        self._hass = hass
        self._entry = entry
        self._store = DelayedStore(state_store(hass), self._data_to_save, SAVE_DELAY)
        self.armed = False
        self.source = ArmSource.RESTORED
        self._listeners: list[Callable[[], None]] = []
        self._follower: ArmingFollower | None = None
        self._restored_verdict: bool | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Return the entry options with defaults filled in."""
        return {**DEFAULT_OPTIONS, **self._entry.options}

    @property
    def listen_state(self) -> ListenState:
        """Return whether and what satellites should listen for."""
        return ListenState(self.armed, bool(self.options[CONF_ALWAYS_LISTEN_ALARMS]))

    async def async_load(self) -> None:
        """Restore the armed state saved before the last stop."""
        if (stored := await self._store.async_load()) is None:
            return
        try:
            armed, verdict = stored["armed"], stored["followed_verdict"]
            source = ArmSource(stored["source"])
            if not isinstance(armed, bool) or not isinstance(verdict, bool | None):
                raise TypeError  # noqa: TRY301 - one way out for every damage
        except KeyError, TypeError, ValueError:
            _LOGGER.warning(
                "The saved armed state could not be read (%s): Guard Mode starts disarmed",
                stored,
            )
            return
        self.armed, self.source, self._restored_verdict = armed, source, verdict

    @callback
    def async_start(self) -> None:
        """Start following the alarm panel or presence, as the options say."""
        self._follower = ArmingFollower(
            self._hass, self.options, self._restored_verdict, self._followed_changed
        )
        self._follower.async_start()

    @callback
    def async_stop(self) -> None:
        """Stop following."""
        if self._follower is not None:
            self._restored_verdict = self._follower.verdict
            self._follower.async_stop()
            self._follower = None

    @callback
    def async_options_updated(self) -> None:
        """Apply new options and tell listeners.

        Only a change of what is followed syncs to the followed state; any other change (a
        satellite, clips, notify targets) keeps a manual arm or disarm.
        """
        if self._follower is not None and arming_options(self.options) != arming_options(
            self._follower.options
        ):
            self.async_stop()
            self._restored_verdict = None
            self.async_start()
        self._notify()

    @callback
    def async_set_armed(self, armed: bool, source: ArmSource = ArmSource.MANUAL) -> None:
        """Arm or disarm guard mode."""
        if armed == self.armed:
            return
        _LOGGER.info("Guard mode %s (%s)", "armed" if armed else "disarmed", source)
        self.armed = armed
        self.source = source
        self._save()
        self._notify()

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener whenever the armed state or the options change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def _followed_changed(self, verdict: bool) -> None:
        if verdict != self.armed:
            self.async_set_armed(verdict, ArmSource(self.options[CONF_ARMING_MODE]))
        else:
            self._save()  # remember the verdict even when it matched

    @callback
    def _save(self) -> None:
        self._store.async_schedule()

    async def async_flush(self) -> None:
        """Write a pending change now (unloading: no write may come after a removal)."""
        await self._store.async_flush()

    @callback
    def _data_to_save(self) -> _StoredState:
        verdict = self._follower.verdict if self._follower else self._restored_verdict
        return {"armed": self.armed, "source": self.source, "followed_verdict": verdict}

    @callback
    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()
