"""Arming rules: what the followed alarm panel or presence says guard mode should be."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from homeassistant.const import STATE_HOME, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event

from .const import (
    ALARM_STATE_AWAY,
    CONF_ALARM_PANEL,
    CONF_ALARM_STATES,
    CONF_ARMING_MODE,
    CONF_PRESENCE_ENTITIES,
    ArmingMode,
)

# Alarm panel states that say nothing about arming: transitions (exit/entry delay), an alarm
# going off, and a panel that is not reporting. Guard mode keeps its state through them.
_ALARM_PANEL_TRANSIENT = frozenset(
    {"arming", "pending", "triggered", "disarming", STATE_UNKNOWN, STATE_UNAVAILABLE}
)
_NO_STATE = frozenset({STATE_UNKNOWN, STATE_UNAVAILABLE})
HOME_ZONE = "zone.home"


def alarm_panel_wants_armed(state: State | None, armed_states: Iterable[str]) -> bool | None:
    """Return whether an alarm panel state arms guard mode, or None if it says nothing."""
    if state is None or state.state in _ALARM_PANEL_TRANSIENT:
        return None
    return state.state in {ALARM_STATE_AWAY, *armed_states}


def presence_wants_armed(states: Iterable[State | None]) -> bool | None:
    """Return True when nobody is home, False when somebody is, None when nothing is known.

    Person, device tracker and group entities are home when their state is ``home``;
    a zone counts the people in it.
    """
    known = [s for s in states if s is not None and s.state not in _NO_STATE]
    if not known:
        return None
    for state in known:
        if state.domain == "zone":
            try:
                if int(state.state) > 0:
                    return False
            except ValueError:
                continue
        elif state.state == STATE_HOME:
            return False
    return True


def arming_options(options: Mapping[str, Any]) -> tuple[Any, ...]:
    """Return the options that say what is followed (a change re-syncs to it)."""
    keys = (CONF_ARMING_MODE, CONF_ALARM_PANEL, CONF_ALARM_STATES, CONF_PRESENCE_ENTITIES)
    return tuple(options.get(key) for key in keys)


def followed_entities(options: Mapping[str, Any]) -> list[str]:
    """Return the entities the arming mode in these options follows."""
    mode = options.get(CONF_ARMING_MODE, ArmingMode.MANUAL)
    if mode == ArmingMode.ALARM_PANEL and options.get(CONF_ALARM_PANEL):
        return [options[CONF_ALARM_PANEL]]
    if mode == ArmingMode.PRESENCE:
        return list(options.get(CONF_PRESENCE_ENTITIES) or [HOME_ZONE])
    return []


def wants_armed(hass: HomeAssistant, options: Mapping[str, Any]) -> bool | None:
    """Return what the followed entities say guard mode should be (None: no opinion)."""
    mode = options.get(CONF_ARMING_MODE, ArmingMode.MANUAL)
    entities = followed_entities(options)
    if not entities:
        return None
    if mode == ArmingMode.ALARM_PANEL:
        return alarm_panel_wants_armed(
            hass.states.get(entities[0]), options.get(CONF_ALARM_STATES) or ()
        )
    return presence_wants_armed(hass.states.get(entity_id) for entity_id in entities)


class ArmingFollower:
    """Calls back when what the followed entities say changes.

    A manual change of guard mode stays until the followed state changes again: the follower
    only reports changes of its own verdict, never re-asserts it.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        options: Mapping[str, Any],
        last_verdict: bool | None,
        on_change: Callable[[bool], None],
    ) -> None:
        """Follow the entities in options; last_verdict is the verdict seen before a restart."""
        self._hass = hass
        self._options = options
        self._on_change = on_change
        self.verdict = last_verdict
        self._unsub: Callable[[], None] | None = None

    @property
    def options(self) -> Mapping[str, Any]:
        """Return the options this follower follows."""
        return self._options

    @callback
    def async_start(self) -> None:
        """Catch up with changes made while stopped, then track the followed entities."""
        self._evaluate()
        if entities := followed_entities(self._options):
            self._unsub = async_track_state_change_event(self._hass, entities, self._changed)

    @callback
    def async_stop(self) -> None:
        """Stop tracking."""
        if self._unsub is not None:
            self._unsub()
            self._unsub = None

    @callback
    def _changed(self, _event: Event[EventStateChangedData]) -> None:
        self._evaluate()

    @callback
    def _evaluate(self) -> None:
        verdict = wants_armed(self._hass, self._options)
        if verdict is None or verdict == self.verdict:
            return
        self.verdict = verdict
        self._on_change(verdict)
