"""YAMNet's log-mel frontend in numpy, one-shot and streaming.

16 kHz audio; 25 ms periodic Hann window, 10 ms hop, 512-point FFT magnitude; 64 mel bands (HTK
formula) from 125 to 7500 Hz; ``log(mel + 0.001)``; patches of 96 frames every 48 frames
(0.96 s windows every 0.48 s). The streaming frontend computes each frame once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import numpy.typing as npt

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_HOP = 160  # 10 ms
FRAME_RATE = SAMPLE_RATE / FRAME_HOP  # frames per second
FFT_LENGTH = 512
SPECTRUM_BINS = FFT_LENGTH // 2 + 1
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP_FRAMES = 48  # 0.48 s
PATCH_SAMPLES = (PATCH_FRAMES - 1) * FRAME_HOP + FRAME_LENGTH  # 15600: audio one patch needs
WINDOW_S = PATCH_FRAMES / FRAME_RATE  # 0.96 s
WINDOW_HOP_S = PATCH_HOP_FRAMES / FRAME_RATE  # 0.48 s
HIGH_BAND = 64  # first FFT bin of the 2-8 kHz band (31.25 Hz bins)

Floats = npt.NDArray[np.float32]


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1127.0 * np.log1p(hz / 700.0)


@cache
def mel_matrix() -> Floats:
    """Return the [257, 64] magnitude-to-mel matrix (as tf.signal.linear_to_mel_weight_matrix)."""
    linear_hz = np.linspace(0.0, SAMPLE_RATE / 2, SPECTRUM_BINS)[1:]  # the DC bin gets no weight
    bins_mel = _hz_to_mel(linear_hz)[:, np.newaxis]
    edges = np.linspace(
        _hz_to_mel(np.array(MEL_MIN_HZ)), _hz_to_mel(np.array(MEL_MAX_HZ)), MEL_BANDS + 2
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.vstack([np.zeros((1, MEL_BANDS)), weights]).astype(np.float32)


@cache
def _window() -> Floats:
    n = np.arange(FRAME_LENGTH)
    return np.asarray(0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME_LENGTH), np.float32)  # periodic


def frame_count(num_samples: int) -> int:
    """Return how many complete frames num_samples of audio hold."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_HOP


def frame_view(samples: Floats) -> Floats:
    """Return the [frames, 400] 25 ms frames of samples, 10 ms apart, as a read-only view."""
    samples = np.ascontiguousarray(samples)
    step = samples.itemsize  # strided by hand: sliding_window_view and as_strided cost more
    shape = (frame_count(len(samples)), FRAME_LENGTH)
    view: Floats = np.ndarray(shape, samples.dtype, samples, 0, (FRAME_HOP * step, step))
    view.flags.writeable = False
    return view


def stft_magnitude(samples: Floats) -> Floats:
    """Return the [frames, 257] magnitude spectrogram of 16 kHz float samples (no padding)."""
    if frame_count(len(samples)) == 0:
        return np.zeros((0, SPECTRUM_BINS), np.float32)
    frames = frame_view(samples) * _window()
    return np.abs(np.fft.rfft(frames, FFT_LENGTH)).astype(np.float32)


def log_mel(magnitude: Floats) -> Floats:
    """Return [frames, 64] log-mel features from a magnitude spectrogram."""
    return np.asarray(np.log(magnitude @ mel_matrix() + LOG_OFFSET), np.float32)


def patches(features: Floats) -> Floats:
    """Return the [N, 96, 64] patches of a log-mel spectrogram (hop 48 frames)."""
    if len(features) < PATCH_FRAMES:
        return np.zeros((0, PATCH_FRAMES, MEL_BANDS), np.float32)
    view = sliding_window_view(features, (PATCH_FRAMES, MEL_BANDS))[::PATCH_HOP_FRAMES, 0]
    return np.ascontiguousarray(view)


@dataclass(slots=True)
class FrontendChunk:
    """What one call of :meth:`StreamingFrontend.push` produced.

    ``first_frame`` is the stream index of the first new frame; frame ``i`` covers samples
    ``[160 i, 160 i + 400)``. The new frames complete the patches that end at
    ``patch_end_frames`` (exclusive); get them with :meth:`StreamingFrontend.patches`.
    """

    first_frame: int
    magnitude: Floats
    energy: Floats  # mean square of each new frame's samples
    high_db: Floats  # each new frame's 2-8 kHz energy, dB (relative: for transients)
    patch_end_frames: list[int] = field(default_factory=list)


class StreamingFrontend:
    """Turns 16 kHz float samples of any chunk size into frames and patches, each computed once.

    Magnitude spectra (which the alarm-pattern detector also reads) are computed for every frame;
    log-mel features only for the frames of the patches asked for — a quiet window that skips
    the tagger costs no mel filtering. Frames live in preallocated rows that are moved down only
    when they fill up, not copied on every push.
    """

    def __init__(self, history_frames: int = PATCH_FRAMES - 1) -> None:
        """Start an empty stream; history_frames older frames stay available to patches()."""
        self._history = history_frames
        self._pending = np.zeros(0, np.float32)  # samples not yet consumed by a full frame
        self._fft_in = np.zeros((PATCH_HOP_FRAMES, FFT_LENGTH), np.float32)  # zero-padded frames
        # Rows [0, _rows) hold the frames up to the latest: magnitudes, and log-mel where
        # computed. Before the stream's first frame lies digital silence (an aligned window may
        # start there).
        capacity = history_frames + 8 * PATCH_HOP_FRAMES
        self._rows = history_frames
        self._magnitude = np.zeros((capacity, SPECTRUM_BINS), np.float32)
        self._features = np.repeat(log_mel(self._magnitude[:1]), capacity, axis=0)
        self._known = np.arange(capacity) < history_frames
        self._oldest = -history_frames  # stream index of the oldest frame patches() may read
        self.frames = 0  # frames computed so far

    def _make_room(self, count: int) -> None:
        """Make rows [_rows, _rows + count) free, keeping the history before them."""
        if self._rows + count <= len(self._magnitude):
            return
        keep = self._history  # _rows never falls below it
        old = self._magnitude, self._features, self._known
        if keep + count > len(self._magnitude):  # a push longer than the spare rows
            capacity = keep + count + 8 * PATCH_HOP_FRAMES
            self._magnitude = np.empty((capacity, SPECTRUM_BINS), np.float32)
            self._features = np.empty((capacity, MEL_BANDS), np.float32)
            self._known = np.zeros(capacity, bool)
        for new, rows in zip((self._magnitude, self._features, self._known), old, strict=True):
            new[:keep] = rows[self._rows - keep : self._rows]
        self._rows = keep

    def push(self, samples: Floats) -> FrontendChunk:
        """Add samples; return the new frames and the ends of the patches they complete."""
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        count = frame_count(len(audio))
        first = self.frames
        if count == 0:
            self._pending = np.array(audio, np.float32)
            empty = np.zeros((0, SPECTRUM_BINS), np.float32)
            return FrontendChunk(first, empty, _NO_FLOATS, _NO_FLOATS)
        frames = frame_view(audio)
        energy = np.einsum("ij,ij->i", frames, frames) / np.float32(FRAME_LENGTH)
        if len(self._fft_in) < count:
            self._fft_in = np.zeros((count, FFT_LENGTH), np.float32)
        fft_in = self._fft_in[:count]  # windowed frames, written in place; the padding stays 0
        np.multiply(frames, _window(), out=fft_in[:, :FRAME_LENGTH])
        self._make_room(count)
        rows = slice(self._rows, self._rows + count)
        magnitude = np.abs(np.fft.rfft(fft_in))
        self._magnitude[rows] = magnitude
        self._known[rows] = False
        self._rows += count
        high = magnitude[:, HIGH_BAND:]
        high_db = 10.0 * np.log10(np.einsum("ij,ij->i", high, high) + np.float32(1e-6))
        self._pending = np.array(audio[count * FRAME_HOP :], np.float32)
        self._oldest = first - self._history
        self.frames += count
        # Patches end where the frame count reaches 96, 144, 192, ...
        k_first = -(-(max(first + 1, PATCH_FRAMES) - PATCH_FRAMES) // PATCH_HOP_FRAMES)
        ends = list(
            range(PATCH_FRAMES + k_first * PATCH_HOP_FRAMES, self.frames + 1, PATCH_HOP_FRAMES)
        )
        return FrontendChunk(first, magnitude, energy, high_db.astype(np.float32), ends)

    def patches(self, ends: list[int], gains_db: list[float] | None = None) -> Floats:
        """Return the [N, 96, 64] log-mel patches ending at ends (from the last push).

        With gains_db, a patch whose gain is not 0 is computed from its frames amplified by that
        many dB (the tagger hears a quiet sound at a normal level).
        """
        if not ends:
            return _NO_PATCHES
        if min(ends) - PATCH_FRAMES < self._oldest or max(ends) > self.frames:
            raise ValueError(f"patches ending at {ends} are not all in frames {self._oldest}..")
        offset = self.frames - self._rows  # stream index of row 0
        gains = gains_db or [0.0] * len(ends)
        rows = [slice(end - offset - PATCH_FRAMES, end - offset) for end in ends]
        needed = np.zeros(len(self._known), bool)
        for row, gain in zip(rows, gains, strict=True):
            if not gain:
                needed[row] = True
        missing = needed & ~self._known
        if missing.any():
            self._features[missing] = log_mel(self._magnitude[missing])
            self._known |= missing
        return np.stack(
            [
                self._features[row]
                if not gain
                else log_mel(self._magnitude[row] * np.float32(10.0 ** (gain / 20.0)))
                for row, gain in zip(rows, gains, strict=True)
            ]
        )


_NO_PATCHES = np.zeros((0, PATCH_FRAMES, MEL_BANDS), np.float32)
_NO_FLOATS = np.zeros(0, np.float32)
