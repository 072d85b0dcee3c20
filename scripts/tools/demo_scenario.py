"""The scenario recording for the demo and the end-to-end test: built once, then reused.

    python -m scripts.tools.demo_scenario [FOLDER]   # build it if it's missing

``ensure_scenario()`` returns build/scenario/scenario.wav and its ground truth, building them with
scripts/tools/make_scenario.py when they are missing or don't match (espeak-ng and the network are
needed for that; ``ScenarioUnavailable`` says why it can't be built).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
import fcntl
import hashlib
import io
import json
from pathlib import Path
import sys
from typing import Any
import wave

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / "build" / "scenario"


class ScenarioUnavailable(Exception):
    """The scenario recording is missing and can't be built here."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One stretch of the recording and what Guard Mode should make of it."""

    t0: float
    t1: float
    what: str
    expect: str  # "detection", "suppressed" or "nothing"
    sound: str | None


@dataclass(frozen=True, slots=True)
class Scenario:
    """The recording as 16 kHz mono 16-bit PCM, and its ground truth."""

    wav: Path
    pcm: bytes
    rate: int
    segments: tuple[Segment, ...]
    truth: dict[str, Any]

    @property
    def duration_s(self) -> float:
        """Return the recording's length."""
        return len(self.pcm) / (2 * self.rate)

    def events(self) -> list[Segment]:
        """Return the segments where something should be heard (detected or suppressed)."""
        return [s for s in self.segments if s.expect != "nothing"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(folder: Path) -> bool:
    wav, truth = folder / "scenario.wav", folder / "scenario.json"
    if not (wav.is_file() and truth.is_file()):
        return False
    try:
        recorded = json.loads(truth.read_text(encoding="utf-8")).get("sha256")
    except OSError, ValueError:
        return False
    return bool(recorded) and recorded == _sha256(wav)


@contextmanager
def _locked(folder: Path):  # type: ignore[no-untyped-def]
    """One builder at a time (the demo and a test may both want the recording)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f".{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_scenario(folder: Path = DEFAULT_DIR, *, build: bool = True) -> Scenario:
    """Return the scenario in folder, building it first if needed (and build is True)."""
    with _locked(folder):
        if not _complete(folder):
            if not build:
                raise ScenarioUnavailable(
                    f"{folder}/scenario.wav is missing (scripts/make_scenario)"
                )
            _build(folder)
        return load_scenario(folder)


def _build(folder: Path) -> None:
    from scripts.tools import make_scenario  # noqa: PLC0415 (numpy, PyAV: only when building)

    try:
        make_scenario.espeak_path()
    except make_scenario.ScenarioError as err:
        raise ScenarioUnavailable(str(err)) from err
    print(f"Building the scenario recording into {folder} (once)…", file=sys.stderr)
    status = make_scenario.main(["--out", str(folder)])
    if status != 0 or not _complete(folder):
        raise ScenarioUnavailable(
            f"scripts/make_scenario failed (exit status {status}): see the messages above "
            "(the first build downloads about 21 MB of Debian packages)"
        )


def load_scenario(folder: Path = DEFAULT_DIR) -> Scenario:
    """Read scenario.wav and scenario.json from folder."""
    wav = folder / "scenario.wav"
    truth = json.loads((folder / "scenario.json").read_text(encoding="utf-8"))
    with wave.open(io.BytesIO(wav.read_bytes())) as f:
        if (f.getnchannels(), f.getsampwidth()) != (1, 2):
            raise ScenarioUnavailable(f"{wav}: expected mono 16-bit PCM")
        rate = f.getframerate()
        pcm = f.readframes(f.getnframes())
    segments = tuple(
        Segment(float(s["t0"]), float(s["t1"]), s["what"], s["expect"], s.get("sound"))
        for s in truth["segments"]
    )
    return Scenario(wav=wav, pcm=pcm, rate=rate, segments=segments, truth=truth)


def main(argv: list[str] | None = None) -> int:
    """Make sure the recording is there (build it if not); say where it is."""
    folder = Path(argv[0]) if argv else DEFAULT_DIR
    try:
        scenario = ensure_scenario(folder)
    except ScenarioUnavailable as err:
        print(f"can't build the scenario recording: {err}", file=sys.stderr)
        return 2
    print(scenario.wav)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
