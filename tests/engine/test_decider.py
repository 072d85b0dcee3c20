"""The decider: persistence, hold, cooldown, media context, and alarms that are never muted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from custom_components.guard_mode.engine.alarm_pattern import AlarmHit
from custom_components.guard_mode.engine.decider import (
    Decider,
    DeciderConfig,
    DeciderEvent,
    EventKind,
    Reason,
    WindowEvidence,
)
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.engine.onset import Onset

HOP = 0.48
# What a shot's onset shows (it dies away), and a breaking pane's (it also showers shards).
SHOT = Onset(frame=0, rise_db=40.0, peak_db=-12.0, decay_db=25.0, shower=0)
BREAK = Onset(frame=0, rise_db=40.0, peak_db=-12.0, decay_db=25.0, shower=9)


def window(
    index: int,
    scores: dict[Sound, float] | None = None,
    *,
    media: float = 0.0,
    peak_db: float = -30.0,
    onset: Onset | None = None,
    head: dict[str, float] | None = None,
    aligned: bool = False,
) -> WindowEvidence:
    """Window number index (0.96 s long, every 0.48 s) with normalized group scores."""
    scores = scores or {}
    return WindowEvidence(
        start_s=index * HOP,
        end_s=index * HOP + 0.96,
        level_db=peak_db - 6,
        peak_db=peak_db,
        scores=scores,
        confidence={sound: min(1.0, 0.5 * value) for sound, value in scores.items()},
        labels=dict.fromkeys(scores, "Dog"),  # the broad label: the strictest case
        media=media,
        onset_s=index * HOP + 0.1,
        onset=onset,
        head=head or {},
        aligned=aligned,
    )


def run(decider: Decider, windows: Iterable[WindowEvidence]) -> list[DeciderEvent]:
    events: list[DeciderEvent] = []
    for item in windows:
        events += decider.push_window(item)
    return events


def shot(index: int, *, score: float = 3.0, **kwargs: Any) -> list[WindowEvidence]:
    """A shot in window index: its onset dies away, and the next window hears it too."""
    hit = {Sound.GUNSHOT: score}
    return [window(index, hit, onset=SHOT, **kwargs), window(index + 1, hit, **kwargs)]


def onsets(events: list[DeciderEvent]) -> list[tuple[Sound, bool, Reason | None]]:
    return [
        (e.detection.sound, e.detection.suppressed, e.detection.reason)
        for e in events
        if e.kind is EventKind.ONSET
    ]


def test_one_weak_window_is_not_enough_two_are() -> None:
    decider = Decider()
    events = run(decider, [window(0, {Sound.DOG_BARK: 1.1}), window(6), window(7), window(8)])
    assert onsets(events) == []
    events = run(decider, [window(10, {Sound.DOG_BARK: 1.1}), window(11, {Sound.DOG_BARK: 1.2})])
    assert onsets(events) == [(Sound.DOG_BARK, False, None)]
    detection = events[0].detection
    assert detection.start_s == pytest.approx(10 * HOP + 0.1)  # the first hit's onset
    assert detection.confidence == pytest.approx(0.6)


def test_a_bark_is_confirmed_by_a_window_that_hears_it_less_surely() -> None:
    sound = Sound.DOG_BARK
    support = Decider().config.rules[sound].support
    assert support < 1.0
    below, above = support - 0.05, support + 0.05
    for scores, alerted in [
        ((1.1, above), True),
        ((above, 1.1), True),  # the hit may come second
        ((1.1, below), False),
        ((above, above), False),  # no hit at all
    ]:
        windows = [window(i, {sound: score}) for i, score in enumerate(scores)]
        assert onsets(run(Decider(), windows)) == ([(sound, False, None)] * alerted), scores


def test_one_strong_window_is_enough() -> None:
    events = run(Decider(), [window(0, {Sound.BABY_CRY: 2.5})])
    assert onsets(events) == [(Sound.BABY_CRY, False, None)]


def test_hits_further_apart_than_the_rule_allows_do_not_add_up() -> None:
    decider = Decider()
    rule = decider.config.rules[Sound.DOG_BARK]  # N hits whose ends lie within within_s
    apart = int(rule.within_s / HOP) + 1
    spaced = [window(i, {Sound.DOG_BARK: 1.2} if i % apart == 0 else {}) for i in range(30)]
    assert onsets(run(decider, spaced)) == []
    close = [window(100 + i, {Sound.DOG_BARK: 1.2}) for i in range(rule.hits)]
    assert onsets(run(decider, close)) == [(Sound.DOG_BARK, False, None)]


def test_a_shot_is_decided_on_its_onset() -> None:
    decider = Decider()
    shot = {Sound.GUNSHOT: 3.0}
    # The tagger alone, however sure: no onset that dies away, no shot (an engine's rattle).
    assert onsets(run(decider, [window(i, shot) for i in range(4)])) == []
    ongoing = Onset(frame=0, rise_db=40.0, peak_db=-12.0, decay_db=2.0, shower=0)
    assert onsets(run(decider, [window(5, shot, onset=ongoing)])) == []
    # A window holding an onset that dies away, even at a modest score, once another window of
    # the event (holding the onset, or at most event_s after it) hears the shot at half that.
    rule = decider.config.rules[Sound.GUNSHOT].impulse
    assert rule is not None
    first = window(9, {Sound.GUNSHOT: rule.score}, onset=SHOT, aligned=True)
    assert onsets(decider.push_window(first)) == []  # one window of the event: not yet
    events = decider.push_window(window(10, {Sound.GUNSHOT: rule.event_support}))
    assert onsets(events) == [(Sound.GUNSHOT, False, None)]
    assert events[0].detection.start_s == pytest.approx(first.onset_s)


def test_a_shot_heard_in_one_window_only_needs_the_head_to_be_sure() -> None:
    # A jackhammer's first stroke or a slammed door: one window of the event scores, no other.
    alone = [window(0, {Sound.GUNSHOT: 3.0}, onset=SHOT), window(1, {Sound.GUNSHOT: 0.3})]
    assert onsets(run(Decider(), [*alone, *(window(i) for i in range(2, 8))])) == []
    # The detection head, trained on real shots, is sure of it: one window is enough.
    sure = window(0, {Sound.GUNSHOT: 3.0}, onset=SHOT, head={Sound.GUNSHOT: 0.95})
    assert onsets(run(Decider(), [sure])) == [(Sound.GUNSHOT, False, None)]


def test_a_shot_is_not_confirmed_by_a_window_the_head_hears_as_fire() -> None:
    # A fire's first pop: the labels call it a shot in the window holding it (the head is unsure
    # there), and the next window, which would confirm it, is the fire crackling on.
    pop = window(0, {Sound.GUNSHOT: 3.0}, onset=SHOT, head={"crackling_fire": 0.5})
    crackling = window(1, {Sound.GUNSHOT: 1.0}, head={"crackling_fire": 0.7, Sound.GUNSHOT: 0.4})
    assert onsets(run(Decider(), [pop, crackling, *(window(i) for i in range(2, 8))])) == []
    # A shot from another room: its echo crackles too, but the head also hears the shot in it.
    echo = replace(crackling, head={"crackling_fire": 0.7, Sound.GUNSHOT: 0.6})
    assert onsets(run(Decider(), [pop, echo])) == [(Sound.GUNSHOT, False, None)]


def test_a_shot_dies_away_a_crackling_fire_goes_on() -> None:
    # Heard in two windows of its event (the head unsure of it in both) ...
    pop = window(0, {Sound.GUNSHOT: 3.0}, onset=SHOT)
    aligned = window(0, {Sound.GUNSHOT: 1.0}, onset=SHOT, aligned=True)
    decider = Decider()
    assert onsets(run(decider, [pop, aligned])) == []  # ... it waits for what comes after
    # ... then the first regular window after the onset is a fire crackling on: no shot.
    fire = {"crackling_fire": 0.95, Sound.GUNSHOT: 0.1}
    assert onsets(run(decider, [window(1, head=fire), *(window(i) for i in range(2, 8))])) == []
    # What follows a shot dies away; its echo crackles, but the head hears the shot in it too.
    for after in ({}, {"crackling_fire": 0.7, Sound.GUNSHOT: 0.6}):
        events = run(Decider(), [pop, aligned, window(1, head=after)])
        assert onsets(events) == [(Sound.GUNSHOT, False, None)]
        assert events[0].detection.start_s == pytest.approx(pop.onset_s)
    # The window after may come before the event is heard in its second window.
    for after, expected in (({}, [(Sound.GUNSHOT, False, None)]), (fire, [])):
        assert onsets(run(Decider(), [pop, window(1, head=after), aligned])) == expected
    # When the audio stops before that window comes (lost, or the stream's end), the shot counts.
    decider = Decider()
    run(decider, [pop, aligned])
    assert onsets(decider.gap(1.5)) == [(Sound.GUNSHOT, False, None)]
    decider = Decider()
    run(decider, [pop, aligned])
    assert onsets(decider.finish()) == [(Sound.GUNSHOT, False, None)]
    # A shot the head is sure of is alerted at once, whatever follows.
    sure = replace(pop, head={Sound.GUNSHOT: 0.95})
    assert onsets(Decider().push_window(sure)) == [(Sound.GUNSHOT, False, None)]


def test_a_shot_late_in_a_window_is_judged_once_its_onset_is_measured() -> None:
    # A regular window with the shot in its last 0.6 s scores high, but its onset is measured
    # only 0.6 s after it starts: the window waits for it (the onset's aligned window brings it).
    start = 10 * HOP
    late = replace(
        window(10, {Sound.GUNSHOT: 3.0}, head={Sound.GUNSHOT: 0.95}), onset_s=start + 0.8
    )

    def brings(onset: Onset, at_s: float = start + 0.8) -> WindowEvidence:
        """The aligned window of an onset at at_s: it scores low (the shot at its very start)."""
        aligned = window(0, {Sound.GUNSHOT: 0.3}, onset=onset, aligned=True)
        return replace(aligned, start_s=at_s - 0.04, end_s=at_s + 0.92, onset_s=at_s)

    decider = Decider()
    assert onsets(decider.push_window(late)) == []  # not yet: no onset measured in it
    events = decider.push_window(brings(SHOT))
    assert onsets(events) == [(Sound.GUNSHOT, False, None)]
    assert events[0].detection.start_s == pytest.approx(start + 0.8)

    # Not when the head does not hear a shot in it too (its score may be what came before) ...
    unheard = replace(late, head={Sound.GUNSHOT: 0.5})
    assert onsets(run(Decider(), [unheard, brings(SHOT)])) == []
    # ... nor when the onset does not die away (an engine starting) ...
    ongoing = Onset(frame=0, rise_db=40.0, peak_db=-12.0, decay_db=2.0, shower=0)
    assert onsets(run(Decider(), [late, brings(ongoing)])) == []
    # ... nor when something else started earlier in the window (a fire's crackle before a pop) ...
    crackle = brings(ongoing, at_s=start + 0.2)
    assert onsets(run(Decider(), [crackle, late, brings(SHOT)])) == []
    # ... nor when no onset comes in time.
    assert onsets(run(Decider(), [late, brings(SHOT, at_s=start + 3.0)])) == []


def test_a_late_window_counts_only_for_a_shot_the_head_is_sure_of() -> None:
    # A window aligned to end just after a shot's onset: YAMNet hears a shot best there, and
    # hears any sharp sound after quiet as one, so only a shot the head is sure of counts.
    def late(scores: dict[Sound, float], head: dict[str, float]) -> WindowEvidence:
        aligned = window(0, scores, onset=SHOT, head=head, aligned=True)
        return replace(aligned, onset_s=aligned.end_s - 0.1)

    assert late({}, {}).late
    echo = window(1, {Sound.GUNSHOT: 0.6})  # the shot's next window, at 0.6x the threshold
    sure = late({Sound.GUNSHOT: 2.0}, {Sound.GUNSHOT: 0.95})
    assert onsets(run(Decider(), [sure, echo])) == [(Sound.GUNSHOT, False, None)]
    unsure = late({Sound.GUNSHOT: 2.0}, {Sound.GUNSHOT: 0.8})
    assert onsets(run(Decider(), [unsure, echo])) == []
    # Nor is a late window the head is unsure of a shot's second window: it is not seen at all.
    shot_alone = window(1, {Sound.GUNSHOT: 3.0}, onset=SHOT)
    behind = replace(unsure, start_s=0.5, end_s=1.46, onset_s=1.36)
    assert onsets(run(Decider(), [shot_alone, behind, window(2)])) == []
    assert onsets(run(Decider(), [shot_alone, echo, window(2)])) == [(Sound.GUNSHOT, False, None)]
    # Nothing else is heard in it: not a dog, not a smoke alarm, not glass.
    others = {Sound.DOG_BARK: 3.0, Sound.SMOKE_ALARM: 3.0, Sound.GLASS_BREAK: 3.0}
    heard = {Sound.DOG_BARK: 0.99, Sound.GLASS_BREAK: 0.99}
    windows = [
        replace(late(others, heard), start_s=i * HOP, end_s=i * HOP + 0.96, onset_s=i * HOP + 0.86)
        for i in range(10)
    ]
    assert onsets(run(Decider(), windows)) == []
    # The same windows, not late, are a dog, a smoke alarm and glass.
    heard_whole = [replace(w, onset_s=w.start_s + 0.1, onset=BREAK) for w in windows]
    assert {sound for sound, _, _ in onsets(run(Decider(), heard_whole))} == {
        Sound.DOG_BARK,
        Sound.SMOKE_ALARM,
        Sound.GLASS_BREAK,
    }


def test_glass_must_shower_shards_a_knock_on_glass_does_not() -> None:
    glass = {Sound.GLASS_BREAK: 2.5}
    assert onsets(run(Decider(), [window(0, glass, onset=SHOT)])) == []  # rings, no shards
    assert onsets(run(Decider(), [window(0, glass, onset=BREAK)])) == [
        (Sound.GLASS_BREAK, False, None)
    ]


def test_the_head_hears_what_the_labels_miss_and_vetoes_what_they_mistake() -> None:
    # A bark the labels barely hear (0.3) but the head is sure of: two such windows are a dog.
    sure = {Sound.DOG_BARK: 0.99}
    events = run(Decider(), [window(i, {Sound.DOG_BARK: 0.3}, head=sure) for i in range(2)])
    assert onsets(events) == [(Sound.DOG_BARK, False, None)]
    # A rooster's crow that the labels call a dog: the head hears the rooster.
    rooster = {"rooster": 0.95}
    events = run(Decider(), [window(i, {Sound.DOG_BARK: 2.0}, head=rooster) for i in range(4)])
    assert onsets(events) == []
    # A crackling fire's pop that the labels call a shot, heard in two windows as a shot is.
    assert onsets(run(Decider(), shot(0))) == [(Sound.GUNSHOT, False, None)]
    assert onsets(run(Decider(), shot(0, head={"crackling_fire": 0.9}))) == []
    # ... unless the head, trained on real shots, is sure it is one (a shot's echo crackles too).
    shot_in_fire = {"crackling_fire": 0.9, Sound.GUNSHOT: 0.95}
    events = run(Decider(), [window(0, {Sound.GUNSHOT: 3.0}, onset=SHOT, head=shot_in_fire)])
    assert onsets(events) == [(Sound.GUNSHOT, False, None)]
    # The head's gunshot alone is no shot: the labels and the onset rule still decide.
    events = run(Decider(), [window(0, {Sound.GUNSHOT: 0.2}, onset=SHOT, head=shot_in_fire)])
    assert onsets(events) == []


def test_a_baby_crying_is_not_also_a_dog() -> None:
    decider = Decider()
    crying = [window(i, {Sound.BABY_CRY: 2.0}) for i in range(3)]
    assert onsets(run(decider, crying)) == [(Sound.BABY_CRY, False, None)]
    # The same crying also scores "Dog" (broad label) or both at once: that is not a dog.
    both = window(3, {Sound.BABY_CRY: 1.5, Sound.DOG_BARK: 1.2})
    only_dog_label = [window(i, {Sound.DOG_BARK: 2.0}) for i in range(4, 7)]
    events = run(decider, [both, *only_dog_label])
    assert Sound.DOG_BARK not in [sound for sound, _, _ in onsets(events)]
    # Real barks ("Bark" label) during the crying still count.
    barks = [
        WindowEvidence(
            start_s=i * HOP,
            end_s=i * HOP + 0.96,
            level_db=-36,
            peak_db=-30,
            scores={Sound.DOG_BARK: 2.0},
            confidence={Sound.DOG_BARK: 0.9},
            labels={Sound.DOG_BARK: "Bark"},
            media=0.0,
            onset_s=i * HOP,
        )
        for i in (8, 9)
    ]
    assert onsets(run(decider, barks)) == [(Sound.DOG_BARK, False, None)]


def test_hold_keeps_one_detection_open_across_short_gaps_then_ends_it() -> None:
    decider = Decider()
    hold = decider.config.rules[Sound.DOG_BARK].hold_s
    bark = {Sound.DOG_BARK: 1.5}
    pattern = [window(i, bark if i in (0, 1, 5, 6, 12) else {}) for i in range(40)]
    events = run(decider, pattern)
    assert len(onsets(events)) == 1
    offsets = [e for e in events if e.kind is EventKind.OFFSET]
    assert len(offsets) == 1
    assert offsets[0].detection.end_s == pytest.approx(12 * HOP + 0.96)
    # it ended once hold_s had passed without a hit
    assert offsets[0].detection.id == events[0].detection.id
    assert hold < (40 - 12) * HOP


def test_a_gap_ends_what_it_outlasts_and_no_evidence_spans_it() -> None:
    decider = Decider()
    bark = {Sound.DOG_BARK: 1.1}
    assert onsets(run(decider, [window(0, bark)])) == []
    assert decider.gap(3600.0) == []
    after = int(3600 / HOP) + 1
    assert onsets(run(decider, [window(after, bark)])) == []  # one hit on each side of an hour
    events = run(decider, [window(after + 1, bark)])
    assert onsets(events) == [(Sound.DOG_BARK, False, None)]
    assert events[0].detection.start_s > 3600
    # A gap longer than the hold ends the detection; the cooldown still counts after it.
    (offset,) = decider.gap(window(after + 1).end_s + 10.0)
    assert offset.kind is EventKind.OFFSET
    assert offset.detection.id == events[0].detection.id
    again = run(decider, [window(after + 30 + i, bark) for i in range(2)])
    assert onsets(again) == [(Sound.DOG_BARK, True, Reason.COOLDOWN)]


def test_media_context_does_not_span_a_gap() -> None:
    decider = Decider()
    needed = decider.config.media_min_windows
    run(decider, [window(i, media=0.9) for i in range(needed - 1)])
    decider.gap(3600.0)
    run(decider, [window(int(3600 / HOP) + 1, media=0.9)])
    assert not decider.media_active


def test_cooldown_reports_a_repeat_as_cooldown() -> None:
    decider = Decider()
    first = run(decider, shot(0) + [window(i) for i in range(2, 20)])
    again = run(decider, shot(20))
    assert onsets(first) == [(Sound.GUNSHOT, False, None)]
    assert onsets(again) == [(Sound.GUNSHOT, True, Reason.COOLDOWN)]
    later = run(decider, [window(i) for i in range(22, 100)] + shot(100))
    assert onsets(later) == [(Sound.GUNSHOT, False, None)]  # past the cooldown: a new alert


def test_media_context_suppresses_media_prone_sounds_with_a_reason() -> None:
    decider = Decider()
    tv = [window(i, media=0.9, peak_db=-25) for i in range(12)]
    events = run(decider, tv)
    assert decider.media_active
    events = run(decider, shot(12, media=0.9, peak_db=-20))
    assert onsets(events) == [(Sound.GUNSHOT, True, Reason.MEDIA)]
    assert decider.media_s > 0


def test_a_sound_much_louder_than_the_media_is_real() -> None:
    decider = Decider()
    run(decider, [window(i, media=0.9, peak_db=-35) for i in range(12)])
    barks = [window(i, {Sound.DOG_BARK: 2.5}, media=0.6, peak_db=-15) for i in (12, 13)]
    assert onsets(run(decider, barks)) == [(Sound.DOG_BARK, False, None)]


def test_short_media_is_not_media_context() -> None:
    decider = Decider()
    run(decider, [window(i, media=0.9 if i < 5 else 0.0) for i in range(12)])
    assert not decider.media_active
    events = run(decider, [window(12, {Sound.GLASS_BREAK: 3.0}, onset=BREAK)])
    assert onsets(events) == [(Sound.GLASS_BREAK, False, None)]


def test_media_context_ends_some_seconds_after_the_media() -> None:
    decider = Decider()
    config = decider.config
    run(decider, [window(i, media=0.9) for i in range(14)])
    # the last media-like windows leave the look-back, then the hold runs out
    lingering = (config.media_window - config.media_min_windows + 1) * HOP + config.media_hold_s
    quiet = int(lingering / HOP) + 2
    run(decider, [window(i) for i in range(14, 14 + quiet - 3)])
    assert decider.media_active
    run(decider, [window(i) for i in range(14 + quiet - 3, 14 + quiet)])
    assert not decider.media_active


def test_a_playing_media_player_suppresses_media_prone_sounds() -> None:
    decider = Decider()
    decider.media_player_playing = True
    run(decider, [window(i, peak_db=-30) for i in range(6)])
    events = run(decider, [window(6, {Sound.BABY_CRY: 3.0}, peak_db=-28)])
    assert onsets(events) == [(Sound.BABY_CRY, True, Reason.MEDIA_PLAYER)]


@pytest.mark.parametrize("player", [False, True])
def test_alarms_are_never_suppressed_by_media(player: bool) -> None:
    decider = Decider()
    decider.media_player_playing = player
    run(decider, [window(i, media=1.0) for i in range(16)])
    assert decider.media_active
    events = run(decider, [window(i, {Sound.SMOKE_ALARM: 3.0}, media=1.0) for i in range(16, 22)])
    assert onsets(events) == [(Sound.SMOKE_ALARM, False, None)]
    hit = AlarmHit("co_alarm", "T4", 3100.0, 20.0, 26.0, 0.9)
    assert onsets(decider.push_alarm(hit)) == [(Sound.CO_ALARM, False, None)]


def test_pattern_hits_open_and_extend_one_alarm() -> None:
    decider = Decider()
    first = decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 1.0, 5.0, 0.8))
    second = decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 5.0, 9.0, 0.95))
    assert onsets(first) == [(Sound.SMOKE_ALARM, False, None)]
    assert second == []
    assert first[0].detection.label == "T3 pattern"
    (end,) = decider.finish()
    assert end.kind is EventKind.OFFSET
    assert end.detection.end_s == 9.0
    assert end.detection.confidence == 0.95


def test_weak_pattern_cycles_must_go_on() -> None:
    # Notes of music pulse in an alarm's rhythm for a cycle or two; an alarm goes on.
    decider = Decider()
    weak = decider.config.pattern_confidence - 0.1
    assert decider.config.weak_cycles == 3
    assert decider.push_alarm(AlarmHit("smoke_alarm", "T3", 494.6, 1.0, 5.0, weak)) == []
    # Not the same carrier, then a cycle late: each starts a new run.
    assert decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 5.0, 9.0, weak)) == []
    assert decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 13.0, 17.0, weak)) == []
    assert decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 17.1, 21.1, weak)) == []
    events = decider.push_alarm(AlarmHit("smoke_alarm", "T3", 3100.0, 21.0, 25.0, weak))
    assert onsets(events) == [(Sound.SMOKE_ALARM, False, None)]
    assert events[0].detection.start_s == 13.0  # when the run of cycles began
    strong = Decider()
    hit = AlarmHit("smoke_alarm", "T3", 3100.0, 1.0, 5.0, strong.config.pattern_confidence)
    assert onsets(strong.push_alarm(hit)) == [(Sound.SMOKE_ALARM, False, None)]


def test_a_weak_t4_cycle_still_makes_tagger_alarm_evidence_co() -> None:
    decider = Decider()
    weak = AlarmHit("co_alarm", "T4", 3100.0, 0.0, 6.0, decider.config.pattern_confidence - 0.1)
    assert decider.push_alarm(weak) == []
    events = run(decider, [window(i, {Sound.SMOKE_ALARM: 2.5}) for i in range(13, 16)])
    assert onsets(events) == []


def test_tagger_alarm_evidence_during_a_t4_pattern_is_the_co_alarm() -> None:
    decider = Decider()
    decider.push_alarm(AlarmHit("co_alarm", "T4", 3100.0, 0.0, 6.0, 0.9))
    events = run(decider, [window(i, {Sound.SMOKE_ALARM: 2.5}) for i in range(13, 16)])
    assert Sound.SMOKE_ALARM not in [sound for sound, _, _ in onsets(events)]


def test_tagger_alarm_evidence_must_outlast_a_t4_burst_before_it_is_smoke() -> None:
    # A T4 group (four 0.1 s beeps, then 5 s of quiet) is heard by at most 4 windows in a row:
    # the tagger's "Smoke detector" on those is no smoke alarm (the pattern will say CO).
    decider = Decider()
    burst = [window(i, {Sound.SMOKE_ALARM: 3.0} if i % 12 < 4 else {}) for i in range(30)]
    assert onsets(run(decider, burst)) == []
    # A T3 or continuous alarm goes on: once its windows span 2.5 s, it is the smoke alarm.
    events = run(decider, [window(i, {Sound.SMOKE_ALARM: 3.0}) for i in range(40, 47)])
    assert onsets(events) == [(Sound.SMOKE_ALARM, False, None)]
    first_end = window(40).end_s
    opened = next(e for e in events if e.kind is EventKind.ONSET)
    assert (
        opened.detection.end_s - window(40).start_s
        >= decider.config.rules[Sound.SMOKE_ALARM].span_s
    )
    assert opened.detection.end_s > first_end


def test_disabled_sounds_are_not_reported() -> None:
    decider = Decider(DeciderConfig(enabled=frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM})))
    both = {Sound.GUNSHOT: 3.0, Sound.SMOKE_ALARM: 3.0}
    events = run(decider, [window(i, both, onset=SHOT) for i in range(7)])
    assert onsets(events) == [(Sound.SMOKE_ALARM, False, None)]


def test_aligned_windows_do_not_count_as_media_context() -> None:
    decider = Decider()
    needed = decider.config.media_min_windows
    run(decider, [window(i, media=0.9, aligned=True) for i in range(2 * needed)])
    assert not decider.media_active


def test_finish_closes_open_detections() -> None:
    decider = Decider()
    run(decider, shot(0))
    assert [e.kind for e in decider.finish()] == [EventKind.OFFSET]
    assert decider.finish() == []
