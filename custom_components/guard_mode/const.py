"""Constants for Guard Mode."""

from enum import StrEnum
import logging
from typing import Final

DOMAIN: Final = "guard_mode"
LOGGER = logging.getLogger(__package__)
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
CONF_ANNOUNCE_TARGETS: Final = "announce_targets"  # speakers and voice satellites
CONF_TTS_ENGINE: Final = "tts_engine"  # for the speakers (media players)
CONF_UNREACHABLE_MINUTES: Final = "unreachable_minutes"
DEFAULT_UNREACHABLE_MINUTES: Final = 10
CONF_ENGINE: Final = "engine"
ENGINE_LOCAL: Final = "local"
ENGINE_REMOTE: Final = "remote"
CONF_ENGINE_HOST: Final = "engine_host"
CONF_ENGINE_PORT: Final = "engine_port"
CONF_ENGINE_TOKEN: Final = "engine_token"  # the engine service's token (its add-on option too)
CONF_ENGINE_FINGERPRINT: Final = "engine_fingerprint"  # SHA-256 of its TLS certificate: TLS on
DEFAULT_ENGINE_PORT: Final = 10800
CONF_EVIDENCE_CLIPS: Final = "evidence_clips"
CONF_CLIP_RETENTION_DAYS: Final = "clip_retention_days"
DEFAULT_CLIP_RETENTION_DAYS: Final = 7

# alarm_control_panel states that may arm guard mode; armed_away always does.
ALARM_STATE_AWAY: Final = "armed_away"
ALARM_STATES_OPTIONAL: Final = ("armed_vacation", "armed_night")

DEFAULT_OPTIONS: Final = {
    CONF_ARMING_MODE: ArmingMode.MANUAL.value,
    CONF_ALARM_STATES: [ALARM_STATE_AWAY],
    CONF_PRESENCE_ENTITIES: [],
    CONF_ALWAYS_LISTEN_ALARMS: False,
    CONF_NOTIFY_TARGETS: [],
    CONF_ANNOUNCE_TARGETS: [],
    CONF_UNREACHABLE_MINUTES: DEFAULT_UNREACHABLE_MINUTES,
    CONF_ENGINE: ENGINE_LOCAL,
    CONF_EVIDENCE_CLIPS: False,
    CONF_CLIP_RETENTION_DAYS: DEFAULT_CLIP_RETENTION_DAYS,
}

SUBENTRY_SATELLITE: Final = "satellite"


class SourceType(StrEnum):
    """Where a satellite's audio comes from."""

    WYOMING = "wyoming"
    STREAM = "stream"
    PUSH = "push"
    VOICE = "voice"


CONF_SOURCE: Final = "source"
CONF_AREA: Final = "area"
CONF_PUSH_ID: Final = "push_id"
CONF_CAMERA: Final = "camera"  # a stream satellite's camera entity (else: its URL)
CONF_ZEROCONF_NAME: Final = "zeroconf_name"  # a discovered Wyoming mic's service name
CONF_PUSH_KEY: Final = "push_key"  # the push satellite's own secret, created with it
CONF_VOICE_SATELLITE: Final = "voice_satellite"  # a voice satellite's assist_satellite entity
CONF_MEDIA_PLAYERS: Final = "media_players"

SIGNAL_NEW_SATELLITE: Final = f"{DOMAIN}_new_satellite"
