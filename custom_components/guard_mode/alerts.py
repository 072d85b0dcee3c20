"""From the engine's detections to what Home Assistant users see and automate on.

Every alert-worthy detection fires ``guard_mode_detection`` on the bus (and the satellite's event
entity), turns on the satellite's binary sensor for that sound, updates the hub's last-detection
sensor and is notified; a media-suppressed one fires ``guard_mode_suppressed`` with the reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
import logging
from typing import TYPE_CHECKING, Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.util import dt as dt_util

from .const import DOMAIN
from .engine import MAX_REMEMBERED, DeciderEvent, Detection, EventKind, Reason, Sound

if TYPE_CHECKING:
    from .satellite import Satellite

_LOGGER = logging.getLogger(__name__)

EVENT_DETECTION = f"{DOMAIN}_detection"
EVENT_SUPPRESSED = f"{DOMAIN}_suppressed"
SIGNAL_ALERT = f"{DOMAIN}_alert_{{}}"  # per satellite id: for its event entity

# How a sound reads in a sentence ("Kitchen mic heard glass breaking").
SOUND_PHRASES: dict[str, str] = {
    Sound.GLASS_BREAK: "glass breaking",
    Sound.SMOKE_ALARM: "a smoke alarm",
    Sound.CO_ALARM: "a carbon monoxide alarm",
    Sound.DOG_BARK: "a dog barking",
    Sound.BABY_CRY: "a baby crying",
    Sound.GUNSHOT: "a gunshot",
}


def sound_phrase(alert: Alert) -> str:
    """Return how the alert's sound reads in a sentence (a custom sound: its name)."""
    return SOUND_PHRASES.get(alert.sound) or alert.label


def confidence_text(confidence: float) -> str:
    """Return how a confidence reads: "confidence 87 %" (alerts carry it rounded to 0.01)."""
    return f"confidence {round(100 * confidence)} %"


CRITICAL_SOUNDS = frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM, Sound.GLASS_BREAK, Sound.GUNSHOT})


@dataclass(frozen=True, slots=True)
class Alert:
    """A detection as Home Assistant reports it."""

    detection_id: str
    satellite_id: str
    satellite: str
    device_id: str | None
    entity_id: str | None  # the satellite's Sound event entity (logbook cards filter on it)
    area_id: str | None
    area: str | None
    sound: str  # a Sound, or a custom sound's key
    confidence: float  # rounded once, to 0.01: every place that shows it shows the same
    label: str
    started: datetime
    peak_db: float
    clip: str | None = None
    simulated: bool = False
    reason: str | None = None  # set when suppressed

    def event_data(self) -> dict[str, Any]:
        """Return the bus event payload (documented in the README)."""
        data = asdict(self)
        data["sound"] = str(self.sound)
        data["started"] = self.started.isoformat()
        data["peak_db"] = round(self.peak_db, 1)
        if self.reason is None:
            del data["reason"]
        return data


@dataclass
class SatelliteDetections:
    """A satellite's detections: open ones (binary sensors on) and the last of each sound."""

    active: dict[str, Alert] = field(default_factory=dict)  # by sound key
    last: dict[str, Alert] = field(default_factory=dict)
    alerted: Alert | None = None  # the last alert (what the satellite's event entity shows)
    # The sound of each recent alert (and re-detection in its cooldown) by detection id: a
    # notification's "Not a threat" still finds its alert after the sound was heard again.
    recent: OrderedDict[str, str] = field(default_factory=OrderedDict)

    def add(self, alert: Alert) -> None:
        """Record an alert (or a re-detection in its cooldown) as the last of its sound."""
        self.active[alert.sound] = alert
        self.last[alert.sound] = alert
        self.recent[alert.detection_id] = alert.sound
        while len(self.recent) > MAX_REMEMBERED:  # as many as the decider keeps embeddings of
            self.recent.popitem(last=False)


class AlertManager:
    """Turns detections of every satellite into entities, events and notifications."""

    def __init__(self, hass: HomeAssistant, notify: Callable[[Alert], None]) -> None:
        """Create the hub's alert manager; notify is called for every alert."""
        self._hass = hass
        self._notify = notify
        self.last: Alert | None = None
        self._listeners: list[Callable[[], None]] = []

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener when the last alert changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def async_handle(
        self,
        satellite: Satellite,
        event: DeciderEvent,
        *,
        seconds_ago: float = 0.0,
        simulated: bool = False,
    ) -> Alert | None:
        """Act on one decider event of a satellite; return the alert it raised, if any."""
        detection = event.detection
        detections = satellite.detections
        if event.kind is EventKind.OFFSET:
            open_alert = detections.active.get(detection.sound)
            if open_alert is not None and open_alert.detection_id == detection.id:
                del detections.active[detection.sound]
                satellite.async_notify()
            return None
        alert = self._alert(satellite, detection, seconds_ago, simulated)
        if detection.suppressed and detection.reason is not Reason.COOLDOWN:
            _LOGGER.debug("%s: %s suppressed (%s)", satellite.name, detection.sound, alert.reason)
            self._hass.bus.async_fire(EVENT_SUPPRESSED, alert.event_data())
            return None
        detections.add(alert)
        satellite.async_notify()
        if detection.reason is Reason.COOLDOWN:
            return None  # heard again moments after an alert: the sensor is on, no new alert
        detections.alerted = alert
        self._hass.bus.async_fire(EVENT_DETECTION, alert.event_data())
        async_dispatcher_send(self._hass, SIGNAL_ALERT.format(satellite.id), alert)
        self.last = alert
        for listener in list(self._listeners):
            listener()
        self._notify(alert)
        return alert

    def _alert(
        self, satellite: Satellite, detection: Detection, seconds_ago: float, simulated: bool
    ) -> Alert:
        device = satellite.device()
        area_id = satellite.current_area_id()
        area = ar.async_get(self._hass).async_get_area(area_id) if area_id else None
        started = dt_util.utcnow() - timedelta(seconds=max(seconds_ago, 0.0))
        entity_id = er.async_get(self._hass).async_get_entity_id(
            "event", DOMAIN, f"{satellite.id}-detection"
        )
        return Alert(
            detection_id=detection.id,
            satellite_id=satellite.id,
            satellite=satellite.name,
            device_id=device.id if device else None,
            entity_id=entity_id,
            area_id=area_id,
            area=area.name if area else None,
            sound=detection.sound,
            confidence=round(detection.confidence, 2),
            label=detection.label,
            started=started,
            peak_db=detection.peak_db,
            # A clip for an alert only: none for what was muted (the TV, "not a threat") or
            # heard again in its cooldown, which nothing the user sees would link to.
            clip=None
            if simulated or detection.suppressed
            else satellite.clip_for(detection, started),
            simulated=simulated,
            reason=None if detection.reason is None else str(detection.reason),
        )


def simulated_detection(sound: Sound, confidence: float) -> Detection:
    """Return a detection as if the engine had just heard sound."""
    return Detection(
        id=f"sim-{dt_util.utcnow().strftime('%H%M%S%f')}",
        sound=sound,
        start_s=0.0,
        end_s=0.0,
        confidence=confidence,
        label="simulated",
        peak_db=-20.0,
    )
