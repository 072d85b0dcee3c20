"""Voice satellites pointed at Guard Mode while it listens, and put back exactly as they were.

A voice satellite (an ESPHome voice device, a Wyoming satellite) whose wake word is detected in
Home Assistant streams its microphone to Home Assistant all the time, and the assist pipeline
hands that stream to the pipeline's wake-word engine (a ``wake_word`` entity). While Guard Mode
listens, the device's pipeline select is pointed at a pipeline of the satellite's own: a copy of
the pipeline the device used, whose wake-word engine is Guard Mode's listener entity and whose
wake-word id is the satellite's id (so each stream is known by its device). Where the device has
the "Wake word engine location" select (ESPHome voice firmware), it is set to "In Home
Assistant"; where it has a "Use wake word" switch instead (Atom Echo style firmware, whose wake
word is always detected in Home Assistant), that is turned on. The device's current pipeline
run is invalidated, as Home Assistant does when a pipeline is edited, so the device starts a new
run on its new pipeline at once.

What the device had is saved (``guard_mode.voice_devices`` in .storage) before anything is
changed, and put back when Guard Mode stops listening, the satellite is removed, or Guard Mode
starts after a restart or a crash while it listened and no longer listens. Guard Mode's
pipelines are removed when their device is put back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
import contextlib
from dataclasses import dataclass
import logging
from typing import Any, NotRequired, TypedDict

from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.storage import Store
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN
from .sources.base import CannotConnect, SourceError

_LOGGER = logging.getLogger(__name__)

LOCATION_IN_HA = "In Home Assistant"  # the ESPHome voice firmware's option (not translated)
WAKE_SWITCH_NAME = "use wake word"  # the switch of firmware that streams only when it is on
OPTION_PREFERRED = "preferred"  # assist_pipeline's pipeline select: the preferred pipeline
STORAGE_KEY = f"{DOMAIN}.voice_devices"
STORAGE_VERSION = 1
LISTENER_ENTITY_KEY = "voice_listener"

DATA_VOICE_DEVICES: HassKey[VoiceDevices] = HassKey(f"{DOMAIN}_voice_devices")


class NotAVoiceSatellite(SourceError):
    """The entity chosen is no voice satellite whose pipeline Home Assistant chooses."""

    reason = "not_a_voice_satellite"


class _Saved(TypedDict):
    """What a device had before Guard Mode pointed it at its own pipeline."""

    pipeline_select: str
    pipeline_option: str
    location_select: str | None
    location_option: str | None
    wake_switch: NotRequired[str | None]
    wake_switch_state: NotRequired[str | None]
    pipeline_id: str  # Guard Mode's pipeline for the satellite


def _saved_ok(saved: object) -> bool:
    """Return True when a stored record has what putting its device back needs."""
    if not isinstance(saved, dict):
        return False
    texts = ("pipeline_select", "pipeline_option", "pipeline_id")
    maybe = ("location_select", "location_option")  # None where the device has none
    return (
        all(isinstance(saved.get(key), str) for key in texts)
        and all(key in saved and isinstance(saved[key], str | None) for key in maybe)
        and all(
            isinstance(saved.get(key), str | None) for key in ("wake_switch_state", "wake_switch")
        )
    )


@dataclass(frozen=True, slots=True)
class DeviceSelects:
    """A voice satellite's device: its id, pipeline select, wake-word location and switch."""

    device_id: str
    pipeline: str
    location: str | None
    wake_switch: str | None = None


def find_selects(hass: HomeAssistant, satellite_entity_id: str) -> DeviceSelects:
    """Return the selects of the voice satellite's device; raise NotAVoiceSatellite."""
    from homeassistant.components.assist_pipeline.runtime import (  # noqa: PLC0415
        KEY_ASSIST_PIPELINE,
    )

    registry = er.async_get(hass)
    entry = registry.async_get(satellite_entity_id)
    if entry is None or entry.device_id is None:
        raise NotAVoiceSatellite(f"{satellite_entity_id} is not a voice satellite's entity")
    pipeline_data = hass.data.get(KEY_ASSIST_PIPELINE)
    device = pipeline_data.pipeline_devices.get(entry.device_id) if pipeline_data else None
    pipeline = (
        registry.async_get_entity_id("select", device.domain, f"{device.unique_id_prefix}-pipeline")
        if device is not None
        else None
    )
    if pipeline is None:
        raise NotAVoiceSatellite(
            f"{satellite_entity_id}'s device has no assistant (pipeline) select"
        )
    location = wake_switch = None
    for candidate in er.async_entries_for_device(registry, entry.device_id):
        state = hass.states.get(candidate.entity_id)
        if (
            candidate.domain == "select"
            and state is not None
            and LOCATION_IN_HA in state.attributes.get("options", ())
        ):
            location = candidate.entity_id
        elif candidate.domain == "switch" and (
            str(candidate.original_name or "").casefold() == WAKE_SWITCH_NAME
        ):
            wake_switch = candidate.entity_id
    return DeviceSelects(entry.device_id, pipeline, location, wake_switch)


FORMER = "/former:"  # the key of a device a satellite pointed before it named another


def pipeline_name(satellite_name: str) -> str:
    """Return the name of the satellite's Guard Mode pipeline (shown in pipeline selects)."""
    return f"Guard Mode: {satellite_name}"


class VoiceDevices:
    """Points voice satellites' devices at Guard Mode and puts them back (one per hass)."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Keep what devices had in .storage (call async_load first)."""
        self.hass = hass
        self._store: Store[dict[str, _Saved]] = Store(hass, STORAGE_VERSION, STORAGE_KEY)
        self._saved: dict[str, _Saved] = {}
        self._lock = asyncio.Lock()
        self._loaded = False
        self._waiting: dict[str, CALLBACK_TYPE] = {}  # restores waiting for their device

    async def async_load(self) -> None:
        """Read what was saved before the last stop (once); follow renamed entities."""
        if not self._loaded:
            stored = await self._store.async_load()
            self._saved = {
                satellite_id: saved
                for satellite_id, saved in (stored.items() if isinstance(stored, dict) else ())
                if _saved_ok(saved)
            }
            if stored is not None and (
                not isinstance(stored, dict) or len(self._saved) != len(stored)
            ):
                _LOGGER.warning(
                    "What %s voice device(s) had before Guard Mode pointed them at its pipeline "
                    "could not be read (.storage/%s): the next arming starts them afresh",
                    len(stored) - len(self._saved) if isinstance(stored, dict) else "some",
                    STORAGE_KEY,
                )
                await self._store.async_save(self._saved)  # without them: warned once
            self._loaded = True
            self.hass.bus.async_listen(er.EVENT_ENTITY_REGISTRY_UPDATED, self._renamed)

    @callback
    def _renamed(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        """Follow a device's entity renamed (while pointed, or waiting to be put back)."""
        data = event.data
        if data["action"] != "update" or "old_entity_id" not in data:
            return
        old, new = data["old_entity_id"], data["entity_id"]
        changed = False
        for saved in self._saved.values():
            for key in ("pipeline_select", "location_select", "wake_switch"):
                if saved.get(key) == old:
                    saved[key] = new
                    changed = True
        if changed:
            self._store.async_delay_save(lambda: self._saved, 1.0)

    async def async_point(
        self,
        satellite_id: str,
        name: str,
        satellite_entity_id: str,
        listener: str,
        *,
        restart: bool = False,
    ) -> None:
        """Point the satellite's device at its Guard Mode pipeline (listener: our entity id).

        With restart, the device's running pipeline run is ended even if nothing changed: its
        stream is not reaching this satellite (Guard Mode was reloaded, the stream stalled).

        Raises SourceError when the device can't be pointed (unavailable, not a voice satellite).
        """
        from homeassistant.components import assist_pipeline  # noqa: PLC0415

        self._cancel_waiting(satellite_id)
        async with self._lock:
            selects = find_selects(self.hass, satellite_entity_id)
            current = _option(self.hass, selects.pipeline)
            # All of it: what the device's own selects say now is what is put back later.
            if current is None or _waiting_for(self.hass, (selects.location, selects.wake_switch)):
                raise CannotConnect(f"{satellite_entity_id}'s device is unavailable")
            saved = self._saved.get(satellite_id)
            ours = _pipeline(self.hass, saved["pipeline_id"]) if saved else None
            # One of ours that the device still names, its record lost (a damaged file): it goes,
            # and what is put back later is the preferred pipeline.
            selected = _pipeline_by_option(self.hass, current) if saved is None else None
            if selected is not None and selected.wake_word_entity == listener:
                await _delete_pipeline(self.hass, selected.id)
                current = OPTION_PREFERRED
            if saved is not None and saved["pipeline_select"] != selects.pipeline:
                await self._let_go(satellite_id, saved, name)  # it names another device now
                saved = None
            title = _free_name(self.hass, pipeline_name(name), ours.id if ours else None)
            if ours is None:
                option = saved["pipeline_option"] if saved else current
                ours = await _create_pipeline(
                    self.hass, _pipeline_by_option(self.hass, option), title, listener, satellite_id
                )
            elif ours.wake_word_entity != listener or ours.name != title:
                await assist_pipeline.async_update_pipeline(
                    self.hass,
                    ours,
                    name=title,
                    wake_word_entity=listener,
                    wake_word_id=satellite_id,
                )
            if saved is None or saved["pipeline_id"] != ours.id:
                saved = saved or _Saved(
                    pipeline_select=selects.pipeline,
                    pipeline_option=current,
                    location_select=selects.location,
                    location_option=_option(self.hass, selects.location),
                    wake_switch=selects.wake_switch,
                    wake_switch_state=_option(self.hass, selects.wake_switch),
                    pipeline_id=ours.id,
                )
                saved["pipeline_id"] = ours.id
                self._saved[satellite_id] = saved  # saved before anything is changed
                await self._store.async_save(self._saved)
            changed = await _select(self.hass, selects.pipeline, ours.name)
            if selects.location is not None:
                changed |= await _select(self.hass, selects.location, LOCATION_IN_HA)
            elif selects.wake_switch is not None:
                changed |= await _switch(self.hass, selects.wake_switch, STATE_ON)
            if changed or restart:
                _restart_runs(self.hass, selects.device_id)
            if changed:
                _LOGGER.info("Voice satellite %s: its device streams to Guard Mode", name)

    async def _let_go(self, satellite_id: str, saved: _Saved, name: str) -> None:
        """Put back on its own the device the satellite pointed before it named another.

        (The device was replaced; renamed entities are followed by :meth:`_renamed` instead.)
        It goes back when it can; the satellite's pipeline stays the satellite's.
        """
        former = f"{satellite_id}{FORMER}{saved['pipeline_select']}"  # one per device
        self._saved[former] = {**saved, "pipeline_id": ""}
        del self._saved[satellite_id]
        await self._store.async_save(self._saved)
        await self._restore(former, f"{name} (its former device)")

    async def async_restore(self, satellite_id: str, name: str | None = None) -> None:
        """Put the satellite's device back as it was and remove its Guard Mode pipeline.

        A device that is unavailable now (offline, or its integration not yet started) is put
        back as soon as its pipeline select is available again.
        """
        async with self._lock:
            await self._restore(satellite_id, name or satellite_id)

    async def _restore(self, satellite_id: str, label: str) -> None:
        """Put a saved device back (see :meth:`async_restore`); the lock is held."""
        if (saved := self._saved.get(satellite_id)) is None:
            return
        if waiting := _waiting_for(self.hass, _entities(saved)):
            self._retry_when_available(satellite_id, waiting, label)
            return
        pipeline_state = self.hass.states.get(saved["pipeline_select"])
        option = saved["pipeline_option"]
        if pipeline_state is not None and option not in pipeline_state.attributes.get(
            "options", ()
        ):
            option = OPTION_PREFERRED  # the pipeline it had was deleted meanwhile
        try:
            if pipeline_state is not None:  # (a device deleted since has nothing to put back)
                await _select(self.hass, saved["pipeline_select"], option)
            if saved["location_select"] and saved["location_option"]:
                await _select(self.hass, saved["location_select"], saved["location_option"])
            if (switch := saved.get("wake_switch")) and (
                (was := saved.get("wake_switch_state")) in (STATE_ON, STATE_OFF)
            ):
                await _switch(self.hass, switch, was)
        except HomeAssistantError as err:
            _LOGGER.warning("Voice satellite %s: its device can't be put back yet (%s)", label, err)
            self._retry_when_available(satellite_id, [e for e in _entities(saved) if e], label)
            return
        device = er.async_get(self.hass).async_get(saved["pipeline_select"])
        if device is not None and device.device_id is not None:
            _restart_runs(self.hass, device.device_id)
        if saved["pipeline_id"]:  # a former device's pipeline is its satellite's still
            await _delete_pipeline(self.hass, saved["pipeline_id"])
        del self._saved[satellite_id]
        await self._store.async_save(self._saved)
        _LOGGER.info("Voice satellite %s: its device is back to its own assistant", label)

    def _retry_when_available(self, satellite_id: str, entity_ids: list[str], label: str) -> None:
        """Put the device back once entity_ids are available again (it comes back)."""
        if satellite_id in self._waiting:
            return

        @callback
        def changed(_event: Event[EventStateChangedData]) -> None:
            if _waiting_for(self.hass, entity_ids):
                return
            self._waiting.pop(satellite_id)()
            self.hass.async_create_task(self.async_restore(satellite_id, label))

        _LOGGER.info("Voice satellite %s: its device is put back when it is available", label)
        self._waiting[satellite_id] = async_track_state_change_event(self.hass, entity_ids, changed)

    def _cancel_waiting(self, satellite_id: str) -> None:
        """Stop waiting to put a device back (Guard Mode points it at itself again)."""
        if (unsub := self._waiting.pop(satellite_id, None)) is not None:
            unsub()

    async def async_restore_others(self, keep: Collection[str]) -> None:
        """Put back every device Guard Mode pointed at itself, except the satellites in keep."""
        for satellite_id in [s for s in self._saved if s not in keep]:
            await self.async_restore(satellite_id)

    def diagnostics(self, satellite_id: str) -> dict[str, Any] | None:
        """Return what is saved for a satellite (entity ids and options, nothing secret)."""
        saved = self._saved.get(satellite_id)
        return dict(saved) if saved is not None else None


async def async_voice_devices(hass: HomeAssistant) -> VoiceDevices:
    """Return the one VoiceDevices of hass, loaded."""
    if (devices := hass.data.get(DATA_VOICE_DEVICES)) is None:
        devices = hass.data[DATA_VOICE_DEVICES] = VoiceDevices(hass)
    await devices.async_load()
    return devices


def _entities(saved: _Saved) -> list[str | None]:
    """Return the entity ids a saved device is put back through."""
    return [saved["pipeline_select"], saved["location_select"], saved.get("wake_switch")]


def _waiting_for(hass: HomeAssistant, entity_ids: Collection[str | None]) -> list[str]:
    """Return those of entity_ids that exist but are unavailable (their device is offline).

    A device's assistant select is Home Assistant's own and stays available while the device
    is offline; its location select and wake-word switch are the device's and do not (and a
    service call skips an unavailable entity without a word).
    """
    registry = er.async_get(hass)
    return [
        entity_id
        for entity_id in entity_ids
        if entity_id and registry.async_get(entity_id) and _option(hass, entity_id) is None
    ]


def _option(hass: HomeAssistant, entity_id: str | None) -> str | None:
    """Return a select's option (a switch's state), None while it has none."""
    state = hass.states.get(entity_id) if entity_id else None
    if state is None or state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
        return None
    return state.state


async def _select(hass: HomeAssistant, entity_id: str, option: str) -> bool:
    """Choose option on a select unless it is chosen; return True if it changed."""
    if _option(hass, entity_id) == option:
        return False
    await hass.services.async_call(
        "select", "select_option", {"entity_id": entity_id, "option": option}, blocking=True
    )
    return True


async def _switch(hass: HomeAssistant, entity_id: str, state: str) -> bool:
    """Turn a switch on or off unless it is; return True if it changed."""
    if _option(hass, entity_id) == state:
        return False
    await hass.services.async_call(
        "switch", f"turn_{state}", {"entity_id": entity_id}, blocking=True
    )
    return True


def _pipeline(hass: HomeAssistant, pipeline_id: str) -> Any:
    from homeassistant.components.assist_pipeline.runtime import (  # noqa: PLC0415
        KEY_ASSIST_PIPELINE,
    )

    return hass.data[KEY_ASSIST_PIPELINE].pipeline_store.data.get(pipeline_id)


def _free_name(hass: HomeAssistant, wanted: str, ours: str | None) -> str:
    """Return wanted, or wanted (2), (3) … if another pipeline has that name.

    A device's select names its pipeline, and Home Assistant takes the first of that name: two
    satellites called alike must not share one (each would get the other's microphone).
    """
    from homeassistant.components.assist_pipeline.pipeline import (  # noqa: PLC0415
        async_get_pipelines,
    )

    taken = {pipeline.name for pipeline in async_get_pipelines(hass) if pipeline.id != ours}
    name, number = wanted, 2
    while name in taken:
        name, number = f"{wanted} ({number})", number + 1
    return name


def _pipeline_by_option(hass: HomeAssistant, option: str) -> Any:
    """Return the pipeline a pipeline select's option names (preferred: the preferred one)."""
    from homeassistant.components.assist_pipeline.pipeline import (  # noqa: PLC0415
        async_get_pipeline,
        async_get_pipelines,
    )

    if option != OPTION_PREFERRED:
        for pipeline in async_get_pipelines(hass):
            if pipeline.name == option:
                return pipeline
    return async_get_pipeline(hass)


async def _create_pipeline(
    hass: HomeAssistant, base: Any, name: str, listener: str, satellite_id: str
) -> Any:
    """Create the satellite's pipeline: base's assistant, Guard Mode's wake-word engine.

    Its speech-to-text and text-to-speech engines are base's: Home Assistant checks a pipeline
    that starts with a wake word has them, though Guard Mode never lets it get that far.
    """
    from homeassistant.components.assist_pipeline.runtime import (  # noqa: PLC0415
        KEY_ASSIST_PIPELINE,
    )

    data = base.to_json()
    data.pop("id")
    data.update(name=name, wake_word_entity=listener, wake_word_id=satellite_id)
    return await hass.data[KEY_ASSIST_PIPELINE].pipeline_store.async_create_item(data)


async def _delete_pipeline(hass: HomeAssistant, pipeline_id: str) -> None:
    from homeassistant.components.assist_pipeline.runtime import (  # noqa: PLC0415
        KEY_ASSIST_PIPELINE,
    )
    from homeassistant.helpers.collection import ItemNotFound  # noqa: PLC0415

    with contextlib.suppress(ItemNotFound):  # the user deleted it
        await hass.data[KEY_ASSIST_PIPELINE].pipeline_store.async_delete_item(pipeline_id)


def _restart_runs(hass: HomeAssistant, device_id: str) -> None:
    """End the device's running pipeline runs: it starts a new one on its chosen pipeline.

    This is what Home Assistant does to a pipeline's runs when the pipeline is edited
    (assist_pipeline's PipelineRuns); the device sees its run end with an error and starts over.
    """
    from homeassistant.components.assist_pipeline.runtime import (  # noqa: PLC0415
        KEY_ASSIST_PIPELINE,
    )

    runs = getattr(hass.data[KEY_ASSIST_PIPELINE].pipeline_runs, "_pipeline_runs", {})
    for by_id in list(runs.values()):
        for run in list(by_id.values()):
            if run.device_id == device_id:
                run.invalidate()
