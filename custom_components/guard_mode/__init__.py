"""Guard Mode: local sound detection while the home is armed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
import logging
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryNotReady,
    HomeAssistantError,
)
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    issue_registry as ir,
)
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.typing import ConfigType

from .alerts import AlertManager
from .clips import ClipJanitor
from .const import (
    CONF_CLIP_RETENTION_DAYS,
    CONF_ENGINE,
    CONF_ENGINE_FINGERPRINT,
    CONF_ENGINE_HOST,
    CONF_ENGINE_PORT,
    CONF_ENGINE_TOKEN,
    CONF_PUSH_KEY,
    CONF_SOURCE,
    DEFAULT_OPTIONS,
    DOMAIN,
    NAME,
    SIGNAL_NEW_SATELLITE,
    SUBENTRY_SATELLITE,
    SourceType,
)
from .engine_runtime import Engine, EngineAuthFailed, EngineNotReady, async_start_engine
from .hub import GuardHub, state_store
from .learned import Learning, learning_store
from .models import GuardModeConfigEntry, GuardModeData
from .notifications import NOT_A_THREAT, Notifier
from .push_view import async_register_push_view, async_unregister_push_view
from .satellite import Satellite, satellite_settings
from .services import async_setup_services, mark_false_alarm
from .sources import new_push_key
from .sources.push import PushSource, push_key_issue
from .voice_devices import async_voice_devices

_LOGGER = logging.getLogger(__name__)
# A satellite's device model: what its microphone is, in the words the "Add satellite" menu uses.
DEVICE_MODELS: dict[str, str] = {
    SourceType.WYOMING: "Wyoming microphone",
    SourceType.STREAM: "Camera or stream",
    SourceType.PUSH: "Guard Mode agent",
    SourceType.VOICE: "Voice satellite",
}
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
EVENT_NOTIFICATION_ACTION = "mobile_app_notification_action"
PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.EVENT,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
    Platform.WAKE_WORD,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register Guard Mode's actions (they work once the hub is set up)."""
    async_setup_services(hass)
    return True


async def async_migrate_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> bool:
    """Bring an older entry up to date (1.1 → 1.2: each push satellite gets its own key)."""
    if entry.version > 1:
        return False  # a newer Guard Mode's entry: don't guess
    if entry.minor_version < 2:
        for subentry in list(entry.subentries.values()):
            data = subentry.data
            if data.get(CONF_SOURCE) != SourceType.PUSH or data.get(CONF_PUSH_KEY):
                continue
            key = new_push_key()
            hass.config_entries.async_update_subentry(
                entry, subentry, data={**data, CONF_PUSH_KEY: key}
            )
            ir.async_create_issue(
                hass,
                DOMAIN,
                push_key_issue(subentry.subentry_id),
                is_fixable=False,
                is_persistent=True,  # shown until the agent has the key, across restarts
                severity=ir.IssueSeverity.WARNING,
                translation_key="push_key_created",
                translation_placeholders={"name": subentry.title, "key": key},
            )
        hass.config_entries.async_update_entry(entry, minor_version=2)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> bool:
    """Set up Guard Mode from a config entry.

    An engine that can't start yet (a damaged model file, an unreachable remote engine) raises
    ConfigEntryNotReady: Home Assistant retries by itself, and a repair issue says what to do.
    """
    try:
        engine = await async_start_engine(hass, {**DEFAULT_OPTIONS, **entry.options})
    except (EngineAuthFailed, EngineNotReady) as err:
        # Voice devices left pointed at Guard Mode (a restart while armed) would not work as
        # voice assistants while it can't listen: put back (taken up again once it starts).
        await _async_put_back_voice_devices(hass)
        if isinstance(err, EngineAuthFailed):
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="remote_engine_refused_token"
            ) from err
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key=err.issue,
            translation_placeholders=err.placeholders,
        ) from err
    try:
        entry.runtime_data = await _async_runtime_data(hass, entry, engine)
        await _async_start(hass, entry)
    except BaseException as err:  # a failed set-up leaves no microphone or worker thread behind
        if isinstance(data := getattr(entry, "runtime_data", None), GuardModeData):
            for satellite in data.satellites.values():
                await satellite.async_stop()
            data.satellites.clear()
        await engine.async_stop(hass)
        if isinstance(err, Exception):  # nor voice devices pointed at it (a restart while armed)
            await _async_put_back_voice_devices(hass)
        raise
    return True


async def _async_runtime_data(
    hass: HomeAssistant, entry: GuardModeConfigEntry, engine: Engine
) -> GuardModeData:
    """Load the hub's saved state and what was learned; return what the platforms share."""
    hub = GuardHub(hass, entry)
    await hub.async_load()
    learning = Learning(hass)
    await learning.async_load()
    learning.async_keep_only(entry.subentries)  # satellites removed while it was not loaded
    keys_shown = {push_key_issue(subentry_id) for subentry_id in entry.subentries}
    for domain, issue_id in list(ir.async_get(hass).issues):  # ... and their keys' repairs
        if (
            domain == DOMAIN
            and issue_id.startswith(push_key_issue(""))
            and issue_id not in keys_shown
        ):
            ir.async_delete_issue(hass, DOMAIN, issue_id)
    notifier = Notifier(hass, lambda: hub.options, lambda: hub.armed)
    return GuardModeData(
        hub=hub,
        engine=engine,
        engine_settings=_engine_settings(hub.options),
        alerts=AlertManager(hass, notifier.async_alert),
        notifier=notifier,
        janitor=ClipJanitor(hass, hub.options[CONF_CLIP_RETENTION_DAYS]),
        learning=learning,
    )


async def _async_start(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Start the satellites, the platforms and what follows the arming."""
    data = entry.runtime_data
    data.notifier.async_options_updated()
    entry.async_on_unload(data.notifier.async_stop)
    data.janitor.async_start()
    entry.async_on_unload(data.janitor.async_stop)
    async_register_push_view(hass, _push_resolver(hass))
    _sync_satellites(hass, entry)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    data.hub.async_start()
    entry.async_on_unload(data.hub.async_stop)
    await _async_restore_voice_devices(hass, entry)
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    entry.async_on_unload(
        hass.bus.async_listen(EVENT_NOTIFICATION_ACTION, partial(_notification_action, hass))
    )


async def _async_restore_voice_devices(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Put back the voice devices left pointed at Guard Mode that no satellite listens to now.

    After a restart or a crash while guard mode listened, a device is still pointed at Guard
    Mode; its satellite takes it up again if guard mode still listens, else it is put back.
    """
    data = entry.runtime_data
    listening = data.hub.listen_state.listening
    keep = [
        satellite.id
        for satellite in data.satellites.values()
        if listening and satellite.source_type == SourceType.VOICE
    ]
    await (await async_voice_devices(hass)).async_restore_others(keep)


@callback
def _notification_action(hass: HomeAssistant, event: Event[dict[str, Any]]) -> None:
    """Handle the companion app's "Not a threat" button: remember that detection."""
    action = str(event.data.get("action", ""))
    if not action.startswith(NOT_A_THREAT):
        return
    try:
        mark_false_alarm(hass, action.removeprefix(NOT_A_THREAT))
    except HomeAssistantError as err:
        _LOGGER.warning("Could not mark the detection as not a threat: %s", err)


async def async_unload_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> bool:
    """Unload a config entry: close every microphone, stop the engine."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    for satellite in entry.runtime_data.satellites.values():
        await satellite.async_stop()
    entry.runtime_data.satellites.clear()
    await entry.runtime_data.engine.async_stop(hass)
    entry.runtime_data.hub.async_stop()  # no change of the followed state may save after this
    await entry.runtime_data.hub.async_flush()
    await entry.runtime_data.learning.async_flush()
    async_unregister_push_view(hass)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Put back the voice devices still pointed at it; forget what it saved and its repairs."""
    await _async_put_back_voice_devices(hass)  # removed while not loaded
    await state_store(hass).async_remove()
    await learning_store(hass).async_remove()
    issues = ir.async_get(hass).issues
    for domain, issue_id in list(issues):
        if domain == DOMAIN:
            ir.async_delete_issue(hass, DOMAIN, issue_id)


async def _async_put_back_voice_devices(hass: HomeAssistant) -> None:
    """Put back every voice device still pointed at Guard Mode.

    A failure is logged only: it must not hide why the set-up failed.
    """
    try:
        await (await async_voice_devices(hass)).async_restore_others([])
    except Exception:
        _LOGGER.exception("Could not put the voice devices back")


async def _async_entry_updated(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Apply changed options and added or removed satellites without a reload.

    Switching between the in-process and the remote engine reloads the entry, and so does
    reconfiguring a satellite: its entities and device then come back on its new settings.
    """
    options = {**DEFAULT_OPTIONS, **entry.options}
    satellites = entry.runtime_data.satellites
    if _engine_settings(options) != entry.runtime_data.engine_settings or any(
        (current := entry.subentries.get(subentry_id)) is not None
        and satellite.configured != satellite_settings(current)
        for subentry_id, satellite in satellites.items()
    ):
        hass.config_entries.async_schedule_reload(entry.entry_id)
        return
    for subentry_id in list(satellites):
        if subentry_id not in entry.subentries:
            await satellites.pop(subentry_id).async_stop()
            ir.async_delete_issue(hass, DOMAIN, push_key_issue(subentry_id))  # its key is moot
    entry.runtime_data.learning.async_keep_only(entry.subentries)  # a removed one's marks go
    _sync_satellites(hass, entry)
    for satellite in satellites.values():
        satellite.async_media_players_changed()
    entry.runtime_data.janitor.days = entry.runtime_data.hub.options[CONF_CLIP_RETENTION_DAYS]
    entry.runtime_data.notifier.async_options_updated()
    entry.runtime_data.hub.async_options_updated()


def _engine_settings(options: dict[str, Any]) -> tuple[Any, ...]:
    """Return the options that choose the engine (a change needs a reload)."""
    keys = (
        CONF_ENGINE,
        CONF_ENGINE_HOST,
        CONF_ENGINE_PORT,
        CONF_ENGINE_TOKEN,
        CONF_ENGINE_FINGERPRINT,
    )
    return tuple(options.get(key) for key in keys)


@callback
def _sync_satellites(hass: HomeAssistant, entry: GuardModeConfigEntry) -> None:
    """Start a satellite for every satellite subentry that has none."""
    data = entry.runtime_data
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_SATELLITE or subentry.subentry_id in data.satellites:
            continue
        satellite = Satellite(
            hass,
            entry.entry_id,
            subentry,
            hub=data.hub,
            engine=data.engine,
            alerts=data.alerts,
            learning=data.learning,
        )
        data.satellites[subentry.subentry_id] = satellite
        _update_device(hass, entry, satellite)
        satellite.async_start()
        async_dispatcher_send(hass, SIGNAL_NEW_SATELLITE, satellite)
    data.engine.check_load(hass, len(data.satellites))


@callback
def _update_device(hass: HomeAssistant, entry: GuardModeConfigEntry, satellite: Satellite) -> None:
    """Create or update the satellite's device; a new one goes in the area chosen for it.

    Only a new one: where the user moved it since stays (the reconfigure flow moves it when
    its area is changed there).
    """
    registry = dr.async_get(hass)
    known = registry.async_get_device_by_identifier((DOMAIN, satellite.id), entry.entry_id)
    hub = registry.async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, entry.entry_id)},
        name=NAME,
        manufacturer=NAME,
        model="Sound guard",
        entry_type=dr.DeviceEntryType.SERVICE,
    )
    device = registry.async_get_or_create(
        config_entry_id=entry.entry_id,
        config_subentry_id=satellite.id,
        identifiers={(DOMAIN, satellite.id)},
        name=satellite.name,
        manufacturer=NAME,
        model=DEVICE_MODELS[satellite.source_type],
        via_device_id=hub.id,
    )
    if known is None and (area := satellite.area_id) is not None:
        registry.async_update_device(device.id, area_id=area)


def _push_resolver(hass: HomeAssistant) -> Callable[[str], PushSource | None]:
    def resolve(push_id: str) -> PushSource | None:
        for entry in hass.config_entries.async_loaded_entries(DOMAIN):
            for satellite in entry.runtime_data.satellites.values():
                source = satellite.source
                if isinstance(source, PushSource) and source.push_id == push_id:
                    return source
        return None

    return resolve
