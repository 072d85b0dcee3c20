"""YAMNet's log-mel frontend: right bands, right shapes, and streaming equal to one-shot."""

from __future__ import annotations

import numpy as np
import pytest

from custom_components.guard_mode.engine import frontend as fe

RATE = fe.SAMPLE_RATE


def _tone(hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _band_center_hz() -> np.ndarray:
    # Where each mel band's triangle peaks, in Hz.
    return fe.mel_matrix().argmax(axis=0) * (RATE / fe.FFT_LENGTH)


@pytest.mark.parametrize("hz", [250.0, 520.0, 1000.0, 3100.0, 6000.0])
def test_a_pure_tone_lands_in_its_mel_band(hz: float) -> None:
    features = fe.log_mel(fe.stft_magnitude(_tone(hz, 1.0)))
    loudest = int(features.mean(axis=0).argmax())
    centers = _band_center_hz()
    assert loudest == int(np.abs(centers - hz).argmin()) or abs(centers[loudest] - hz) < 0.06 * hz


def test_mel_matrix_matches_yamnet() -> None:
    matrix = fe.mel_matrix()
    assert matrix.shape == (257, 64)
    assert not matrix[0].any()  # DC gets no weight
    centers = _band_center_hz()
    assert 125 < centers[0] < 170
    assert 7000 < centers[-1] < 7500
    assert np.all(np.diff(centers) > 0)


def test_silence_is_the_log_offset() -> None:
    features = fe.log_mel(fe.stft_magnitude(np.zeros(RATE, np.float32)))
    np.testing.assert_allclose(features, np.log(fe.LOG_OFFSET), rtol=1e-6)


def test_level_moves_features_by_log_of_the_gain() -> None:
    quiet = fe.log_mel(fe.stft_magnitude(_tone(1000, 1.0, 0.1)))
    loud = fe.log_mel(fe.stft_magnitude(_tone(1000, 1.0, 0.4)))
    band = int(quiet.mean(axis=0).argmax())
    assert loud[:, band].mean() - quiet[:, band].mean() == pytest.approx(np.log(4), abs=0.01)


def test_patch_shapes_and_count() -> None:
    one_second = fe.patches(fe.log_mel(fe.stft_magnitude(np.zeros(RATE, np.float32))))
    assert one_second.shape == (1, 96, 64)  # 98 frames: one 0.96 s patch
    five_seconds = fe.log_mel(fe.stft_magnitude(np.zeros(5 * RATE, np.float32)))
    assert len(five_seconds) == 498
    assert fe.patches(five_seconds).shape == (9, 96, 64)  # every 0.48 s
    assert fe.patches(five_seconds[:95]).shape == (0, 96, 64)
    assert fe.frame_count(fe.PATCH_SAMPLES) == 96


def test_streaming_equals_one_shot_for_any_chunking() -> None:
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(6 * RATE) * 0.1).astype(np.float32) + _tone(440, 6.0)
    expected = fe.patches(fe.log_mel(fe.stft_magnitude(audio)))
    expected_magnitude = fe.stft_magnitude(audio)

    stream = fe.StreamingFrontend()
    got, ends, magnitude = [], [], []
    position = 0
    while position < len(audio):
        size = int(rng.choice([1, 7, 159, 160, 401, 1280, 4000, 16000]))
        chunk = stream.push(audio[position : position + size])
        assert chunk.first_frame == sum(len(m) for m in magnitude)
        got.extend(stream.patches(chunk.patch_end_frames))
        ends.extend(chunk.patch_end_frames)
        magnitude.append(chunk.magnitude)
        position += size

    np.testing.assert_allclose(np.stack(got), expected, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(magnitude), expected_magnitude, atol=1e-4)
    assert ends == [96 + 48 * k for k in range(len(expected))]


def test_a_window_may_start_before_the_last_push_whatever_its_size() -> None:
    # An aligned window reads up to history_frames frames from before the latest push.
    rng = np.random.default_rng(5)
    audio = (rng.standard_normal(12 * RATE) * 0.1).astype(np.float32)
    silence = fe.log_mel(np.zeros((176, fe.SPECTRUM_BINS), np.float32))  # before the stream
    features = np.concatenate([silence, fe.log_mel(fe.stft_magnitude(audio))])
    stream = fe.StreamingFrontend(history_frames=176)
    for start, stop in ((0, RATE), (RATE, 9 * RATE), (9 * RATE, 12 * RATE)):
        first = stream.push(audio[start:stop]).first_frame
        ends = [first - 176 + 96, stream.frames]
        np.testing.assert_allclose(
            stream.patches(ends), [features[end + 80 : end + 176] for end in ends], atol=1e-5
        )
        with pytest.raises(ValueError, match="not all in frames"):
            stream.patches([first - 176 + 95])


def test_only_the_patches_asked_for_are_filtered() -> None:
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(3 * RATE) * 0.1).astype(np.float32)
    expected = fe.patches(fe.log_mel(fe.stft_magnitude(audio)))
    stream = fe.StreamingFrontend()
    first = stream.push(audio[: 2 * RATE])
    assert first.patch_end_frames == [96, 144, 192]
    np.testing.assert_allclose(stream.patches([144]), expected[1:2], atol=1e-5)  # 96, 192 skipped
    second = stream.push(audio[2 * RATE :])
    assert second.patch_end_frames == [240, 288]
    np.testing.assert_allclose(stream.patches([240, 288]), expected[3:5], atol=1e-5)


def test_streaming_energy_is_the_mean_square_of_each_frame() -> None:
    audio = np.full(RATE, 0.5, np.float32)
    chunk = fe.StreamingFrontend().push(audio)
    np.testing.assert_allclose(chunk.energy, 0.25, rtol=1e-6)
