"""The decider: per-stream evidence over time → detections, with media context.

A pure state machine (no I/O, no clock): it is driven by stream time — the regular windows
every 0.48 s, the windows aligned to onsets, and the alarm-pattern detector's hits. Each sound
has a :class:`SoundRule`:

* sustained sounds (a dog, a baby, an alarm) need N hit windows within a few seconds, or one
  strong window; with a hit, a window that hears a dog a little less surely counts
  (``support``); the tagger's smoke-alarm evidence must also span longer than one T4 (CO) burst
  can, so that a CO alarm is never first reported as smoke; a T3/T4 cycle the pattern detector
  confirmed only weakly must be followed by two more;
* impulsive sounds (a shot, breaking glass) are decided on the event: a window that holds the
  onset must score, and the onset must show what the sound does — a shot dies away (``decay``),
  a breaking pane showers shards (``shower``) — which a running engine, a knock on glass or a
  slammed door do not. A shot must be heard in two windows of its event, unless the detection
  head is sure of it, and then the first regular window after its onset must not be what the
  head hears as a crackling fire, rain or a ticking clock (a shot dies away, they go on). Since
  an onset is measured 0.6 s after it starts, a window whose onset lies late in it (where a shot
  often scores highest) is judged once the onset is measured, if the head is sure of the sound
  in it. A window aligned to end just after an onset (a late one) is seen only for a sound the
  head is sure of in it: any sharp sound after quiet sounds like a shot there.

A hold time keeps a detection open across short gaps, and a cooldown separates alerts.
Media-prone sounds heard while a TV, radio or music plays (acoustic evidence over ≥ 5 s, or a
media player near the microphone) are reported as suppressed unless they stand out of the
media's level. Smoke and CO alarms are never suppressed by media.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
import itertools
import secrets
import statistics

import numpy as np
import numpy.typing as npt

from .alarm_pattern import AlarmHit, next_cycle
from .evidence import Embedding, Evidence, Gap, WindowEvidence
from .frontend import WINDOW_HOP_S, WINDOW_S
from .labels import ALARM_SOUNDS, MEDIA_PRONE, Sound
from .learning import LEARNED_SIMILARITY, CustomSound, best_similarity
from .onset import Onset

Floats = npt.NDArray[np.float32]


class Reason(StrEnum):
    """Why a detection was not alert-worthy."""

    MEDIA = "media"  # acoustic: the microphone hears a TV, radio or music
    MEDIA_PLAYER = "media_player"  # a media player near the microphone is playing
    COOLDOWN = "cooldown"  # the same sound was alerted on a moment ago
    LEARNED = "learned"  # the household marked this sound "not a threat" before


@dataclass(frozen=True, slots=True)
class ImpulseRule:
    """What the onset of an impulsive sound must show, and the score that then suffices."""

    score: float  # normalized score of a window of the event (1.0 = the threshold)
    min_decay_db: float = -120.0  # the onset dies away by this much within 0.55 s ...
    min_shower: int = 0  # ... and showers this many high-frequency transients
    # A window belongs to the event of an onset that lies in it or at most this long before it
    # (a breaking pane's shards and a shot's echo follow the impact).
    event_s: float = 0.0
    # The event must be heard in this many of its windows (those holding the onset, or at most
    # event_s after it) at >= event_support of the threshold ...
    event_windows: int = 1
    event_support: float = 0.5
    # ... unless the detection head gives the sound at least this (None: it has no class for it).
    # A window the head is this sure of, whose onset was not measured yet by its end (it lies in
    # the window's last 0.6 s), is judged once it is, on the first onset in the window.
    head_sure: float | None = None
    # Unless the head is that sure, the first regular window that starts after the onset must not
    # be heard as one of the sound's confusers (DeciderConfig.confusers, with the sound itself
    # under head_supports): what follows a shot dies away, a fire, rain or a clock goes on.
    aftermath: bool = False


@dataclass(frozen=True, slots=True)
class SoundRule:
    """Persistence, hold and cooldown of one sound."""

    hits: int  # N: hit windows needed ...
    within_s: float  # ... whose ends lie within this many seconds
    strong: float  # a single window at this normalized score is enough
    hold_s: float  # a detection stays open this long after its last hit
    cooldown_s: float  # a new detection this soon after the last alert is not alerted again
    span_s: float = 0.0  # the N hits must also spread over this long (alarms: longer than T4)
    support: float = 1.0  # with a hit, windows at this normalized score count towards N too
    impulse: ImpulseRule | None = None  # decided on onsets only (see the module docstring)


@dataclass(frozen=True, slots=True)
class DeciderConfig:
    """Tunable behaviour of the decider (defaults chosen on the dev corpus, see THRESHOLDS.md)."""

    rules: Mapping[str, SoundRule] = field(
        default_factory=lambda: {
            Sound.GLASS_BREAK: SoundRule(
                1,
                0.0,
                99.0,
                4.0,
                30.0,
                impulse=ImpulseRule(1.6, min_decay_db=6.0, min_shower=4, event_s=0.5),
            ),
            Sound.GUNSHOT: SoundRule(
                1,
                0.0,
                99.0,
                4.0,
                30.0,
                impulse=ImpulseRule(
                    1.0,
                    min_decay_db=6.0,
                    event_s=0.5,
                    event_windows=2,
                    head_sure=0.9,
                    aftermath=True,
                ),
            ),
            Sound.DOG_BARK: SoundRule(2, 2.0, 99.0, 8.0, 60.0, support=0.8),
            Sound.BABY_CRY: SoundRule(2, 2.5, 1.8, 10.0, 60.0),
            Sound.SMOKE_ALARM: SoundRule(3, 4.0, 99.0, 12.0, 60.0, span_s=2.5),
            Sound.CO_ALARM: SoundRule(3, 4.0, 99.0, 12.0, 60.0, span_s=2.5),
        }
    )
    media_threshold: float = 0.5  # a window with this much media evidence is media-like
    media_window: int = 16  # media context looks at the last 16 windows (7.7 s) ...
    media_min_windows: int = 10  # ... of which 10 (≥ 5 s) must be media-like
    media_hold_s: float = 6.0  # media context lasts this long after the media stops
    media_margin_db: float = 12.0  # a sound this much louder than the media is not the media
    pattern_memory_s: float = 12.0  # a T4 pattern this recent makes tagger alarm evidence CO
    # A T3/T4 cycle the pattern detector confirmed with less confidence than this (notes of
    # music that happen to pulse in the rhythm: 0.44-0.74, a sentence: 0.78; the first cycle of
    # real and generated alarms: 0.85-0.99) is an alarm only once this many cycles in a row
    # were heard on the same carrier.
    pattern_confidence: float = 0.8
    weak_cycles: int = 3
    enabled: frozenset[str] = frozenset(Sound)
    # Sounds the tagger confuses with each other (a baby's cry also scores "Dog"): in a window
    # where both are heard, only the stronger counts.
    rivals: tuple[frozenset[str], ...] = (frozenset({Sound.DOG_BARK, Sound.BABY_CRY}),)
    # While a rival is being heard, these broad labels alone don't count for the sound: "Dog"
    # during a baby's crying is the baby; a bark ("Bark", "Bow-wow", "Yip") still counts.
    broad_labels: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {Sound.DOG_BARK: frozenset({"Dog", "Canidae, dogs, wolves"})}
    )
    # The detection head (engine/head.py): a window it gives a sound with this probability is a
    # hit for the sound (the tagger's labels miss some barks and cries) ...
    head_sounds: Mapping[str, float] = field(
        default_factory=lambda: {Sound.DOG_BARK: 0.9, Sound.BABY_CRY: 0.99}
    )
    # ... and a window it hears as one of these ordinary sounds is no hit for the sound they are
    # mistaken for.
    confusers: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {
            # Not for glass: falling shards crackle and tick too.
            Sound.GUNSHOT: frozenset({"crackling_fire", "rain", "clock_tick"}),
            Sound.DOG_BARK: frozenset({"rooster"}),
        }
    )
    confuser_probability: float = 0.6
    # ... unless the head hears the sound itself at least this surely (a shot's echo and debris
    # crackle too: its gunshot class, trained on gunshots, tells them from a fire's pops).
    head_overrules: float = 0.9
    # A window of an impulsive sound's event counts towards its support (ImpulseRule) unless the
    # head hears it as one of those ordinary sounds and gives the sound itself less than this.
    head_supports: float = 0.5
    sensitivity: float = 1.0  # multiplies tagger scores: 0.8 low, 1.0 normal, 1.25 high
    noise_margin_db: float = 6.0  # a sound must stand this far above the room's noise floor
    learned: Mapping[str, Floats] = field(default_factory=dict)  # sound → "not a threat" windows
    learned_similarity: float = LEARNED_SIMILARITY
    custom: tuple[CustomSound, ...] = ()
    remember: bool = False  # keep detections' embeddings, so they can be marked "not a threat"

    @property
    def wants_embeddings(self) -> bool:
        """Return True when learning needs the tagger's embeddings."""
        return self.remember or bool(self.learned) or bool(self.custom)


@dataclass(slots=True)
class Detection:
    """A sound heard over a stretch of the stream."""

    id: str
    sound: str  # a Sound, or the key of a custom sound
    start_s: float
    end_s: float
    confidence: float
    label: str
    peak_db: float
    suppressed: bool = False
    reason: Reason | None = None


class EventKind(StrEnum):
    """What happened to a detection."""

    ONSET = "onset"  # a detection started (alert-worthy unless suppressed)
    OFFSET = "offset"  # its hold time ran out: it is over


@dataclass(frozen=True, slots=True)
class DeciderEvent:
    """A change the consumer (entities, CLI) acts on; detection is a snapshot."""

    kind: EventKind
    detection: Detection


@dataclass(slots=True)
class _Track:
    """Per-sound state."""

    recent: deque[tuple[WindowEvidence, bool]]  # recent hit and support windows (is it a hit)
    open: Detection | None = None
    last_hit_end_s: float = 0.0
    last_alert_s: float | None = None


# Custom sounds: 2 matching windows within 2 s, or one clearly above the threshold.
CUSTOM_RULE = SoundRule(hits=2, within_s=2.0, strong=0.08, hold_s=6.0, cooldown_s=30.0)
NOISE_WINDOWS = 120  # the noise floor is the quiet end of the last minute of window levels
MAX_REMEMBERED = 64  # detections whose embeddings are kept (for "not a threat")
MAX_BACKGROUND = 300  # background windows kept (for teaching custom sounds): 600 KB a stream
MAX_EVENT_S = 2.0  # onsets are remembered this long (longer than any rule's event_s)
# A window awaits its late onset, or its event's other windows, this long after its end (an
# onset's aligned window ends 0.92 s after it; the event's last window starts event_s after it).
AWAIT_S = 1.5
# The first regular window that starts after an onset ends at most this long after it.
AFTERMATH_S = WINDOW_HOP_S + WINDOW_S


@dataclass(frozen=True, slots=True)
class _Awaiting:
    """A scoring window of an impulsive sound, awaiting its onset or its event's other windows.

    Once heard, a sound with ImpulseRule.aftermath awaits the first regular window after it.
    """

    sound: str
    window: WindowEvidence
    strong: bool
    confidence: float
    label: str
    onset_s: float | None = None  # the event's onset; None: the onset is not measured yet


class Decider:
    """Turns window evidence and alarm-pattern hits of one stream into detections."""

    def __init__(self, config: DeciderConfig | None = None) -> None:
        """Start with no evidence."""
        self.config = config or DeciderConfig()
        self.media_player_playing = False
        self._tracks: dict[str, _Track] = {}
        self._media: deque[tuple[bool, float]] = deque(maxlen=self.config.media_window)
        self._media_until_s = -1.0
        self._now = 0.0
        self._last_t4_s: float | None = None
        # By pattern: the first and the last of the cycles heard in a row, and how many.
        self._cycles: dict[str, tuple[AlarmHit, AlarmHit, int]] = {}
        self._levels: deque[float] = deque(maxlen=NOISE_WINDOWS)
        self._floor_db: float | None = None
        self._floor_tick = 0
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self.media_s = 0.0  # stream seconds spent in acoustic media context
        self.detection_embeddings: OrderedDict[str, Embedding] = OrderedDict()
        self.background: deque[npt.NDArray[np.float16]] = deque(maxlen=MAX_BACKGROUND)
        self._background_tick = 0
        self._window_listeners: list[Callable[[WindowEvidence], None]] = []
        self._onsets: deque[tuple[float, Onset]] = deque()  # recent measured onsets (time, onset)
        self._awaiting: deque[_Awaiting] = deque()  # impulsive windows not decided yet
        self._aftermath: deque[_Awaiting] = deque()  # heard events awaiting the window after
        self._recent: deque[WindowEvidence] = deque()  # the last windows (an event's support)

    def add_window_listener(self, listener: Callable[[WindowEvidence], None]) -> Callable[[], None]:
        """Also give every window to listener (teaching records with it); returns unsubscribe."""
        self._window_listeners.append(listener)
        return lambda: self._window_listeners.remove(listener)

    @property
    def media_active(self) -> bool:
        """Return True while the microphone hears media (acoustic evidence)."""
        return self._now <= self._media_until_s

    @property
    def noise_floor_db(self) -> float | None:
        """Return the room's noise floor (quiet end of the last minute), None until known."""
        return self._floor_db

    def _update_floor(self, level_db: float) -> None:
        """Track the noise floor; the percentile is recomputed every few windows (cheap)."""
        self._levels.append(level_db)
        self._floor_tick += 1
        if len(self._levels) >= 10 and (self._floor_db is None or self._floor_tick % 8 == 0):
            self._floor_db = float(np.percentile(np.fromiter(self._levels, np.float32), 10))

    def push(self, evidence: Iterable[Evidence]) -> list[DeciderEvent]:
        """Take the engine's evidence in stream-time order; return the detections' changes."""
        events: list[DeciderEvent] = []
        for item in evidence:
            if isinstance(item, WindowEvidence):
                events += self.push_window(item)
            elif isinstance(item, Gap):
                events += self.gap(item.time_s)
            else:
                events += self.push_alarm(item)
        return events

    def push_window(self, window: WindowEvidence) -> list[DeciderEvent]:
        """Add one window's evidence; return the detections that start or end."""
        config = self.config
        if window.late and not any(self._head_sure(window, sound) for sound in config.rules):
            return []  # a late window counts only for a sound it may hit (nothing else sees it)
        self._now = max(self._now, window.end_s)
        if not window.aligned:  # context is judged on the regular windows only
            self._update_media(window)
            for listener in list(self._window_listeners):
                listener(window)
        events = self._expire(window.end_s)
        onsets = self._event_onsets(window)
        self._recent.append(window)
        while window.end_s - self._recent[0].end_s > 2 * AWAIT_S:
            self._recent.popleft()
        events += self._judge_awaiting(onsets, window.end_s)
        if window.gated and not window.head and window.embedding is None:
            # not tagged (quiet or calm): no sound's evidence, only its level
            if not window.aligned:
                self._update_floor(window.level_db)
            return events + self._judge_aftermath()
        alarm_as_co = (
            self._last_t4_s is not None
            and window.end_s - self._last_t4_s <= config.pattern_memory_s
        )
        floor = self.noise_floor_db
        stands_out = floor is None or window.peak_db >= floor + config.noise_margin_db
        beaten = self._beaten_rivals(window)
        any_hit = False
        for sound in config.rules:
            if window.late and not self._head_sure(window, sound):
                continue
            # The tagger has no CO class: its smoke-alarm classes count for the CO alarm while a
            # T4 pattern is being heard, and for the smoke alarm otherwise.
            source = Sound.SMOKE_ALARM if sound is Sound.CO_ALARM else sound
            rule = config.rules[sound]
            score = self._score(window, sound)
            needed = 1.0 if rule.impulse is None else rule.impulse.score
            heard = (
                score >= min(needed, rule.support)
                and (stands_out or sound in ALARM_SOUNDS)
                and sound not in beaten
                and not self._confused(window, sound, config.head_overrules)
            )
            if sound in ALARM_SOUNDS and alarm_as_co != (sound is Sound.CO_ALARM):
                heard = False
            hit = heard and score >= needed
            strong = score >= rule.strong
            confidence = window.confidence.get(source, 0.0)
            label = window.labels.get(source, "")
            if hit and rule.impulse is not None:
                awaiting = _Awaiting(sound, window, strong, confidence, label)
                hit = self._impulse_hit(awaiting, onsets, rule.impulse)
            any_hit |= hit
            events += self._evidence(
                sound,
                window,
                hit=hit,
                strong=strong,
                confidence=confidence,
                label=label,
                support=heard and not hit and rule.impulse is None,
            )
        for custom in () if window.late else config.custom:
            similarity = (
                float(custom.similarity(window.embedding[np.newaxis])[0])
                if window.embedding is not None
                else -1.0
            )
            hit = similarity >= custom.threshold and stands_out
            any_hit |= hit
            events += self._evidence(
                custom.key,
                window,
                hit=hit,
                strong=similarity >= custom.threshold + CUSTOM_RULE.strong,
                confidence=max(similarity, 0.0),
                label=custom.name,
            )
        events += self._judge_aftermath()
        if window.aligned:
            return events
        if window.embedding is not None and not any_hit:
            self._background_tick += 1
            if self._background_tick % 3 == 0:
                # A half-size copy: a row view would keep the tagger's whole batch alive.
                self.background.append(window.embedding.astype(np.float16))
        self._update_floor(window.level_db)
        return events

    def _head_sure(self, window: WindowEvidence, sound: str) -> bool:
        """Return whether the head is sure of an impulsive sound in the window (head_sure)."""
        impulse = self._rule(sound).impulse
        sure = None if impulse is None else impulse.head_sure
        return sure is not None and window.head.get(sound, 0.0) >= sure

    def _score(self, window: WindowEvidence, sound: str) -> float:
        """Return the sound's normalized score in a window (1.0 = the threshold)."""
        config = self.config
        source = Sound.SMOKE_ALARM if sound is Sound.CO_ALARM else sound
        score = window.scores.get(source, 0.0)
        if sound in config.head_sounds:
            score = max(score, window.head.get(sound, 0.0) / config.head_sounds[sound])
        return score * config.sensitivity

    def _confused(self, window: WindowEvidence, sound: str, overrule: float) -> bool:
        """Return True when the head hears a confuser of sound, and sound below overrule."""
        config = self.config
        return window.head.get(sound, 0.0) < overrule and any(
            window.head.get(other, 0.0) >= config.confuser_probability
            for other in config.confusers.get(sound, ())
        )

    def _impulse_hit(
        self, item: _Awaiting, onsets: list[tuple[float, Onset]], rule: ImpulseRule
    ) -> bool:
        """Return whether a scoring window of an impulsive sound is a hit now; else it may wait."""
        sure = self._head_sure(item.window, item.sound)
        onset_s = _shown_onset(onsets, item.window, rule)
        if onset_s is None:
            if sure:  # its onset may lie late in it
                self._awaiting.append(item)
            return False
        if sure:
            return True
        item = replace(item, onset_s=onset_s)
        if self._event_heard(item.sound, onset_s, rule):
            return self._counts_now(item, rule)
        self._awaiting.append(item)
        return False

    def _counts_now(self, item: _Awaiting, rule: ImpulseRule) -> bool:
        """Return True for a heard event to count now; with rule.aftermath it awaits its sequel."""
        if rule.aftermath:
            self._aftermath.append(item)
        return not rule.aftermath

    def _event_heard(self, sound: str, onset_s: float, rule: ImpulseRule) -> bool:
        """Return whether enough recent windows of the event at onset_s hear the sound."""
        return rule.event_windows <= sum(
            w.start_s - rule.event_s <= onset_s <= w.end_s
            and self._score(w, sound) >= rule.event_support
            and not self._confused(w, sound, self.config.head_supports)
            for w in self._recent
        )

    def _judge_awaiting(
        self, onsets: list[tuple[float, Onset]], now_s: float
    ) -> list[DeciderEvent]:
        """Decide the impulsive windows whose onset was measured or whose event was heard since."""
        while self._awaiting and now_s - self._awaiting[0].window.end_s > AWAIT_S:
            self._awaiting.popleft()
        events: list[DeciderEvent] = []
        for item in list(self._awaiting):
            rule = self._rule(item.sound).impulse
            assert rule is not None
            if (
                _first_onset_shows(onsets, item.window, rule)
                if item.onset_s is None  # the head is sure of it: it counts once its onset shows
                else self._event_heard(item.sound, item.onset_s, rule)
            ):
                self._awaiting.remove(item)
                if item.onset_s is None or self._counts_now(item, rule):
                    events += self._hit(item)
        return events

    def _judge_aftermath(self) -> list[DeciderEvent]:
        """Decide the heard events whose first regular window after the onset has come.

        That window comes within AFTERMATH_S of the onset; if it does not (windows went
        missing), the event counts: nothing showed it going on.
        """
        events: list[DeciderEvent] = []
        for item in list(self._aftermath):
            onset_s = item.onset_s
            assert onset_s is not None
            after = next((w for w in self._recent if not w.aligned and w.start_s > onset_s), None)
            if after is not None or self._now - onset_s > AFTERMATH_S + WINDOW_HOP_S:
                self._aftermath.remove(item)
                if after is None or not self._confused(
                    after, item.sound, self.config.head_supports
                ):
                    events += self._hit(item)
        return events

    def _decide_aftermath(self) -> list[DeciderEvent]:
        """Count the heard events still waiting for the window after them (audio stops here)."""
        events = [event for item in self._aftermath for event in self._hit(item)]
        self._aftermath.clear()
        return events

    def _hit(self, item: _Awaiting) -> list[DeciderEvent]:
        """Count a decided impulsive window as a hit."""
        return self._evidence(
            item.sound,
            item.window,
            hit=True,
            strong=item.strong,
            confidence=item.confidence,
            label=item.label,
        )

    def _event_onsets(self, window: WindowEvidence) -> list[tuple[float, Onset]]:
        """Remember the window's onset; return the recent onsets (time, onset)."""
        if window.onset is not None and all(o is not window.onset for _, o in self._onsets):
            self._onsets.append((window.onset_s, window.onset))
        while self._onsets and self._onsets[0][0] < window.start_s - MAX_EVENT_S:
            self._onsets.popleft()
        return list(self._onsets)

    def push_alarm(self, hit: AlarmHit) -> list[DeciderEvent]:
        """Add a confirmed smoke (T3) or CO (T4) pattern from the alarm-pattern detector."""
        self._now = max(self._now, hit.end_s)
        sound = Sound(hit.sound)
        if sound is Sound.CO_ALARM:
            self._last_t4_s = hit.end_s  # a weak T4 cycle too: tagger alarm evidence is CO
        events = self._expire(hit.end_s)
        first, count = hit, 1
        if (run := self._cycles.get(hit.pattern)) is not None and next_cycle(run[1], hit):
            first, count = run[0], run[2] + 1
        self._cycles[hit.pattern] = (first, hit, count)
        track = self._track(sound)
        if (
            hit.confidence < self.config.pattern_confidence
            and track.open is None
            and count < self.config.weak_cycles
        ):
            return events  # weak evidence: wait for more cycles
        track.last_hit_end_s = max(track.last_hit_end_s, hit.end_s)
        if track.open is not None:
            track.open.end_s = max(track.open.end_s, hit.end_s)
            track.open.confidence = max(track.open.confidence, hit.confidence)
            return events
        detection = self._new(
            sound,
            first.start_s,
            hit.end_s,
            confidence=hit.confidence,
            label=f"{hit.pattern} pattern",
            peak=0.0,
        )
        events.extend(self._open(sound, track, detection, []))
        return events

    def gap(self, now_s: float) -> list[DeciderEvent]:
        """Audio was lost up to now_s: end detections whose hold ran out, forget recent windows.

        Persistence and media context must not count windows from both sides of a gap; the noise
        floor, cooldowns and learning state are kept.
        """
        events = self._decide_aftermath()
        self._now = max(self._now, now_s)
        for track in self._tracks.values():
            track.recent.clear()
        self._media.clear()
        self._onsets.clear()
        self._awaiting.clear()
        self._recent.clear()
        self._cycles.clear()
        return events + self._expire(self._now)

    def finish(self) -> list[DeciderEvent]:
        """End of stream: count what waits for the window after it, close every detection."""
        return self._decide_aftermath() + self._close(lambda _: True)

    def end_disabled(self) -> list[DeciderEvent]:
        """Close the open detections of sounds no longer enabled (they would go on forever)."""
        return self._close(lambda sound: sound not in self.config.enabled)

    def _close(self, which: Callable[[str], bool]) -> list[DeciderEvent]:
        events = []
        for sound, track in self._tracks.items():
            if track.open is not None and which(sound):
                events.append(DeciderEvent(EventKind.OFFSET, replace(track.open)))
                track.open = None
        return events

    def _beaten_rivals(self, window: WindowEvidence) -> set[str]:
        """Return the sounds that don't count in this window because of a confusable rival.

        In a window where rivals are both heard, the weaker is beaten; while a rival's detection
        is open, a sound heard only through its broad labels is beaten too.
        """
        beaten: set[str] = set()
        if not window.scores:
            return beaten
        for group in self.config.rivals:
            heard = [s for s in group if window.scores.get(s, 0.0) >= 1.0]
            if len(heard) > 1:
                best = max(heard, key=lambda s: window.scores[s])
                beaten.update(s for s in heard if s != best)
            for sound in group:
                rival_open = any(
                    (track := self._tracks.get(other)) is not None and track.open is not None
                    for other in group - {sound}
                )
                if rival_open and window.labels.get(sound) in self.config.broad_labels.get(
                    sound, ()
                ):
                    beaten.add(sound)
        return beaten

    def _rule(self, sound: str) -> SoundRule:
        return self.config.rules.get(sound, CUSTOM_RULE)

    def _track(self, sound: str) -> _Track:
        track = self._tracks.get(sound)
        if track is None:
            track = self._tracks[sound] = _Track(deque())
        return track

    def _evidence(
        self,
        sound: str,
        window: WindowEvidence,
        *,
        hit: bool,
        strong: bool,
        confidence: float,
        label: str,
        support: bool = False,
    ) -> list[DeciderEvent]:
        track = self._track(sound)
        if not (hit or support):
            return []
        rule = self._rule(sound)
        track.recent.append((window, hit))
        while window.end_s - track.recent[0][0].end_s > rule.within_s:
            track.recent.popleft()
        if not hit:  # a supporting window: it may complete a hit, never extends a detection
            last_hit = next((w for w, is_hit in reversed(track.recent) if is_hit), None)
            if track.open is not None or last_hit is None:
                return []
            confidence = max(confidence, last_hit.confidence.get(sound, 0.0))
            label = last_hit.labels.get(sound, label)
        track.last_hit_end_s = max(track.last_hit_end_s, window.end_s)
        if track.open is not None:
            track.open.end_s = max(track.open.end_s, window.end_s)
            track.open.confidence = max(track.open.confidence, round(confidence, 4))
            track.open.peak_db = max(track.open.peak_db, window.peak_db)
            self._remember(track.open.id, [window])
            return []
        hits = sorted((w for w, _ in track.recent), key=lambda w: w.start_s)
        enough = len(hits) >= rule.hits and hits[-1].end_s - hits[0].start_s >= rule.span_s
        if not (enough or strong):
            return []
        detection = self._new(
            sound,
            hits[0].onset_s,
            window.end_s,
            confidence=confidence,
            label=label,
            peak=max(w.peak_db for w in hits),
        )
        return self._open(sound, track, detection, hits)

    def _open(
        self, sound: str, track: _Track, detection: Detection, hits: list[WindowEvidence]
    ) -> list[DeciderEvent]:
        if sound not in self.config.enabled:
            return []
        self._remember(detection.id, hits)
        reason = self._suppression(sound, detection)
        if reason is None and (
            track.last_alert_s is not None
            and detection.start_s - track.last_alert_s < self._rule(sound).cooldown_s
        ):
            reason = Reason.COOLDOWN
        if reason is None:
            track.last_alert_s = detection.start_s
        detection.suppressed = reason is not None
        detection.reason = reason
        track.open = detection
        return [DeciderEvent(EventKind.ONSET, replace(detection))]

    def _suppression(self, sound: str, detection: Detection) -> Reason | None:
        if sound in ALARM_SOUNDS:
            return None  # alarms are never muted
        learned = self.config.learned.get(sound)  # "not a threat": custom sounds too
        embeddings = self.detection_embeddings.get(detection.id)
        if (
            learned is not None
            and embeddings is not None
            and best_similarity(embeddings, learned) >= self.config.learned_similarity
        ):
            return Reason.LEARNED
        if sound not in MEDIA_PRONE or not (self.media_player_playing or self.media_active):
            return None  # custom sounds are not muted for media
        reference = self._media_level_db()
        if reference is not None and detection.peak_db - reference >= self.config.media_margin_db:
            return None  # much louder than the media: a real sound in the room
        return Reason.MEDIA_PLAYER if self.media_player_playing else Reason.MEDIA

    def _remember(self, detection_id: str, windows: list[WindowEvidence]) -> None:
        """Keep the detection's window embeddings (bounded), for "not a threat" later."""
        new = [w.embedding for w in windows if w.embedding is not None]
        if not new:
            return
        known = self.detection_embeddings.pop(detection_id, None)
        stacked = np.stack(new) if known is None else np.concatenate([known, np.stack(new)])
        self.detection_embeddings[detection_id] = stacked[-16:]
        while len(self.detection_embeddings) > MAX_REMEMBERED:
            self.detection_embeddings.popitem(last=False)

    def _media_level_db(self) -> float | None:
        """Return the typical peak level of the media (or of recent sound if none is media-like)."""
        media = [peak for like, peak in self._media if like]
        levels = media or [peak for _, peak in self._media]
        return statistics.median(levels) if levels else None

    def _update_media(self, window: WindowEvidence) -> None:
        like = window.media >= self.config.media_threshold
        self._media.append((like, window.peak_db))
        if sum(1 for is_media, _ in self._media if is_media) >= self.config.media_min_windows:
            self._media_until_s = window.end_s + self.config.media_hold_s
        if self.media_active:
            self.media_s += WINDOW_HOP_S

    def _expire(self, now_s: float) -> list[DeciderEvent]:
        events = []
        for sound, track in self._tracks.items():
            if track.open is not None and now_s - track.last_hit_end_s > self._rule(sound).hold_s:
                events.append(DeciderEvent(EventKind.OFFSET, replace(track.open)))
                track.open = None
        return events

    def _new(
        self,
        sound: str,
        start_s: float,
        end_s: float,
        *,
        confidence: float,
        label: str,
        peak: float,
    ) -> Detection:
        return Detection(
            id=f"{self._prefix}-{next(self._ids)}",
            sound=sound,
            start_s=round(start_s, 3),
            end_s=round(end_s, 3),
            confidence=round(confidence, 4),
            label=label,
            peak_db=peak,
        )


def _shown_onset(
    onsets: list[tuple[float, Onset]], window: WindowEvidence, rule: ImpulseRule
) -> float | None:
    """Return the time of the first onset the window belongs to that shows what the rule asks."""
    return next(
        (
            time_s
            for time_s, onset in onsets
            if window.start_s - rule.event_s <= time_s <= window.end_s and _shows(onset, rule)
        ),
        None,
    )


def _first_onset_shows(
    onsets: list[tuple[float, Onset]], window: WindowEvidence, rule: ImpulseRule
) -> bool:
    """Return True when the first onset inside the window shows what the rule asks."""
    inside = [
        (time_s, onset) for time_s, onset in onsets if window.start_s <= time_s <= window.end_s
    ]
    if not inside:
        return False
    return _shows(min(inside, key=lambda item: item[0])[1], rule)


def _shows(onset: Onset, rule: ImpulseRule) -> bool:
    """Return True when the onset does what the rule's sound does (dies away, showers)."""
    return onset.decay_db >= rule.min_decay_db and onset.shower >= rule.min_shower
