"""Actions: simulate, analyze a file, "not a threat", forget, list and teach.

Every action that changes the guard or what it has learned — or reads files from the host —
is an admin action (``async_register_admin_service``, as Home Assistant's own admin actions):
``simulate`` (it fires alerts and notifications), ``analyze_file``, ``mark_false_alarm``,
``forget_learned`` and ``teach`` (it reloads the integration, closing every microphone). A
non-admin user gets Home Assistant's "unauthorized" error. ``list_learned`` only reads counts
and names, so every user may call it. The companion app's "Not a threat" button on a
notification marks the detection for whoever the admin chose to notify (see __init__.py).
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import PurePath
from typing import Any

from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.service import async_register_admin_service
from homeassistant.util import slugify
import numpy as np
import numpy.typing as npt
import probatio as vol

from .alerts import simulated_detection
from .const import DOMAIN
from .engine import (
    ALARM_SOUNDS,
    EVENT_DB,
    MAX_EXAMPLES,
    AudioFormatError,
    DeciderConfig,
    DeciderEvent,
    EventKind,
    Sound,
    TeachError,
    WindowEvidence,
    analyze_file,
    bounds,
    examples_from_files,
    split_examples,
    teach,
)
from .models import GuardModeConfigEntry
from .satellite import Satellite, every_sound

SERVICE_SIMULATE = "simulate"
SERVICE_ANALYZE_FILE = "analyze_file"
SERVICE_MARK_FALSE_ALARM = "mark_false_alarm"
SERVICE_FORGET_LEARNED = "forget_learned"
SERVICE_LIST_LEARNED = "list_learned"
SERVICE_TEACH = "teach"
ATTR_DETECTION_ID = "detection_id"
ATTR_ENTITY_ID = "entity_id"
ATTR_CUSTOM_SOUND = "custom_sound"
ATTR_NAME = "name"
ATTR_SATELLITES = "satellites"
ATTR_SECONDS = "seconds"
ATTR_FILES = "files"
Floats = npt.NDArray[np.float32]
ATTR_SOUND = "sound"
ATTR_CONFIDENCE = "confidence"
ATTR_PATH = "path"
SIMULATED_HOLD_S = 10.0
MAX_ANALYZE_S = 900.0  # 15 min of audio: 58 MB decoded
MAX_PATH = 4096

SIMULATE_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_SOUND): vol.In([str(sound) for sound in Sound]),
        vol.Optional(ATTR_CONFIDENCE, default=0.9): vol.All(
            vol.Coerce(float), vol.Range(min=0.0, max=1.0)
        ),
    }
)
ANALYZE_SCHEMA = vol.Schema(
    {vol.Required(ATTR_PATH): cv.string, vol.Optional(ATTR_DEVICE_ID): cv.string}
)
MARK_SCHEMA = vol.All(
    vol.Schema(
        {vol.Optional(ATTR_DETECTION_ID): cv.string, vol.Optional(ATTR_ENTITY_ID): cv.entity_id}
    ),
    cv.has_at_least_one_key(ATTR_DETECTION_ID, ATTR_ENTITY_ID),
)
FORGET_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_DEVICE_ID): cv.string,
        vol.Optional(ATTR_SOUND): vol.In([str(sound) for sound in Sound]),
        vol.Optional(ATTR_CUSTOM_SOUND): cv.string,
    }
)


def _seconds_or_files(data: dict[str, Any]) -> dict[str, Any]:
    """Require the seconds to record or some files (an empty list of files is none)."""
    if not data.get(ATTR_FILES):
        data = {key: value for key, value in data.items() if key != ATTR_FILES}
        if ATTR_SECONDS not in data:
            raise vol.Invalid("give the seconds to record, or files with examples")
    return data


TEACH_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required(ATTR_NAME): vol.All(cv.string, vol.Length(min=1, max=40)),
            vol.Required(ATTR_SATELLITES): vol.All(cv.ensure_list, [cv.string], vol.Length(min=1)),
            vol.Optional(ATTR_SECONDS): vol.All(vol.Coerce(float), vol.Range(min=5, max=300)),
            vol.Optional(ATTR_FILES): vol.All(cv.ensure_list, [cv.string]),
        }
    ),
    _seconds_or_files,
)


def _entry(hass: HomeAssistant) -> GuardModeConfigEntry:
    entries: list[GuardModeConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if not entries:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_loaded")
    return entries[0]


def _satellite(hass: HomeAssistant, device_id: str) -> Satellite:
    entry = _entry(hass)
    device = dr.async_get(hass).async_get(device_id)
    for domain, identifier in device.identifiers if device else ():
        if domain == DOMAIN and identifier in entry.runtime_data.satellites:
            return entry.runtime_data.satellites[identifier]
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_satellite",
        translation_placeholders={"device_id": device_id},
    )


async def _simulate(call: ServiceCall) -> None:
    """Run the whole chain for a satellite and sound, marked as simulated."""
    hass = call.hass
    satellite = _satellite(hass, call.data[ATTR_DEVICE_ID])
    detection = simulated_detection(Sound(call.data[ATTR_SOUND]), call.data[ATTR_CONFIDENCE])
    satellite.alerts.async_handle(
        satellite, DeciderEvent(EventKind.ONSET, detection), simulated=True
    )

    @callback
    def _end(_now: Any) -> None:
        satellite.simulations.discard(cancel)
        satellite.alerts.async_handle(satellite, DeciderEvent(EventKind.OFFSET, detection))

    cancel = async_call_later(hass, SIMULATED_HOLD_S, _end)
    satellite.simulations.add(cancel)


async def _allowed_path(hass: HomeAssistant, path: str) -> str:
    """Return path if it is a usable file path in an allowed folder; else say why not."""
    shown = bounds.printable(path, 200)
    problem = None
    if not path or len(path) > MAX_PATH:
        problem = f"it must be 1 to {MAX_PATH} characters long"
    elif not path.isprintable():
        problem = "it holds a control character (a NUL byte or a line break)"
    elif not PurePath(path).is_absolute():
        problem = "use the full path, e.g. /media/guard_mode/test.wav"
    if problem is not None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_path",
            translation_placeholders={"path": shown, "error": problem},
        )
    try:
        allowed = await hass.async_add_executor_job(hass.config.is_allowed_path, path)
    except (ValueError, OSError) as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="invalid_path",
            translation_placeholders={"path": shown, "error": str(err)},
        ) from err
    if not allowed:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="path_not_allowed",
            translation_placeholders={"path": shown},
        )
    return path


async def _analyze(call: ServiceCall) -> ServiceResponse:
    """Run the engine on an audio file under an allowed folder; return what it heard."""
    hass = call.hass
    entry = _entry(hass)
    path = await _allowed_path(hass, call.data[ATTR_PATH])
    if device_id := call.data.get(ATTR_DEVICE_ID):  # as that satellite decides
        config = _satellite(hass, device_id).learned_config()
    else:  # every custom sound too, none of the marks (they are a satellite's)
        custom = entry.runtime_data.learning.all_custom()
        config = DeciderConfig(custom=custom, enabled=every_sound(custom))
    tagger = await entry.runtime_data.engine.async_tagger(hass)
    try:
        result = await hass.async_add_executor_job(
            partial(analyze_file, path, tagger, decider_config=config, max_seconds=MAX_ANALYZE_S)
        )
    except (AudioFormatError, OSError) as err:
        raise _unreadable(err) from err
    return result.as_json()


def _unreadable(err: Exception) -> ServiceValidationError:
    """Return the error for a file that can't be used (the user's input; the error names it)."""
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="cannot_read_file",
        translation_placeholders={"error": str(err)},
    )


async def _mark_false_alarm(call: ServiceCall) -> ServiceResponse:
    """Remember a detection as "not a threat": similar sounds are suppressed from now on."""
    hass = call.hass
    detection_id = call.data.get(ATTR_DETECTION_ID)
    if detection_id is None:
        detection_id = _shown_detection_id(hass, call.data[ATTR_ENTITY_ID])
    if not detection_id:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_detection")
    return mark_false_alarm(hass, str(detection_id))


def _shown_detection_id(hass: HomeAssistant, entity_id: str) -> str | None:
    """Return the last detection an entity shows (an unavailable one's from its satellite)."""
    state = hass.states.get(entity_id)
    if state is not None and (shown := state.attributes.get("detection_id")):
        return str(shown)
    entity = er.async_get(hass).async_get(entity_id)
    if entity is None or entity.platform != DOMAIN:
        return None
    for satellite in _entry(hass).runtime_data.satellites.values():
        detections = satellite.detections
        key = entity.unique_id.removeprefix(f"{satellite.id}-")
        if key == entity.unique_id:
            continue
        alert = detections.alerted if key == "detection" else detections.last.get(key)
        return alert.detection_id if alert else None
    return None


def mark_false_alarm(hass: HomeAssistant, detection_id: str) -> dict[str, Any]:
    """Store the embeddings of a recent detection as "not a threat" on its satellite."""
    entry = _entry(hass)
    for satellite in entry.runtime_data.satellites.values():
        sound = satellite.detections.recent.get(detection_id)
        vectors = satellite.detection_embeddings(detection_id)
        if sound is None or vectors is None:
            continue
        if sound in ALARM_SOUNDS:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="alarms_are_never_ignored"
            )
        count = entry.runtime_data.learning.async_mark(satellite.id, sound, detection_id, vectors)
        return {"satellite": satellite.name, "sound": sound, "marks": count}
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="unknown_detection",
        translation_placeholders={"detection_id": detection_id},
    )


async def _forget(call: ServiceCall) -> ServiceResponse:
    """Forget learned "not a threat" marks, or a custom sound."""
    hass = call.hass
    entry = _entry(hass)
    satellite_id = None
    if device_id := call.data.get(ATTR_DEVICE_ID):
        satellite_id = _satellite(hass, device_id).id
    learning = entry.runtime_data.learning
    removed = learning.async_forget(
        satellite_id=satellite_id,
        sound=call.data.get(ATTR_SOUND),
        custom=call.data.get(ATTR_CUSTOM_SOUND),
    )
    if removed and call.data.get(ATTR_CUSTOM_SOUND):
        await learning.async_save()
        hass.config_entries.async_schedule_reload(entry.entry_id)  # its entities go
    return {"removed": removed}


async def _list_learned(call: ServiceCall) -> ServiceResponse:
    """Return what Guard Mode learned (counts and names, never vectors)."""
    data = _entry(call.hass).runtime_data
    names = {sat.id: sat.name for sat in data.satellites.values()}
    return data.learning.summary(names)


async def _teach(call: ServiceCall) -> ServiceResponse:
    """Teach a custom sound from examples heard live on a satellite or taken from files."""
    hass = call.hass
    data = _entry(hass).runtime_data
    satellites = [_satellite(hass, device_id) for device_id in call.data[ATTR_SATELLITES]]
    name = call.data[ATTR_NAME]
    key = f"custom_{slugify(name)}"  # never a built-in sound's key
    paths = list(dict.fromkeys(call.data.get(ATTR_FILES) or ()))  # each file once
    files = [await _allowed_path(hass, path) for path in paths]
    try:
        if len(files) > MAX_EXAMPLES:  # said before any file is decoded
            raise TeachError(  # noqa: TRY301 - one message for every refusal, below
                "too_many_examples", f"at most {MAX_EXAMPLES} examples, got {len(files)}"
            )
        tagger = await data.engine.async_tagger(hass)
        if files:
            examples = await hass.async_add_executor_job(examples_from_files, files, tagger)
            background = _background(satellites)
        else:
            seconds = float(call.data[ATTR_SECONDS])
            examples, background = await _record_examples(satellites[0], seconds)
            if not examples:
                raise TeachError(  # noqa: TRY301 - one message for every refusal, below
                    "nothing_heard",
                    f"in {seconds:.0f} s at {satellites[0].name}, no sound was "
                    f"{EVENT_DB:.0f} dB louder than the room",
                )
        sound, figures = await hass.async_add_executor_job(teach, key, name, examples, background)
    except TeachError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key=err.reason,
            translation_placeholders={"detail": str(err)},
        ) from err
    except (AudioFormatError, OSError) as err:
        raise _unreadable(err) from err
    data.learning.async_add_custom(sound, [sat.id for sat in satellites], figures)
    await data.learning.async_save()
    hass.config_entries.async_schedule_reload(_entry(hass).entry_id)  # new entities
    return {"key": key, "name": name, **figures}


def _background(satellites: list[Satellite]) -> Floats:
    parts = [
        bg
        for satellite in satellites
        if satellite.decision is not None and len(bg := satellite.decision.background_embeddings())
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 1024), np.float32)


async def _record_examples(satellite: Satellite, seconds: float) -> tuple[list[Floats], Floats]:
    """Listen for seconds; each burst of loud windows is one example, the rest background."""
    recorded: list[WindowEvidence] = []
    try:
        unsubscribe = satellite.async_record(recorded.append)
    except RuntimeError:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="satellite_not_listening",
            translation_placeholders={"name": satellite.name},
        ) from None
    try:
        await asyncio.sleep(seconds)
    finally:
        unsubscribe()
    return split_examples(recorded)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register Guard Mode's actions (those that change the guard: admins only)."""
    async_register_admin_service(hass, DOMAIN, SERVICE_SIMULATE, _simulate, schema=SIMULATE_SCHEMA)
    async_register_admin_service(
        hass,
        DOMAIN,
        SERVICE_ANALYZE_FILE,
        _analyze,
        schema=ANALYZE_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
    async_register_admin_service(
        hass,
        DOMAIN,
        SERVICE_MARK_FALSE_ALARM,
        _mark_false_alarm,
        schema=MARK_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    async_register_admin_service(
        hass,
        DOMAIN,
        SERVICE_FORGET_LEARNED,
        _forget,
        schema=FORGET_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_LIST_LEARNED, _list_learned, supports_response=SupportsResponse.ONLY
    )
    async_register_admin_service(
        hass,
        DOMAIN,
        SERVICE_TEACH,
        _teach,
        schema=TEACH_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
