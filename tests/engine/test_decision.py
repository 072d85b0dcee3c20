"""The decision side of a stream: evidence in order, the satellite's settings, what it shows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from custom_components.guard_mode.engine import (
    AlarmHit,
    CustomSound,
    DeciderConfig,
    EventKind,
    Gap,
    Sound,
    StreamDecision,
    WindowEvidence,
)


def window(end_s: float, level_db: float = -40.0, *, aligned: bool = False) -> WindowEvidence:
    """A quiet window the tagger heard nothing in."""
    return WindowEvidence(
        start_s=end_s - 0.96,
        end_s=end_s,
        level_db=level_db,
        peak_db=level_db + 3.0,
        scores=dict.fromkeys(Sound, 0.0),
        confidence={},
        labels={},
        media=0.0,
        onset_s=end_s - 0.96,
        aligned=aligned,
    )


def t3(end_s: float) -> AlarmHit:
    return AlarmHit("smoke_alarm", "T3", 3100.0, end_s - 4.0, end_s, 0.9)


def test_counts_regular_windows_and_keeps_the_loudest_level() -> None:
    decision = StreamDecision()
    gated = WindowEvidence(1.44, 2.4, -80.0, -78.0, {}, {}, {}, 0.0, 1.44)
    decision.push([window(0.96, -50.0), window(1.44, -30.0), gated], 2.4)
    decision.push([window(1.2, -10.0, aligned=True)], 2.5)  # aligned windows are extra looks
    assert (decision.windows, decision.gated_windows) == (3, 1)
    assert decision.take_peak_level() == -30.0
    assert decision.take_peak_level() is None  # taken
    assert decision.time_s == 2.5


def test_alarm_pattern_then_a_gap_that_outlasts_the_hold() -> None:
    decision = StreamDecision()
    [onset] = decision.push([window(4.0), t3(4.5)], 4.5)
    assert (onset.kind, onset.detection.sound) == (EventKind.ONSET, Sound.SMOKE_ALARM)
    assert decision.push([Gap(4.6)], 4.6) == []  # the hold (12 s) still runs
    [offset] = decision.push([Gap(60.0)], 60.0)
    assert offset.kind is EventKind.OFFSET
    assert offset.detection.id == onset.detection.id


def test_settings_change_what_is_decided() -> None:
    decision = StreamDecision()
    decision.configure(enabled=frozenset({Sound.DOG_BARK}))
    assert decision.push([t3(4.5)], 4.5) == []  # smoke alarms not wanted just now
    decision.configure(enabled=frozenset(Sound))
    assert decision.push([t3(9.0)], 9.0)
    assert decision.status()["enabled_sounds"] == sorted(Sound)


def test_a_sound_no_longer_listened_for_ends_its_detection() -> None:
    """Disarmed while a dog barks, the microphone kept open for alarms: the dog ends now."""
    decision = StreamDecision()

    def barking(end_s: float) -> WindowEvidence:
        return replace(window(end_s, -30.0), scores={Sound.DOG_BARK: 2.0})

    [onset] = decision.push([barking(0.96), barking(1.44)], 1.5)
    assert (onset.kind, onset.detection.sound) == (EventKind.ONSET, Sound.DOG_BARK)
    [offset] = decision.configure(enabled=frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM}))
    assert (offset.kind, offset.detection.id) == (EventKind.OFFSET, onset.detection.id)
    assert decision.push([barking(1.92), barking(2.4)], 2.5) == []  # still barking: nothing
    assert decision.configure(enabled=frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM})) == []


def test_embeddings_are_wanted_only_while_learning_needs_them() -> None:
    decision = StreamDecision(DeciderConfig())
    assert not decision.wants_embeddings
    recorded: list[WindowEvidence] = []
    stop = decision.record(recorded.append)
    assert decision.wants_embeddings
    embedding = np.full(1024, 1 / 32, np.float16)
    decision.push([WindowEvidence(0.0, 0.96, -30.0, -27.0, {}, {}, {}, 0.0, 0.0, embedding)], 1.0)
    stop()
    assert not decision.wants_embeddings
    assert [w.embedding is embedding for w in recorded] == [True]
    decision.configure(remember=True)  # "not a threat" needs a detection's windows
    assert decision.wants_embeddings


def test_every_window_is_wanted_only_while_learning_matches_each_one() -> None:
    """Custom sounds and teaching recordings compare every window; "not a threat" does not."""
    decision = StreamDecision(DeciderConfig(remember=True))
    assert not decision.wants_every_window
    stop = decision.record(lambda _window: None)
    assert decision.wants_every_window
    stop()
    assert not decision.wants_every_window
    doorbell = CustomSound("custom_doorbell", "Doorbell", np.eye(1, 1024, dtype=np.float32), 0.8)
    decision.configure(custom=(doorbell,))
    assert decision.wants_every_window


def test_background_is_what_no_sound_was_heard_in() -> None:
    decision = StreamDecision(DeciderConfig(remember=True))
    embedding = np.full(1024, 1 / 32, np.float16)
    quiet = [
        WindowEvidence(t, t + 0.96, -60.0, -57.0, {}, {}, {}, 0.0, t, embedding)
        for t in np.arange(0.0, 6.0, 0.48)
    ]
    decision.push(quiet, 6.0)
    background = decision.background_embeddings()
    assert background.dtype == np.float32
    assert len(background) == len(quiet) // 3  # every third quiet window is kept
    assert decision.detection_embeddings() == {}
