"""Config flow for Guard Mode: one hub, options for arming and notifications."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
import probatio as vol

from .const import (
    ALARM_STATES_OPTIONAL,
    CONF_ALARM_PANEL,
    CONF_ALARM_STATES,
    CONF_ALWAYS_LISTEN_ALARMS,
    CONF_ARMING_MODE,
    CONF_NOTIFY_TARGETS,
    CONF_PRESENCE_ENTITIES,
    DEFAULT_OPTIONS,
    DOMAIN,
    NAME,
    ArmingMode,
)


class GuardModeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Create the single Guard Mode hub."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Confirm adding Guard Mode."""
        await self.async_set_unique_id(DOMAIN)
        self._abort_if_unique_id_configured()
        if user_input is not None:
            return self.async_create_entry(title=NAME, data={}, options=dict(DEFAULT_OPTIONS))
        return self.async_show_form(step_id="user")

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> GuardModeOptionsFlow:
        """Return the options flow."""
        return GuardModeOptionsFlow()


class GuardModeOptionsFlow(OptionsFlow):
    """Arming mode, always-on alarm listening and notification targets."""

    def __init__(self) -> None:
        """Start with no answers."""
        self._options: dict[str, Any] = {}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose how guard mode is armed and who is notified."""
        current = {**DEFAULT_OPTIONS, **self.config_entry.options}
        if user_input is not None:
            self._options = {**current, **user_input}
            mode = user_input[CONF_ARMING_MODE]
            if mode == ArmingMode.ALARM_PANEL:
                return await self.async_step_alarm_panel()
            if mode == ArmingMode.PRESENCE:
                return await self.async_step_presence()
            return self.async_create_entry(data=self._options)

        notify_services = sorted(self.hass.services.async_services_for_domain("notify"))
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
                vol.Optional(CONF_NOTIFY_TARGETS): SelectSelector(
                    SelectSelectorConfig(
                        options=[f"notify.{name}" for name in notify_services],
                        multiple=True,
                        custom_value=True,
                        mode=SelectSelectorMode.DROPDOWN,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="init", data_schema=self.add_suggested_values_to_schema(schema, current)
        )

    async def async_step_alarm_panel(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose the alarm panel to follow and which armed states arm guard mode."""
        if user_input is not None:
            states = [s for s in user_input.get(CONF_ALARM_STATES, []) if s]
            return self.async_create_entry(
                data={
                    **self._options,
                    CONF_ALARM_PANEL: user_input[CONF_ALARM_PANEL],
                    CONF_ALARM_STATES: states,
                }
            )
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
            return self.async_create_entry(
                data={**self._options, CONF_PRESENCE_ENTITIES: user_input[CONF_PRESENCE_ENTITIES]}
            )
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
