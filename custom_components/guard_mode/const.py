"""Constants for Guard Mode."""

from enum import StrEnum
from typing import Final

DOMAIN: Final = "guard_mode"
NAME: Final = "Guard Mode"


class ArmingMode(StrEnum):
    """How the guard mode switch is driven."""

    MANUAL = "manual"
    ALARM_PANEL = "alarm_panel"
    PRESENCE = "presence"


CONF_ARMING_MODE: Final = "arming_mode"
CONF_ALARM_PANEL: Final = "alarm_panel"
CONF_ALARM_STATES: Final = "alarm_states"
CONF_PRESENCE_ENTITIES: Final = "presence_entities"
CONF_ALWAYS_LISTEN_ALARMS: Final = "always_listen_alarms"
CONF_NOTIFY_TARGETS: Final = "notify_targets"

# alarm_control_panel states that may arm guard mode; armed_away always does.
ALARM_STATE_AWAY: Final = "armed_away"
ALARM_STATES_OPTIONAL: Final = ("armed_vacation", "armed_night")

DEFAULT_OPTIONS: Final = {
    CONF_ARMING_MODE: ArmingMode.MANUAL.value,
    CONF_ALARM_STATES: [ALARM_STATE_AWAY],
    CONF_PRESENCE_ENTITIES: [],
    CONF_ALWAYS_LISTEN_ALARMS: False,
    CONF_NOTIFY_TARGETS: [],
}
