"""Media players near a satellite: while one plays, the decider treats sound as possibly media."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.const import ATTR_DEVICE_CLASS, STATE_ON, STATE_PLAYING
from homeassistant.core import Event, HomeAssistant, State, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event

from .const import CONF_MEDIA_PLAYERS

if TYPE_CHECKING:
    from .satellite import Satellite

MEDIA_PLAYER = "media_player"
TV_DEVICE_CLASS = "tv"  # MediaPlayerDeviceClass.TV (a string: media_player is no dependency)


def media_players_near(hass: HomeAssistant, satellite: Satellite) -> list[str]:
    """Return the media players chosen for the satellite, or else those in its area."""
    chosen = satellite.subentry.data.get(CONF_MEDIA_PLAYERS)
    if chosen:
        return list(chosen)
    devices = dr.async_get(hass)
    area = satellite.current_area_id()
    if area is None:
        return []
    found = []
    for entry in er.async_get(hass).entities.values():
        if entry.domain != MEDIA_PLAYER or entry.disabled:
            continue
        entity_area = entry.area_id
        if entity_area is None and entry.device_id is not None:
            entity_device = devices.async_get(entry.device_id)
            entity_area = entity_device.area_id if entity_device else None
        if entity_area == area:
            found.append(entry.entity_id)
    return sorted(found)


class MediaPlayerWatch:
    """Tells a satellite's engine stream whether a media player near it is playing."""

    def __init__(self, hass: HomeAssistant, satellite: Satellite) -> None:
        """Watch the media players near satellite (call async_start)."""
        self._hass = hass
        self._satellite = satellite
        self.entities: list[str] = []
        self.playing = False
        self._unsubs: list[Callable[[], None]] = []

    @callback
    def async_start(self) -> None:
        """Find the media players and follow their state (and changes of areas)."""
        self.async_stop()
        for registry_event in (er.EVENT_ENTITY_REGISTRY_UPDATED, dr.EVENT_DEVICE_REGISTRY_UPDATED):
            self._unsubs.append(self._hass.bus.async_listen(registry_event, self._registry_changed))
        self._follow()

    @callback
    def async_stop(self) -> None:
        """Stop following."""
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()

    @callback
    def _follow(self) -> None:
        self.entities = media_players_near(self._hass, self._satellite)
        if self.entities:
            self._unsubs.append(
                async_track_state_change_event(self._hass, self.entities, self._changed)
            )
        self._apply()

    @callback
    def _registry_changed(self, event: Event[Any]) -> None:
        """Areas or media players changed: look again (only when it can matter)."""
        entity_id = event.data.get("entity_id")
        if entity_id is None or entity_id.startswith(f"{MEDIA_PLAYER}."):
            self.async_start()

    @callback
    def _changed(self, _event: Event[Any]) -> None:
        self._apply()

    @callback
    def _apply(self) -> None:
        playing = any(_plays(self._hass.states.get(entity_id)) for entity_id in self.entities)
        self.playing = playing
        if (decision := self._satellite.decision) is not None:
            decision.set_media_player_playing(playing)


def _plays(state: State | None) -> bool:
    """Return whether a media player plays: "playing", or a TV that is "on".

    Many TVs (Samsung, Sony Bravia, LG webOS on live TV) only ever say "on" while showing a
    programme; a speaker that is "on" may be silent.
    """
    if state is None:
        return False
    tv = state.attributes.get(ATTR_DEVICE_CLASS) == TV_DEVICE_CLASS
    return state.state == STATE_PLAYING or (state.state == STATE_ON and tv)
