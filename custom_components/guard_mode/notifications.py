"""Notifications while armed: a persistent notification and the notify targets chosen.

One sound heard by several satellites within a moment gives one notification naming the area
where it was loudest; each sound is notified at most once per rate-limit period. Smoke, CO,
glass and gunshot alerts are marked critical for the Home Assistant companion apps.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
import logging
import time
from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later

from .alerts import CRITICAL_SOUNDS, Alert, sound_phrase
from .const import CONF_NOTIFY_TARGETS, DOMAIN
from .engine.labels import ALARM_SOUNDS

_LOGGER = logging.getLogger(__name__)

GATHER_S = 2.0  # alerts of one sound this close together are one notification
RATE_LIMIT_S = 120.0  # per sound; alarms: ALARM_RATE_LIMIT_S
ALARM_RATE_LIMIT_S = 60.0


def notification_text(alerts: list[Alert]) -> tuple[str, str]:
    """Return (title, message) for the alerts of one sound, naming the loudest place first."""
    loudest = max(alerts, key=lambda alert: alert.peak_db)
    where = loudest.area or loudest.satellite
    phrase = sound_phrase(loudest)
    test = "Test: " if loudest.simulated else ""
    title = f"{test}Guard Mode heard {phrase}"
    message = (
        f"{test}{loudest.satellite} heard {phrase} in {where} at "
        f"{loudest.started.astimezone().strftime('%H:%M:%S')} "
        f"(confidence {round(100 * loudest.confidence)} %)."
    )
    others = sorted({a.satellite for a in alerts} - {loudest.satellite})
    if others:
        message += f" Also heard by {', '.join(others)}."
    if loudest.clip:
        message += " An evidence clip is in the media browser (Guard Mode)."
    return title, message


NOT_A_THREAT = "GUARD_MODE_NOT_A_THREAT::"  # + detection id: the companion-app action


def push_data(alert: Alert) -> dict[str, Any]:
    """Return the companion-app data for an alert.

    Critical alerts for the dangerous sounds, and a "Not a threat" button for the sounds Guard
    Mode can learn to ignore (not the alarms).
    """
    data: dict[str, Any] = {"tag": f"{DOMAIN}_{alert.sound}", "group": DOMAIN}
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


class Notifier:
    """Gathers alerts per sound for a moment, then notifies once (rate-limited)."""

    def __init__(self, hass: HomeAssistant, options: Callable[[], dict[str, Any]]) -> None:
        """Notify with the targets in the hub's current options."""
        self._hass = hass
        self._options = options
        self._pending: dict[str, list[Alert]] = {}  # by sound key
        self._timers: dict[str, CALLBACK_TYPE] = {}
        self._last_sent: dict[tuple[str, bool], float] = {}
        self.sent = 0

    @callback
    def async_alert(self, alert: Alert) -> None:
        """Queue an alert; the first of a sound starts the gathering moment."""
        pending = self._pending.setdefault(alert.sound, [])
        pending.append(alert)
        if alert.sound not in self._timers:
            self._timers[alert.sound] = async_call_later(
                self._hass, GATHER_S, partial(self._flush, alert.sound)
            )

    @callback
    def async_stop(self) -> None:
        """Drop pending notifications (the hub is unloading)."""
        for cancel in self._timers.values():
            cancel()
        self._timers.clear()
        self._pending.clear()

    @callback
    def _flush(self, sound: str, _now: Any = None) -> None:
        self._timers.pop(sound, None)
        alerts = self._pending.pop(sound, [])
        if not alerts:
            return
        simulated = alerts[0].simulated
        now = time.monotonic()
        last = self._last_sent.get((sound, simulated))
        limit = ALARM_RATE_LIMIT_S if sound in ALARM_SOUNDS else RATE_LIMIT_S
        if last is not None and now - last < limit:
            _LOGGER.debug("Not notifying %s again so soon", sound)
            return
        self._last_sent[(sound, simulated)] = now
        title, message = notification_text(alerts)
        persistent_notification.async_create(
            self._hass, message, title, notification_id=f"{DOMAIN}_{sound}"
        )
        loudest = max(alerts, key=lambda alert: alert.peak_db)
        for target in self._options().get(CONF_NOTIFY_TARGETS) or []:
            domain, _, service = str(target).partition(".")
            if domain != "notify" or not self._hass.services.has_service(domain, service):
                _LOGGER.warning("Notify target %s does not exist", target)
                continue
            self._hass.async_create_task(
                self._hass.services.async_call(
                    domain,
                    service,
                    {"title": title, "message": message, "data": push_data(loudest)},
                    blocking=False,
                ),
                eager_start=True,
            )
        self.sent += 1
