"""The decider: persistence, hold, cooldown, media context, and alarms that are never muted."""

from __future__ import annotations

from collections.abc import Iterable

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

HOP = 0.48


def window(
    index: int,
    scores: dict[Sound, float] | None = None,
    *,
    media: float = 0.0,
    peak_db: float = -30.0,
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
    )


def run(decider: Decider, windows: Iterable[WindowEvidence]) -> list[DeciderEvent]:
    events: list[DeciderEvent] = []
    for item in windows:
        events += decider.push_window(item)
    return events


def onsets(events: list[DeciderEvent]) -> list[tuple[Sound, bool, Reason | None]]:
    return [
        (e.detection.sound, e.detection.suppressed, e.detection.reason)
        for e in events
        if e.kind is EventKind.ONSET
    ]


def test_one_weak_window_is_not_enough_two_are() -> None:
    decider = Decider()
    events = run(decider, [window(0, {Sound.GLASS_BREAK: 1.1}), window(1), window(2), window(3)])
    assert onsets(events) == []
    events = run(
        decider, [window(10, {Sound.GLASS_BREAK: 1.1}), window(11, {Sound.GLASS_BREAK: 1.2})]
    )
    assert onsets(events) == [(Sound.GLASS_BREAK, False, None)]
    detection = events[0].detection
    assert detection.start_s == pytest.approx(10 * HOP + 0.1)  # the first hit's onset
    assert detection.confidence == pytest.approx(0.6)


def test_one_strong_window_is_enough() -> None:
    events = run(Decider(), [window(0, {Sound.GUNSHOT: 2.5})])
    assert onsets(events) == [(Sound.GUNSHOT, False, None)]


def test_hits_outside_the_window_of_m_do_not_add_up() -> None:
    decider = Decider()
    rule = decider.config.rules[Sound.BABY_CRY]  # N hits among the last M windows
    spaced = [window(i, {Sound.BABY_CRY: 1.2} if i % rule.of == 0 else {}) for i in range(30)]
    assert onsets(run(decider, spaced)) == []  # never two hits within M windows
    close = [window(100 + i, {Sound.BABY_CRY: 1.2}) for i in range(rule.hits)]
    assert onsets(run(decider, close)) == [(Sound.BABY_CRY, False, None)]


def test_a_baby_crying_is_not_also_a_dog() -> None:
    decider = Decider()
    crying = [window(i, {Sound.BABY_CRY: 2.0}) for i in range(3)]
    assert onsets(run(decider, crying)) == [(Sound.BABY_CRY, False, None)]
    # The same crying also scores "Dog" (broad label) or both at once: that is not a dog.
    both = window(3, {Sound.BABY_CRY: 1.5, Sound.DOG_BARK: 1.2})
    only_dog_label = [window(i, {Sound.DOG_BARK: 2.0}) for i in range(4, 7)]
    events = run(decider, [both, *only_dog_label])
    assert Sound.DOG_BARK not in [sound for sound, _, _ in onsets(events)]
    # A real bark ("Bark" label) during the crying still counts.
    bark = WindowEvidence(
        start_s=8 * HOP, end_s=8 * HOP + 0.96, level_db=-36, peak_db=-30,
        scores={Sound.DOG_BARK: 2.0}, confidence={Sound.DOG_BARK: 0.9},
        labels={Sound.DOG_BARK: "Bark"}, media=0.0, onset_s=8 * HOP,
    )  # fmt: skip
    assert onsets(decider.push_window(bark)) == [(Sound.DOG_BARK, False, None)]


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
    hit = {Sound.GUNSHOT: 3.0}
    first = run(decider, [window(0, hit)] + [window(i) for i in range(1, 20)])
    again = run(decider, [window(20, hit)])
    assert onsets(first) == [(Sound.GUNSHOT, False, None)]
    assert onsets(again) == [(Sound.GUNSHOT, True, Reason.COOLDOWN)]
    later = run(decider, [window(i) for i in range(21, 100)] + [window(100, hit)])
    assert onsets(later) == [(Sound.GUNSHOT, False, None)]  # past the cooldown: a new alert


def test_media_context_suppresses_media_prone_sounds_with_a_reason() -> None:
    decider = Decider()
    tv = [window(i, media=0.9, peak_db=-25) for i in range(12)]
    events = run(decider, tv)
    assert decider.media_active
    events = run(decider, [window(12, {Sound.GUNSHOT: 3.0}, media=0.9, peak_db=-20)])
    assert onsets(events) == [(Sound.GUNSHOT, True, Reason.MEDIA)]
    assert decider.media_s > 0


def test_a_sound_much_louder_than_the_media_is_real() -> None:
    decider = Decider()
    run(decider, [window(i, media=0.9, peak_db=-35) for i in range(12)])
    events = run(decider, [window(12, {Sound.DOG_BARK: 2.5}, media=0.6, peak_db=-15)])
    assert onsets(events) == [(Sound.DOG_BARK, False, None)]


def test_short_media_is_not_media_context() -> None:
    decider = Decider()
    run(decider, [window(i, media=0.9 if i < 5 else 0.0) for i in range(12)])
    assert not decider.media_active
    events = run(decider, [window(12, {Sound.GLASS_BREAK: 3.0})])
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
    events = run(decider, [window(16, {Sound.SMOKE_ALARM: 3.0}, media=1.0)])
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


def test_tagger_alarm_evidence_during_a_t4_pattern_is_the_co_alarm() -> None:
    decider = Decider()
    decider.push_alarm(AlarmHit("co_alarm", "T4", 3100.0, 0.0, 6.0, 0.9))
    events = run(decider, [window(i, {Sound.SMOKE_ALARM: 2.5}) for i in range(13, 16)])
    assert Sound.SMOKE_ALARM not in [sound for sound, _, _ in onsets(events)]


def test_disabled_sounds_are_not_reported() -> None:
    decider = Decider(DeciderConfig(enabled=frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM})))
    events = run(decider, [window(0, {Sound.GUNSHOT: 3.0, Sound.SMOKE_ALARM: 3.0})])
    assert onsets(events) == [(Sound.SMOKE_ALARM, False, None)]


def test_finish_closes_open_detections() -> None:
    decider = Decider()
    run(decider, [window(0, {Sound.GUNSHOT: 3.0})])
    assert [e.kind for e in decider.finish()] == [EventKind.OFFSET]
    assert decider.finish() == []
