"""Notifications and spoken alerts: a persistent notification, notify targets and speakers.

One sound heard by several satellites within a moment gives one notification naming the area
where it was loudest; each sound is notified at most once per rate-limit period. Smoke, CO,
glass and gunshot alerts are marked critical for the Home Assistant companion apps. A simulated
alert is notified apart from real ones: it never replaces a real alert's notification.

A target is a notify entity (sent with ``notify.send_message``) or a legacy notify action such
as ``notify.mobile_app_…``. Spoken alerts ("Smoke alarm heard in Kitchen", off by default) go to
voice satellites with ``assist_satellite.announce`` and to media players with ``tts.speak``; never
while guard mode is disarmed, except for smoke and CO alarms. A target that fails is logged once
and raises a repair issue named after it, which goes away when it works again or is no longer
chosen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial
import logging
import time
from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.selector import SelectOptionDict
from homeassistant.util import dt as dt_util
import probatio as vol

from .alerts import CRITICAL_SOUNDS, Alert, confidence_text, sound_phrase
from .const import CONF_ANNOUNCE_TARGETS, CONF_NOTIFY_TARGETS, CONF_TTS_ENGINE, DOMAIN
from .engine import ALARM_SOUNDS, Sound
from .timeouts import timeouts

_LOGGER = logging.getLogger(__name__)

GATHER_S = 2.0  # alerts of one sound this close together are one notification
RATE_LIMIT_S = 120.0  # per sound; alarms: ALARM_RATE_LIMIT_S
ALARM_RATE_LIMIT_S = 60.0
NOTIFY = "notify"
# notify actions that are no target: send_message needs an entity, and the persistent
# notification is always created anyway.
NOT_TARGETS = frozenset({"send_message", "persistent_notification"})
ISSUE_NOTIFY_FAILED = "notify_failed"
ASSIST_SATELLITE = "assist_satellite"
MEDIA_PLAYER = "media_player"
ANNOUNCE_FEATURE = 1  # AssistSatelliteEntityFeature.ANNOUNCE
# How a sound is named when spoken ("Smoke alarm heard in Kitchen").
SPOKEN_NAMES: dict[str, str] = {
    Sound.GLASS_BREAK: "Glass breaking",
    Sound.SMOKE_ALARM: "Smoke alarm",
    Sound.CO_ALARM: "Carbon monoxide alarm",
    Sound.DOG_BARK: "A dog barking",
    Sound.BABY_CRY: "A baby crying",
    Sound.GUNSHOT: "A gunshot",
}

type Key = tuple[str, bool]  # (sound, simulated): real and simulated alerts never mix
type Call = tuple[str, str, dict[str, Any]]  # (domain, service, data)


def notification_text(alerts: list[Alert]) -> tuple[str, str]:
    """Return (title, message) for the alerts of one sound, naming the loudest place first."""
    loudest = max(alerts, key=lambda alert: alert.peak_db)
    where = f" in {loudest.area}" if loudest.area else ""
    phrase = sound_phrase(loudest)
    test = "Test: " if loudest.simulated else ""
    title = f"{test}Guard Mode heard {phrase}"
    message = (
        f"{test}{loudest.satellite} heard {phrase}{where} at "
        f"{dt_util.as_local(loudest.started):%H:%M:%S} "
        f"({confidence_text(loudest.confidence)})."
    )
    others = sorted({a.satellite for a in alerts} - {loudest.satellite})
    if others:
        message += f" Also heard by {', '.join(others)}."
    if loudest.clip:
        message += " An evidence clip is in the media browser (Guard Mode)."
    return title, message


def spoken_text(alerts: list[Alert]) -> str:
    """Return what a speaker says: "Smoke alarm heard in Kitchen" (the loudest place)."""
    loudest = max(alerts, key=lambda alert: alert.peak_db)
    name = SPOKEN_NAMES.get(loudest.sound) or loudest.label
    test = "Test. " if loudest.simulated else ""
    where = f"in {loudest.area}" if loudest.area else f"by {loudest.satellite}"
    return f"{test}{name} heard {where}"


NOT_A_THREAT = "GUARD_MODE_NOT_A_THREAT::"  # + detection id: the companion-app action


def notification_id(alert: Alert) -> str:
    """Return the id (and companion-app tag) of an alert's notification; tests have their own."""
    return f"{DOMAIN}_{alert.sound}{'_test' if alert.simulated else ''}"


def push_data(alert: Alert) -> dict[str, Any]:
    """Return the companion-app data for an alert.

    Critical alerts for the dangerous sounds, and a "Not a threat" button for the sounds Guard
    Mode can learn to ignore (not the alarms).
    """
    data: dict[str, Any] = {"tag": notification_id(alert), "group": DOMAIN}
    if alert.sound not in ALARM_SOUNDS and not alert.simulated:
        data["actions"] = [
            {"action": f"{NOT_A_THREAT}{alert.detection_id}", "title": "Not a threat"}
        ]
    if alert.sound in CRITICAL_SOUNDS:
        data["push"] = {"sound": {"name": "default", "critical": 1, "volume": 1.0}}
        data["ttl"] = 0
        data["priority"] = "high"
        data["channel"] = "alarm_stream"
    return data


def notify_choices(hass: HomeAssistant) -> list[SelectOptionDict]:
    """Return the targets that can take an alert: notify entities, then legacy notify actions."""
    choices = [
        SelectOptionDict(value=state.entity_id, label=f"{state.name} ({state.entity_id})")
        for state in sorted(hass.states.async_all(NOTIFY), key=lambda state: state.name.lower())
    ]
    entities = {choice["value"] for choice in choices}
    choices += [
        SelectOptionDict(value=target, label=target)
        for name in sorted(hass.services.async_services_for_domain(NOTIFY))
        if name not in NOT_TARGETS and (target := f"{NOTIFY}.{name}") not in entities
    ]
    return choices


def issue_notify_failed(target: str) -> str:
    """Return the repair issue id for a notify target that fails."""
    return f"{ISSUE_NOTIFY_FAILED}_{target}"


class Notifier:
    """Gathers alerts per sound for a moment, then notifies once (rate-limited)."""

    def __init__(
        self,
        hass: HomeAssistant,
        options: Callable[[], dict[str, Any]],
        armed: Callable[[], bool],
    ) -> None:
        """Notify with the targets in the hub's current options; speak only while armed."""
        self._hass = hass
        self._options = options
        self._armed = armed
        self._pending: dict[Key, list[Alert]] = {}
        self._timers: dict[Key, CALLBACK_TYPE] = {}
        self._last_sent: dict[Key, float] = {}
        self._failing: set[str] = set()  # targets with a repair issue

    @property
    def targets(self) -> list[str]:
        """Return the notify targets chosen in the options."""
        return [str(target) for target in self._options().get(CONF_NOTIFY_TARGETS) or []]

    @property
    def speakers(self) -> list[str]:
        """Return the voice satellites and media players chosen for spoken alerts."""
        return [str(target) for target in self._options().get(CONF_ANNOUNCE_TARGETS) or []]

    @callback
    def async_alert(self, alert: Alert) -> None:
        """Queue an alert; the first of a sound starts the gathering moment."""
        key = (alert.sound, alert.simulated)
        self._pending.setdefault(key, []).append(alert)
        if key not in self._timers:
            self._timers[key] = async_call_later(self._hass, GATHER_S, partial(self._flush, key))

    @callback
    def async_options_updated(self) -> None:
        """Forget the failures of targets that are no longer chosen (also from before a restart)."""
        chosen = {*self.targets, *self.speakers}
        prefix = f"{ISSUE_NOTIFY_FAILED}_"
        self._forget_failures(
            issue_id.removeprefix(prefix)
            for domain, issue_id in list(ir.async_get(self._hass).issues)
            if domain == DOMAIN
            and issue_id.startswith(prefix)
            and issue_id.removeprefix(prefix) not in chosen
        )

    @callback
    def async_stop(self) -> None:
        """Drop pending notifications (the hub is unloading)."""
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
        self._pending.clear()

    @callback
    def _flush(self, key: Key, _now: Any = None) -> None:
        self._timers.pop(key, None)
        alerts = self._pending.pop(key, [])
        if not alerts:
            return
        sound = key[0]
        now = time.monotonic()
        last = self._last_sent.get(key)
        limit = ALARM_RATE_LIMIT_S if sound in ALARM_SOUNDS else RATE_LIMIT_S
        if last is not None and now - last < limit:
            _LOGGER.debug("Not notifying %s again so soon", sound)
            return
        self._last_sent[key] = now
        title, message = notification_text(alerts)
        loudest = max(alerts, key=lambda alert: alert.peak_db)
        persistent_notification.async_create(
            self._hass, message, title, notification_id=notification_id(loudest)
        )
        calls = [
            (target, self._notify_call(target, title, message, loudest)) for target in self.targets
        ]
        if self._armed() or sound in ALARM_SOUNDS:  # disarmed: only alarms are spoken
            text = spoken_text(alerts)
            calls += [(target, self._speak_call(target, text)) for target in self.speakers]
        for target, call in calls:
            self._hass.async_create_task(
                self._async_call(target, call), f"{DOMAIN} alert to {target}", eager_start=True
            )

    def _notify_call(self, target: str, title: str, message: str, alert: Alert) -> Call | str:
        """Return the action that notifies target, or why there is none."""
        domain, _, name = target.partition(".")
        if domain == NOTIFY and self._hass.states.get(target) is not None:  # a notify entity
            return NOTIFY, "send_message", {"entity_id": target, "title": title, "message": message}
        if domain == NOTIFY and name not in NOT_TARGETS:
            data = {"title": title, "message": message, "data": push_data(alert)}
            return NOTIFY, name, data
        return "it is not a notify entity or notify action"

    def _speak_call(self, target: str, text: str) -> Call | str:
        """Return the action that says text on target, or why there is none."""
        domain = target.partition(".")[0]
        if (state := self._hass.states.get(target)) is None:
            return "it does not exist (any more)"
        if domain == ASSIST_SATELLITE:
            if not int(state.attributes.get("supported_features", 0)) & ANNOUNCE_FEATURE:
                return "this voice satellite can't make announcements"
            return ASSIST_SATELLITE, "announce", {"entity_id": target, "message": text}
        if domain == MEDIA_PLAYER:
            engines = sorted(self._hass.states.async_entity_ids("tts"))
            engine = self._options().get(CONF_TTS_ENGINE) or next(iter(engines), None)
            if engine is None:
                return "no text-to-speech engine is set up in Home Assistant"
            data = {"entity_id": engine, "media_player_entity_id": target, "message": text}
            return "tts", "speak", data
        return "it is not a voice satellite or media player"

    async def _async_call(self, target: str, call: Call | str) -> None:
        """Make one target's call; a failure is surfaced, never lost in a background task."""
        if isinstance(call, str):
            self._failed(target, call)
            return
        domain, service, data = call
        state = self._hass.states.get(target)
        if state is not None and state.state == STATE_UNAVAILABLE:
            self._failed(target, "it is unavailable")  # an entity action would skip it silently
            return
        if not self._hass.services.has_service(domain, service):
            self._failed(target, "it does not exist (any more)")
            return
        limit = timeouts(self._hass).notify_s
        try:
            async with asyncio.timeout(limit) as deadline:  # a hung target: no task per alert
                try:
                    await self._hass.services.async_call(domain, service, data, blocking=True)
                except vol.Invalid:
                    if "data" not in data:
                        raise
                    # Not a companion app: Signal, Slack, Matrix … refuse its extras: text alone
                    _LOGGER.debug(
                        "%s takes no companion-app extras: sending the text alone", target
                    )
                    data = {key: value for key, value in data.items() if key != "data"}
                    await self._hass.services.async_call(domain, service, data, blocking=True)
        except TimeoutError as err:
            late = deadline.expired()  # else: the target's own time-out (an HTTP call, say)
            own = str(err) or type(err).__name__
            self._failed(target, f"it did not answer within {limit:g} s" if late else own)
        except Exception as err:  # whatever another integration raises, it must be seen
            self._failed(target, str(err) or type(err).__name__)
        else:
            self._forget_failures([target])

    @callback
    def _failed(self, target: str, error: str) -> None:
        if target not in self._failing:
            self._failing.add(target)
            _LOGGER.warning("Guard Mode could not send its alert to %s: %s", target, error)
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            issue_notify_failed(target),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_NOTIFY_FAILED,
            translation_placeholders={"target": target, "error": error},
        )

    @callback
    def _forget_failures(self, targets: Iterable[str]) -> None:
        for target in list(targets):
            if target in self._failing:
                self._failing.discard(target)
                _LOGGER.info("Guard Mode's alerts reach %s again", target)
            ir.async_delete_issue(self._hass, DOMAIN, issue_notify_failed(target))
