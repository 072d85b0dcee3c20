"""Audio in: files decoded, and live PCM converted, to the engine's 16 kHz mono — by PyAV.

PyAV (FFmpeg: libavformat, libavcodec, libswresample) decodes every file — WAV of any rate,
width and channels, IEEE float, G.711, FLAC, MP3, … — and resamples (``av.AudioResampler``).
It is a Home Assistant core requirement with wheels for musl and glibc on x86_64 and aarch64.

Written here is only what the library doesn't do:

* Live PCM arrives in chunks that need not end on a frame boundary: :class:`PcmConverter`
  carries the bytes of a partial frame to the next chunk.
* Packed 24-bit PCM (a Wyoming width of 3) has no FFmpeg sample format: it is read as 32-bit.
* Channels are mixed with equal weights (the mean): they are microphone capsules, not speakers.
  libswresample's stereo downmix is the mean; more channels it mixes by speaker position (it
  drops an LFE channel and weighs surround channels less), so those are averaged here.
* Floats are sanitized (NaN and ±inf are silence, everything clipped to ±1).

8-bit PCM is unsigned (0x80 is silence) everywhere: in WAV files by definition, and for raw and
Wyoming streams too (``u8``, as FFmpeg and ALSA use it). Wider PCM is signed little-endian.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import io
import os
from pathlib import Path
import stat
from typing import IO, Any, Final

import av
import numpy as np
import numpy.typing as npt

from . import bounds

SAMPLE_RATE: Final = 16000
"""The engine's sample rate (Hz)."""

Floats = npt.NDArray[np.float32]
Pcm16 = npt.NDArray[np.int16]
"""16 kHz mono 16-bit samples: what every source delivers to the engine."""

_FFMPEG_ERRORS: Final = (av.FFmpegError, OSError, ValueError, EOFError)
_GUESSED_DURATION: Final = frozenset({"aac", "mp3"})  # formats whose duration FFmpeg guesses
_INT_SCALE: Final = {np.dtype(np.uint8): 1 / 128, np.dtype(np.int16): 2.0**-15}


class AudioFormatError(ValueError):
    """Audio that can't be decoded, or a format Guard Mode does not take."""


def sanitize(samples: npt.ArrayLike) -> Floats:
    """Return the samples as float32, NaN and ±inf set to 0, everything clipped to [-1, 1]."""
    values = np.asarray(samples)
    # Work in float64 unless the input is float32, so that 1e300 clips to 1 instead of overflowing.
    dtype = np.float32 if values.dtype == np.float32 else np.float64
    out = np.array(values, dtype=dtype, copy=True).reshape(-1)
    out[~np.isfinite(out)] = 0.0
    np.clip(out, -1.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def to_float(pcm: npt.ArrayLike) -> Floats:
    """Return 16-bit samples as float32 in [-1, 1)."""
    return np.asarray(pcm, np.float32) * np.float32(2.0**-15)


def _mono(samples: npt.NDArray[Any], channels: int) -> Floats:
    """Return [channels, N] samples of any sample type as float32 mono: the channels' mean."""
    if samples.dtype.kind == "f":
        samples = sanitize(samples).reshape(channels, -1)
        offset, scale = 0.0, 1.0
    else:
        offset = 128.0 if samples.dtype == np.uint8 else 0.0
        scale = _INT_SCALE.get(samples.dtype, 2.0**-31)
    total: Floats = np.array(samples[0], np.float32)  # strided adds: fast for a few channels
    for channel in range(1, channels):
        np.add(total, samples[channel], out=total, casting="unsafe")
    if offset:
        np.subtract(total, np.float32(offset * channels), out=total)
    np.multiply(total, np.float32(scale / channels), out=total)
    return total


class _Resampler:
    """Samples at one rate → 16 kHz mono (float32 or 16-bit), streaming (libswresample)."""

    def __init__(self, rate: int, pcm16: bool, source: str = "flt", layout: str = "mono") -> None:
        self.rate = rate
        self._source, self._layout = source, layout  # what push() is given: FFmpeg's names
        self._pcm16 = pcm16
        self._av = av.AudioResampler(format="s16" if pcm16 else "flt", layout="mono", rate=16000)

    def push(self, samples: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
        """Resample samples, packed (None: the end of the stream); return what is ready."""
        frame = None
        if samples is not None:
            if not len(samples):
                return self._empty()
            frame = av.AudioFrame.from_ndarray(
                samples.reshape(1, -1), format=self._source, layout=self._layout
            )
            frame.sample_rate = self.rate
        out = [f.to_ndarray()[0] for f in self._av.resample(frame)]
        if not out:
            return self._empty()
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _empty(self) -> npt.NDArray[Any]:
        return np.zeros(0, np.int16 if self._pcm16 else np.float32)


# --------------------------------------------------------------------------------------------
# Live PCM
# --------------------------------------------------------------------------------------------

_LIVE_DTYPES: Final[dict[int, np.dtype[Any]]] = {
    1: np.dtype(np.uint8),
    2: np.dtype("<i2"),
    4: np.dtype("<i4"),
}
_AV_FORMATS: Final = {1: "u8", 2: "s16", 4: "s32"}


DC_STEPS: Final = 16  # an offset this small (-66 dBFS) is left alone


class DcBlocker:
    """Takes a live microphone's DC offset out of its 16 kHz 16-bit chunks.

    Cheap I2S microphones read a few percent of full scale in silence. The engine's levels are
    mean squares, so an offset reads as a loud room: no onset, no quiet window for the gate,
    nothing standing out of the noise floor. The offset is the chunks' running mean (over about
    two seconds, from the first chunk on), subtracted in whole steps once it is at least
    :data:`DC_STEPS` (-66 dBFS, under any room's noise): audio without an offset passes unchanged.
    """

    def __init__(self, seconds: float = 2.0) -> None:
        """Follow the offset over about seconds of audio."""
        self._samples = seconds * SAMPLE_RATE
        self._offset: float | None = None

    def __call__(self, pcm: Pcm16) -> Pcm16:
        """Return pcm without the offset heard so far."""
        if not len(pcm):
            return pcm
        mean = float(pcm.mean(dtype=np.float64))
        if self._offset is None:
            self._offset = mean
        else:
            self._offset += min(1.0, len(pcm) / self._samples) * (mean - self._offset)
        if abs(shift := round(self._offset)) < DC_STEPS:
            return pcm
        return np.clip(pcm.astype(np.int32) - shift, -32768, 32767).astype(np.int16)


class PcmConverter:
    """A stream of PCM bytes in declared formats → 16 kHz mono 16-bit samples.

    Formats are checked by :func:`.bounds.format_error` (the one place where live formats are
    judged). Chunks may be any size; a chunk that ends inside a frame leaves the partial frame
    for the next one. A new format ends the audio before it (the resampler's tail is returned
    with the first chunk of the new format). 16 kHz mono 16-bit passes straight through.
    """

    def __init__(self) -> None:
        """Start without a format: the first chunk declares it."""
        self.format: tuple[int, int, int] | None = None
        self._partial = b""
        self._resampler: _Resampler | None = None

    def convert(
        self, data: bytes | bytearray | memoryview, rate: int, width: int, channels: int
    ) -> Pcm16:
        """Return the 16 kHz mono samples of a chunk (AudioFormatError for a bad format)."""
        tail = self._set_format(rate, width, channels)
        view = memoryview(data).cast("B")
        frame = width * channels
        if self._partial:
            view = memoryview(self._partial + bytes(view))
            self._partial = b""
        whole = len(view) - len(view) % frame
        if whole < len(view):
            self._partial = bytes(view[whole:])
        body = self._convert(view[:whole], rate, width, channels)
        return np.concatenate([tail, body]) if len(tail) else body

    def reset(self) -> None:
        """Forget the partial frame and the resampler's state (a new connection)."""
        self.format, self._partial, self._resampler = None, b"", None

    def _set_format(self, rate: int, width: int, channels: int) -> Pcm16:
        if (rate, width, channels) == self.format:
            return _EMPTY16
        if (problem := bounds.format_error(rate, width, channels)) is not None:
            raise AudioFormatError(problem)
        tail = self._resampler.push(None) if self._resampler is not None else _EMPTY16
        self.format, self._partial = (rate, width, channels), b""
        if rate == SAMPLE_RATE and width == 2 and channels == 1:
            self._resampler = None
        elif width in _AV_FORMATS and channels <= 2:  # FFmpeg mixes two channels as their mean
            layout = "stereo" if channels == 2 else "mono"
            self._resampler = _Resampler(rate, True, _AV_FORMATS[width], layout)
        else:
            self._resampler = _Resampler(rate, pcm16=True)  # given the mean as float32
        return np.asarray(tail, np.int16)

    def _convert(self, data: memoryview, rate: int, width: int, channels: int) -> Pcm16:
        if not len(data):
            return _EMPTY16
        if self._resampler is None:  # 16 kHz mono 16-bit already
            return np.frombuffer(data, "<i2").astype(np.int16)
        if width in _AV_FORMATS and channels <= 2:
            samples = np.frombuffer(data, _LIVE_DTYPES[width])
            return np.asarray(self._resampler.push(samples), np.int16)
        if width == 3:  # no FFmpeg format: widen to 32-bit (the 24 bits in the top bytes)
            packed = np.frombuffer(data, np.uint8).reshape(-1, 3)
            wide = np.zeros((len(packed), 4), np.uint8)
            wide[:, 1:] = packed
            samples = wide.view("<i4").reshape(-1)
        else:
            samples = np.frombuffer(data, _LIVE_DTYPES[width])
        mono = _mono(samples.reshape(-1, channels).T, channels)
        return np.asarray(self._resampler.push(mono), np.int16)


_EMPTY16: Final[Pcm16] = np.zeros(0, np.int16)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class DecodedAudio:
    """A decoded file: 16 kHz mono float32 samples in [-1, 1] and where they came from."""

    samples: Floats
    source_rate: int
    source_channels: int
    duration_s: float  # of the source: frames / source_rate
    codec: str  # FFmpeg's name: "pcm_s16le", "pcm_u8", "pcm_mulaw", "flac", …


def _too_long(name: str, seconds: float, limit: float) -> AudioFormatError:
    return AudioFormatError(
        f"cannot read {name}: it is longer than the limit of {limit:g} s ({seconds:.1f} s)"
    )


def _frame_samples(frame: av.AudioFrame) -> Floats:
    """Return a decoded frame as float32 mono (the mean of its channels)."""
    array = np.asarray(frame.to_ndarray())
    channels = int(frame.layout.nb_channels) or 1
    if not frame.format.is_planar:  # [1, N × channels], interleaved
        array = array.reshape(-1, channels).T
    return _mono(array.reshape(channels, -1), channels)


def _decode(source: str | IO[bytes], name: str, max_seconds: float | None) -> DecodedAudio:
    parts: list[Floats] = []
    resampler: _Resampler | None = None
    rate = channels = 0
    frames = 0  # of the current rate
    duration = 0.0  # of the rates before
    with av.open(source, mode="r") as container:
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            raise AudioFormatError(f"cannot read {name}: no audio stream")
        if stream.codec_context is None:
            raise AudioFormatError(f"cannot read {name}: FFmpeg has no decoder for its audio")
        codec = str(stream.codec_context.name)
        declared = _declared_seconds(container, stream)
        if max_seconds is not None and declared is not None and declared > max_seconds:
            raise _too_long(name, declared, max_seconds)  # before decoding it
        for frame in _frames(container, stream):
            frame_rate = int(frame.sample_rate)
            if frame_rate != rate:  # the first frame, or a stream that changes its rate
                if resampler is not None:
                    parts.append(resampler.push(None))
                duration += frames / rate if rate else 0.0
                rate, frames = frame_rate, 0
                resampler = None if rate == SAMPLE_RATE else _Resampler(rate, pcm16=False)
            mono = _frame_samples(frame)
            channels = int(frame.layout.nb_channels)
            frames += len(mono)
            if max_seconds is not None and duration + frames / rate > max_seconds:
                raise _too_long(name, duration + frames / rate, max_seconds)
            parts.append(mono if resampler is None else resampler.push(mono))
    if not rate:
        raise AudioFormatError(f"cannot read {name}: no audio in the file")
    if resampler is not None:
        parts.append(resampler.push(None))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    np.clip(samples, -1.0, 1.0, out=samples)
    return DecodedAudio(samples, rate, channels, duration + frames / rate, codec)


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    """Yield the stream's decoded frames; a damaged or cut-off packet is skipped.

    A file cut off while it was written, or damaged in the middle, gives what is there, as a
    cut-off WAV does (FFmpeg refuses the broken packet, and container.decode would end there).
    """
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            continue
        yield from frames


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """Return how long the file says its audio is (None if it doesn't say).

    Raw AAC (ADTS) and MP3 say nothing: FFmpeg guesses from the first packets' bitrate (a file
    that starts with digital silence looked 30 times its length). The decoded length counts.
    """
    if container.format.name in _GUESSED_DURATION:
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration / av.time_base)
    return None


def _read(source: str | IO[bytes], name: str, size: int, max_seconds: float | None) -> DecodedAudio:
    if size == 0:
        raise AudioFormatError(f"cannot read {name}: the file is empty")
    try:
        return _decode(source, name, max_seconds)
    except AudioFormatError:
        raise
    except _FFMPEG_ERRORS as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise AudioFormatError(f"cannot read {name}: FFmpeg can't decode it ({reason})") from None


def read_audio(path: str | Path, *, max_seconds: float | None = None) -> DecodedAudio:
    """Decode an audio file to 16 kHz mono float32 in [-1, 1].

    Audio longer than ``max_seconds`` is refused (a bound on memory: 64 kB per second), before
    it is decoded when the file says how long it is. Raises AudioFormatError (with the file
    name and the reason) when the file can't be read.
    """
    name = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise AudioFormatError(f"cannot read {name}: not a regular file")
        with open(path, "rb") as handle:
            return _read(handle, name, info.st_size, max_seconds)
    except FileNotFoundError:
        raise AudioFormatError(f"cannot read {name}: no such file") from None
    except PermissionError:
        raise AudioFormatError(f"cannot read {name}: permission denied") from None


def read_audio_bytes(
    data: bytes | bytearray | memoryview, name: str = "<bytes>", *, max_seconds: float | None = None
) -> DecodedAudio:
    """Decode an in-memory audio file (see :func:`read_audio`)."""
    raw = bytes(data)
    return _read(io.BytesIO(raw), name, len(raw), max_seconds)
