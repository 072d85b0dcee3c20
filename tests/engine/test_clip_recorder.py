"""The evidence-clip recorder: pre-roll from a ring buffer, then post-roll, bounded."""

from __future__ import annotations

import numpy as np

from custom_components.guard_mode.engine.clip_recorder import MAX_OPEN_CLIPS, ClipRecorder


def ramp(start: int, count: int) -> np.ndarray:
    """Samples whose value tells their position (so order and gaps are visible)."""
    return np.arange(start, start + count, dtype=np.int16)


def test_clip_has_pre_roll_then_post_roll_in_order() -> None:
    recorder = ClipRecorder(pre_s=0.01, post_s=0.02)  # 160 + 320 samples
    for start in range(0, 1000, 70):  # chunks of odd sizes wrap the ring many times
        assert recorder.push(ramp(start, 70)) == []
    assert recorder.start("a")
    finished = []
    for start in range(1050, 1500, 50):
        finished += recorder.push(ramp(start, 50))
    assert [name for name, _ in finished] == ["a"]
    pcm = finished[0][1]
    assert len(pcm) == 160 + 320
    np.testing.assert_array_equal(pcm[:160], np.arange(1050 - 160, 1050))
    np.testing.assert_array_equal(pcm[160:], np.arange(1050, 1050 + 320))


def test_pre_roll_is_what_there_is_at_the_start() -> None:
    recorder = ClipRecorder(pre_s=1.0, post_s=0.001)
    recorder.push(ramp(0, 100))
    recorder.start("early")
    ((name, pcm),) = recorder.push(ramp(100, 100))
    assert name == "early"
    np.testing.assert_array_equal(pcm, np.arange(0, 116))


def test_open_clips_are_bounded_and_flushed() -> None:
    recorder = ClipRecorder(pre_s=0.01, post_s=10.0)
    started = [recorder.start(str(n)) for n in range(MAX_OPEN_CLIPS + 3)]
    assert started.count(True) == MAX_OPEN_CLIPS
    recorder.push(ramp(0, 1000))
    flushed = recorder.flush()
    assert len(flushed) == MAX_OPEN_CLIPS
    assert all(len(pcm) == 1000 for _, pcm in flushed)
    assert recorder.flush() == []
