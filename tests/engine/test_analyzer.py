"""The stream's windows: regular ones every 0.48 s, and extra ones aligned to short sounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from custom_components.guard_mode.engine.analyzer import (
    ALIGNED_LEADS,
    ALIGNED_NEAR_FRAMES,
    CALM_AFTER_ONSET_S,
    MEDIA_CONTEXT,
    MEDIA_LIKE,
    MEDIA_WINDOWS,
    PendingWindows,
    StreamAnalyzer,
)
from custom_components.guard_mode.engine.decider import Decider, DeciderConfig, WindowEvidence
from custom_components.guard_mode.engine.frontend import FRAME_HOP, PATCH_HOP_FRAMES, SAMPLE_RATE
from custom_components.guard_mode.engine.head import DetectionHead, shipped_head
from custom_components.guard_mode.engine.onset import MATURE_FRAMES
from custom_components.guard_mode.engine.tagger import load_tagger
from tests import synth

FRAME_S = FRAME_HOP / SAMPLE_RATE
MATURE_S = MATURE_FRAMES * FRAME_S
LATE_LEAD = max(ALIGNED_LEADS)


def click(seconds: float = 0.6, peak_db: float = -12.0) -> np.ndarray:
    n = synth.samples(seconds)
    noise = synth.rng(4).standard_normal(n) * np.exp(-np.arange(n) / SAMPLE_RATE / 0.05)
    return (noise / np.abs(noise).max() * synth.db_to_amp(peak_db)).astype(np.float32)


def stream(audio: np.ndarray, chunk: int = 1280) -> tuple[StreamAnalyzer, list[PendingWindows]]:
    analyzer = StreamAnalyzer()
    pending = [analyzer.feed(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    return analyzer, pending


@pytest.mark.parametrize("at_s", [0.3, 1.0, 1.13, 1.27, 1.41])
def test_a_short_sound_gets_windows_aligned_to_it(at_s: float) -> None:
    audio = synth.mix(synth.pink_noise(4.0, -62.0, synth.rng(1)), synth.place(click(), at_s, 4.0))
    analyzer, pending = stream(audio)
    windows = [w for p in pending for w in p.windows]
    aligned = [w for w in windows if w.aligned]
    assert aligned
    assert all(w.onset is not None for w in aligned)
    leads = sorted(round((w.onset_s - w.start_s) / FRAME_S) for w in aligned)
    onset = aligned[0].onset
    assert onset is not None
    wanted = [lead for lead in ALIGNED_LEADS if lead not in _near_regular(onset.frame, lead)]
    assert leads == sorted(wanted)
    assert all(abs(w.onset_s - at_s) <= 0.03 for w in aligned)
    # Windows reach the tagger (and the decider) each once, in the order they are due: when
    # they end, and an aligned one once its onset is measured (the late one after regular ones
    # that end later).
    due = [max(w.end_s, w.onset_s + MATURE_S) if w.aligned else w.end_s for w in windows]
    assert due == sorted(due)
    late = [w for w in aligned if w.late]
    assert len(late) == (LATE_LEAD not in _near_regular(onset.frame, LATE_LEAD))
    assert all(w.end_s - w.onset_s < 0.2 for w in late)  # the sound's start ends the window
    # Right after the stream starts, the late window starts before it, in digital silence.
    assert all(w.start_s < 0 for w in late) == (at_s < 0.8)
    assert len({(w.start_s, w.end_s) for w in windows}) == len(windows)
    assert analyzer.aligned_windows == len(aligned)
    assert analyzer.windows == len(windows) - len(aligned)  # regular windows only


def _near_regular(onset: int, lead: int) -> set[int]:
    """Return {lead} when a regular window starts within ALIGNED_NEAR_FRAMES of that window."""
    offset = (onset - lead) % PATCH_HOP_FRAMES
    near = min(offset, PATCH_HOP_FRAMES - offset) <= ALIGNED_NEAR_FRAMES
    return {lead} if near else set()


def test_the_patches_match_the_windows_for_any_chunking() -> None:
    audio = synth.mix(synth.pink_noise(5.0, -62.0, synth.rng(2)), synth.place(click(), 2.2, 5.0))
    results = []
    for chunk in (160, 1280, 16000, len(audio)):
        _, pending = stream(audio, chunk)
        patches = np.concatenate([p.patches for p in pending])
        starts = [w.start_s for p in pending for w in p.windows if not w.gated]
        assert len(patches) == len(starts)
        results.append((starts, patches))
    for starts, patches in results[1:]:
        assert starts == results[0][0]
        np.testing.assert_allclose(patches, results[0][1], atol=1e-5)


def test_the_worker_is_woken_for_an_aligned_window_before_the_next_regular_one() -> None:
    audio = synth.mix(synth.pink_noise(3.0, -62.0, synth.rng(3)), synth.place(click(), 1.2, 3.0))
    analyzer = StreamAnalyzer()
    sooner = 0
    for fed in range(160, len(audio), 160):
        analyzer.feed(audio[fed - 160 : fed])
        frames = analyzer.frontend.frames
        end = next(e for e in itertools.count(96, PATCH_HOP_FRAMES) if e > frames)
        aligned = min((max(s + 96, o + MATURE_FRAMES) for s, o in analyzer._aligned), default=end)
        if aligned < end:
            end, sooner = aligned, sooner + 1
        wanted = max((end - 1) * FRAME_HOP + 400 - fed, 0) / SAMPLE_RATE
        assert analyzer.seconds_to_next_window() == pytest.approx(wanted)
    assert sooner  # there was a stretch where the aligned window came first


@pytest.mark.parametrize("after_s", [0.1, 0.2])
def test_a_shot_right_after_a_noise_starts_gets_windows_of_its_own(after_s: float) -> None:
    """The noise's onset would share its windows with anything a hop after it; a much louder
    sound right after it is an event of its own (see test_onset), tagged whole from its start.
    A window both would plan is tagged once."""
    street = synth.pink_noise(2.0, -22.0, synth.rng(8))
    audio = synth.mix(synth.place(street, 1.0, 3.5), synth.place(click(0.6, 0.0), 1 + after_s, 3.5))
    _, pending = stream(audio)
    aligned = [w for p in pending for w in p.windows if w.aligned]
    shot = [w for w in aligned if w.onset_s > 1.05]
    assert shot
    assert all(abs(w.onset_s - 1 - after_s) <= 0.03 for w in shot)
    assert all(w.onset is not None and w.onset.decay_db >= 6 for w in shot)
    starts = [w.start_s for w in aligned]
    assert len(starts) == len(set(starts))


def test_lost_audio_forgets_planned_windows() -> None:
    audio = synth.mix(synth.pink_noise(3.0, -62.0, synth.rng(3)), synth.place(click(), 1.2, 3.0))
    analyzer = StreamAnalyzer()
    analyzer.feed(audio[: int(1.3 * SAMPLE_RATE)])
    assert analyzer._aligned
    analyzer.skip(SAMPLE_RATE)
    assert analyzer._aligned == []
    after = analyzer.feed(np.zeros(2 * SAMPLE_RATE, np.float32))
    assert not any(w.aligned for w in after.windows)


def test_windows_are_heard_by_the_head_the_stream_was_given() -> None:
    """Evaluation judges a clip with a head that never heard it; a stream takes any head."""
    sure = DetectionHead(
        ("dog_bark",), np.zeros((1024, 1), np.float32), np.array([30.0], np.float32)
    )
    audio = synth.pink_noise(3.0, -30.0, synth.rng(2))
    tagger = load_tagger()
    heard: dict[str, list[dict[str, float]]] = {}
    for name, analyzer in [("given", StreamAnalyzer(head=sure)), ("shipped", StreamAnalyzer())]:
        evidence = [
            item
            for i in range(0, len(audio), 1280)
            for item in analyzer.process(audio[i : i + 1280], tagger)
            if isinstance(item, WindowEvidence) and not item.gated
        ]
        heard[name] = [window.head for window in evidence]
    assert heard["given"]
    assert all(head == {"dog_bark": pytest.approx(1.0)} for head in heard["given"])
    assert all(set(head) == set(shipped_head().classes) for head in heard["shipped"])


def _windows(analyzer: StreamAnalyzer, audio: np.ndarray) -> list[WindowEvidence]:
    tagger = load_tagger()
    return [
        item
        for i in range(0, len(audio), 1280)
        for item in analyzer.process(audio[i : i + 1280], tagger)
        if isinstance(item, WindowEvidence)
    ]


def test_steady_noise_is_tagged_half_as_often_unless_every_window_is_wanted() -> None:
    """A fan's hum: after two calm windows the next is skipped; its neighbours cover its audio."""
    fan = synth.pink_noise(8.0, -35.0, synth.rng(5))
    windows = _windows(StreamAnalyzer(), fan)
    skipped = [w.skipped for w in windows]
    assert not any(w.aligned for w in windows)
    assert sum(skipped) >= len(windows) // 2 - 1
    assert not any(a and b for a, b in itertools.pairwise(skipped))  # never two in a row
    assert all(not w.scores for w in windows if w.skipped)
    learning = StreamAnalyzer(every_window=True)  # custom sounds match every window
    assert not any(w.skipped or w.gated for w in _windows(learning, fan))
    assert learning.skipped_windows == 0


def test_music_that_plays_on_is_tagged_sparsely_and_stays_media() -> None:
    """Once the microphone hears media, windows with nothing else in them count as calm.

    The skipped ones carry the media evidence of the window before, so the decider's media
    context is the same as with every window tagged.
    """
    music = synth.music_like(30.0, synth.rng(5), -20.0)
    sparse = [w for w in _windows(StreamAnalyzer(), music) if not w.aligned]
    every = [w for w in _windows(StreamAnalyzer(every_window=True), music) if not w.aligned]
    skipped = [w.skipped for w in sparse]
    assert sum(skipped) >= len(sparse) // 3
    assert not any(skipped[: MEDIA_CONTEXT + 1])  # not before two calm ones in media context
    assert not any(a and b for a, b in itertools.pairwise(skipped))
    assert all(w.media == before.media for before, w in itertools.pairwise(sparse) if w.skipped)
    context = _media_context(sparse)
    assert context == _media_context(every)
    assert context[-1]


def test_the_analyzer_counts_media_context_as_the_decider_does() -> None:
    config = DeciderConfig()
    assert (
        config.media_threshold,
        config.media_window,
        config.media_min_windows,
    ) == (MEDIA_LIKE, MEDIA_WINDOWS, MEDIA_CONTEXT)


def _media_context(windows: list[WindowEvidence]) -> list[bool]:
    """Whether a decider fed these windows is in media context after each."""
    decider = Decider()
    context = []
    for window in windows:
        decider.push([window])
        context.append(decider.media_active)
    return context


@pytest.mark.parametrize("at_s", [3.0, 3.13, 3.27, 3.41])
def test_a_sound_after_calm_is_tagged_whole_wherever_it_falls(at_s: float) -> None:
    """A knock in a calm room: no window that holds it, or starts soon after it, is skipped."""
    room = synth.pink_noise(6.0, -45.0, synth.rng(6))
    windows = _windows(StreamAnalyzer(), synth.mix(room, synth.place(click(), at_s, 6.0)))
    assert any(w.skipped for w in windows if w.end_s < at_s)  # the room alone was calm
    assert not any(w.skipped and w.start_s - CALM_AFTER_ONSET_S <= at_s < w.end_s for w in windows)
    assert any(w.scores and at_s - 0.2 <= w.start_s <= at_s for w in windows)


@pytest.mark.parametrize("at_s", [3.0, 3.13, 3.27, 3.41])
def test_a_sound_swelling_out_of_the_noise_is_tagged_as_it_comes(at_s: float) -> None:
    """A tone swelling over a roar (no onset in the broadband level): its first window is tagged."""
    swell_s = 0.05
    tone = synth.tone(1000.0, 6.0 - at_s, -30.0)
    tone[: synth.samples(swell_s)] *= np.linspace(0.0, 1.0, synth.samples(swell_s)) ** 3
    windows = _windows(
        StreamAnalyzer(),
        synth.mix(synth.pink_noise(6.0, -35.0, synth.rng(7)), synth.place(tone, at_s, 6.0)),
    )
    assert not any(w.onset for w in windows)
    assert any(w.skipped for w in windows if w.end_s < at_s)  # the roar alone was calm
    first = next(w for w in windows if not w.aligned and w.end_s > at_s + swell_s)
    assert first.scores
