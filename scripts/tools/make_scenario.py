"""Build the demo / end-to-end scenario recording: a living room over about two and a half minutes.

Usage: scripts/make_scenario [--out build/scenario] [--variant tv-quiet|tv-off] [--check]
                             [--record] [--verify [--shifts N]] [--backend auto|numpy|onnxruntime]

Writes ``scenario.wav`` (16 kHz mono 16-bit) and ``scenario.json`` (the ground truth: segments
``{"t0", "t1", "what", "expect", "sound"}`` with ``expect`` one of "detection", "suppressed",
"nothing"). The story (see :func:`_story`): a quiet room; a war film on the TV at a moderate
level (espeak-ng dialogue over an orchestral score) with a battle scene whose gunfire comes from
the TV; then the TV is turned down (a late-night presenter, a real voice, over quiet music) while,
in the room, a dog barks, a window breaks and a smoke alarm sounds its T3 pattern; then the TV
goes off and the room is quiet again. Variant ``tv-off``: the TV goes off after the film instead.

Real recordings come from pinned Debian packages (``scenario/sources.json``): ``apt-get
download PKG=VERSION`` into the cache, sha256 of the .deb and of the extracted file checked, the
file taken out with ``dpkg-deb --fsys-tarfile`` (or a pure-Python .deb reader where dpkg-deb is
missing), decoded with the engine's :func:`read_audio_bytes` (PyAV for the headerless G.722
file). The film's dialogue is espeak-ng (called by path; Debian package ``espeak-ng``).
Everything is deterministic (seeded RNG, fixed TTS parameters), so ``--check`` rebuilds and
compares the sha256 of the output with the one recorded in sources.json (``--record`` writes it).
``--verify`` runs the real engine over the written file and compares its detections with the
ground truth (``--shifts N``: also with the audio shifted by fractions of the engine's 0.48 s
window hop, since a short sound's scores depend on where the windows fall).

The timeline is data: :class:`Story` (scenes, TV program, in-room events, TV volume) rendered by
:func:`render`; pieces (:func:`make_clips`, :func:`tv_channel`, :func:`room_channel`,
:func:`timeline`, :func:`compare`) can be reused for other scenarios.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import hashlib
import io
import itertools
import json
import lzma
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Any, Literal
import wave
import zlib

import numpy as np
import numpy.typing as npt

from custom_components.guard_mode.engine.audio import read_audio, read_audio_bytes

REPO = Path(__file__).resolve().parents[2]
SOURCES_JSON = REPO / "scenario" / "sources.json"
DEFAULT_OUT = Path("build/scenario")
SAMPLE_RATE = 16000
Audio = npt.NDArray[np.float32]

Expect = Literal["detection", "suppressed", "nothing"]
Channel = Literal["tv", "room"]


class ScenarioError(Exception):
    """A source can't be fetched or checked, a tool is missing, or the story doesn't fit."""


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of data."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- pinned sources ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DebSource:
    """One file inside one pinned Debian package."""

    key: str
    package: str
    version: str
    deb_sha256: str
    deb_size: int
    path: str  # inside the package, without a leading "./"
    file_sha256: str
    license: str
    attribution: str
    container: str | None = None  # a headerless format FFmpeg must be told ("g722")


@dataclass(frozen=True, slots=True)
class Sources:
    """What scenario/sources.json pins."""

    debs: Mapping[str, DebSource]
    tts_package: str  # the Debian package the speech was made with (informative)
    tts_version: str  # `espeak-ng --version`'s version, e.g. "1.52.0"
    output: Mapping[str, Mapping[str, str]]  # variant -> {"scenario.wav": sha256, ...}
    decoded: Mapping[str, str]  # clip key -> sha256 of its 16-bit PCM (where a mismatch starts)


def load_sources(path: Path = SOURCES_JSON) -> Sources:
    """Read and check the pins."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ScenarioError(f"cannot read {path}: {err}") from err
    debs = {}
    for key, entry in raw.get("sources", {}).items():
        try:
            debs[key] = DebSource(
                key=key,
                package=entry["package"],
                version=entry["version"],
                deb_sha256=entry["deb_sha256"],
                deb_size=int(entry["deb_size"]),
                path=entry["path"].removeprefix("./"),
                file_sha256=entry["file_sha256"],
                license=entry["license"],
                attribution=entry["attribution"],
                container=entry.get("container"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ScenarioError(f"{path}: source {key!r} is incomplete ({err})") from err
    tts = raw.get("tts", {})
    return Sources(
        debs=debs,
        tts_package=str(tts.get("debian_package", "")),
        tts_version=str(tts.get("version", "")),
        output=raw.get("output", {}),
        decoded=raw.get("decoded", {}),
    )


def _run(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _apt_download(spec: str, into: Path) -> Path:
    """Run ``apt-get download spec`` in an empty folder; return the .deb it wrote."""
    if shutil.which("apt-get") is None:
        raise ScenarioError(
            "apt-get is not available: run this on Debian/Ubuntu (scripts/make_scenario runs "
            "inside the project's Debian sid root when the host has no Python 3.14), or put the "
            f"pinned .deb files into {into.parent} yourself, named PACKAGE_VERSION.deb"
        )
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    result = _run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", spec], cwd=into)
    debs = sorted(into.glob("*.deb"))
    if result.returncode != 0 or len(debs) != 1:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ScenarioError(f"apt-get download {spec} failed: {' / '.join(detail[-2:])}")
    return debs[0]


def _deb_cache_name(src: DebSource) -> str:
    return f"{src.package}_{src.version.replace(':', '%3a')}.deb"


def fetch_deb(src: DebSource, cache: Path, log: Callable[[str], None] = print) -> bytes:
    """Return the pinned package's bytes, downloaded once into cache and checked."""
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / _deb_cache_name(src)
    if cached.is_file() and sha256_file(cached) == src.deb_sha256:
        return cached.read_bytes()
    spec = f"{src.package}={src.version}"
    log(f"downloading {spec} ({src.deb_size / 1e6:.2f} MB)")
    staging = cache / ".download"
    try:
        got = _apt_download(spec, staging)
    except ScenarioError as first:
        if os.geteuid() == 0:  # the package lists may be missing or old
            _run(["apt-get", "update", "-qq"])
        try:
            got = _apt_download(spec, staging)
        except ScenarioError:
            return _fetch_unpinned(src, cache, staging, first, log)
    data = got.read_bytes()
    digest = sha256_bytes(data)
    shutil.rmtree(staging, ignore_errors=True)
    if digest != src.deb_sha256:
        raise ScenarioError(f"{spec}: .deb sha256 {digest}, expected {src.deb_sha256}")
    cached.write_bytes(data)
    return data


def _fetch_unpinned(
    src: DebSource, cache: Path, staging: Path, why: ScenarioError, log: Callable[[str], None]
) -> bytes:
    """The pinned version left the archive: take the current one if the file is unchanged."""
    try:
        got = _apt_download(src.package, staging)
    except ScenarioError:
        raise why from None
    data = got.read_bytes()
    shutil.rmtree(staging, ignore_errors=True)
    member = extract_member(data, src.path, src.package)
    if sha256_bytes(member) != src.file_sha256:
        raise ScenarioError(
            f"{src.package}={src.version} is no longer downloadable ({why}), and the current "
            f"{got.name} has a different {src.path}: pick a new source in {SOURCES_JSON}"
        )
    log(
        f"warning: {src.package}={src.version} is no longer downloadable; {got.name} has the "
        f"same {src.path} (sha256 checked), using it — update the pin in {SOURCES_JSON}"
    )
    (cache / got.name).write_bytes(data)
    return data


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Read a Unix ar archive (the container of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise ScenarioError("not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _data_tar(data: bytes) -> bytes:
    """Return the uncompressed data.tar of a .deb without dpkg-deb."""
    members = _ar_members(data)
    for name, body in members.items():
        if not name.startswith("data.tar"):
            continue
        if name.endswith(".xz"):
            return lzma.decompress(body)
        if name.endswith(".gz"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if name.endswith(".zst"):
            from compression import zstd  # noqa: PLC0415  (Python >= 3.14)

            return zstd.decompress(body)
        if name == "data.tar":
            return body
        raise ScenarioError(f"unsupported member {name}")
    raise ScenarioError("no data.tar in the .deb")


def extract_member(deb: bytes, path: str, what: str = "package") -> bytes:
    """Return one file out of a .deb: dpkg-deb's tar stream when available, else pure Python."""
    dpkg = shutil.which("dpkg-deb")
    if dpkg is not None:
        with tempfile.NamedTemporaryFile(suffix=".deb") as tmp:
            tmp.write(deb)
            tmp.flush()
            proc = subprocess.run(
                [dpkg, "--fsys-tarfile", tmp.name], capture_output=True, check=False
            )
        if proc.returncode != 0:
            raise ScenarioError(f"dpkg-deb could not read {what}: {proc.stderr.decode().strip()}")
        tar_bytes = proc.stdout
    else:
        tar_bytes = _data_tar(deb)
    want = path.removeprefix("./")
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for info in tar:
            if info.name.removeprefix("./") == want and info.isfile():
                handle = tar.extractfile(info)
                assert handle is not None
                return handle.read()
    raise ScenarioError(f"{what} has no file {path}")


def fetch_file(src: DebSource, cache: Path, log: Callable[[str], None] = print) -> bytes:
    """Return the pinned file's bytes (cached and checked)."""
    return cached_file(src, cache, log).read_bytes()


def cached_file(src: DebSource, cache: Path, log: Callable[[str], None] = print) -> Path:
    """Return where the pinned file is kept in cache, fetched and checked if it isn't there."""
    files = cache / "files"
    cached = files / f"{src.key}{Path(src.path).suffix}"
    if cached.is_file() and sha256_file(cached) == src.file_sha256:
        return cached
    member = extract_member(fetch_deb(src, cache, log), src.path, src.package)
    digest = sha256_bytes(member)
    if digest != src.file_sha256:
        raise ScenarioError(
            f"{src.package}:{src.path}: sha256 {digest}, expected {src.file_sha256}"
        )
    files.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(member)
    return cached


# --- speech ------------------------------------------------------------------------------------

ESPEAK_HINT = (
    "espeak-ng is needed for the TV dialogue: run with PY314_PACKAGES=espeak-ng "
    "(PY314_PACKAGES=espeak-ng scripts/make_scenario …), or `apt install espeak-ng`"
)


ESPEAK_DEFAULT = "/usr/bin/espeak-ng"


def espeak_path() -> Path:
    """Return the espeak-ng program, or raise with how to install it."""
    found = shutil.which("espeak-ng")
    for candidate in (found, ESPEAK_DEFAULT):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ScenarioError(ESPEAK_HINT)


def espeak_version(program: Path) -> str:
    """Return espeak-ng's version ("1.52.0")."""
    out = _run([str(program), "--version"]).stdout
    words = out.split()
    for i, word in enumerate(words):
        if word == "NG" and i + 2 < len(words):
            return words[i + 2]
    return out.strip()


@dataclass(frozen=True, slots=True)
class Voice:
    """Fixed espeak-ng parameters of one character."""

    name: str  # -v, e.g. "en-gb+m3"
    speed: int = 160  # -s, words per minute
    pitch: int = 50  # -p, 0..99


def speak(program: Path, voice: Voice, text: str, workdir: Path) -> Audio:
    """Synthesize one line with espeak-ng; return 16 kHz samples."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "line.wav"
    cmd = [str(program), "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch)]
    result = _run([*cmd, "-a", "100", "-w", str(out), text])
    if result.returncode != 0 or not out.is_file():
        raise ScenarioError(f"espeak-ng failed on {text!r}: {result.stderr.strip()}")
    samples = read_audio(out).samples
    out.unlink()
    return trim_silence(samples)


# --- signal helpers (pure) ---------------------------------------------------------------------

FRAME = 400  # 25 ms frames, 10 ms hop: the engine's level meter
HOP = 160
MAX_PEAK_DB = -3.0  # the mix's sample peak stays below this (no clipping, some headroom)


def db_to_amp(db: float) -> float:
    """Convert dB to a linear factor."""
    return float(10.0 ** (db / 20.0))


def frame_levels_db(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return the RMS level (dBFS, mean square) of 25 ms frames every 10 ms."""
    a = np.asarray(x, np.float64)
    if len(a) < FRAME:
        a = np.pad(a, (0, FRAME - len(a)))
    power = np.concatenate([[0.0], np.cumsum(a * a)])
    starts = np.arange(0, len(a) - FRAME + 1, HOP)
    mean_square = (power[starts + FRAME] - power[starts]) / FRAME
    return np.asarray(10.0 * np.log10(np.maximum(mean_square, 1e-12)))


def frame_peak_db(x: npt.ArrayLike) -> float:
    """Return the loudest 25 ms frame's level in dBFS (what the engine calls a window's peak)."""
    return float(frame_levels_db(x).max())


def set_frame_peak(x: npt.ArrayLike, db: float) -> Audio:
    """Scale a signal so that its loudest 25 ms frame is at db dBFS."""
    a = np.asarray(x, np.float64)
    level = frame_peak_db(a)
    if level <= -119.0:
        return a.astype(np.float32)
    return (a * db_to_amp(db - level)).astype(np.float32)


def trim_silence(x: npt.ArrayLike, below_db: float = 50.0) -> Audio:
    """Cut leading and trailing frames more than below_db under the loudest frame."""
    a = np.asarray(x, np.float32)
    if not len(a):
        return a
    levels = frame_levels_db(a)
    active = np.flatnonzero(levels >= levels.max() - below_db)
    start = int(active[0]) * HOP
    end = min(len(a), int(active[-1]) * HOP + FRAME)
    return a[start:end]


def active_span(x: npt.ArrayLike, below_db: float = 30.0) -> tuple[float, float]:
    """Return (start_s, end_s) of the part of x within below_db of its loudest frame."""
    levels = frame_levels_db(x)
    active = np.flatnonzero(levels >= levels.max() - below_db)
    return float(active[0] * HOP / SAMPLE_RATE), float((active[-1] * HOP + FRAME) / SAMPLE_RATE)


def fade(x: npt.ArrayLike, in_s: float = 0.0, out_s: float = 0.0) -> Audio:
    """Apply raised-cosine fades at both ends."""
    a = np.asarray(x, np.float32).copy()
    for seconds, head in ((in_s, True), (out_s, False)):
        n = min(len(a), round(seconds * SAMPLE_RATE))
        if n <= 0:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)
        if head:
            a[:n] *= ramp
        else:
            a[-n:] *= ramp[::-1]
    return a


def add_at(
    out: npt.NDArray[np.float64], x: npt.ArrayLike, at_s: float, gain_db: float = 0.0
) -> None:
    """Add x into out starting at at_s (cut at the end of out), scaled by gain_db."""
    a = np.asarray(x, np.float64)
    start = round(at_s * SAMPLE_RATE)
    if start < 0:
        a, start = a[-start:], 0
    a = a[: max(0, len(out) - start)]
    out[start : start + len(a)] += a * db_to_amp(gain_db)


def change_speed(x: npt.ArrayLike, factor: float) -> Audio:
    """Play x `factor` times faster (pitch follows), by linear interpolation."""
    a = np.asarray(x, np.float64)
    if factor == 1.0 or len(a) < 2:
        return a.astype(np.float32)
    n = int(len(a) / factor)
    return np.interp(np.arange(n) * factor, np.arange(len(a)), a).astype(np.float32)


def loop_to(x: npt.ArrayLike, seconds: float, crossfade_s: float = 1.0) -> Audio:
    """Repeat x (with crossfades) until it is `seconds` long."""
    a = np.asarray(x, np.float32)
    want = round(seconds * SAMPLE_RATE)
    xf = min(round(crossfade_s * SAMPLE_RATE), len(a) // 4)
    out = a.copy()
    while len(out) < want:
        ramp = np.linspace(0.0, 1.0, xf, dtype=np.float32)
        joint = out[len(out) - xf :] * (1 - ramp) + a[:xf] * ramp
        out = np.concatenate([out[: len(out) - xf], joint, a[xf:]])
    return out[:want]


def speaker_eq(x: npt.ArrayLike, low_hz: float = 150.0, high_hz: float = 7000.0) -> Audio:
    """A TV loudspeaker: 2nd-order Butterworth high-pass and low-pass magnitudes, zero phase."""
    a = np.asarray(x, np.float64)
    if not len(a):
        return a.astype(np.float32)
    spectrum = np.fft.rfft(a)
    f = np.fft.rfftfreq(len(a), 1 / SAMPLE_RATE)
    with np.errstate(divide="ignore"):
        high_pass = 1.0 / np.sqrt(1.0 + (low_hz / np.maximum(f, 1e-9)) ** 4)
    low_pass = 1.0 / np.sqrt(1.0 + (f / high_hz) ** 4)
    return np.fft.irfft(spectrum * high_pass * low_pass, len(a)).astype(np.float32)


def volume_envelope(
    points: Sequence[tuple[float, float | None]], total_s: float
) -> npt.NDArray[np.float64]:
    """Return a gain curve from (time_s, dB) breakpoints, linear in dB between them.

    ``None`` means off (silence): a segment that ends or starts at None is a 50 ms fade to or
    from -60 dB, then silence. Before the first and after the last point the gain holds.
    """
    n = round(total_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    if not points:
        return np.ones(n)
    off_db = -120.0
    times, dbs = [], []
    for i, (at, db) in enumerate(points):
        if db is None:
            prev = points[i - 1][1] if i else None
            if prev is not None:  # fade out over 50 ms
                times.append(at)
                dbs.append(prev)
                times.append(at + 0.05)
                dbs.append(off_db)
            else:
                times.append(at)
                dbs.append(off_db)
        else:
            prev_off = i > 0 and points[i - 1][1] is None
            if prev_off:
                times.append(at - 0.05)
                dbs.append(off_db)
            times.append(at)
            dbs.append(db)
    curve_db = np.interp(t, times, dbs)
    gain = 10.0 ** (curve_db / 20.0)
    gain[curve_db <= off_db + 1e-9] = 0.0
    return gain


def to_pcm16(x: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Quantise to 16-bit integers (round to nearest; the caller keeps peaks below full scale)."""
    a = np.asarray(x, np.float64)
    return np.round(np.clip(a, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def wav_bytes(pcm: npt.NDArray[np.int16]) -> bytes:
    """Return a 16 kHz mono 16-bit WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def seed_of(name: str) -> int:
    """Return a stable seed for a named random stream."""
    return zlib.crc32(name.encode("utf-8"))


# --- the story as data -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of TV dialogue."""

    voice: str  # key of STORY.voices
    text: str


@dataclass(frozen=True, slots=True)
class Dialogue:
    """Lines spoken one after another from start_s, gap_s apart; must end by end_s."""

    start_s: float
    end_s: float
    lines: tuple[Line, ...]
    level_db: float = -24.0  # loudest frame of each line, in the TV's mix (before its volume)
    gap_s: float = 0.7


@dataclass(frozen=True, slots=True)
class Cue:
    """One clip placed in the scenario.

    ``level_db`` is the loudest 25 ms frame the clip gets (dBFS) before the TV's volume (TV)
    or the room's reverberation (room). ``event`` groups cues into one ground-truth segment.
    """

    clip: str  # key of the clips made by make_clips
    at_s: float
    level_db: float
    channel: Channel
    event: str | None = None
    offset_s: float = 0.0  # start this far into the clip
    length_s: float | None = None  # and take this much of it (None: to its end)
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    speed: float = 1.0  # playback speed (a different dog bark, a different pane)


@dataclass(frozen=True, slots=True)
class Room:
    """Reverberation of one place in the room, as heard at the microphone."""

    rt60_s: float
    drr_db: float


@dataclass(frozen=True, slots=True)
class Event:
    """A ground-truth segment made by the cues of one event."""

    what: str
    expect: Expect
    sound: str | None
    place: str | None = None  # key of Story.rooms (room cues of this event); None for TV


@dataclass(frozen=True, slots=True)
class Scene:
    """A stretch of the background story (what is heard between events)."""

    t0: float
    t1: float
    what: str


@dataclass(frozen=True, slots=True)
class Story:
    """Everything the scenario is made of."""

    duration_s: float
    scenes: tuple[Scene, ...]
    voices: Mapping[str, Voice]
    dialogue: tuple[Dialogue, ...]
    cues: tuple[Cue, ...]
    events: Mapping[str, Event]
    rooms: Mapping[str, Room]
    tv_volume: tuple[tuple[float, float | None], ...]  # (time_s, dB) breakpoints, None = off
    tv_room: Room = Room(0.3, 8.0)  # the TV: a loudspeaker near the microphone, drier
    noise_db: float = -66.0  # RMS of the room's noise floor (pink)
    seed: str = "guard-mode-scenario-1"


VOICES = {
    "narrator": Voice("en-us+m1", speed=150, pitch=40),
    "sergeant": Voice("en-gb+m3", speed=155, pitch=35),
    "private": Voice("en-us+m7", speed=170, pitch=60),
}

FILM_PART_1 = (
    Line(
        "narrator", "Tonight's feature film: The Last Patrol. Northern France, nineteen forty four."
    ),
    Line("sergeant", "Keep your heads down, lads. This bridge is far too quiet."),
    Line("private", "Sergeant, I can see movement by the old farmhouse."),
    Line("sergeant", "Nobody fires until I give the word. Wait for it."),
    Line("private", "They have seen us! Take cover!"),
)
FILM_PART_2 = (
    Line("sergeant", "Cease fire! Cease fire! Is anybody hit?"),
    Line("private", "We are all right, Sergeant. They have pulled back across the river."),
    Line("sergeant", "Then we hold this bridge until morning. Get some rest while you can."),
    Line("sergeant", "Corporal, take two men and watch the road to the village."),
)
# Where in the room things happen (rt60 of the room, direct-to-reverberant ratio at the mic).
# A furnished living room: rt60 0.4 s.
ROOMS = {
    "dog": Room(0.4, 4.0),  # the dog, about two metres from the microphone
    "window": Room(0.4, 3.0),  # the window, a little farther
    "ceiling": Room(0.4, 0.0),  # the smoke alarm on the ceiling, farther still
}

# Six barks over about five seconds: (offset_s, gain_db, speed)
BARKS = (
    (0.0, 0.0, 1.0),
    (0.75, -1.5, 1.03),
    (2.0, 0.0, 0.98),
    (2.6, -2.0, 1.02),
    (3.25, -1.0, 0.97),
    (4.5, -3.0, 1.01),
)

TV_ON_S, TV_DOWN_S, TV_OFF_S = 15.0, 76.0, 140.0
DOG_S, GLASS_S, ALARM_S = 90.0, 104.0, 112.0
PRESENTER_S = TV_OFF_S - TV_DOWN_S - 2.0
TV_QUIET_DB = -14.0  # the TV's volume drop after the battle scene
ROOM_EVENT_DB = -18.0  # loudest frame of the bark / of the breaking glass (before reverb)


def _story_cues() -> tuple[Cue, ...]:
    cues = [
        # the film's score: a theme, the 1812 overture's opening, the theme again, …
        Cue("score_theme", TV_ON_S, -22.0, "tv", fade_in_s=0.5, length_s=35.0, fade_out_s=2.0),
        Cue("score_1812", TV_ON_S + 33.0, -23.0, "tv", fade_in_s=2.0, fade_out_s=2.0),
        Cue("score_theme", TV_ON_S + 65.0, -22.0, "tv", fade_in_s=2.0, fade_out_s=2.0),
        Cue("score_1812", TV_ON_S + 98.0, -23.0, "tv", fade_in_s=2.0, fade_out_s=2.0),
        # the battle scene: gunfire in the film (a recording of infantry under fire)
        Cue("film_gunfire", 47.0, -17.0, "tv", event="film_gunfire", fade_out_s=0.3),
        # after the film (the TV turned down): a presenter talks, a real voice
        Cue("presenter", TV_DOWN_S + 1.0, -24.0, "tv", length_s=PRESENTER_S, fade_out_s=0.5),
    ]
    cues += [
        Cue("bark", DOG_S + at, ROOM_EVENT_DB + gain, "room", event="dog", speed=speed)
        for at, gain, speed in BARKS
    ]
    cues += [
        # the pane cracks and shatters, then shards fall onto the sill and the floor
        Cue("glass_break_1", GLASS_S, ROOM_EVENT_DB, "room", event="glass"),
        Cue("glass_break_2", GLASS_S + 0.6, ROOM_EVENT_DB - 4.0, "room", event="glass"),
        Cue("glass_break_3", GLASS_S + 1.3, ROOM_EVENT_DB - 6.0, "room", event="glass"),
        Cue("smoke_alarm_t3", ALARM_S, -24.0, "room", event="smoke_alarm"),
    ]
    return tuple(cues)


def _story(tv_after_film: float | None) -> Story:
    """The default story; tv_after_film is the TV's volume (dB) after the battle, None = off."""
    if tv_after_film is None:
        volume: tuple[tuple[float, float | None], ...] = (
            (TV_ON_S - 0.05, None),
            (TV_ON_S, 0.0),
            (TV_DOWN_S, None),
        )
        scenes = (
            Scene(0.0, TV_ON_S, "quiet living room (room noise only)"),
            Scene(TV_ON_S, TV_DOWN_S, "TV at a moderate level: a war film, dialogue over score"),
            Scene(TV_DOWN_S, 200.0, "TV off: quiet living room"),
        )
    else:
        volume = (
            (TV_ON_S - 0.05, None),
            (TV_ON_S, 0.0),
            (TV_DOWN_S - 1.0, 0.0),
            (TV_DOWN_S + 1.0, tv_after_film),
            (TV_OFF_S, None),
        )
        scenes = (
            Scene(0.0, TV_ON_S, "quiet living room (room noise only)"),
            Scene(TV_ON_S, TV_DOWN_S, "TV at a moderate level: a war film, dialogue over score"),
            Scene(TV_DOWN_S, TV_OFF_S, "TV turned down: a late-night presenter over quiet music"),
            Scene(TV_OFF_S, 200.0, "TV off: quiet living room"),
        )
    return Story(
        duration_s=150.0,
        scenes=scenes,
        voices=VOICES,
        dialogue=(
            Dialogue(TV_ON_S + 7.5, 46.5, FILM_PART_1),
            Dialogue(54.5, TV_DOWN_S - 1.0, FILM_PART_2),
        ),
        cues=_story_cues(),
        events={
            # Continuous battle noise at the TV's level holds no shot that stands out of the
            # programme: no alert (and no gunshot heard at all).
            "film_gunfire": Event(
                "TV: battle scene, gunfire in the film (at the TV's level)", "nothing", "gunshot"
            ),
            "dog": Event("a dog barks in the room (six barks)", "detection", "dog_bark", "dog"),
            "glass": Event("a window breaks in the room", "detection", "glass_break", "window"),
            "smoke_alarm": Event(
                "smoke alarm, T3 pattern at 3.1 kHz (4 cycles)",
                "detection",
                "smoke_alarm",
                "ceiling",
            ),
        },
        rooms=ROOMS,
        tv_volume=volume,
    )


VARIANTS: dict[str, Callable[[], Story]] = {
    "tv-quiet": lambda: _story(TV_QUIET_DB),  # the default: the TV goes on, turned down
    "tv-off": lambda: _story(None),  # the TV goes off after the film
}
DEFAULT_VARIANT = "tv-quiet"
STORY = VARIANTS[DEFAULT_VARIANT]()


# --- clips ---------------------------------------------------------------------------------------

# Clip key -> (source key in sources.json, what to keep: (offset_s, length_s or None)).
RECORDED_CLIPS: dict[str, tuple[str, tuple[float, float | None]]] = {
    "bark": ("bark", (0.0, None)),
    "glass_break_1": ("glass_break_1", (0.0, None)),
    "glass_break_2": ("glass_break_2", (0.0, None)),
    "glass_break_3": ("glass_break_3", (0.0, None)),
    "film_gunfire": ("film_gunfire", (0.0, None)),
    "score_theme": ("score_theme", (0.0, None)),
    "score_1812": ("score_1812", (0.0, None)),
    "presenter": ("presenter", (0.0, None)),
}


def smoke_alarm_t3(seed: str) -> Audio:
    """A piezo smoke alarm: T3 pattern at 3.1 kHz, four cycles, slight timing jitter."""
    from tests.synth import alarm  # noqa: PLC0415  (repository root on sys.path)

    gen = np.random.default_rng(seed_of(f"{seed}/alarm"))
    synth = alarm(
        "T3", "piezo", cycles=4, freq_hz=3100.0, jitter=0.03, gen=gen, lead_s=0.0, tail_s=0.0
    )
    return synth.audio


def make_clips(
    sources: Sources, cache: Path, story: Story, log: Callable[[str], None] = print
) -> dict[str, Audio]:
    """Fetch, check and decode every clip the story uses (16 kHz float32, not yet levelled)."""
    clips: dict[str, Audio] = {}
    for key, (source_key, (offset_s, length_s)) in RECORDED_CLIPS.items():
        src = sources.debs.get(source_key)
        if src is None:
            raise ScenarioError(f"{SOURCES_JSON} has no source {source_key!r}")
        data = fetch_file(src, cache, log)
        samples = decode(data, f"{src.package}:{src.path}", src.container)
        start = round(offset_s * SAMPLE_RATE)
        end = None if length_s is None else start + round(length_s * SAMPLE_RATE)
        clips[key] = np.asarray(samples[start:end], np.float32)
    clips["smoke_alarm_t3"] = smoke_alarm_t3(story.seed)
    return clips


def decode(data: bytes, name: str, container: str | None = None) -> Audio:
    """Decode a file to 16 kHz mono float32: the engine's reader, or PyAV for a raw format."""
    if container is None:
        return read_audio_bytes(data, name=name).samples
    import av  # noqa: PLC0415  (PyAV: in the venv, as for the engine's non-WAV files)

    chunks = []
    with av.open(io.BytesIO(data), format=container) as stream:
        rate = stream.streams.audio[0].rate
        for frame in stream.decode(audio=0):
            pcm = frame.to_ndarray()
            if pcm.dtype.kind == "i":
                pcm = pcm / float(np.iinfo(pcm.dtype).max + 1)
            chunks.append(np.asarray(pcm, np.float32).reshape(len(frame.layout.channels), -1))
    samples = np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)
    if rate != SAMPLE_RATE:
        raise ScenarioError(f"{name}: {rate} Hz, expected {SAMPLE_RATE} Hz")
    return samples


def speak_dialogue(story: Story, workdir: Path) -> list[list[Audio]]:
    """Synthesize every dialogue line (espeak-ng)."""
    program = espeak_path()
    return [
        [speak(program, story.voices[line.voice], line.text, workdir) for line in block.lines]
        for block in story.dialogue
    ]


# --- rendering ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Placed:
    """A cue rendered into the scenario: where its sound actually is."""

    cue: Cue
    t0: float
    t1: float
    peak_db: float


@dataclass(slots=True)
class Rendered:
    """The rendered scenario and what went into it."""

    audio: Audio
    segments: list[dict[str, Any]]
    placed: list[Placed] = field(default_factory=list)
    levels: dict[str, float] = field(default_factory=dict)


def cue_audio(cue: Cue, clip: Audio) -> Audio:
    """Cut, speed, fade and level one cue's clip."""
    start = round(cue.offset_s * SAMPLE_RATE)
    end = None if cue.length_s is None else start + round(cue.length_s * SAMPLE_RATE)
    x = change_speed(clip[start:end], cue.speed)
    x = set_frame_peak(x, cue.level_db)
    return fade(x, cue.fade_in_s, cue.fade_out_s)


def dialogue_cues(story: Story, spoken: Sequence[Sequence[Audio]]) -> list[tuple[Cue, Audio]]:
    """Place the dialogue lines one after another; fail if a block overruns its end."""
    out = []
    for b, (block, lines) in enumerate(zip(story.dialogue, spoken, strict=True)):
        at = block.start_s
        for i, audio in enumerate(lines):
            end = at + len(audio) / SAMPLE_RATE
            if end > block.end_s:
                raise ScenarioError(
                    f"dialogue block {b} ends at {end:.1f} s, after {block.end_s} s: "
                    "shorten it or move its start"
                )
            cue = Cue(f"line_{b}_{i}", at, block.level_db, "tv")
            out.append((cue, set_frame_peak(audio, block.level_db)))
            at = end + block.gap_s
    return out


def tv_channel(
    story: Story, placed: Iterable[tuple[Cue, Audio]], gen: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Mix the TV's program, apply its volume, its loudspeaker and its place in the room."""
    from tests.synth import reverb  # noqa: PLC0415

    total = round(story.duration_s * SAMPLE_RATE)
    program = np.zeros(total)
    for cue, audio in placed:
        add_at(program, audio, cue.at_s)
    program *= volume_envelope(story.tv_volume, story.duration_s)
    speaker = speaker_eq(program)
    return np.asarray(reverb(speaker, gen, story.tv_room.rt60_s, story.tv_room.drr_db), np.float64)


def room_channel(
    story: Story, placed: Iterable[tuple[Cue, Audio]], seed: str
) -> npt.NDArray[np.float64]:
    """Mix the in-room sounds, each reverberated by the room at its place."""
    from tests.synth import reverb  # noqa: PLC0415

    total = round(story.duration_s * SAMPLE_RATE)
    room = np.zeros(total)
    for k, (cue, audio) in enumerate(placed):
        event = story.events.get(cue.event or "")
        place = story.rooms.get(event.place or "") if event else None
        if place is None:
            add_at(room, audio, cue.at_s)
            continue
        gen = np.random.default_rng(seed_of(f"{seed}/room/{event and event.place}/{k}"))
        padded = np.concatenate([audio, np.zeros(round(place.rt60_s * SAMPLE_RATE), np.float32)])
        add_at(room, reverb(padded, gen, place.rt60_s, place.drr_db), cue.at_s)
    return room


def timeline(story: Story, placed: Sequence[Placed]) -> list[dict[str, Any]]:
    """Return the ground truth: scenes cut by events, in time order, covering the scenario.

    An event's segment spans its cues' sound (within 30 dB of each cue's loudest frame).
    """
    spans: dict[str, list[float]] = {}
    for p in placed:
        if p.cue.event is None:
            continue
        span = spans.setdefault(p.cue.event, [p.t0, p.t1])
        span[0], span[1] = min(span[0], p.t0), max(span[1], p.t1)
    events = sorted(
        ((t0, t1, key) for key, (t0, t1) in spans.items()), key=lambda item: (item[0], item[1])
    )
    for (_, a_end, a), (b_start, _, b) in itertools.pairwise(events):
        if b_start < a_end:
            raise ScenarioError(f"events {a} and {b} overlap")
    segments: list[dict[str, Any]] = []
    end = story.duration_s

    def add(t0: float, t1: float, what: str, expect: Expect, sound: str | None) -> None:
        t0, t1 = round(max(0.0, t0), 2), round(min(end, t1), 2)
        if t1 > t0:
            segments.append({"t0": t0, "t1": t1, "what": what, "expect": expect, "sound": sound})

    for scene in story.scenes:
        pos = scene.t0
        for t0, t1, key in events:
            if t1 <= scene.t0 or t0 >= scene.t1:
                continue
            if t0 >= scene.t0:  # the event starts in this scene: it belongs to it
                add(pos, t0, scene.what, "nothing", None)
                event = story.events[key]
                add(t0, t1, event.what, event.expect, event.sound)
            pos = max(pos, t1)
        add(pos, scene.t1, scene.what, "nothing", None)
    return segments


def render(story: Story, clips: Mapping[str, Audio], spoken: Sequence[Sequence[Audio]]) -> Rendered:
    """Mix the scenario: TV + room + noise floor; return audio and ground truth."""
    total = round(story.duration_s * SAMPLE_RATE)
    tv_items = dialogue_cues(story, spoken)
    room_items: list[tuple[Cue, Audio]] = []
    placed: list[Placed] = []
    for cue in story.cues:
        if cue.clip not in clips:
            raise ScenarioError(f"no clip {cue.clip!r}")
        audio = cue_audio(cue, clips[cue.clip])
        (tv_items if cue.channel == "tv" else room_items).append((cue, audio))
        a, b = active_span(audio)
        placed.append(Placed(cue, cue.at_s + a, cue.at_s + b, frame_peak_db(audio)))
    tv = tv_channel(story, tv_items, np.random.default_rng(seed_of(f"{story.seed}/tv")))
    room = room_channel(story, room_items, story.seed)
    from tests.synth import pink_noise  # noqa: PLC0415

    noise_gen = np.random.default_rng(seed_of(f"{story.seed}/noise"))
    noise = np.asarray(pink_noise(story.duration_s, story.noise_db, noise_gen), np.float64)
    mix = tv + room + noise[:total]
    peak = float(np.abs(mix).max())
    if peak > db_to_amp(MAX_PEAK_DB):
        at = int(np.abs(mix).argmax()) / SAMPLE_RATE
        raise ScenarioError(
            f"the mix peaks at {20 * np.log10(peak):.1f} dBFS at {at:.2f} s: "
            f"keep it under {MAX_PEAK_DB:g} dBFS"
        )
    levels = scene_levels(story, tv, room, placed)
    levels["sample_peak_db"] = round(float(20 * np.log10(peak)), 2)
    return Rendered(mix.astype(np.float32), timeline(story, placed), placed, levels)


def scene_levels(
    story: Story,
    tv: npt.NDArray[np.float64],
    room: npt.NDArray[np.float64],
    placed: Sequence[Placed],
) -> dict[str, float]:
    """Measure the levels that matter for media suppression (loudest frames, as mixed)."""

    def cut(x: npt.NDArray[np.float64], t0: float, t1: float) -> npt.NDArray[np.float64]:
        return x[round(t0 * SAMPLE_RATE) : round(t1 * SAMPLE_RATE)]

    out: dict[str, float] = {}
    for scene in story.scenes:
        part = cut(tv, scene.t0, scene.t1)
        if len(part) < FRAME:
            continue
        levels = frame_levels_db(part)
        # the median of per-second maxima: the TV's typical peak in this scene (as the decider's
        # media reference, the median of its windows' loudest frames)
        typical = float(np.median([levels[i : i + 100].max() for i in range(0, len(levels), 100)]))
        if typical > -90.0:
            out[f"tv_typical_peak_db@{scene.t0:g}s"] = round(typical, 1)
    for p in placed:
        if p.cue.event is not None:
            key = f"{p.cue.event}_peak_db"
            level = frame_peak_db(cut(room if p.cue.channel == "room" else tv, p.t0, p.t1 + 0.3))
            out[key] = round(max(out.get(key, -120.0), level), 1)
    return out


# --- verification against the engine ------------------------------------------------------------

EARLY_S = 1.0  # a detection may start this much before its segment (0.96 s windows)
LATE_S = 2.5  # … and this much after its segment's start (persistence: 2-3 windows)


def compare(
    segments: Sequence[Mapping[str, Any]], detections: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """Compare engine detections with the ground truth; return (problems, notes).

    * every "detection" segment needs an alerted (not suppressed) detection of its sound that
      overlaps it (starting no earlier than EARLY_S before it and no later than LATE_S after);
    * every "suppressed" segment needs a suppressed detection of its sound there (reason media
      or media_player), and no alerted one;
    * any other alerted detection is a problem (a false alarm); other suppressed detections are
      notes.
    """
    problems: list[str] = []
    notes: list[str] = []
    used: set[int] = set()

    def near(seg: Mapping[str, Any], det: Mapping[str, Any]) -> bool:
        return (
            det["sound"] == seg["sound"]
            and det["start_s"] >= seg["t0"] - EARLY_S
            and det["start_s"] <= seg["t1"] + LATE_S
            and det["end_s"] >= seg["t0"]
        )

    for seg in segments:
        if seg["expect"] == "nothing":
            continue
        found = [i for i, d in enumerate(detections) if near(seg, d)]
        alerted = [i for i in found if not detections[i]["suppressed"]]
        muted = [
            i
            for i in found
            if detections[i]["suppressed"] and detections[i]["reason"] in {"media", "media_player"}
        ]
        label = f"{seg['sound']} at {seg['t0']}-{seg['t1']} s ({seg['what']})"
        if seg["expect"] == "detection":
            if not alerted:
                why = ", ".join(f"suppressed: {detections[i]['reason']}" for i in found)
                problems.append(f"missed {label}" + (f" [{why}]" if why else ""))
            used.update(found)
        else:
            if alerted:
                problems.append(f"alerted on {label}, expected suppressed")
            elif not muted:
                problems.append(f"did not hear {label} (expected a suppressed detection)")
            used.update(found)
    for i, d in enumerate(detections):
        if i in used:
            continue
        text = f"{d['sound']} at {d['start_s']}-{d['end_s']} s"
        if d["suppressed"]:
            notes.append(f"also heard (suppressed, {d['reason']}): {text}")
        else:
            problems.append(f"false alarm: {text}")
    return problems, notes


def verify(
    wav: Path, segments: Sequence[Mapping[str, Any]], backend: str = "auto", shifts: int = 1
) -> tuple[list[dict[str, Any]], list[list[str]], list[list[str]]]:
    """Run the whole engine over the written scenario, as the ``analyze`` CLI does.

    With shifts > 1 it runs again with the audio delayed by k/shifts of the 0.48 s window hop
    (the delay repeats the quiet start); detection times are given back in the file's time.
    Returns the CLI JSON object, the problems and the notes of each run.
    """
    from custom_components.guard_mode.engine.analyze import analyze_samples  # noqa: PLC0415
    from custom_components.guard_mode.engine.frontend import WINDOW_HOP_S  # noqa: PLC0415
    from custom_components.guard_mode.engine.tagger import load_tagger  # noqa: PLC0415

    tagger = load_tagger(backend=backend)  # type: ignore[arg-type]
    audio = read_audio(wav).samples
    results, problems, notes = [], [], []
    for k in range(max(1, shifts)):
        lead = round(k * WINDOW_HOP_S / max(1, shifts) * SAMPLE_RATE)
        result = analyze_samples(
            np.concatenate([audio[:lead], audio]), tagger, name=str(wav)
        ).as_json()
        result["duration_s"] = round(len(audio) / SAMPLE_RATE, 3)
        for d in result["detections"]:
            d["start_s"] = round(max(0.0, d["start_s"] - lead / SAMPLE_RATE), 3)
            d["end_s"] = round(max(0.0, d["end_s"] - lead / SAMPLE_RATE), 3)
        found, noted = compare(segments, result["detections"])
        results.append(result)
        problems.append(found)
        notes.append(noted)
    return results, problems, notes


# --- command line ------------------------------------------------------------------------------


def build(
    out: Path, variant: str, sources: Sources, cache: Path, log: Callable[[str], None] = print
) -> tuple[Rendered, dict[str, str], dict[str, str]]:
    """Build one variant into out; return the rendering, output digests and clip digests."""
    story = VARIANTS[variant]()
    clips = make_clips(sources, cache, story, log)
    spoken = speak_dialogue(story, cache / "tts")
    rendered = render(story, clips, spoken)
    pcm = to_pcm16(rendered.audio)
    wav = wav_bytes(pcm)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.wav").write_bytes(wav)
    truth = {
        "file": "scenario.wav",
        "variant": variant,
        "sample_rate": SAMPLE_RATE,
        "duration_s": story.duration_s,
        "sha256": sha256_bytes(wav),
        "segments": rendered.segments,
        "tv_volume_db": [[t, db] for t, db in story.tv_volume],
        "levels_db": rendered.levels,
    }
    text = json.dumps(truth, indent=2) + "\n"
    (out / "scenario.json").write_text(text, encoding="utf-8")
    digests = {"scenario.wav": sha256_bytes(wav), "scenario.json": sha256_bytes(text.encode())}
    decoded = {key: sha256_bytes(to_pcm16(clip).tobytes()) for key, clip in sorted(clips.items())}
    for b, block in enumerate(spoken):
        decoded[f"speech_{b}"] = sha256_bytes(b"".join(to_pcm16(x).tobytes() for x in block))
    return rendered, digests, decoded


def record(
    path: Path,
    variant: str,
    digests: Mapping[str, str],
    decoded: Mapping[str, str],
    tts_version: str,
) -> None:
    """Write the output's digests (and the decoded clips') into sources.json."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.setdefault("output", {})[variant] = dict(digests)
    raw["decoded"] = dict(decoded)
    raw.setdefault("tts", {})["version"] = tts_version
    path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")


def check(
    variant: str,
    sources: Sources,
    digests: Mapping[str, str],
    decoded: Mapping[str, str],
    tts_version: str,
) -> list[str]:
    """Return the differences between a rebuild and the recorded digests."""
    problems = []
    want = sources.output.get(variant)
    if not want:
        return [f"{SOURCES_JSON} records no output for variant {variant!r} (run with --record)"]
    for name, digest in digests.items():
        if want.get(name) != digest:
            problems.append(f"{name}: sha256 {digest}, recorded {want.get(name)}")
    if problems:
        for key, digest in decoded.items():
            if key in sources.decoded and sources.decoded[key] != digest:
                problems.append(f"  the difference starts at {key} (decoded audio differs)")
        if sources.tts_version and sources.tts_version != tts_version:
            problems.append(
                f"  espeak-ng is {tts_version}, the recording was made with {sources.tts_version}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(
        prog="scripts/make_scenario", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--cache", type=Path, help="download cache (default: OUT/cache)")
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default=DEFAULT_VARIANT,
        help="tv-quiet (default): after the film the TV goes on, turned down; "
        "tv-off: it goes off after the film",
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild and compare sha256 with scenario/sources.json"
    )
    parser.add_argument(
        "--record", action="store_true", help="write the output's sha256 into scenario/sources.json"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the engine over the result and compare with the ground truth",
    )
    parser.add_argument(
        "--shifts",
        type=int,
        default=1,
        help="with --verify: also run with the audio shifted by 1/N … (N-1)/N of a window hop",
    )
    parser.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "numpy"])
    parser.add_argument("--sources", type=Path, default=SOURCES_JSON, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        sources = load_sources(args.sources)
        cache = args.cache or args.out / "cache"
        tts_version = espeak_version(espeak_path())
        rendered, digests, decoded = build(args.out, args.variant, sources, cache, log)
    except ScenarioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    wav = args.out / "scenario.wav"
    log(f"wrote {wav} and {args.out / 'scenario.json'} (sha256 {digests['scenario.wav']})")
    for key, value in rendered.levels.items():
        log(f"  {key}: {value}")
    status = 0
    if args.record:
        record(args.sources, args.variant, digests, decoded, tts_version)
        log(f"recorded the output's sha256 in {args.sources}")
    if args.check:
        problems = check(args.variant, sources, digests, decoded, tts_version)
        for problem in problems:
            log(f"check: {problem}")
        if problems:
            status = 1
        else:
            log("check: identical to the recorded build")
    if args.verify:
        results, problems, notes = verify(wav, rendered.segments, args.backend, args.shifts)
        print(json.dumps(results[0]))
        for k, (found, noted) in enumerate(zip(problems, notes, strict=True)):
            where = f" (shifted {k}/{len(results)} of a window hop)" if k else ""
            for note in noted:
                log(f"verify: note{where}: {note}")
            for problem in found:
                log(f"verify: PROBLEM{where}: {problem}")
        failed = sum(1 for found in problems if found)
        if failed:
            status = 1
            log(f"verify: {failed} of {len(problems)} run(s) differ from the ground truth")
        else:
            log(f"verify: the engine's detections match the ground truth ({len(problems)} run(s))")
    return status


if __name__ == "__main__":
    sys.exit(main())
