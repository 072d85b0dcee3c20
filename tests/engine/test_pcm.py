"""Tests for engine.pcm: PCM conversion, resampling, streaming and file decoding (no HA)."""

from __future__ import annotations

import io
import math
from pathlib import Path
import struct
import sys
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.guard_mode.engine.pcm import (
    SAMPLE_RATE,
    AudioFormatError,
    PcmConverter,
    Resampler,
    pcm_to_float,
    read_audio,
    read_audio_bytes,
    sanitize,
)

Array = npt.NDArray[np.float64]

# --------------------------------------------------------------------------------------------
# Helpers: signals, measurements and a WAV writer of our own
# --------------------------------------------------------------------------------------------


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> Array:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def amplitude_at(y: npt.ArrayLike, freq: float, rate: int = SAMPLE_RATE) -> float:
    """Amplitude of the sinusoid at freq in the middle half of y (least squares)."""
    y = np.asarray(y, dtype=np.float64)
    start, stop = len(y) // 4, 3 * len(y) // 4
    t = np.arange(start, stop) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y[start:stop], rcond=None)
    return float(np.hypot(*coef))


def peak_hz(y: npt.ArrayLike, rate: int = SAMPLE_RATE) -> float:
    y = np.asarray(y, dtype=np.float64)
    middle = y[len(y) // 4 : 3 * len(y) // 4]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), n=8 * len(middle)))
    return float(np.argmax(spectrum) * rate / (8 * len(middle)))


def rms_middle(y: npt.ArrayLike) -> float:
    y = np.asarray(y, dtype=np.float64)
    middle = y[len(y) // 4 : 3 * len(y) // 4]
    return float(np.sqrt(np.mean(middle**2)))


def db(ratio: float) -> float:
    return 20 * math.log10(ratio)


def encode_samples(frames: npt.ArrayLike, kind: str) -> bytes:
    """Interleave [frames, channels] floats in [-1, 1] as little-endian samples of `kind`."""
    x = np.asarray(frames, dtype=np.float64)
    if kind == "u8":
        return np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    if kind == "s16":
        return np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes()
    if kind == "s24":
        ints = np.clip(np.round(x * 2**23), -(2**23), 2**23 - 1).astype("<i4").reshape(-1)
        return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    if kind == "s32":
        return np.clip(np.round(x * 2**31), -(2**31), 2**31 - 1).astype("<i4").tobytes()
    if kind == "f32":
        return x.astype("<f4").tobytes()
    if kind == "f64":
        return x.astype("<f8").tobytes()
    raise ValueError(kind)


WIDTHS = {"u8": 1, "s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8}


def chunk(chunk_id: bytes, body: bytes, *, pad: bool = True) -> bytes:
    padding = b"\0" if pad and len(body) % 2 else b""
    return chunk_id + struct.pack("<I", len(body)) + body + padding


def fmt_chunk(
    kind: str, channels: int, rate: int, *, extensible: bool = False, tag: int | None = None
) -> bytes:
    width = WIDTHS[kind]
    if tag is None:
        tag = 3 if kind.startswith("f") else 1
    block = width * channels
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, 8 * width)
    if extensible:
        guid = struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
        mask = (1 << channels) - 1
        body = (
            struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, 8 * width)
            + struct.pack("<HHI", 22, 8 * width, mask)
            + guid
        )
    return chunk(b"fmt ", body)


def make_wav(
    frames: npt.ArrayLike,
    rate: int,
    kind: str = "s16",
    *,
    extensible: bool = False,
    before: bytes = b"",
    after: bytes = b"",
    data_size: int | None = None,
) -> bytes:
    """A WAV file of [frames] or [frames, channels] samples; `before`/`after` are raw chunks."""
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, np.newaxis]
    payload = encode_samples(x, kind)
    data = chunk(b"data", payload)
    if data_size is not None:
        data = b"data" + struct.pack("<I", data_size) + payload
    body = (
        b"WAVE" + before + fmt_chunk(kind, x.shape[1], rate, extensible=extensible) + data + after
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# pcm_to_float and sanitize
# --------------------------------------------------------------------------------------------


def test_pcm_to_float_widths() -> None:
    assert pcm_to_float(bytes([0, 128, 255]), 1, 1).tolist() == [-1.0, 0.0, 127 / 128]
    s16 = struct.pack("<3h", -32768, 0, 16384)
    assert pcm_to_float(s16, 2, 1).tolist() == [-1.0, 0.0, 0.5]
    s24 = bytes([0, 0, 0x80]) + bytes([0xFF, 0xFF, 0xFF]) + bytes([0, 0, 0x40])
    assert pcm_to_float(s24, 3, 1).tolist() == [-1.0, -(2.0**-23), 0.5]
    s32 = struct.pack("<3i", -(2**31), 2**30, -(2**29))
    assert pcm_to_float(s32, 4, 1).tolist() == [-1.0, 0.5, -0.25]


def test_pcm_to_float_mixes_channels_to_mono() -> None:
    stereo = struct.pack("<4h", 16384, -16384, 8192, 8192)
    assert pcm_to_float(stereo, 2, 2).tolist() == [0.0, 0.25]
    assert pcm_to_float(b"", 2, 2).dtype == np.float32


@pytest.mark.parametrize(
    ("width", "channels", "data", "message"),
    [
        (0, 1, b"", "unsupported sample width 0"),
        (5, 1, b"\0" * 5, "unsupported sample width 5"),
        (2, 0, b"", "0 channels"),
        (2, 1, b"\0" * 3, "not a whole number"),
        (3, 2, b"\0" * 7, "not a whole number"),
    ],
)
def test_pcm_to_float_rejects_bad_formats(
    width: int, channels: int, data: bytes, message: str
) -> None:
    with pytest.raises(AudioFormatError, match=message):
        pcm_to_float(data, width, channels)


def test_sanitize() -> None:
    out = sanitize([np.nan, np.inf, -np.inf, 2.0, -3.0, 0.25, 1e300, -1e300])
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, -1.0, 0.25, 1.0, -1.0]
    float32 = np.array([np.nan, 0.5, 7.0], dtype=np.float32)
    assert sanitize(float32).tolist() == [0.0, 0.5, 1.0]
    assert float32[2] == 7.0  # a copy


# --------------------------------------------------------------------------------------------
# Resampler
# --------------------------------------------------------------------------------------------


def resample_all(x: npt.ArrayLike, rate: int, batch_s: float = 0.1) -> npt.NDArray[np.float32]:
    resampler = Resampler(rate, batch_s=batch_s)
    return np.concatenate([resampler.process(x), resampler.flush()])


@pytest.mark.parametrize("rate", [0, -8000, 1000, 500000])
def test_resampler_rejects_bad_rates(rate: int) -> None:
    with pytest.raises(AudioFormatError, match=f"sample rate {rate} is not"):
        Resampler(rate)


def test_resampler_identity_passes_through() -> None:
    x = np.random.default_rng(1).uniform(-1, 1, 1000).astype(np.float32)
    resampler = Resampler(SAMPLE_RATE)
    assert resampler.identity
    assert np.array_equal(resampler.process(x), x)
    assert len(resampler.flush()) == 0


@pytest.mark.parametrize(
    "rate", [48000, 44100, 22050, 8000, 11025, 96000, 4000, 32000, 384000, 44101]
)
def test_resampler_keeps_a_1khz_tone(rate: int) -> None:
    x = tone(1000, rate, seconds=1.0)
    y = resample_all(x, rate)
    assert y.dtype == np.float32
    assert len(y) == math.ceil(len(x) * SAMPLE_RATE / rate)
    assert abs(peak_hz(y) - 1000) < 2
    assert abs(db(amplitude_at(y, 1000) / 0.5)) < 0.05  # well inside the ±0.5 dB asked


@pytest.mark.parametrize("rate", [48000, 44100])
def test_resampler_passband_and_anti_aliasing(rate: int) -> None:
    passed = resample_all(tone(7000, rate), rate)
    assert abs(db(amplitude_at(passed, 7000) / 0.5)) < 0.5
    # 11 kHz is above the new Nyquist frequency: dropping samples would fold it to 5 kHz.
    folded = resample_all(tone(11000, rate), rate)
    assert db(rms_middle(folded) * math.sqrt(2) / 0.5) < -50
    assert db(amplitude_at(folded, 16000 - 11000) / 0.5) < -50


def test_resampler_keeps_time_alignment() -> None:
    x = np.zeros(48000)
    x[24000] = 1.0  # a click at 0.5 s
    y = resample_all(x, 48000)
    assert int(np.argmax(y)) == 8000


def test_resampler_keeps_dc() -> None:
    y = resample_all(np.full(44100, 0.25), 44100)
    assert np.allclose(y[200:-200], 0.25, atol=1e-5)


@pytest.mark.parametrize("rate", [48000, 44100, 8000, 22050, 44101])
@pytest.mark.parametrize("batch_s", [0.0, 0.1])
def test_resampler_streaming_equals_one_shot(rate: int, batch_s: float) -> None:
    rng = np.random.default_rng(rate)
    x = rng.uniform(-0.5, 0.5, rate // 2).astype(np.float32)
    whole = resample_all(x, rate, batch_s=batch_s)
    resampler = Resampler(rate, batch_s=batch_s)
    parts, position = [], 0
    while position < len(x):
        size = int(rng.choice([1, 2, 3, 7, 100, 441, 1000, 5000]))
        parts.append(resampler.process(x[position : position + size]))
        position += size
    parts.append(resampler.flush())
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-5


def test_resampler_starts_a_new_stream_after_flush() -> None:
    x = tone(440, 44100, seconds=0.3)
    resampler = Resampler(44100)
    first = np.concatenate([resampler.process(x), resampler.flush()])
    second = np.concatenate([resampler.process(x), resampler.flush()])
    assert np.array_equal(first, second)
    assert len(resampler.flush()) == 0


def test_resampler_holds_back_little() -> None:
    resampler = Resampler(48000, batch_s=0.0)
    out = resampler.process(np.zeros(48000, dtype=np.float32))
    assert 16000 - len(out) < 100  # only the filter's look-ahead
    assert resampler.pending < 1000


# --------------------------------------------------------------------------------------------
# PcmConverter
# --------------------------------------------------------------------------------------------


def random_chunks(data: bytes, rng: np.random.Generator) -> list[bytes]:
    chunks, position = [], 0
    while position < len(data):
        size = int(rng.choice([1, 2, 3, 5, 17, 1001, 4096]))
        chunks.append(data[position : position + size])
        position += size
    return chunks


@pytest.mark.parametrize(
    ("rate", "kind", "channels"),
    [(48000, "s16", 2), (44100, "s24", 3), (8000, "u8", 1), (16000, "s32", 2)],
)
def test_converter_streaming_equals_one_shot(rate: int, kind: str, channels: int) -> None:
    rng = np.random.default_rng(7)
    frames = rng.uniform(-0.8, 0.8, (rate // 4, channels))
    data = encode_samples(frames, kind)
    width = WIDTHS[kind]
    expected = np.clip(resample_all(pcm_to_float(data, width, channels), rate), -1, 1)

    converter = PcmConverter(rate, width, channels)
    parts = [converter.convert(piece) for piece in random_chunks(data, rng)]
    parts.append(converter.flush())
    streamed = np.concatenate(parts)
    assert np.max(np.abs(streamed - expected)) < 1e-5
    assert converter.samples_in == len(frames)
    assert converter.samples_out == len(streamed) == math.ceil(len(frames) * SAMPLE_RATE / rate)


def test_converter_16k_mono_passes_through() -> None:
    samples = struct.pack("<4h", 0, 16384, -16384, 32767)
    converter = PcmConverter(16000, 2, 1)
    out = np.concatenate([converter.convert(samples[:3]), converter.convert(samples[3:])])
    assert out.tolist() == [0.0, 0.5, -0.5, 32767 / 32768]


def test_converter_8bit_silence_is_zero() -> None:
    converter = PcmConverter(22050, 1, 2)
    out = np.concatenate([converter.convert(b"\x80" * 44100), converter.flush()])
    assert len(out) == 16000
    assert not np.any(out)


def test_converter_set_format() -> None:
    converter = PcmConverter(48000, 2, 2)
    converter.convert(encode_samples(np.full((4801, 2), 0.5), "s16")[:-1])  # ends mid-frame
    assert len(converter.set_format(48000, 2, 2)) == 0  # unchanged: nothing happens
    tail = converter.set_format(16000, 2, 1)
    assert len(tail) > 0
    assert converter.format == (16000, 2, 1)
    out = converter.convert(struct.pack("<2h", 16384, 16384))
    assert out.tolist() == [0.5, 0.5]  # no leftover byte from the old format
    with pytest.raises(AudioFormatError, match="sample rate 0 is not valid"):
        converter.set_format(0, 2, 1)
    with pytest.raises(AudioFormatError, match="unsupported sample width 6"):
        converter.set_format(16000, 6, 1)
    assert converter.format == (16000, 2, 1)  # a refused format changes nothing


def test_converter_big_chunk_memory_is_bounded() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(-20000, 20000, (2_621_440, 2), dtype=np.int16)  # 10 MB, 48 kHz stereo
    data = frames.astype("<i2").tobytes()
    assert len(data) == 10 * 1024 * 1024
    converter = PcmConverter(48000, 2, 2)
    converter.convert(data[:1001])  # warm up: plan, buffers

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        out = converter.convert(memoryview(data)[1001:])
        peak = tracemalloc.get_traced_memory()[1]
        out_bytes = out.nbytes
        del out
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert out_bytes >= 4 * (len(frames) // 3 - 20000)
    assert peak - baseline < 2 * out_bytes + 8 * 2**20  # pieces, never the whole chunk as float
    assert after - baseline < 2**20  # nothing kept but a partial frame and the filter state


# --------------------------------------------------------------------------------------------
# read_audio: WAV
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["u8", "s16", "s24", "s32", "f32", "f64"])
@pytest.mark.parametrize("extensible", [False, True])
def test_read_wav_sample_formats(tmp_path: Path, kind: str, extensible: bool) -> None:
    x = tone(1000, 16000, seconds=0.5)
    path = write(tmp_path, f"{kind}.wav", make_wav(x, 16000, kind, extensible=extensible))
    decoded = read_audio(path)
    assert decoded.source_rate == 16000
    assert decoded.source_channels == 1
    assert decoded.duration_s == 0.5
    assert decoded.samples.dtype == np.float32
    step = 1 / 128 if kind == "u8" else 1 / 32768
    assert np.max(np.abs(decoded.samples - x)) <= step


@pytest.mark.parametrize(
    ("rate", "channels", "kind"),
    [(48000, 2, "s16"), (44100, 1, "s16"), (8000, 1, "s16"), (22050, 1, "f32"), (96000, 6, "s24")],
)
def test_read_wav_rates_and_channels(tmp_path: Path, rate: int, channels: int, kind: str) -> None:
    x = tone(1000, rate, seconds=1.5)
    frames = np.repeat(x[:, np.newaxis], channels, axis=1)
    decoded = read_audio(write(tmp_path, "a.wav", make_wav(frames, rate, kind)))
    assert decoded.source_rate == rate
    assert decoded.source_channels == channels
    assert decoded.duration_s == pytest.approx(1.5)
    assert len(decoded.samples) == 24000
    assert abs(peak_hz(decoded.samples) - 1000) < 2
    assert abs(db(amplitude_at(decoded.samples, 1000) / 0.5)) < 0.5


def test_read_wav_averages_channels(tmp_path: Path) -> None:
    frames = np.stack([np.full(1600, 0.5), np.full(1600, -0.25)], axis=1)
    decoded = read_audio(write(tmp_path, "a.wav", make_wav(frames, 16000)))
    assert np.allclose(decoded.samples, 0.125)


def test_read_wav_8bit_silence_and_dc(tmp_path: Path) -> None:
    silence = b"RIFF\0\0\0\0WAVE" + fmt_chunk("u8", 1, 8000) + chunk(b"data", b"\x80" * 8000)
    decoded = read_audio(write(tmp_path, "silence.wav", silence))
    assert len(decoded.samples) == 16000
    assert not np.any(decoded.samples)
    # A DC offset is kept (the engine deals with it later).
    dc = read_audio(write(tmp_path, "dc.wav", make_wav(np.full(44100, 0.25), 44100)))
    assert np.allclose(dc.samples[100:-100], 0.25, atol=1e-4)


def test_read_wav_float_nan_and_inf(tmp_path: Path) -> None:
    x = tone(1000, 16000, seconds=0.25, amplitude=2.0)  # out of range too
    x[::7] = np.nan
    x[1::11] = np.inf
    x[2::13] = -np.inf
    for rate in (16000, 48000):
        for kind in ("f32", "f64"):
            decoded = read_audio(write(tmp_path, "nan.wav", make_wav(x, rate, kind)))
            assert np.all(np.isfinite(decoded.samples))
            assert np.max(np.abs(decoded.samples)) <= 1.0


def test_read_wav_chunk_layouts(tmp_path: Path) -> None:
    x = tone(1000, 16000, seconds=0.25)
    junk = b"odd"  # an odd-sized chunk: padded as it should be, and not padded
    variants = [
        make_wav(x, 16000, before=chunk(b"JUNK", junk), after=chunk(b"LIST", b"INFOabcd")),
        make_wav(x, 16000, before=chunk(b"junk", junk, pad=False)),
        make_wav(x, 16000, before=chunk(b"bext", b"\0" * 602) + chunk(b"fact", b"\0" * 4)),
    ]
    data_first = (
        b"RIFF\0\0\0\0WAVE"
        + chunk(b"data", encode_samples(x[:, np.newaxis], "s16"))
        + fmt_chunk("s16", 1, 16000)
    )
    odd_data = make_wav(x[:-1], 16000, "u8", after=chunk(b"LIST", b"abcd"))  # odd data + pad
    for data in [*variants, data_first]:
        decoded = read_audio_bytes(data)
        assert np.max(np.abs(decoded.samples - x)) <= 1 / 32768
    assert len(read_audio_bytes(odd_data).samples) == len(x) - 1


def test_read_wav_truncated_data_gives_what_is_there(tmp_path: Path) -> None:
    x = tone(1000, 44100, seconds=1.0)
    full = make_wav(x, 44100)
    truncated = full[: len(full) // 2 + 1]  # the data chunk says 1 s, half of it is there
    decoded = read_audio(write(tmp_path, "cut.wav", truncated))
    assert decoded.duration_s == pytest.approx(0.5, abs=0.01)
    assert abs(db(amplitude_at(decoded.samples, 1000) / 0.5)) < 0.5
    # Written to a pipe: the sizes were never filled in.
    streamed = make_wav(x, 44100, data_size=0xFFFFFFFF)
    assert read_audio_bytes(streamed).duration_s == pytest.approx(1.0)
    unknown = make_wav(x, 44100, data_size=0)
    assert read_audio_bytes(unknown).duration_s == pytest.approx(1.0)


def test_read_wav_g711(tmp_path: Path) -> None:
    # μ-law 0xFF is 0 and A-law 0xD5 is the smallest step (8 / 32768); 0x80 / 0xAA are the
    # largest positive values.
    for tag, silence, loud, codec in ((7, 0xFF, 0x80, "pcm_mulaw"), (6, 0xD5, 0xAA, "pcm_alaw")):
        body = bytes([silence] * 800 + [loud] * 800)
        data = b"RIFF\0\0\0\0WAVE" + fmt_chunk("u8", 1, 16000, tag=tag) + chunk(b"data", body)
        decoded = read_audio_bytes(data)
        assert decoded.codec == codec
        assert np.all(np.abs(decoded.samples[:800]) <= 8 / 32768)
        assert np.all(decoded.samples[800:] > 0.97)


def test_read_audio_bytes_equals_read_audio(tmp_path: Path) -> None:
    data = make_wav(np.stack([tone(500, 22050), tone(700, 22050)], axis=1), 22050, "s24")
    from_file = read_audio(write(tmp_path, "a.wav", data))
    from_bytes = read_audio_bytes(data, "a.wav")
    assert np.array_equal(from_file.samples, from_bytes.samples)
    assert from_file.duration_s == from_bytes.duration_s


def bad_fmt(channels: int, rate: int, bits: int = 16, tag: int = 1) -> bytes:
    block = channels * ((bits + 7) // 8)
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return b"RIFF\0\0\0\0WAVE" + chunk(b"fmt ", body) + chunk(b"data", b"\0" * 64)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"RIFF\x10\0", "WAV header is truncated"),
        (b"RIFF\0\0\0\0WAVE", "no fmt chunk"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0", "WAV header is truncated"),
        (b"RIFF\0\0\0\0WAVE" + fmt_chunk("s16", 1, 16000), "no data chunk"),
        (bad_fmt(0, 16000), "0 channels is not valid"),
        (bad_fmt(1, 0), "sample rate 0 is not valid"),
        (bad_fmt(1, 1000), "sample rate 1000 is not supported"),
        (bad_fmt(64, 16000), "64 channels is not supported"),
        (bad_fmt(1, 16000, bits=40), "unsupported sample width 5"),
        (bad_fmt(1, 16000, bits=16, tag=3), "unsupported sample width 2 for WAV float"),
    ],
)
def test_read_audio_rejects_broken_wav(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, "broken.wav", data)
    with pytest.raises(AudioFormatError, match=message) as raised:
        read_audio(path)
    assert str(path) in str(raised.value)


def test_read_audio_unknown_wav_codec(tmp_path: Path) -> None:
    pytest.importorskip("av")  # FFmpeg opens the file but has no decoder for the format tag
    path = write(tmp_path, "odd.wav", bad_fmt(1, 16000, tag=0xC601))
    with pytest.raises(AudioFormatError, match=r"WAV codec 0xc601 .*no decoder") as raised:
        read_audio(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(5).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        b"This is not audio.\nJust some text in a file.\n" * 50,
        b"RIFF\0\0\0\0AVI LIST",
    ],
    ids=["random-bytes", "text", "riff-avi"],
)
def test_read_audio_rejects_garbage(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "garbage.wav", data)
    with pytest.raises(AudioFormatError, match=r"cannot read .*garbage\.wav: "):
        read_audio(path)


def test_read_audio_without_pyav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    path = write(tmp_path, "song.mp3", b"ID3\x04\0\0\0\0\0\0" + b"\xff\xfb" * 100)
    with pytest.raises(
        AudioFormatError, match=r"song\.mp3: not a WAV file and PyAV is not installed"
    ):
        read_audio(path)
    # WAV needs no PyAV.
    assert read_audio_bytes(make_wav(np.zeros(160), 16000)).duration_s == 0.01


def test_read_audio_paths_and_limits(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioFormatError, match="not a regular file"):
        read_audio(tmp_path)
    data = make_wav(np.zeros(32000), 16000)
    with pytest.raises(AudioFormatError, match="longer than the limit of 1 s"):
        read_audio_bytes(data, max_seconds=1)
    assert read_audio_bytes(data, max_seconds=2).duration_s == 2.0


# --------------------------------------------------------------------------------------------
# read_audio: other formats through PyAV
# --------------------------------------------------------------------------------------------


def encode_with_pyav(codec: str, container: str, rate: int = 44100) -> bytes:
    av = pytest.importorskip("av")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"the bundled FFmpeg has no {codec} encoder")
    out = io.BytesIO()
    x = tone(1000, rate, seconds=1.0).astype(np.float32)
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="stereo")
        context = stream.codec_context
        context.open()  # frame_size is known once the encoder is open
        fmt = context.format
        size = context.frame_size or 1024
        for start in range(0, len(x), size):
            piece = x[start : start + size]
            planes = np.tile(piece, (2, 1)) if fmt.is_planar else np.repeat(piece, 2)[None, :]
            if fmt.name.startswith("s16"):
                planes = (planes * 32767).astype(np.int16)
            elif fmt.name.startswith("s32"):
                planes = (planes * (2**31 - 1)).astype(np.int32)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planes), format=fmt.name, layout="stereo"
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(
    ("codec", "container", "suffix", "rate"),
    [
        ("libmp3lame", "mp3", "mp3", 44100),
        ("libopus", "ogg", "ogg", 48000),
        ("flac", "flac", "flac", 44100),
        ("adpcm_ms", "wav", "wav", 22050),  # compressed WAV: handed to PyAV by our parser
    ],
)
def test_read_audio_with_pyav(
    tmp_path: Path, codec: str, container: str, suffix: str, rate: int
) -> None:
    data = encode_with_pyav(codec, container, rate)
    decoded = read_audio(write(tmp_path, f"tone.{suffix}", data))
    assert decoded.source_rate == rate
    assert decoded.source_channels == 2
    assert decoded.duration_s == pytest.approx(1.0, abs=0.1)  # lossy codecs pad a little
    assert abs(len(decoded.samples) - SAMPLE_RATE * decoded.duration_s) <= 1
    assert abs(peak_hz(decoded.samples) - 1000) < 3
    assert abs(db(amplitude_at(decoded.samples, 1000) / 0.5)) < 1.0
    assert np.max(np.abs(decoded.samples)) <= 1.0
    assert read_audio_bytes(data).samples.shape == decoded.samples.shape
