"""engine.audio: live PCM converted and files decoded to 16 kHz mono by PyAV (no HA)."""

from __future__ import annotations

import io
import math
from pathlib import Path
import struct
import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.guard_mode.engine.audio import (
    SAMPLE_RATE,
    AudioFormatError,
    DcBlocker,
    PcmConverter,
    read_audio,
    read_audio_bytes,
    sanitize,
    to_float,
)
from tests import synth

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
    return 20 * math.log10(max(ratio, 1e-12))


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
# Live PCM
# --------------------------------------------------------------------------------------------


def convert_all(data: bytes, rate: int, width: int, channels: int) -> npt.NDArray[np.float64]:
    """Convert a whole stream in one chunk, then end it (a format change returns the tail)."""
    converter = PcmConverter()
    out = [converter.convert(data, rate, width, channels), converter.convert(b"", 16000, 2, 1)]
    return to_float(np.concatenate(out)).astype(np.float64)


def random_chunks(data: bytes, rng: np.random.Generator) -> list[bytes]:
    chunks, position = [], 0
    while position < len(data):
        size = int(rng.choice([1, 2, 3, 5, 17, 1001, 4096]))
        chunks.append(data[position : position + size])
        position += size
    return chunks


def test_sanitize() -> None:
    out = sanitize([np.nan, np.inf, -np.inf, 2.0, -3.0, 0.25, 1e300, -1e300])
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, 0.0, 0.0, 1.0, -1.0, 0.25, 1.0, -1.0]
    float32 = np.array([np.nan, 0.5, 7.0], dtype=np.float32)
    assert sanitize(float32).tolist() == [0.0, 0.5, 1.0]
    assert float32[2] == 7.0  # a copy


def test_16k_mono_16bit_passes_through_whatever_the_chunks() -> None:
    samples = struct.pack("<4h", 0, 16384, -16384, 32767)
    converter = PcmConverter()
    parts = [
        converter.convert(samples[:3], 16000, 2, 1),
        converter.convert(samples[3:], 16000, 2, 1),
    ]
    assert np.concatenate(parts).tolist() == [0, 16384, -16384, 32767]
    assert to_float(np.concatenate(parts)).tolist() == [0.0, 0.5, -0.5, 32767 / 32768]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("u8", [-1.0, 0.0, 0.5]),
        ("s16", [-1.0, 0.0, 0.5]),
        ("s24", [-1.0, 0.0, 0.5]),
        ("s32", [-1.0, 0.0, 0.5]),
    ],
)
def test_every_width_reads_as_the_same_level(kind: str, expected: list[float]) -> None:
    """8-bit is unsigned (0x80 is silence), 24-bit is packed; all reach the engine alike."""
    frames = np.repeat(np.array([-1.0, 0.0, 0.5]), 1600)[:, np.newaxis]
    out = convert_all(encode_samples(frames, kind), 8000, WIDTHS[kind], 1)
    middles = [out[i * 3200 + 1000 : i * 3200 + 2200].mean() for i in range(3)]
    assert middles == pytest.approx(expected, abs=2e-3)


def test_channels_are_averaged_with_equal_weights() -> None:
    """Microphone capsules, not speakers: the third channel counts like the first two."""
    for channels in (2, 3, 6, 8):
        frames = np.zeros((4800, channels))
        frames[:, -1] = 0.6
        out = convert_all(encode_samples(frames, "s16"), 48000, 2, channels)
        assert np.median(out) == pytest.approx(0.6 / channels, abs=1e-3)


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000, 11025, 96000, 4000, 32000, 192000])
def test_a_1khz_tone_keeps_its_pitch_and_level(rate: int) -> None:
    x = tone(1000, rate, seconds=1.0)
    y = convert_all(encode_samples(x[:, np.newaxis], "s16"), rate, 2, 1)
    assert abs(len(y) - SAMPLE_RATE) <= 2
    assert abs(peak_hz(y) - 1000) < 2
    assert abs(db(amplitude_at(y, 1000) / 0.5)) < 0.05


@pytest.mark.parametrize("rate", [48000, 44100])
def test_passband_kept_and_nothing_aliases(rate: int) -> None:
    passed = convert_all(encode_samples(tone(7000, rate)[:, np.newaxis], "s16"), rate, 2, 1)
    assert abs(db(amplitude_at(passed, 7000) / 0.5)) < 0.5
    # 11 kHz is above the new Nyquist frequency: dropping samples would fold it to 5 kHz.
    folded = convert_all(encode_samples(tone(11000, rate)[:, np.newaxis], "s16"), rate, 2, 1)
    assert db(amplitude_at(folded, 16000 - 11000) / 0.5) < -50


def test_a_click_stays_where_it_was() -> None:
    x = np.zeros(48000)
    x[24000] = 1.0  # a click at 0.5 s
    y = convert_all(encode_samples(x[:, np.newaxis], "s32"), 48000, 4, 1)
    assert abs(int(np.argmax(y)) - 8000) <= 1


@pytest.mark.parametrize(
    ("rate", "kind", "channels"),
    [(48000, "s16", 2), (44100, "s24", 3), (8000, "u8", 1), (16000, "s32", 2)],
)
def test_chunks_of_any_size_give_the_same_audio(rate: int, kind: str, channels: int) -> None:
    rng = np.random.default_rng(7)
    frames = rng.uniform(-0.8, 0.8, (rate // 4, channels))
    data = encode_samples(frames, kind)
    whole = convert_all(data, rate, WIDTHS[kind], channels)
    converter = PcmConverter()
    parts = [
        converter.convert(piece, rate, WIDTHS[kind], channels) for piece in random_chunks(data, rng)
    ]
    parts.append(converter.convert(b"", 16000, 2, 1))
    streamed = to_float(np.concatenate(parts))
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) <= 2 / 32768


def test_a_microphone_s_dc_offset_is_taken_out_and_clean_audio_passes_unchanged() -> None:
    room = (synth.rng(3).standard_normal(32000) * 10).astype(np.int16)  # a quiet room, -70 dBFS
    blocker = DcBlocker()
    heard = np.concatenate([blocker(chunk + np.int16(1600)) for chunk in np.split(room, 25)])
    assert abs(float(heard.mean())) < 2  # a 5 % offset is gone from the start ...
    assert np.std(heard) == pytest.approx(np.std(room), rel=0.02)  # ... the room is kept
    clean = DcBlocker()
    assert all(np.array_equal(clean(chunk), chunk) for chunk in np.split(room, 25))
    loud = (synth.rng(4).standard_normal(32000) * 3277).astype(np.int16)  # -20 dBFS noise
    moved = DcBlocker()
    shifts = [np.abs(moved(c).astype(int) - c).max() for c in np.split(loud, 25)]
    assert max(shifts) <= 100  # at most a few steps (-50 dBFS) under audio at -20 dBFS
    assert shifts[-1] == 0  # and none once its mean is known


def test_a_new_format_ends_the_old_one() -> None:
    converter = PcmConverter()
    converter.convert(encode_samples(np.full((4801, 2), 0.5), "s16")[:-1], 48000, 2, 2)  # mid-frame
    out = converter.convert(struct.pack("<2h", 16384, 16384), 16000, 2, 1)
    assert out[-2:].tolist() == [16384, 16384]  # no leftover byte from the old format
    assert len(out) > 2  # the old format's tail comes first
    assert converter.format == (16000, 2, 1)


@pytest.mark.parametrize(
    ("rate", "width", "channels", "message"),
    [
        (0, 2, 1, "sample rate 0 Hz is not usable"),
        (500000, 2, 1, "sample rate 500000 Hz is not usable"),
        (16000, 5, 1, "sample width 5 bytes is not usable"),
        (16000, 2, 0, "0 channels is not usable"),
        (16000, 2, 64, "64 channels is not usable"),
        (192000, 4, 2, "more than the 768000 one microphone may send"),
    ],
)
def test_formats_are_judged_by_the_bounds(
    rate: int, width: int, channels: int, message: str
) -> None:
    converter = PcmConverter()
    converter.convert(b"\0\0", 16000, 2, 1)
    with pytest.raises(AudioFormatError, match=message):
        converter.convert(b"\0" * 64, rate, width, channels)
    assert converter.format == (16000, 2, 1)  # a refused format changes nothing


def test_8bit_silence_is_silence() -> None:
    assert not np.any(convert_all(b"\x80" * 44100, 22050, 1, 2))


def test_a_big_chunk_keeps_little_after_it() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(-20000, 20000, (480_000, 2), dtype=np.int16)  # 10 s, 48 kHz stereo
    data = frames.astype("<i2").tobytes()
    converter = PcmConverter()
    converter.convert(data[:1001], 48000, 2, 2)  # warm up
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        out = converter.convert(memoryview(data)[1001:], 48000, 2, 2)
        out_bytes = out.nbytes
        del out
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert out_bytes >= 2 * (len(frames) // 3 - 100)
    assert after - baseline < 2**16  # nothing kept but a partial frame and the filter state


# --------------------------------------------------------------------------------------------
# Files
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
    junk = b"odd"  # an odd-sized chunk, padded as it should be
    variants = [
        make_wav(x, 16000, before=chunk(b"JUNK", junk), after=chunk(b"LIST", b"INFOabcd")),
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
        (b"RIFF\x10\0", "FFmpeg can't decode it"),
        (b"RIFF\0\0\0\0WAVE", "FFmpeg can't decode it"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0", "FFmpeg can't decode it"),
        (b"RIFF\0\0\0\0WAVE" + fmt_chunk("s16", 1, 16000), "FFmpeg can't decode it"),
        (bad_fmt(0, 16000), "FFmpeg can't decode it"),
        (bad_fmt(1, 0), "FFmpeg can't decode it"),
        (bad_fmt(1, 16000, tag=0xC601), "no decoder|FFmpeg can't decode it"),
    ],
)
def test_read_audio_rejects_broken_wav(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, "broken.wav", data)
    with pytest.raises(AudioFormatError, match=message) as raised:
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


def encode_with_pyav(
    codec: str, container: str, rate: int = 44100, samples: npt.NDArray[np.float32] | None = None
) -> bytes:
    """Encode samples (else 1 s of a 1 kHz tone) at rate, in stereo."""
    av = pytest.importorskip("av")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"the bundled FFmpeg has no {codec} encoder")
    out = io.BytesIO()
    x = tone(1000, rate, seconds=1.0).astype(np.float32) if samples is None else samples
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


def test_a_duration_guessed_from_the_bitrate_does_not_refuse_a_file() -> None:
    """ADTS AAC has no duration: FFmpeg guesses it from the first packets' bitrate, and a minute
    that starts with digital silence looks half an hour long. The decoded length is what counts."""
    speech = synth.speech_like(60.0, synth.rng(1), level_db=-20.0)
    speech[: 5 * 16000] = 0.0
    data = encode_with_pyav("aac", "adts", 16000, speech)
    assert read_audio_bytes(data, "talk.aac", max_seconds=90).duration_s == pytest.approx(60, abs=1)
    with pytest.raises(AudioFormatError, match=r"longer than the limit of 30 s \(30"):
        read_audio_bytes(data, "talk.aac", max_seconds=30)  # still refused when it is longer


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


@pytest.mark.parametrize(("codec", "container"), [("flac", "flac"), ("libmp3lame", "mp3")])
def test_a_cut_off_or_damaged_compressed_file_gives_what_is_there(
    tmp_path: Path, codec: str, container: str
) -> None:
    data = encode_with_pyav(codec, container)  # 1 s
    cut = read_audio(write(tmp_path, f"cut.{container}", data[: len(data) * 6 // 10]))
    assert 0.3 <= cut.duration_s <= 0.8  # what was written before the cut
    assert abs(peak_hz(cut.samples) - 1000) < 3
    middle = len(data) // 2  # a damaged stretch in the middle: the rest is still there
    damaged = data[:middle] + bytes(range(256)) * 8 + data[middle + 2048 :]
    assert read_audio(write(tmp_path, f"damaged.{container}", damaged)).duration_s >= 0.5


def test_a_video_without_sound_is_refused_saying_so(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    out = io.BytesIO()
    with av.open(out, "w", format="avi") as muxer:
        stream = muxer.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        for n in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), n * 40, np.uint8), "rgb24")
            for packet in stream.encode(frame.reformat(format="yuvj420p")):
                muxer.mux(packet)
        for packet in stream.encode(None):
            muxer.mux(packet)
    with pytest.raises(AudioFormatError, match=r"cannot read .*doorcam\.avi: no audio stream"):
        read_audio(write(tmp_path, "doorcam.avi", out.getvalue()))


@pytest.mark.parametrize(
    ("codec", "container"), [("libmp3lame", "mp3"), ("libopus", "ogg"), ("flac", "flac")]
)
def test_compressed_files_over_the_limit_are_refused(codec: str, container: str) -> None:
    data = encode_with_pyav(codec, container, 48000 if codec == "libopus" else 44100)
    with pytest.raises(AudioFormatError, match=r"longer than the limit of 0\.5 s"):
        read_audio_bytes(data, max_seconds=0.5)
    assert read_audio_bytes(data, max_seconds=2).duration_s == pytest.approx(1.0, abs=0.1)
