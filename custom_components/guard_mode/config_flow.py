"""Config flow for Guard Mode: one hub, options for arming and notifications."""

from __future__ import annotations

from collections.abc import Mapping
import secrets
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentry,
    ConfigSubentryData,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PORT, CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.selector import (
    AreaSelector,
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.util.hass_dict import HassKey
import probatio as vol

from .alerts import SOUND_PHRASES
from .const import (
    ALARM_STATES_OPTIONAL,
    CONF_ALARM_PANEL,
    CONF_ALARM_STATES,
    CONF_ALWAYS_LISTEN_ALARMS,
    CONF_ANNOUNCE_TARGETS,
    CONF_AREA,
    CONF_ARMING_MODE,
    CONF_CAMERA,
    CONF_CLIP_RETENTION_DAYS,
    CONF_ENGINE,
    CONF_ENGINE_FINGERPRINT,
    CONF_ENGINE_HOST,
    CONF_ENGINE_PORT,
    CONF_ENGINE_TOKEN,
    CONF_EVIDENCE_CLIPS,
    CONF_MEDIA_PLAYERS,
    CONF_NOTIFY_TARGETS,
    CONF_PRESENCE_ENTITIES,
    CONF_PUSH_ID,
    CONF_PUSH_KEY,
    CONF_SOURCE,
    CONF_TTS_ENGINE,
    CONF_UNREACHABLE_MINUTES,
    CONF_VOICE_SATELLITE,
    CONF_ZEROCONF_NAME,
    DEFAULT_ENGINE_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    ENGINE_LOCAL,
    ENGINE_REMOTE,
    LOGGER,
    NAME,
    SUBENTRY_SATELLITE,
    ArmingMode,
    SourceType,
)
from .discovery import async_identify, async_resolves_to
from .engine import RemoteEngineError, normalize_fingerprint
from .engine.protocol import token_ok
from .notifications import ASSIST_SATELLITE, MEDIA_PLAYER, notify_choices
from .remote import async_describe, settings_from_options
from .sources import create_source, new_push_key, source_unique_id
from .sources.base import SourceError

if TYPE_CHECKING:
    from .models import GuardModeConfigEntry

DEFAULT_WYOMING_PORT = 10600
SUGGESTED = (CONF_AREA, CONF_MEDIA_PLAYERS, CONF_CAMERA, CONF_URL)  # fields without a default
ENTITY_FIELDS = (CONF_CAMERA, CONF_VOICE_SATELLITE)  # a source picked as an entity
CONF_FORGET_LEARNED = "forget_learned"
SUGGESTED_TOKEN: HassKey[str] = HassKey(f"{DOMAIN}_suggested_token")


def _whole_number(low: int, high: int, unit: str | None = None) -> NumberSelector:
    """Return a box for a whole number from low to high."""
    config = NumberSelectorConfig(min=low, max=high, step=1, mode=NumberSelectorMode.BOX)
    if unit:
        config["unit_of_measurement"] = unit
    return NumberSelector(config)


class GuardModeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Create the single Guard Mode hub; offer discovered Wyoming microphones as satellites."""

    VERSION = 1
    MINOR_VERSION = 2  # 1.2: every push satellite has a key of its own

    def __init__(self) -> None:
        """Start with nothing discovered."""
        self._found: dict[str, Any] = {}  # the discovered microphone: its settings and name

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Confirm adding Guard Mode (one hub per Home Assistant)."""
        if self._hub() is not None:
            return self.async_abort(reason="single_instance_allowed")
        await self.async_set_unique_id(DOMAIN)
        self._abort_if_unique_id_configured()
        if user_input is not None:
            return self.async_create_entry(title=NAME, data={}, options=dict(DEFAULT_OPTIONS))
        return self.async_show_form(step_id="user")

    def _hub(self) -> ConfigEntry | None:
        """Return the Guard Mode hub, if it is set up (ignored discoveries are no hub)."""
        return next(iter(self._async_current_entries(include_ignore=False)), None)

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Ask for the remote engine's new token: it refused the one Guard Mode has."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Take the engine's new token, checked with the engine before it is saved."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        placeholders = {"detail": ""}
        if user_input is not None:
            token = user_input[CONF_ENGINE_TOKEN].strip()
            options = {**entry.options, CONF_ENGINE_TOKEN: token}
            if not token_ok(token):
                errors[CONF_ENGINE_TOKEN] = "bad_token"
            elif await _engine_accepts(options, errors, placeholders):
                return self.async_update_reload_and_abort(
                    entry, options=options, reason="reauth_successful"
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_ENGINE_TOKEN): TextSelector(
                        TextSelectorConfig(type=TextSelectorType.PASSWORD)
                    )
                }
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """Offer a Wyoming service that is a microphone as a new satellite (the user confirms).

        A microphone already added is followed to its new address (the satellite reloads).
        """
        service = discovery_info.name.removesuffix(f".{discovery_info.type}")
        if discovery_info.port is None:
            return self.async_abort(reason="not_a_microphone")
        host, port = discovery_info.host, discovery_info.port
        await self.async_set_unique_id(f"wyoming_mic:{service}")
        self._abort_if_unique_id_configured()  # the user ignored it
        if (hub := self._hub()) is not None:
            addresses = {str(address) for address in discovery_info.ip_addresses} | {host}
            occupant = None  # the satellite at this address, if one is
            for subentry in hub.subentries.values():
                if (
                    subentry.data[CONF_SOURCE] == SourceType.WYOMING
                    and subentry.data[CONF_PORT] == port
                    and await async_resolves_to(self.hass, subentry.data[CONF_HOST], addresses)
                ):
                    occupant = subentry
                    break
            own = next(
                (s for s in hub.subentries.values() if s.data.get(CONF_ZEROCONF_NAME) == service),
                occupant if occupant and CONF_ZEROCONF_NAME not in occupant.data else None,
            )  # its own satellite, else one added by hand at this address
            if own is not None and occupant in (None, own):
                data = {**own.data, CONF_ZEROCONF_NAME: service}
                if occupant is None:  # it moved: followed (the satellite reloads)
                    data.update({CONF_HOST: host, CONF_PORT: port})
                self.hass.config_entries.async_update_subentry(
                    hub, own, data=data, unique_id=source_unique_id(data)
                )
                return self.async_abort(reason="already_a_satellite")
            if occupant is not None:
                # Another service's satellite has this address: the service was renamed, or
                # that satellite is stale (its microphone moved): left alone, not offered.
                return self.async_abort(reason="already_a_satellite")
        try:
            mic = await async_identify(host, port)
        except SourceError as err:
            return self.async_abort(reason=err.reason)
        name = mic.name or service
        self._found = {
            CONF_NAME: name,
            CONF_SOURCE: SourceType.WYOMING.value,
            CONF_HOST: host,
            CONF_PORT: port,
            CONF_ZEROCONF_NAME: service,
        }
        self.context["title_placeholders"] = {"name": name}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Add the discovered microphone as a satellite, in the area chosen; tested first."""
        found = self._found
        errors: dict[str, str] = {}
        placeholders = {
            "name": found[CONF_NAME],
            "address": f"{found[CONF_HOST]}:{found[CONF_PORT]}",
            "detail": "",
        }
        if user_input is not None:
            data = {key: value for key, value in found.items() if key != CONF_NAME}
            data.update({key: user_input[key] for key in SUGGESTED if user_input.get(key)})
            if err := await _async_test_source(self.hass, data):
                errors["base"] = err.reason
                placeholders["detail"] = f"\n\n**{err}**"
            else:
                return await self._async_add_satellite(
                    user_input[CONF_NAME].strip() or found[CONF_NAME], data
                )
        return self.async_show_form(
            step_id="zeroconf_confirm",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema(_name_and_area(user_input or found)), user_input or {}
            ),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_add_satellite(self, title: str, data: dict[str, Any]) -> ConfigFlowResult:
        """Add a satellite to the hub, or set the hub up with it when there is none yet."""
        satellite = ConfigSubentryData(
            data=data,
            subentry_type=SUBENTRY_SATELLITE,
            title=title,
            unique_id=source_unique_id(data),
        )
        if (hub := self._hub()) is not None:
            self.hass.config_entries.async_add_subentry(
                hub,
                ConfigSubentry(
                    data=MappingProxyType(data),
                    subentry_type=SUBENTRY_SATELLITE,
                    title=title,
                    unique_id=source_unique_id(data),
                ),
            )
            return self.async_abort(
                reason="satellite_added", description_placeholders={"name": title}
            )
        await self.async_set_unique_id(DOMAIN, raise_on_progress=False)
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=NAME, data={}, options=dict(DEFAULT_OPTIONS), subentries=[satellite]
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: GuardModeConfigEntry) -> GuardModeOptionsFlow:
        """Return the options flow."""
        return GuardModeOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Satellites are subentries of the hub."""
        return {SUBENTRY_SATELLITE: SatelliteSubentryFlow}


class GuardModeOptionsFlow(OptionsFlow):
    """Arming, alarm listening, clips, notifications and the engine; then the details asked."""

    def __init__(self) -> None:
        """Start with no answers."""
        self._options: dict[str, Any] = {}
        self._next_steps: list[str] = []

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose how guard mode is armed and who is notified."""
        current = {**DEFAULT_OPTIONS, **self.config_entry.options}
        errors: dict[str, str] = {}
        if user_input is not None:
            speakers = user_input.get(CONF_ANNOUNCE_TARGETS, [])
            if (
                any(target.startswith("media_player.") for target in speakers)
                and not user_input.get(CONF_TTS_ENGINE)
                and not self.hass.states.async_entity_ids("tts")
            ):
                errors[CONF_ANNOUNCE_TARGETS] = "no_tts_engine"
            else:
                return await self._async_save_init(current, user_input)

        targets = notify_choices(self.hass)
        working = {choice["value"] for choice in targets}
        # Only targets that work are offered; one that no longer exists is left out.
        current[CONF_NOTIFY_TARGETS] = [t for t in current[CONF_NOTIFY_TARGETS] if t in working]
        schema = vol.Schema(
            {
                vol.Required(CONF_ARMING_MODE): SelectSelector(
                    SelectSelectorConfig(
                        options=[mode.value for mode in ArmingMode],
                        translation_key=CONF_ARMING_MODE,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
                vol.Required(CONF_ALWAYS_LISTEN_ALARMS): BooleanSelector(),
                vol.Optional(
                    CONF_UNREACHABLE_MINUTES, default=DEFAULT_OPTIONS[CONF_UNREACHABLE_MINUTES]
                ): _whole_number(1, 1440, "min"),
                vol.Required(CONF_EVIDENCE_CLIPS): BooleanSelector(),
                vol.Optional(
                    CONF_CLIP_RETENTION_DAYS, default=DEFAULT_OPTIONS[CONF_CLIP_RETENTION_DAYS]
                ): _whole_number(1, 365, "d"),
                vol.Optional(CONF_NOTIFY_TARGETS): SelectSelector(
                    SelectSelectorConfig(
                        options=targets, multiple=True, mode=SelectSelectorMode.DROPDOWN
                    )
                ),
                vol.Optional(CONF_ANNOUNCE_TARGETS): EntitySelector(
                    EntitySelectorConfig(domain=[ASSIST_SATELLITE, MEDIA_PLAYER], multiple=True)
                ),
                vol.Optional(CONF_TTS_ENGINE): EntitySelector(EntitySelectorConfig(domain="tts")),
                vol.Optional(CONF_ENGINE, default=ENGINE_LOCAL): SelectSelector(
                    SelectSelectorConfig(
                        options=[ENGINE_LOCAL, ENGINE_REMOTE],
                        translation_key=CONF_ENGINE,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
            }
        )
        if choices := self._learned_choices():
            schema = schema.extend(
                {
                    vol.Optional(CONF_FORGET_LEARNED): SelectSelector(
                        SelectSelectorConfig(
                            options=choices, multiple=True, mode=SelectSelectorMode.LIST
                        )
                    )
                }
            )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, user_input or current),
            errors=errors,
        )

    async def _async_save_init(
        self, current: dict[str, Any], user_input: dict[str, Any]
    ) -> ConfigFlowResult:
        """Keep the answers of init (forgetting what was ticked), then ask for the details."""
        await self._async_forget(user_input.pop(CONF_FORGET_LEARNED, []))
        self._options = {**current, **user_input}
        # The frontend leaves a cleared field out: then no target (no engine) is wanted.
        for key in (CONF_NOTIFY_TARGETS, CONF_ANNOUNCE_TARGETS):
            self._options[key] = user_input.get(key, [])
        if CONF_TTS_ENGINE not in user_input:
            self._options.pop(CONF_TTS_ENGINE, None)
        mode = user_input[CONF_ARMING_MODE]
        if mode in (ArmingMode.ALARM_PANEL, ArmingMode.PRESENCE):
            self._next_steps.append(str(mode))
        if user_input.get(CONF_ENGINE) == ENGINE_REMOTE:
            self._next_steps.append("remote_engine")
        return await self._async_next()

    def _learned_choices(self) -> list[SelectOptionDict]:
        """Return what was learned, as choices to forget (empty when not loaded)."""
        entry = self.config_entry
        if entry.state is not ConfigEntryState.LOADED:
            return []
        data = entry.runtime_data
        names = {sat.id: sat.name for sat in data.satellites.values()}
        summary = data.learning.summary()
        customs = summary["custom_sounds"]

        def named(sound: str) -> str:
            return SOUND_PHRASES.get(sound) or str(customs.get(sound, {}).get("name", sound))

        choices = [
            SelectOptionDict(
                value=f"mark|{satellite}|{sound}",
                label=f"{names.get(satellite, satellite)}: {named(sound)} ({count} not a threat)",
            )
            for satellite, sounds in summary["false_alarms"].items()
            for sound, count in sounds.items()
        ]
        choices += [
            SelectOptionDict(value=f"custom|{key}", label=f"Custom sound: {item['name']}")
            for key, item in customs.items()
        ]
        return choices

    async def _async_forget(self, choices: list[str]) -> None:
        """Forget the learned items chosen in the form (custom sounds: their entities go too)."""
        if not choices:
            return
        learning = self.config_entry.runtime_data.learning
        for choice in choices:
            kind, _, rest = choice.partition("|")
            if kind == "custom":
                learning.async_forget(custom=rest)
            else:
                satellite, _, sound = rest.partition("|")
                learning.async_forget(satellite_id=satellite, sound=sound)
        await learning.async_save()
        if any(choice.startswith("custom|") for choice in choices):
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)

    async def async_step_alarm_panel(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose the alarm panel to follow and which armed states arm guard mode."""
        if user_input is not None:
            self._options[CONF_ALARM_PANEL] = user_input[CONF_ALARM_PANEL]
            self._options[CONF_ALARM_STATES] = [
                s for s in user_input.get(CONF_ALARM_STATES, []) if s
            ]
            return await self._async_next()
        schema = vol.Schema(
            {
                vol.Required(CONF_ALARM_PANEL): EntitySelector(
                    EntitySelectorConfig(domain="alarm_control_panel")
                ),
                vol.Optional(CONF_ALARM_STATES): SelectSelector(
                    SelectSelectorConfig(
                        options=list(ALARM_STATES_OPTIONAL),
                        multiple=True,
                        translation_key=CONF_ALARM_STATES,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="alarm_panel",
            data_schema=self.add_suggested_values_to_schema(schema, self._options),
        )

    async def async_step_presence(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose whose presence is followed (none chosen: the home zone's count)."""
        if user_input is not None:
            self._options[CONF_PRESENCE_ENTITIES] = user_input[CONF_PRESENCE_ENTITIES]
            return await self._async_next()
        schema = vol.Schema(
            {
                vol.Optional(CONF_PRESENCE_ENTITIES, default=[]): EntitySelector(
                    EntitySelectorConfig(
                        domain=["person", "device_tracker", "group", "zone"], multiple=True
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="presence",
            data_schema=self.add_suggested_values_to_schema(schema, self._options),
        )

    async def async_step_remote_engine(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point Guard Mode at a remote engine (the add-on); tested before it is saved."""
        errors: dict[str, str] = {}
        placeholders = {"detail": ""}
        if user_input is not None:
            options = {
                CONF_ENGINE_HOST: user_input[CONF_ENGINE_HOST].strip(),
                CONF_ENGINE_PORT: int(user_input[CONF_ENGINE_PORT]),
                CONF_ENGINE_TOKEN: user_input[CONF_ENGINE_TOKEN].strip(),
                CONF_ENGINE_FINGERPRINT: user_input.get(CONF_ENGINE_FINGERPRINT, "").strip(),
            }
            token = options[CONF_ENGINE_TOKEN]
            pin = options[CONF_ENGINE_FINGERPRINT]
            if not token_ok(token):
                errors[CONF_ENGINE_TOKEN] = "bad_token"
            if pin and normalize_fingerprint(pin) is None:
                errors[CONF_ENGINE_FINGERPRINT] = "bad_fingerprint"
            saved = self.config_entry.options
            in_use = {key: saved.get(key) for key in options}
            in_use[CONF_ENGINE_FINGERPRINT] = saved.get(CONF_ENGINE_FINGERPRINT) or ""
            if not errors and saved.get(CONF_ENGINE) == ENGINE_REMOTE and options == in_use:
                return await self._async_next()  # nothing new to test: saved while it is away
            if not errors and await _engine_accepts(options, errors, placeholders):
                self._options.update(options)
                return await self._async_next()
        schema = vol.Schema(
            {
                vol.Required(CONF_ENGINE_HOST): TextSelector(),
                vol.Required(CONF_ENGINE_PORT, default=DEFAULT_ENGINE_PORT): _whole_number(
                    1, 65535
                ),
                vol.Required(CONF_ENGINE_TOKEN): TextSelector(
                    TextSelectorConfig(type=TextSelectorType.PASSWORD)
                ),
                vol.Optional(CONF_ENGINE_FINGERPRINT): TextSelector(),
            }
        )
        suggested = user_input or {
            # The same one until a restart: the user leaves the form to paste it in the add-on.
            CONF_ENGINE_TOKEN: self.hass.data.setdefault(
                SUGGESTED_TOKEN, secrets.token_urlsafe(24)
            ),
            **{k: v for k, v in self._options.items() if v},
        }
        return self.async_show_form(
            step_id="remote_engine",
            data_schema=self.add_suggested_values_to_schema(schema, suggested),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_next(self) -> ConfigFlowResult:
        """Go to the next detail step the choices in init asked for, or save."""
        if self._next_steps:
            step = self._next_steps.pop(0)
            result: ConfigFlowResult = await getattr(self, f"async_step_{step}")()
            return result
        return self.async_create_entry(data=self._options)


async def _engine_accepts(
    options: dict[str, Any], errors: dict[str, str], placeholders: dict[str, str]
) -> bool:
    """Return whether the remote engine the options point at answers and takes the token.

    If not, errors and placeholders (``detail``) say why, for the form.
    """
    try:
        info = await async_describe(settings_from_options(options))
    except RemoteEngineError as err:
        errors["base"] = err.reason
        placeholders["detail"] = f"\n\n**{err}**"
        return False
    except Exception:  # a form says "unknown"; the log has the traceback
        LOGGER.exception("Unexpected error while testing the remote engine")
        errors["base"] = "unknown"
        return False
    LOGGER.debug("The remote engine runs %s", info.backend)
    return True


async def _async_test_source(hass: HomeAssistant, data: dict[str, Any]) -> SourceError | None:
    """Test the microphone the form describes; return why it can't be used, or None."""
    try:
        await create_source(data, hass).probe()
    except SourceError as err:
        return err
    except Exception:  # a form says "unknown"; the log has the traceback
        LOGGER.exception("Unexpected error while testing the microphone")
        return SourceError("Unexpected error (see the log)")
    return None


def _name_and_area(defaults: dict[str, Any]) -> dict[Any, Any]:
    return {
        vol.Required(CONF_NAME, default=defaults.get(CONF_NAME, "")): TextSelector(),
        vol.Optional(CONF_AREA): AreaSelector(),
        vol.Optional(CONF_MEDIA_PLAYERS): EntitySelector(
            EntitySelectorConfig(domain="media_player", multiple=True)
        ),
    }


def _schema(kind: SourceType, defaults: dict[str, Any]) -> vol.Schema:
    fields = _name_and_area(defaults)
    if kind is SourceType.WYOMING:
        fields[vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, ""))] = TextSelector()
        fields[vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_WYOMING_PORT))] = (
            _whole_number(1, 65535)
        )
    elif kind is SourceType.STREAM:
        fields[vol.Optional(CONF_CAMERA)] = EntitySelector(EntitySelectorConfig(domain="camera"))
        # No default: the frontend leaves a cleared field out, and a default would refill it
        fields[vol.Optional(CONF_URL)] = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
    elif kind is SourceType.VOICE:
        fields[
            vol.Required(CONF_VOICE_SATELLITE, default=defaults.get(CONF_VOICE_SATELLITE, ""))
        ] = EntitySelector(EntitySelectorConfig(domain=ASSIST_SATELLITE))
    return vol.Schema(fields)


def _source_data(
    kind: SourceType, user_input: dict[str, Any], push_id: str, push_key: str
) -> dict[str, Any]:
    data: dict[str, Any] = {CONF_SOURCE: kind.value}
    for key in (CONF_AREA, CONF_MEDIA_PLAYERS):
        if user_input.get(key):
            data[key] = user_input[key]
    if kind is SourceType.WYOMING:
        data[CONF_HOST] = user_input[CONF_HOST].strip()
        data[CONF_PORT] = int(user_input[CONF_PORT])
    elif kind is SourceType.STREAM and user_input.get(CONF_CAMERA):
        data[CONF_CAMERA] = user_input[CONF_CAMERA]
    elif kind is SourceType.STREAM:
        data[CONF_URL] = str(user_input.get(CONF_URL, "")).strip()
    elif kind is SourceType.VOICE:
        data[CONF_VOICE_SATELLITE] = user_input[CONF_VOICE_SATELLITE]
    else:
        data[CONF_PUSH_ID] = push_id
        data[CONF_PUSH_KEY] = push_key
    return data


def _camera_and_url(kind: SourceType, user_input: dict[str, Any]) -> int:
    """Return how many of camera and URL a stream satellite's form has (1 is right)."""
    if kind is not SourceType.STREAM:
        return 1
    return bool(user_input.get(CONF_CAMERA)) + bool(str(user_input.get(CONF_URL, "")).strip())


class SatelliteSubentryFlow(ConfigSubentryFlow):
    """Add or reconfigure a satellite: a microphone in an area, tested before it is saved."""

    def __init__(self) -> None:
        """Start with a fresh push id and key (used only by push satellites)."""
        self._push_id = secrets.token_hex(8)
        self._push_key = new_push_key()

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Choose where the satellite's audio comes from."""
        return self.async_show_menu(step_id="user", menu_options=[k.value for k in SourceType])

    async def async_step_wyoming(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add a Wyoming microphone service."""
        return await self._async_source_step(SourceType.WYOMING, user_input)

    async def async_step_stream(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add a camera or other stream with audio."""
        return await self._async_source_step(SourceType.STREAM, user_input)

    async def async_step_push(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Add a device running the Guard Mode agent, which pushes audio to Home Assistant."""
        return await self._async_source_step(SourceType.PUSH, user_input)

    async def async_step_voice(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add a voice satellite (ESPHome voice device, Wyoming satellite) as a microphone."""
        return await self._async_source_step(SourceType.VOICE, user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change a satellite's settings; its device and entities stay."""
        subentry = self._get_reconfigure_subentry()
        self._push_id = subentry.data.get(CONF_PUSH_ID, self._push_id)
        self._push_key = subentry.data.get(CONF_PUSH_KEY, self._push_key)
        return await self._async_source_step(SourceType(subentry.data[CONF_SOURCE]), user_input)

    def _satellite_device(self) -> dr.DeviceEntry | None:
        """Return the device of the satellite being reconfigured."""
        return dr.async_get(self.hass).async_get_device_by_identifier(
            (DOMAIN, self._reconfigure_subentry_id), self._get_entry().entry_id
        )

    async def _async_source_step(
        self, kind: SourceType, user_input: dict[str, Any] | None
    ) -> SubentryFlowResult:
        reconfiguring = self.source == "reconfigure"
        step_id = "reconfigure" if reconfiguring else kind.value
        defaults: dict[str, Any] = {}
        suggested: dict[str, Any] = {}
        device = self._satellite_device() if reconfiguring else None
        if reconfiguring:
            subentry = self._get_reconfigure_subentry()
            defaults = {**subentry.data, CONF_NAME: subentry.title}
            suggested = {key: subentry.data.get(key) for key in SUGGESTED}
            if device is not None:  # where it is now (the user may have moved it since)
                suggested[CONF_AREA] = device.area_id
        errors: dict[str, str] = {}
        placeholders = {
            "push_id": self._push_id,
            "push_key": self._push_key,
            "detail": "",
            "push_note": f"\n\nSatellite id for the agent: `{self._push_id}`; its key: "
            f"`{self._push_key}`"
            if kind is SourceType.PUSH
            else "",
        }
        if user_input is not None and _camera_and_url(kind, user_input) in (0, 2):
            errors["base"] = "camera_or_url"  # one of the two, please
        elif user_input is not None:
            data = _source_data(kind, user_input, self._push_id, self._push_key)
            if reconfiguring and kind is SourceType.WYOMING:
                before = self._get_reconfigure_subentry().data
                place = (before.get(CONF_HOST), before.get(CONF_PORT))
                if (known := before.get(CONF_ZEROCONF_NAME)) and place == (
                    data[CONF_HOST],
                    data[CONF_PORT],
                ):
                    data[CONF_ZEROCONF_NAME] = known  # the same microphone: followed if it moves
            unique_id = source_unique_id(data)
            entry = self._get_entry()
            duplicate = any(
                other.unique_id == unique_id
                and not (reconfiguring and other.subentry_id == self._reconfigure_subentry_id)
                for other in entry.subentries.values()
            )
            if duplicate:
                return self.async_abort(reason="already_configured")
            # (a push agent can only connect once saved)
            if kind is not SourceType.PUSH and (err := await _async_test_source(self.hass, data)):
                errors["base"] = err.reason
                placeholders["detail"] = f"\n\n**{err}**"
            if not errors:
                picked = next((data[key] for key in ENTITY_FIELDS if key in data), None)
                entity = self.hass.states.get(picked) if picked else None
                title = user_input[CONF_NAME].strip() or (entity.name if entity else NAME)
                if reconfiguring:
                    if device is not None and device.area_id != data.get(CONF_AREA):
                        dr.async_get(self.hass).async_update_device(
                            device.id, area_id=data.get(CONF_AREA)
                        )
                    return self.async_update_and_abort(
                        entry,
                        self._get_reconfigure_subentry(),
                        title=title,
                        data=data,
                        unique_id=unique_id,
                    )
                return self.async_create_entry(title=title, data=data, unique_id=unique_id)
        if user_input is not None:
            defaults = {**defaults, **user_input}
            suggested = {key: user_input.get(key) for key in SUGGESTED}
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(_schema(kind, defaults), suggested),
            errors=errors,
            description_placeholders=placeholders,
        )
