"""Audio of any shape in, 16 kHz mono float32 in [-1, 1] out: streaming and one-shot.

* :func:`pcm_to_float` turns interleaved integer PCM bytes into mono float32.
* :class:`Resampler` is a streaming band-limited (Kaiser-windowed sinc, polyphase) resampler.
* :class:`PcmConverter` turns a byte stream of a declared format into 16 kHz mono float32.
* :func:`read_audio` / :func:`read_audio_bytes` decode a whole file: WAV with a parser of our
  own (integer PCM, IEEE float, G.711, WAVE_FORMAT_EXTENSIBLE), anything else through PyAV when it
  is installed.

8-bit PCM is unsigned (0x80 is silence) everywhere: in WAV files by definition, and for raw and
Wyoming streams too (``u8``, as FFmpeg and ALSA use it). Wider PCM is signed little-endian.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
import io
import math
import os
from pathlib import Path
import stat
import struct
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_BATCH_S",
    "MAX_CHANNELS",
    "MAX_RATE",
    "MIN_RATE",
    "SAMPLE_RATE",
    "AudioFormatError",
    "DecodedAudio",
    "PcmConverter",
    "Resampler",
    "pcm_to_float",
    "read_audio",
    "read_audio_bytes",
    "sanitize",
]

SAMPLE_RATE: Final = 16000
"""The engine's sample rate (Hz)."""
MIN_RATE: Final = 4000
"""Lowest sample rate accepted (Hz)."""
MAX_RATE: Final = 384000
"""Highest sample rate accepted (Hz)."""
MAX_CHANNELS: Final = 32
"""Most interleaved channels accepted; they are mixed down to mono."""

Floats = npt.NDArray[np.float32]

# Filter design, relative to the lower Nyquist frequency of the two rates.
PASSBAND_EDGE: Final = 0.90  # flat (< 0.01 dB ripple) up to here: 7.2 kHz at 16 kHz
STOPBAND_EDGE: Final = 1.00  # >= STOPBAND_DB down from here on: nothing aliases
STOPBAND_DB: Final = 70.0

_BLOCK_FRAMES: Final = 1 << 16  # work in pieces of at most this many samples: bounded memory
_MAX_BANK: Final = 1 << 21  # most coefficients in a block plan (8 MB) before interpolating phases
_MAX_PERIOD_IN: Final = 1 << 14  # longest exact period (input samples) before interpolating phases
_INTERP_PHASES: Final = 256  # phases of the interpolated bank
_INTERP_OUTPUTS: Final = 1024  # output samples per step of the interpolated bank
_GEMM_MNK: Final = 1 << 18  # OpenBLAS stays on one thread for products up to this size
_GROUP_SPAN: Final = 0.5  # input samples between a group's first and last output, in filter lengths
DEFAULT_BATCH_S: Final = 0.1
"""Seconds of input a :class:`Resampler` gathers before it computes (cost per call vs delay)."""


class AudioFormatError(ValueError):
    """Audio that can't be decoded, or a format this module does not support."""


def _empty() -> Floats:
    return np.zeros(0, dtype=np.float32)


def _check_rate(rate: int) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise AudioFormatError(f"sample rate {rate!r} is not an integer")
    rate = int(rate)
    if rate <= 0:
        raise AudioFormatError(f"sample rate {rate} is not valid")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFormatError(
            f"sample rate {rate} is not supported (use {MIN_RATE}–{MAX_RATE} Hz)"
        )
    return rate


def _check_channels(channels: int, what: str = "PCM") -> int:
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer):
        raise AudioFormatError(f"channel count {channels!r} is not an integer")
    channels = int(channels)
    if channels <= 0:
        raise AudioFormatError(f"{channels} channels is not valid for {what}")
    if channels > MAX_CHANNELS:
        raise AudioFormatError(
            f"{channels} channels is not supported for {what} (at most {MAX_CHANNELS})"
        )
    return channels


def _check_width(width: int, what: str = "PCM") -> int:
    valid = isinstance(width, int | np.integer) and not isinstance(width, bool)
    if not valid or width not in (1, 2, 3, 4):
        raise AudioFormatError(
            f"unsupported sample width {width!r} for {what} (use 1, 2, 3 or 4 bytes)"
        )
    return int(width)


# --------------------------------------------------------------------------------------------
# Sample decoding
# --------------------------------------------------------------------------------------------


def _int_to_mono(data: bytes | memoryview, width: int, channels: int) -> Floats:
    """Decode interleaved little-endian integer PCM (unsigned for width 1) to mono float32."""
    offset = 0.0
    if width == 1:
        raw: npt.NDArray[np.integer[Any]] = np.frombuffer(data, dtype=np.uint8)
        offset, scale = 128.0, 1 / 128
    elif width == 2:
        raw, scale = np.frombuffer(data, dtype="<i2"), 1 / 32768
    elif width == 3:
        packed = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        wide = np.zeros((packed.shape[0], 4), dtype=np.uint8)
        wide[:, 1:] = packed  # the 24 bits in the top three bytes: the value * 256 as int32
        raw, scale = wide.view("<i4").reshape(-1), 2.0**-31
    else:
        raw, scale = np.frombuffer(data, dtype="<i4"), 2.0**-31
    mono = _channel_sum(raw, channels)
    if offset:
        mono -= np.float32(offset * channels)
    mono *= np.float32(scale / channels)
    return mono


def _channel_sum(samples: npt.NDArray[Any], channels: int) -> Floats:
    """Sum interleaved channels into one float32 channel (strided adds: fast for few channels)."""
    total = samples[::channels].astype(np.float32)
    for channel in range(1, channels):
        np.add(total, samples[channel::channels], out=total)
    return total


def _mix_down(samples: Floats, channels: int) -> Floats:
    """Average interleaved float32 channels into one."""
    if channels == 1:
        return samples
    mono = _channel_sum(samples, channels)
    mono *= np.float32(1.0 / channels)
    return mono


def pcm_to_float(data: bytes | bytearray | memoryview, width: int, channels: int) -> Floats:
    """Convert interleaved integer PCM to mono float32 in [-1, 1] (the mean of the channels).

    ``width`` is the bytes per sample: 1 is unsigned 8-bit (0x80 is silence, as in WAV and in raw
    ``u8`` streams), 2 is signed 16-bit, 3 is packed signed 24-bit, 4 is signed 32-bit, all
    little-endian. ``data`` must hold whole frames (a multiple of ``width * channels`` bytes);
    :class:`PcmConverter` carries partial frames between chunks of a stream.
    """
    width = _check_width(width)
    channels = _check_channels(channels)
    view = memoryview(data).cast("B")
    frame = width * channels
    if len(view) % frame:
        raise AudioFormatError(
            f"{len(view)} bytes is not a whole number of {width}-byte × {channels}-channel frames"
        )
    return _int_to_mono(view, width, channels)


def _clip(samples: Floats) -> Floats:
    """Clip to [-1, 1] in place (resampling can overshoot full scale a little)."""
    np.minimum(samples, np.float32(1.0), out=samples)
    np.maximum(samples, np.float32(-1.0), out=samples)
    return samples


def sanitize(samples: npt.ArrayLike) -> Floats:
    """Return the samples as float32, NaN and ±inf set to 0, everything clipped to [-1, 1]."""
    values = np.asarray(samples)
    # Work in float64 unless the input is float32, so that 1e300 clips to 1 instead of overflowing.
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    out = np.array(values, dtype=dtype, copy=True).reshape(-1)
    out[~np.isfinite(out)] = 0.0
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Design:
    """The prototype low-pass filter, in units of input samples."""

    up: int  # L: output samples per `down` input samples (reduced ratio)
    down: int  # M
    taps: int  # K: input samples under the filter for one output sample (even)
    cutoff: float  # -6 dB point, cycles per input sample
    beta: float  # Kaiser window shape

    def kernel(self, offsets: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Windowed sinc at ``offsets`` (input samples from the output sample's position)."""
        half = self.taps / 2
        ratio: npt.NDArray[np.float64] = np.clip(offsets / half, -1.0, 1.0)
        window = np.i0(self.beta * np.sqrt(1.0 - ratio * ratio)) / np.i0(self.beta)
        window[np.abs(offsets) >= half] = 0.0
        sinc = np.sinc(2 * self.cutoff * offsets)
        return np.asarray(2 * self.cutoff * sinc * window, dtype=np.float64)

    def phase_bank(self, phases: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Coefficients [len(phases), K] for fractional positions ``phases`` in [0, 1].

        Row ``i`` weighs input samples ``a - K/2 + 1 ... a + K/2`` for an output sample at input
        position ``a + phases[i]``; each row sums to 1 so that DC passes exactly.
        """
        d = np.arange(self.taps, dtype=np.float64) - (self.taps // 2 - 1)
        bank = self.kernel(phases[:, np.newaxis] - d[np.newaxis, :])
        bank /= bank.sum(axis=1, keepdims=True)
        return bank


@dataclass(frozen=True, slots=True)
class _Plan:
    design: _Design
    block: _BlockPlan | None  # None: interpolate between a fixed number of phases
    table: Floats | None  # [_INTERP_PHASES + 1, K] for the interpolated bank


def _design(rate_in: int, rate_out: int) -> _Design:
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    nyquist = min(rate_in, rate_out) / 2
    transition = (STOPBAND_EDGE - PASSBAND_EDGE) * nyquist / rate_in  # cycles per input sample
    cutoff = (STOPBAND_EDGE + PASSBAND_EDGE) / 2 * nyquist / rate_in
    length = (STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * transition)  # Kaiser's estimate
    taps = 2 * math.ceil(length / 2)
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    return _Design(up=up, down=down, taps=taps, cutoff=cutoff, beta=beta)


@dataclass(frozen=True, slots=True)
class _BlockPlan:
    """Exact polyphase plan: each period of ``period_in`` inputs gives ``period_out`` outputs.

    The outputs of a period are split into ``groups`` runs of consecutive outputs whose filter
    windows start within ``step`` input samples of each other: group ``g`` of period ``j`` reads
    the ``width`` input samples from ``j * period_in + g * step``. With every group's
    coefficients laid out as a dense [G, width] matrix (zeros where an output's filter does not
    reach), a whole batch of periods is one copy of the (overlapping) input windows and one
    stacked matrix product.
    """

    period_in: int
    period_out: int
    step: int
    width: int
    need: int  # padded input samples from a period's start needed to finish the period
    matrices: Floats  # [groups, G, width]: row c of group g holds one output's coefficients
    order: npt.NDArray[np.intp]  # [period_out]: each output's row in matrices.reshape(-1, width)
    rows: int  # most periods per product: OpenBLAS stays on one thread


def _block_plan(design: _Design) -> _BlockPlan | None:
    up, down, taps = design.up, design.down, design.taps
    # Windows that start `step` input samples apart share a matrix: a small step wastes fewer
    # multiplications on zeros, a large one makes fewer, bigger products. Short periods are
    # joined so that a group holds several outputs.
    target = max(1, round(taps * _GROUP_SPAN))
    periods = max(1, -(-target // down))
    period_in, period_out = periods * down, periods * up
    if period_in > _MAX_PERIOD_IN:
        return None
    groups = -(-period_in // target)
    step = -(-period_in // groups)
    width = step + taps - 1
    outputs = np.arange(period_out, dtype=np.int64)
    starts = outputs * down // up  # first (padded) input sample under each output's filter
    group = starts // step
    sizes = np.bincount(group, minlength=groups)
    columns = int(sizes.max())
    if groups * columns * width > _MAX_BANK:
        return None
    column = outputs - np.concatenate([[0], np.cumsum(sizes)[:-1]])[group]
    bank = design.phase_bank((outputs * down % up) / up).astype(np.float32)
    matrices = np.zeros((groups, columns, width), dtype=np.float32)
    local = (starts - group * step)[:, np.newaxis] + np.arange(taps)
    matrices[group[:, np.newaxis], column[:, np.newaxis], local] = bank
    matrices.flags.writeable = False
    order = (group * columns + column).astype(np.intp)
    order.flags.writeable = False
    return _BlockPlan(
        period_in=period_in,
        period_out=period_out,
        step=step,
        width=width,
        need=(groups - 1) * step + width,
        matrices=matrices,
        order=order,
        rows=max(1, _GEMM_MNK // (columns * width)),
    )


@cache
def _plan(rate_in: int, rate_out: int) -> _Plan:
    design = _design(rate_in, rate_out)
    block = _block_plan(design)
    table = None
    if block is None:
        phases = np.arange(_INTERP_PHASES + 1, dtype=np.float64) / _INTERP_PHASES
        table = design.phase_bank(phases).astype(np.float32)
        table.flags.writeable = False
    return _Plan(design=design, block=block, table=table)


class Resampler:
    """Streaming band-limited resampler from ``rate_in`` to ``rate_out`` (mono float32).

    A Kaiser-windowed sinc low-pass (flat to 0.9 of the lower Nyquist frequency, -6 dB at 0.95,
    >= 70 dB down from the Nyquist frequency on) applied in polyphase form: for the reduced
    ratio L/M (44.1 kHz → 16 kHz is 160/441) the coefficients of all L phases are precomputed
    (shared by all resamplers of the same rates) and laid out as a stack of dense matrices, so
    that a batch of input is one matrix product. When L is so large that this bank would be
    huge, a fixed bank of 256 phases is used with linear interpolation between neighbouring
    phases (error about -90 dB; slower).

    Output sample ``n`` is the input at time ``n / rate_out`` (no delay). Output comes out once
    the filter's look-ahead has arrived and, to keep the cost per call low, in batches of at
    least ``batch_s`` seconds of input (0 computes as soon as possible); :meth:`flush` returns
    the rest, so that after ``flush`` exactly ``ceil(len(input) * rate_out / rate_in)`` samples
    have come out, whatever the chunk sizes. Equal rates pass audio through unchanged.
    """

    def __init__(
        self, rate_in: int, rate_out: int = SAMPLE_RATE, *, batch_s: float = DEFAULT_BATCH_S
    ) -> None:
        self.rate_in = _check_rate(rate_in)
        self.rate_out = _check_rate(rate_out)
        if not 0.0 <= batch_s <= 1.0:
            raise ValueError(f"batch_s {batch_s} is not in [0, 1]")
        self._plan = _plan(self.rate_in, self.rate_out)
        design = self._plan.design
        self.up = design.up
        self.down = design.down
        self.taps = 0 if self.identity else design.taps
        block = self._plan.block
        batch_in = math.ceil(batch_s * self.rate_in)
        if block is not None:
            self._batch = max(1, -(-batch_in // block.period_in))  # periods
        else:
            self._batch = max(1, batch_in * self.up // self.down)  # output samples
        capacity = 0 if self.identity else self.taps + _BLOCK_FRAMES + batch_in
        self._store = np.zeros(capacity, dtype=np.float32)
        self._fill = 0  # samples held in _store
        self._base = 0  # padded input index of _store[0]
        self.samples_in = 0  # input samples of the current stream (since the last flush/reset)
        self.samples_out = 0  # output samples of the current stream
        self.reset()

    @property
    def identity(self) -> bool:
        """Whether the rates are equal (audio passes through)."""
        return self.rate_in == self.rate_out

    @property
    def pending(self) -> int:
        """Input samples held back (look-ahead, batching and filter history)."""
        return self._fill

    def reset(self) -> None:
        """Forget the stream: the next sample starts a new one."""
        pad = 0 if self.identity else self._plan.design.taps // 2 - 1
        self._store[:pad] = 0.0  # the filter's history before the first sample is silence
        self._fill = pad
        self._base = 0
        self.samples_in = 0
        self.samples_out = 0

    def process(self, samples: npt.ArrayLike) -> Floats:
        """Feed mono samples (finite floats); return the output samples that are ready."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.identity:
            self.samples_in += len(x)
            self.samples_out += len(x)
            return x.copy()
        if len(x) <= _BLOCK_FRAMES:
            return self._feed(x)
        parts = [
            self._feed(x[start : start + _BLOCK_FRAMES])
            for start in range(0, len(x), _BLOCK_FRAMES)
        ]
        return np.concatenate(parts)

    def flush(self) -> Floats:
        """End the stream: return the remaining output (the input is padded with silence)."""
        if self.identity:
            self.reset()
            return _empty()
        total = -(-self.samples_in * self.up // self.down)
        missing = total - self.samples_out
        if missing <= 0:
            self.reset()
            return _empty()
        block = self._plan.block
        if block is not None:
            periods = -(-missing // block.period_out)
            end = self._base + (periods - 1) * block.period_in + block.need
        else:
            end = (total - 1) * self.down // self.up + self.taps
        self._append(np.zeros(max(0, end - self._base - self._fill), dtype=np.float32))
        tail = self._run(final=True)[:missing]
        self.reset()
        return tail

    def _append(self, x: Floats) -> None:
        end = self._fill + len(x)
        if end > len(self._store):
            grown = np.zeros(max(end, 2 * len(self._store)), dtype=np.float32)
            grown[: self._fill] = self._store[: self._fill]
            self._store = grown
        self._store[self._fill : end] = x
        self._fill = end

    def _drop(self, count: int) -> None:
        """Forget the first ``count`` samples of the store."""
        rest = self._fill - count
        self._store[:rest] = self._store[count : self._fill]
        self._fill = rest
        self._base += count

    def _feed(self, x: Floats) -> Floats:
        self._append(x)
        self.samples_in += len(x)
        return self._run(final=False)

    def _run(self, *, final: bool) -> Floats:
        if self._plan.block is not None:
            return self._run_blocks(self._plan.block, final)
        return self._run_interpolated(final)

    def _run_blocks(self, plan: _BlockPlan, final: bool) -> Floats:
        if self._fill < plan.need:
            return _empty()
        periods = (self._fill - plan.need) // plan.period_in + 1
        if periods < self._batch and not final:
            return _empty()
        store = self._store
        item = store.strides[0]
        groups, columns, width = plan.matrices.shape
        parts = []
        for start in range(0, periods, plan.rows):
            count = min(plan.rows, periods - start)
            # [groups, count, width]: the input under each group of outputs, one row per period
            windows = np.ndarray(
                (groups, count, width),
                dtype=np.float32,
                buffer=store,
                offset=start * plan.period_in * item,
                strides=(plan.step * item, plan.period_in * item, item),
            ).copy()
            if count < 32:  # OpenBLAS is faster this way round for few periods
                product = np.matmul(plan.matrices, windows.transpose(0, 2, 1))
                by_output = product.reshape(groups * columns, count)[plan.order]
                parts.append(by_output.T.reshape(-1))
            else:
                product = np.matmul(windows, plan.matrices.transpose(0, 2, 1))
                by_period = product.transpose(1, 0, 2).reshape(count, groups * columns)
                parts.append(by_period[:, plan.order].reshape(-1))
        self._drop(periods * plan.period_in)
        self.samples_out += periods * plan.period_out
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run_interpolated(self, final: bool) -> Floats:
        table = self._plan.table
        assert table is not None
        taps, up, down = self.taps, self.up, self.down
        available = self._base + self._fill - taps  # last usable window start
        first = self.samples_out
        stop = ((available + 1) * up + down - 1) // down  # outputs with window start <= available
        if stop - first < (1 if final else self._batch):
            return _empty()
        parts = []
        columns = np.arange(taps, dtype=np.int64)
        for start in range(first, stop, _INTERP_OUTPUTS):
            n = np.arange(start, min(stop, start + _INTERP_OUTPUTS), dtype=np.int64)
            position = n * down
            index = position // up
            phase = (position % up).astype(np.float64) * (_INTERP_PHASES / up)
            lower = phase.astype(np.int64)
            weight = (phase - lower).astype(np.float32)[:, np.newaxis]
            coefficients = table[lower] * (1 - weight) + table[lower + 1] * weight
            windows = self._store[(index - self._base)[:, np.newaxis] + columns]
            parts.append(np.einsum("nk,nk->n", windows, coefficients, dtype=np.float32))
        self.samples_out = stop
        self._drop(stop * down // up - self._base)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# Streaming PCM bytes
# --------------------------------------------------------------------------------------------


class PcmConverter:
    """Streaming PCM bytes of a declared format → 16 kHz mono float32 in [-1, 1].

    Chunks may be any size: a chunk that ends inside a frame leaves the partial frame for the
    next one. Big chunks are worked through in bounded pieces; between calls the converter holds
    at most one partial frame and the resampler's state (filter history and at most
    ``batch_s`` of input, see :class:`Resampler`). 16 kHz input passes straight through.
    """

    def __init__(
        self,
        rate: int,
        width: int,
        channels: int,
        rate_out: int = SAMPLE_RATE,
        *,
        batch_s: float = DEFAULT_BATCH_S,
    ) -> None:
        self.rate_out = _check_rate(rate_out)
        self.rate = _check_rate(rate)
        self.width = _check_width(width)
        self.channels = _check_channels(channels)
        self.batch_s = batch_s
        self._resampler = Resampler(self.rate, self.rate_out, batch_s=batch_s)
        self._partial = b""
        self.samples_in = 0  # frames (samples per channel) consumed
        self.samples_out = 0  # output samples produced

    @property
    def format(self) -> tuple[int, int, int]:
        """The declared (rate, width, channels)."""
        return self.rate, self.width, self.channels

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return self.width * self.channels

    def set_format(self, rate: int, width: int, channels: int) -> Floats:
        """Switch to a new format; return the tail of the audio before it (empty if unchanged).

        A changed format ends the old stream (its resampler tail is returned, a partial frame
        dropped) and starts a new one. The same format again is a no-op.
        """
        rate, width, channels = _check_rate(rate), _check_width(width), _check_channels(channels)
        if (rate, width, channels) == self.format:
            return _empty()
        tail = self.flush()
        self.rate, self.width, self.channels = rate, width, channels
        if self._resampler.rate_in != rate:
            self._resampler = Resampler(rate, self.rate_out, batch_s=self.batch_s)
        return tail

    def convert(self, data: bytes | bytearray | memoryview) -> Floats:
        """Feed a chunk of PCM bytes; return the 16 kHz mono samples ready so far."""
        view = memoryview(data).cast("B")
        frame = self.frame_bytes
        parts: list[Floats] = []
        head = _empty()
        if self._partial:
            need = frame - len(self._partial)
            if len(view) < need:
                self._partial += bytes(view)
                return _empty()
            head = _int_to_mono(self._partial + bytes(view[:need]), self.width, self.channels)
            view = view[need:]
            self._partial = b""
        whole = len(view) // frame
        if whole * frame < len(view):
            self._partial = bytes(view[whole * frame :])
        for start in range(0, whole, _BLOCK_FRAMES):
            stop = min(whole, start + _BLOCK_FRAMES)
            samples = _int_to_mono(view[start * frame : stop * frame], self.width, self.channels)
            if len(head):
                samples, head = np.concatenate([head, samples]), _empty()
            parts.append(self._resample(samples))
        if len(head):
            parts.append(self._resample(head))
        if not parts:
            return _empty()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def flush(self) -> Floats:
        """End the stream: return the resampler's tail and drop any partial frame."""
        self._partial = b""
        out = _clip(self._resampler.flush())
        self.samples_out += len(out)
        return out

    def reset(self) -> None:
        """Drop the partial frame and the resampler state (counters are kept)."""
        self._partial = b""
        self._resampler.reset()

    def _resample(self, samples: Floats) -> Floats:
        self.samples_in += len(samples)
        # Integer PCM is in [-1, 1) already; resampling may overshoot a little.
        identity = self._resampler.identity
        out = samples if identity else _clip(self._resampler.process(samples))
        self.samples_out += len(out)
        return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class DecodedAudio:
    """A decoded file: 16 kHz mono float32 samples in [-1, 1] and where they came from."""

    samples: Floats  # ceil(duration_s * 16000) samples
    source_rate: int
    source_channels: int
    duration_s: float  # of the source: frames / source_rate
    codec: str = "pcm"  # "pcm_u8", "pcm_s16le", "pcm_f32le", "pcm_mulaw", or FFmpeg's name


_WAVE_PCM: Final = 0x0001
_WAVE_FLOAT: Final = 0x0003
_WAVE_ALAW: Final = 0x0006
_WAVE_MULAW: Final = 0x0007
_WAVE_EXTENSIBLE: Final = 0xFFFE
_GUID_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")
_MAX_FMT_BYTES: Final = 1 << 16
_MAX_CHUNKS: Final = 4096
_READ_BYTES: Final = 1 << 20
_CODEC_NAMES: Final = {
    0x0002: "MS ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
    0x00FF: "AAC",
    0xF1AC: "FLAC",
}


@cache
def _g711_table(mulaw: bool) -> Floats:
    """Return the 256 G.711 (μ-law or A-law) codes decoded to float32."""
    codes = np.arange(256, dtype=np.int64)
    if mulaw:
        u = ~codes & 0xFF
        exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        values = np.where(u & 0x80, -magnitude, magnitude) / 32768.0
    else:
        a = codes ^ 0x55
        exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
        magnitude = np.where(
            exponent == 0,
            (mantissa << 4) + 8,
            ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
        )
        values = np.where(a & 0x80, magnitude, -magnitude) / 32768.0
    table = values.astype(np.float32)
    table.flags.writeable = False
    return table


@dataclass(frozen=True, slots=True)
class _WavFormat:
    kind: str  # "int", "float", "mulaw", "alaw"
    width: int  # container bytes per sample
    channels: int
    rate: int

    @property
    def frame(self) -> int:
        return self.width * self.channels

    @property
    def codec(self) -> str:
        if self.kind == "int":
            return "pcm_u8" if self.width == 1 else f"pcm_s{8 * self.width}le"
        if self.kind == "float":
            return f"pcm_f{8 * self.width}le"
        return f"pcm_{self.kind}"

    def decode(self, data: memoryview) -> Floats:
        """Whole frames → mono float32 (before resampling)."""
        if self.kind == "int":
            return pcm_to_float(data, self.width, self.channels)
        if self.kind == "float":
            dtype = "<f4" if self.width == 4 else "<f8"
            return _mix_down(sanitize(np.frombuffer(data, dtype=dtype)), self.channels)
        table = _g711_table(self.kind == "mulaw")
        return _mix_down(table[np.frombuffer(data, dtype=np.uint8)], self.channels)


class _NeedsDecoderError(Exception):
    """A RIFF file our parser can't decode, but FFmpeg may (compressed WAV, AVI, ...)."""


def _parse_fmt(body: bytes, name: str) -> _WavFormat:
    if len(body) < 16:
        raise AudioFormatError(f"cannot read {name}: WAV fmt chunk is truncated")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _WAVE_EXTENSIBLE:
        if len(body) < 40:
            raise AudioFormatError(f"cannot read {name}: WAVE_FORMAT_EXTENSIBLE header is short")
        guid = body[24:40]
        tag = struct.unpack_from("<H", guid)[0]
        if guid[2:] != _GUID_TAIL:
            raise _NeedsDecoderError(f"WAV sub-format {guid.hex()}")
    if channels == 0:
        raise AudioFormatError(f"cannot read {name}: 0 channels is not valid")
    if rate == 0:
        raise AudioFormatError(f"cannot read {name}: sample rate 0 is not valid")
    try:
        _check_channels(channels, "WAV")
        _check_rate(rate)
    except AudioFormatError as err:
        raise AudioFormatError(f"cannot read {name}: {err}") from None
    width = block_align // channels if block_align else 0
    if block_align % channels or width * 8 < bits:
        width = -(-bits // 8)  # block_align is inconsistent: trust the bit depth
    if tag == _WAVE_PCM:
        if width not in (1, 2, 3, 4):
            raise AudioFormatError(
                f"cannot read {name}: unsupported sample width {width} for WAV PCM ({bits} bits)"
            )
        return _WavFormat("int", width, channels, rate)
    if tag == _WAVE_FLOAT:
        if width not in (4, 8):
            raise AudioFormatError(
                f"cannot read {name}: unsupported sample width {width} for WAV float ({bits} bits)"
            )
        return _WavFormat("float", width, channels, rate)
    if tag in (_WAVE_ALAW, _WAVE_MULAW) and width == 1:
        return _WavFormat("mulaw" if tag == _WAVE_MULAW else "alaw", 1, channels, rate)
    codec = _CODEC_NAMES.get(tag, "compressed")
    raise _NeedsDecoderError(f"WAV codec 0x{tag:04x} ({codec})")


def _chunk_id_ok(chunk_id: bytes) -> bool:
    return len(chunk_id) == 4 and all(32 <= b < 127 for b in chunk_id)


def _chunk_follows(handle: IO[bytes], size: int) -> bool:
    """Whether the next 8 bytes look like a chunk header that fits in the file."""
    position = handle.tell()
    header = handle.read(8)
    handle.seek(position)
    if len(header) < 8 or not _chunk_id_ok(header[:4]):
        return False
    return bool(position + 8 + struct.unpack_from("<I", header, 4)[0] <= size)


def _find_wav_chunks(handle: IO[bytes], size: int, name: str) -> tuple[_WavFormat, int, int]:
    """Return (format, data offset, data bytes present), walking the RIFF chunks."""
    fmt: _WavFormat | None = None
    data: tuple[int, int] | None = None
    position = 12
    for _ in range(_MAX_CHUNKS):
        if position + 8 > size or (fmt is not None and data is not None):
            break
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            break
        chunk_id, length = header[:4], struct.unpack_from("<I", header, 4)[0]
        if not _chunk_id_ok(chunk_id):
            break
        body_start = position + 8
        if chunk_id == b"fmt " and fmt is None:
            if length > _MAX_FMT_BYTES:
                raise AudioFormatError(f"cannot read {name}: WAV fmt chunk of {length} bytes")
            body = handle.read(length)
            if len(body) < min(length, 16):
                raise AudioFormatError(f"cannot read {name}: WAV header is truncated")
            fmt = _parse_fmt(body, name)
        elif chunk_id == b"data" and data is None:
            present = size - body_start
            if length == 0xFFFFFFFF or (length == 0 and not _chunk_follows(handle, size)):
                length = present  # written to a pipe by a writer that never knew the length
            data = (body_start, min(length, present))
        next_position = body_start + length
        if length % 2:
            # Odd chunks are padded to an even length, but some writers forget the pad byte.
            handle.seek(next_position + 1)
            padded_id = handle.read(4)
            handle.seek(next_position)
            if _chunk_id_ok(padded_id) or not _chunk_id_ok(handle.read(4)):
                next_position += 1
        position = next_position
    if fmt is None:
        raise AudioFormatError(f"cannot read {name}: WAV file has no fmt chunk (truncated?)")
    if data is None:
        raise AudioFormatError(f"cannot read {name}: WAV file has no data chunk")
    return fmt, data[0], data[1]


def _too_long(name: str, seconds: float, limit: float) -> AudioFormatError:
    return AudioFormatError(
        f"cannot read {name}: it is longer than the limit of {limit:g} s ({seconds:.1f} s)"
    )


def _read_wav(handle: IO[bytes], size: int, name: str, max_seconds: float | None) -> DecodedAudio:
    fmt, offset, length = _find_wav_chunks(handle, size, name)
    frames = length // fmt.frame
    if max_seconds is not None and frames > max_seconds * fmt.rate:
        raise _too_long(name, frames / fmt.rate, max_seconds)
    resampler = Resampler(fmt.rate, SAMPLE_RATE)
    out = np.empty(-(-frames * resampler.up // resampler.down), dtype=np.float32)
    filled = decoded = 0
    handle.seek(offset)
    step = max(1, _READ_BYTES // fmt.frame) * fmt.frame
    remaining = frames * fmt.frame
    while remaining > 0:
        raw = handle.read(min(step, remaining))
        whole = len(raw) - len(raw) % fmt.frame
        if not whole:
            break
        remaining -= len(raw)
        decoded += whole // fmt.frame
        piece = resampler.process(fmt.decode(memoryview(raw)[:whole]))
        out[filled : filled + len(piece)] = piece
        filled += len(piece)
    tail = resampler.flush()
    out[filled : filled + len(tail)] = tail
    filled += len(tail)
    samples = out[:filled]
    np.clip(samples, -1.0, 1.0, out=samples)
    return DecodedAudio(
        samples=samples,
        source_rate=fmt.rate,
        source_channels=fmt.channels,
        duration_s=decoded / fmt.rate,
        codec=fmt.codec,
    )


def _av_frames_to_mono(frame: Any) -> tuple[Floats, int]:
    """Decode one PyAV audio frame to mono float32; also return its channel count."""
    array = np.asarray(frame.to_ndarray())
    channels = int(frame.layout.nb_channels) or 1
    if not frame.format.is_planar:
        array = array.reshape(-1, channels).T
    array = array.reshape(channels, -1)
    if array.dtype == np.uint8:
        scaled = (array.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(array.dtype, np.integer):
        scaled = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    else:
        scaled = sanitize(array).reshape(channels, -1)
    mono = scaled.mean(axis=0, dtype=np.float32) if channels > 1 else scaled[0]
    return np.ascontiguousarray(mono, dtype=np.float32), channels


def _audio_stream(container: Any, name: str) -> Any:
    stream = next(iter(container.streams.audio), None)
    if stream is None:
        raise AudioFormatError(f"cannot read {name}: no audio stream")
    return stream


def _codec_name(stream: Any, name: str, why: str) -> str:
    context = stream.codec_context
    if context is None:  # e.g. a WAV whose format tag FFmpeg doesn't know
        raise AudioFormatError(f"cannot read {name}: {why} and FFmpeg has no decoder for it")
    return str(context.name)


def _decode(container: Any, stream: Any) -> Iterator[Any]:
    yield from container.decode(stream)


def _read_with_av(
    source: str | IO[bytes], name: str, why: str, max_seconds: float | None
) -> DecodedAudio:
    try:
        import av  # noqa: PLC0415  (optional: not every install has PyAV)
    except ImportError:
        raise AudioFormatError(f"cannot read {name}: {why} and PyAV is not installed") from None
    ffmpeg_error: type[Exception] = getattr(av, "FFmpegError", OSError)
    parts: list[Floats] = []
    resampler: Resampler | None = None
    rate = channels = frames = 0
    duration = 0.0
    codec = "unknown"
    try:
        with av.open(source, mode="r") as container:
            stream = _audio_stream(container, name)
            codec = _codec_name(stream, name, why)
            for frame in _decode(container, stream):
                mono, channels = _av_frames_to_mono(frame)
                frame_rate = int(frame.sample_rate)
                if resampler is None or frame_rate != rate:
                    if resampler is not None:
                        parts.append(resampler.flush())
                        duration += frames / rate
                    rate, frames = frame_rate, 0
                    resampler = Resampler(rate, SAMPLE_RATE)
                frames += len(mono)
                seconds = duration + frames / rate
                if max_seconds is not None and seconds > max_seconds:
                    raise _too_long(name, seconds, max_seconds)
                parts.append(resampler.process(mono))
    except AudioFormatError:
        raise
    except (ffmpeg_error, OSError, ValueError, EOFError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise AudioFormatError(
            f"cannot read {name}: {why} and FFmpeg can't decode it ({reason})"
        ) from None
    if resampler is None:
        raise AudioFormatError(f"cannot read {name}: no audio in the file")
    parts.append(resampler.flush())
    duration += frames / rate
    samples = np.concatenate(parts)
    np.clip(samples, -1.0, 1.0, out=samples)
    return DecodedAudio(
        samples=samples,
        source_rate=rate,
        source_channels=channels,
        duration_s=duration,
        codec=codec,
    )


def _read(
    handle: IO[bytes],
    size: int,
    name: str,
    av_source: str | IO[bytes],
    max_seconds: float | None,
) -> DecodedAudio:
    if size == 0:
        raise AudioFormatError(f"cannot read {name}: the file is empty")
    head = handle.read(12)
    if head[:4] == b"RIFF":
        if len(head) < 12:
            raise AudioFormatError(f"cannot read {name}: WAV header is truncated")
        if head[8:12] == b"WAVE":
            try:
                return _read_wav(handle, size, name, max_seconds)
            except _NeedsDecoderError as needs:
                handle.seek(0)
                return _read_with_av(av_source, name, f"{needs} is not built in", max_seconds)
        why = f"RIFF type {head[8:12]!r} is not WAV"
    else:
        why = "not a WAV file"
    handle.seek(0)
    return _read_with_av(av_source, name, why, max_seconds)


def read_audio(path: str | Path, *, max_seconds: float | None = None) -> DecodedAudio:
    """Decode an audio file to 16 kHz mono float32 in [-1, 1].

    WAV (any rate in 4–384 kHz, up to 32 channels, 8/16/24/32-bit integer PCM, 32/64-bit float,
    A-law/μ-law, WAVE_FORMAT_EXTENSIBLE) is parsed here; a data chunk that runs past the end of
    the file gives what is there. Other formats are decoded by PyAV when it is installed.
    Audio longer than ``max_seconds`` is refused (a bound on memory: 64 kB per second).
    Raises AudioFormatError (with the file name and the reason) when the file can't be read.
    """
    name = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AudioFormatError(f"cannot read {name}: not a regular file")
        with open(path, "rb") as handle:
            size = handle.seek(0, io.SEEK_END)
            handle.seek(0)
            return _read(handle, size, name, name, max_seconds)
    except FileNotFoundError:
        raise AudioFormatError(f"cannot read {name}: no such file") from None
    except PermissionError:
        raise AudioFormatError(f"cannot read {name}: permission denied") from None


def read_audio_bytes(
    data: bytes | bytearray | memoryview, name: str = "<bytes>", *, max_seconds: float | None = None
) -> DecodedAudio:
    """Decode an in-memory audio file (see :func:`read_audio`)."""
    raw = bytes(data)
    return _read(io.BytesIO(raw), len(raw), name, io.BytesIO(raw), max_seconds)
