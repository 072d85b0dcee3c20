"""A satellite: one microphone in one area, listened to while guard mode wants it.

The satellite opens its source only while the hub is listening (armed, or the always-on alarm
option), reconnects with exponential backoff and jitter, logs once per outage, raises a repair
issue when it has been unreachable too long, and feeds its audio to the shared engine. The
engine's evidence comes back on the event loop, where the satellite's own decider (its
sensitivity, "not a threat" marks and custom sounds) turns it into detections — the same for the
in-process and the remote engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import logging
import random
import time
import traceback
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers import (
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.event import async_call_later, async_track_time_interval

from .alerts import AlertManager, SatelliteDetections
from .clips import check_folder, clip_name, clips_root, media_source_id, write_clip
from .const import (
    CONF_AREA,
    CONF_CAMERA,
    CONF_EVIDENCE_CLIPS,
    CONF_MEDIA_PLAYERS,
    CONF_SOURCE,
    CONF_UNREACHABLE_MINUTES,
    CONF_VOICE_SATELLITE,
    CONF_ZEROCONF_NAME,
    DEFAULT_UNREACHABLE_MINUTES,
    DOMAIN,
)
from .engine import (
    ALARM_SOUNDS,
    MAX_REMEMBERED,
    ClipRecorder,
    CustomSound,
    DcBlocker,
    DeciderConfig,
    Detection,
    Embedding,
    Evidence,
    EvidenceStream,
    Pcm16,
    Sound,
    StreamDecision,
    WindowEvidence,
)
from .media import MediaPlayerWatch
from .sources import create_source, source_unique_id
from .sources.base import AudioSource, SourceError
from .sources.push import PushSource, push_key_issue
from .sources.voice import VoiceSource
from .timeouts import Timeouts

if TYPE_CHECKING:
    from .engine_runtime import Engine
    from .hub import GuardHub
    from .learned import Learning

_LOGGER = logging.getLogger(__name__)

STOP_TIMEOUT_S = 1.0
LEVEL_INTERVAL = timedelta(seconds=5)
# Sensitivity: (factor on tagger scores, how far above the room's noise floor a sound must be).
SENSITIVITY: dict[str, tuple[float, float]] = {
    "low": (0.8, 10.0),
    "normal": (1.0, 6.0),
    "high": (1.25, 3.0),
}


def issue_unreachable(subentry_id: str) -> str:
    """Return the repair issue id for an unreachable satellite."""
    return f"unreachable_{subentry_id}"


def satellite_settings(subentry: ConfigSubentry) -> tuple[str, dict[str, Any]]:
    """Return what a satellite runs on: its name and settings (a change reloads it).

    How it was found is not one, nor its media players: those are followed while it runs.
    """
    live = (CONF_ZEROCONF_NAME, CONF_MEDIA_PLAYERS)
    return subentry.title, {k: v for k, v in subentry.data.items() if k not in live}


def every_sound(custom: Iterable[CustomSound]) -> frozenset[str]:
    """Return the built-in sounds' keys and those of the custom sounds given."""
    return frozenset({*Sound, *(sound.key for sound in custom)})


def voice_listener_unique_id(entry_id: str) -> str:
    """Return the unique id of the hub's listener entity (voice satellites stream to it)."""
    return f"{entry_id}-voice_listener"


def backoff_delay(attempt: int, rng: random.Random, waits: Timeouts) -> float:
    """Return the wait before reconnect attempt (1, 2, 4 … 60 s, each with ±25 % jitter)."""
    base = min(waits.backoff_start_s * 2 ** max(attempt - 1, 0), waits.backoff_max_s)
    return float(base * rng.uniform(0.75, 1.25))


@dataclass
class SatelliteState:
    """What the satellite's entities and diagnostics show."""

    listening: bool = False
    connected: bool = False
    level_db: float | None = None
    last_error: str | None = None
    outage_since: float | None = None  # monotonic time the current outage started
    reconnects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Satellite:
    """Runs one satellite's source while guard mode listens."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        subentry: ConfigSubentry,
        *,
        hub: GuardHub,
        engine: Engine,
        alerts: AlertManager,
        learning: Learning,
    ) -> None:
        """Prepare the satellite of a subentry (call async_start)."""
        self.hass = hass
        self.entry_id = entry_id
        self.subentry = subentry
        # HA updates a subentry in place: this copy tells a reconfigured satellite apart.
        self.configured = satellite_settings(subentry)
        self.hub = hub
        self.engine = engine
        self.alerts = alerts
        self.learning = learning
        self.sensitivity = "normal"
        self.source: AudioSource = create_source(subentry.data, hass)
        self.source.satellite = subentry.title  # its logs name the satellite, not the host
        if isinstance(self.source, PushSource):
            self.source.key_issue = push_key_issue(subentry.subentry_id)
        if isinstance(self.source, VoiceSource):
            self.source.satellite_id = subentry.subentry_id  # its wake-word id
            self.source.listener_unique_id = voice_listener_unique_id(entry_id)
        self.state = SatelliteState()
        self.detections = SatelliteDetections()
        self.stream: EvidenceStream | None = None  # to the engine, while listening
        self.decision: StreamDecision | None = None  # the stream's decider, while listening
        # From the session before the last disarm: its alerts can still be marked "not a threat".
        self._closed_embeddings: dict[str, Embedding] = {}
        self._closing: asyncio.Task[None] | None = None  # the last session's task, ending
        self._media_players = MediaPlayerWatch(hass, self)
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._unsubs: list[CALLBACK_TYPE] = []
        self._repair_timer: CALLBACK_TYPE | None = None
        self._steady_timer: asyncio.TimerHandle | None = None  # ends an outage that is over
        self._connected_at = 0.0  # monotonic time audio last began to arrive
        self._level_unsub: CALLBACK_TYPE | None = None
        self.simulations: set[CALLBACK_TYPE] = set()  # ends of simulated detections
        self.recorder: ClipRecorder | None = None  # pre-roll, only while clips are on
        self.clips_failing: str | None = None  # why clips can't be written (alerts say no clip)
        self._clip_attempts = 0  # clip writes and folder checks started (the latest one counts)
        self._rng = random.Random()

    @property
    def id(self) -> str:
        """Return the satellite id (its subentry id)."""
        return self.subentry.subentry_id

    @property
    def name(self) -> str:
        """Return the satellite's name."""
        return self.subentry.title

    @property
    def area_id(self) -> str | None:
        """Return the area chosen for the satellite when it was added or reconfigured."""
        area = self.subentry.data.get(CONF_AREA)
        return str(area) if area else None

    def device(self) -> dr.DeviceEntry | None:
        """Return the satellite's device."""
        return dr.async_get(self.hass).async_get_device_by_identifier(
            (DOMAIN, self.id), self.entry_id
        )

    def current_area_id(self) -> str | None:
        """Return the area the satellite is in now: its device's (none if the user cleared it)."""
        device = self.device()
        return device.area_id if device is not None else self.area_id

    @property
    def deaf(self) -> bool:
        """Return True while the microphone should be open but can't be heard (an outage)."""
        state = self.state
        return state.listening and state.outage_since is not None and not state.connected

    @property
    def source_type(self) -> str:
        """Return the kind of source."""
        return str(self.subentry.data[CONF_SOURCE])

    def detection_embeddings(self, detection_id: str) -> Embedding | None:
        """Return a recent detection's embeddings, also one heard before guard mode was disarmed."""
        decision = self.decision
        if (
            decision is not None
            and (found := decision.decider.detection_embeddings.get(detection_id)) is not None
        ):
            return found
        return self._closed_embeddings.get(detection_id)

    @callback
    def async_record(self, listener: Callable[[WindowEvidence], None]) -> Callable[[], None]:
        """Give every window heard, with its embedding, to listener (teaching); unsubscribe.

        Raises RuntimeError when the microphone is closed.
        """
        if self.decision is None:
            raise RuntimeError(f"{self.name} is not listening")
        decision = self.decision
        stop = decision.record(listener)
        self._sync_embeddings()

        def unsubscribe() -> None:
            stop()
            if decision is self.decision:
                self._sync_embeddings()

        return unsubscribe

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener whenever the satellite's state changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @callback
    def async_start(self) -> None:
        """Follow the hub: listen while it says so."""
        self._unsubs.append(self.hub.async_add_listener(self._apply_listen_state))
        self._unsubs.append(self.engine.async_add_listener(self.async_notify))
        self._unsubs.append(self.learning.async_add_listener(self._apply_learning))
        self._unsubs.append(
            self.hass.bus.async_listen(er.EVENT_ENTITY_REGISTRY_UPDATED, self._entity_renamed)
        )
        self._apply_listen_state()

    async def async_stop(self) -> None:
        """Close the microphone and forget everything running."""
        for unsub in [*self._unsubs, *self.simulations]:
            unsub()
        self._unsubs.clear()
        self.simulations.clear()
        await self._async_close()
        self._cancel_repair_timer()

    @callback
    def _apply_listen_state(self) -> None:
        listen = self.hub.listen_state
        if listen.listening and self._task is None:
            self._open()
        elif not listen.listening and self._task is not None:
            self.hass.async_create_task(self._async_close(), eager_start=True)
        if self.decision is not None:
            self._set_enabled_sounds(listen.alarms_only)
            self._apply_clips()

    def _set_enabled_sounds(self, alarms_only: bool) -> None:
        assert self.decision is not None
        everything = every_sound(self.decision.config.custom)  # the custom sounds it has
        self._configure(enabled=ALARM_SOUNDS if alarms_only else everything)

    def learned_config(self) -> DeciderConfig:
        """Return what this satellite decides with while guard mode listens.

        Its learning and sensitivity, every sound it listens for enabled.
        """
        factor, margin_db = SENSITIVITY[self.sensitivity]
        custom = self.learning.custom_for(self.id)
        return DeciderConfig(
            remember=True,
            learned=self.learning.false_alarms_for(self.id),
            custom=custom,
            sensitivity=factor,
            noise_margin_db=margin_db,
            enabled=every_sound(custom),
        )

    def _configure(self, **changes: Any) -> None:
        """Change the decider's settings; a detection of a sound no longer wanted ends now."""
        assert self.decision is not None
        for event in self.decision.configure(**changes):
            self.alerts.async_handle(self, event)

    @callback
    def _apply_learning(self) -> None:
        """Give the decider what the household taught, and this satellite's sensitivity."""
        if self.decision is None:
            return
        config = self.learned_config()
        self._configure(
            remember=config.remember,
            learned=config.learned,
            custom=config.custom,
            sensitivity=config.sensitivity,
            noise_margin_db=config.noise_margin_db,
            enabled=ALARM_SOUNDS if self.hub.listen_state.alarms_only else config.enabled,
        )
        self._sync_embeddings()

    def _sync_embeddings(self) -> None:
        """Ask the engine for the windows' embeddings, and every window, as learning needs."""
        if self.stream is not None and self.decision is not None:
            self.stream.set_embeddings(self.decision.wants_embeddings)
            self.stream.set_every_window(self.decision.wants_every_window)

    @callback
    def async_set_sensitivity(self, level: str) -> None:
        """Set how easily this satellite alerts: low, normal or high."""
        self.sensitivity = level if level in SENSITIVITY else "normal"
        self._apply_learning()
        self.async_notify()

    @callback
    def _open(self) -> None:
        self.decision = StreamDecision()
        self.stream = self.engine.open_stream(self.name, self._handle_evidence)
        self._apply_learning()
        self._apply_clips()
        self.state.listening = True
        self._task = self.hass.async_create_background_task(
            self._run(), f"{DOMAIN} satellite {self.name}", eager_start=True
        )
        self._level_unsub = async_track_time_interval(
            self.hass, self._sample_level, LEVEL_INTERVAL, cancel_on_shutdown=True
        )
        self._media_players.async_start()
        self.async_notify()

    @callback
    def async_media_players_changed(self) -> None:
        """Follow the media players now chosen (a reconfigure, an entity renamed)."""
        if self._task is not None:
            self._media_players.async_start()

    @callback
    def _entity_renamed(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        """Follow an entity of this satellite's settings to its new id.

        Its camera or voice satellite (the satellite reloads on the new one) and its media
        players (followed as they are).
        """
        change = event.data
        if change["action"] != "update" or "old_entity_id" not in change:
            return
        old, new = change["old_entity_id"], change["entity_id"]
        data = dict(self.subentry.data)
        chosen = list(data.get(CONF_MEDIA_PLAYERS) or ())
        if old in chosen:
            data[CONF_MEDIA_PLAYERS] = [new if e == old else e for e in chosen]
        for key in (CONF_CAMERA, CONF_VOICE_SATELLITE):
            if data.get(key) == old:
                data[key] = new
        entry = self.hass.config_entries.async_get_entry(self.entry_id)
        if data != self.subentry.data and entry is not None:
            self.hass.config_entries.async_update_subentry(
                entry, self.subentry, data=data, unique_id=source_unique_id(data)
            )

    async def _async_close(self) -> None:
        """Close the microphone.

        Everything of this session is let go before the first await, so that arming again at
        once starts a clean session that this close can't touch.
        """
        task, self._task = self._task, None
        stream, self.stream = self.stream, None
        decision, self.decision = self.decision, None
        if self._level_unsub is not None:
            self._level_unsub()
            self._level_unsub = None
        self._media_players.async_stop()
        if stream is not None:
            stream.close()
        if decision is not None:
            # Added to the earlier sessions' (the last MAX_REMEMBERED of all): an alert of an
            # earlier away period can still be marked "not a threat".
            closed = {**self._closed_embeddings, **decision.detection_embeddings()}
            self._closed_embeddings = dict(list(closed.items())[-MAX_REMEMBERED:])
        self._stop_clips()
        self.detections.active.clear()  # nothing is being heard once the microphone is closed
        self.state.listening = False
        self.state.connected = False
        self.state.level_db = None
        self.state.outage_since = None
        self._cancel_repair_timer()
        ir.async_delete_issue(self.hass, DOMAIN, issue_unreachable(self.id))
        self.async_notify()
        if task is not None:
            task.cancel()
            self._closing = task
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await asyncio.shield(asyncio.gather(task, return_exceptions=True))
            except TimeoutError:
                _LOGGER.warning("Satellite %s did not close within a second", self.name)

    async def _run(self) -> None:
        """Connect, stream, and reconnect with backoff until cancelled."""
        if self._closing is not None:  # armed again at once: let the last session let go first
            await asyncio.wait([self._closing], timeout=STOP_TIMEOUT_S)
        attempt = 0
        without_offset = DcBlocker()  # a microphone's DC offset is no sound (engine levels)
        unexpected: list[object] = []  # the last unexpected error: its type and where it was
        while True:
            first_audio: float | None = None

            def sink(pcm: Pcm16) -> None:
                nonlocal first_audio
                if first_audio is None:
                    first_audio = time.monotonic()
                    self._connected()
                pcm = without_offset(pcm)
                if self.stream is not None:
                    self.stream.push(pcm)
                if self.recorder is not None:
                    for name, clip in self.recorder.push(pcm):
                        self._write_clip_later(name, clip)

            try:
                await self.source.run(sink)
                error = f"{self.source.describe()} ended the stream"
            except SourceError as err:
                error = str(err)
            except Exception as err:  # a source must never take the satellite down
                error = f"unexpected error: {err}"
                # The same bug at every retry (its message may vary): its traceback once.
                bug = [type(err), *traceback.extract_tb(err.__traceback__)[-1:]]
                if bug != unexpected:
                    _LOGGER.exception("Satellite %s: unexpected error", self.name)
                unexpected = bug
            self._disconnected(error)
            # Waits start afresh after a connection that lasted, else they grow: a source that
            # sends a moment of audio and fails again is not retried every second for ever.
            steady = first_audio is not None and (
                time.monotonic() - first_audio >= self.source.timeouts.steady_s
            )
            attempt = 1 if steady else attempt + 1
            started = time.monotonic()
            delay = backoff_delay(attempt, self._rng, self.source.timeouts)
            await self.source.wait_before_retry(delay)
            if self.stream is not None:  # time went on while we were not listening
                self.stream.mark_gap(time.monotonic() - started)

    @callback
    def _connected(self) -> None:
        """Audio arrives; an outage ends once the connection has lasted (a flap is no return)."""
        self.state.connected = True
        self._connected_at = time.monotonic()
        if self.state.outage_since is not None:
            self._end_outage()
        self.async_notify()

    @callback
    def _end_outage(self) -> None:
        """End the outage once the connection has lasted ``steady_s`` (else check again then)."""
        self._steady_timer = None
        if not self.state.connected or self.state.outage_since is None:
            return
        wait = self._connected_at + self.source.timeouts.steady_s - time.monotonic()
        if wait > 0:
            self._steady_timer = self.hass.loop.call_later(wait, self._end_outage)
            return
        self.state.outage_since = None
        self._cancel_repair_timer()
        ir.async_delete_issue(self.hass, DOMAIN, issue_unreachable(self.id))
        _LOGGER.info("Satellite %s is back (%s)", self.name, self.source.describe())
        self.async_notify()

    @callback
    def _disconnected(self, error: str) -> None:
        self.state.connected = False
        self.state.last_error = error
        self.state.reconnects += 1
        self._cancel_steady_timer()
        if self.state.outage_since is None:
            self.state.outage_since = time.monotonic()
            _LOGGER.warning("Satellite %s is unreachable: %s", self.name, error)
            minutes = self.hub.options.get(CONF_UNREACHABLE_MINUTES, DEFAULT_UNREACHABLE_MINUTES)
            self._repair_timer = async_call_later(self.hass, minutes * 60, self._raise_repair)
        self.async_notify()

    @callback
    def _raise_repair(self, _now: Any) -> None:
        self._repair_timer = None
        if self.state.outage_since is None or not self.state.listening:
            return
        minutes = self.hub.options.get(CONF_UNREACHABLE_MINUTES, DEFAULT_UNREACHABLE_MINUTES)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_unreachable(self.id),
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="satellite_unreachable",
            translation_placeholders={
                "name": self.name,
                "minutes": str(minutes),
                "error": self.state.last_error or "",
            },
        )

    @callback
    def _cancel_repair_timer(self) -> None:
        if self._repair_timer is not None:
            self._repair_timer()
            self._repair_timer = None
        self._cancel_steady_timer()

    @callback
    def _cancel_steady_timer(self) -> None:
        if self._steady_timer is not None:
            self._steady_timer.cancel()
            self._steady_timer = None

    @callback
    def _sample_level(self, _now: Any) -> None:
        """Show the loudest window of the last interval (not every window: that's 2 a second)."""
        if self.decision is None:
            return
        level = self.decision.take_peak_level()
        if level is not None and round(level, 1) != self.state.level_db:
            self.state.level_db = round(level, 1)
            self.async_notify()

    @callback
    def _handle_evidence(
        self, stream: EvidenceStream, evidence: list[Evidence], now_s: float
    ) -> None:
        """Decide on what the engine heard (on the event loop, whichever engine it was)."""
        if stream is not self.stream or self.decision is None:
            return  # a stream closed meanwhile
        for event in self.decision.push(evidence, now_s):
            _LOGGER.debug("Satellite %s: %s %s", self.name, event.kind, event.detection)
            self.alerts.async_handle(self, event, seconds_ago=now_s - event.detection.start_s)

    def clip_for(self, detection: Detection, started: datetime) -> str | None:
        """Start an evidence clip of detection if clips are on; return its media-source id.

        None (the event says: no clip) when clips are off, or can't be written just now.
        """
        recorder = self.recorder
        if recorder is None:
            return None
        if self.clips_failing is not None:  # look again, for the next alert
            self.hass.async_create_background_task(
                self._async_write_clip(None, None), f"{DOMAIN} clip folder {self.name}"
            )
            return None
        name = clip_name(self.name, str(detection.sound), started, detection.id)
        return media_source_id(self.hass, name) if recorder.start(name) else None

    def _apply_clips(self) -> None:
        """Record clips while the user wants them; otherwise keep no audio at all."""
        if self.decision is None:
            return
        wanted = bool(self.hub.options.get(CONF_EVIDENCE_CLIPS))
        if wanted and self.recorder is None:
            self.recorder = ClipRecorder()
            self.hass.async_create_background_task(
                self._async_write_clip(None, None), f"{DOMAIN} clip folder {self.name}"
            )
        elif not wanted:
            self.recorder = None  # and the clips being recorded with it

    def _stop_clips(self) -> None:
        """Keep no more audio (closing): the clips being recorded end with what they have."""
        recorder, self.recorder = self.recorder, None
        for name, pcm in recorder.flush() if recorder is not None else ():
            self._write_clip_later(name, pcm)

    @callback
    def _write_clip_later(self, name: str, pcm: Pcm16) -> None:
        self.hass.async_create_background_task(
            self._async_write_clip(name, pcm), f"{DOMAIN} clip {self.name}"
        )

    async def _async_write_clip(self, name: str | None, pcm: Pcm16 | None) -> None:
        """Write a clip (None: only check the folder); a failure is logged once, not raised.

        Only the latest attempt tells how the folder is: an earlier one that ends after it (the
        executor is busy) is older news.
        """
        self._clip_attempts += 1
        attempt = self._clip_attempts
        root = clips_root(self.hass)
        try:
            if name is None or pcm is None:
                await self.hass.async_add_executor_job(check_folder, root)
            else:
                await self.hass.async_add_executor_job(write_clip, root / name, pcm)
        except OSError as err:
            if attempt != self._clip_attempts:
                return
            if self.clips_failing is None:
                _LOGGER.warning(
                    "Satellite %s: evidence clips can't be written in %s (%s); alerts say "
                    "they have no clip until they can",
                    self.name,
                    root,
                    err.strerror or type(err).__name__,
                )
            self.clips_failing = err.strerror or type(err).__name__
            return
        if attempt == self._clip_attempts and self.clips_failing is not None:
            _LOGGER.info("Satellite %s: evidence clips are written again", self.name)
            self.clips_failing = None

    @callback
    def async_notify(self) -> None:
        """Tell the satellite's entities that its state changed."""
        for listener in list(self._listeners):
            listener()
