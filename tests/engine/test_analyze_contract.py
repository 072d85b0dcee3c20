"""The command line other tools rely on: ``python -m custom_components.guard_mode.engine analyze``.

DESIGN.md's contract: one JSON object per file on its own line; a file that can't be read gives
an object with "error" and exit status 1 at the end, after the other files are processed.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
import wave

import numpy as np

from tests import synth

REPO = Path(__file__).resolve().parents[2]


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm, channels).tobytes())
    return path


def analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "custom_components.guard_mode.engine", "analyze", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_json_lines_one_per_file_and_errors_at_the_end(tmp_path: Path) -> None:
    alarm = synth.alarm("T3", "piezo", cycles=3, peak_db=-12.0, lead_s=1.0, tail_s=3.0).audio
    smoke = write_wav(tmp_path / "smoke.wav", alarm)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(3 * 44100), rate=44100, channels=2)

    done = analyze(smoke, broken, quiet, "--json")
    assert done.returncode == 1  # one file could not be read …
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(smoke), str(broken), str(quiet)]  # … all ran
    heard = lines[0]
    assert set(heard) == {"file", "duration_s", "detections", "media_s"}
    assert [d["sound"] for d in heard["detections"]] == ["smoke_alarm"]
    assert set(heard["detections"][0]) == {
        "sound", "start_s", "end_s", "confidence", "suppressed", "reason"
    }  # fmt: skip
    assert heard["detections"][0]["suppressed"] is False
    assert set(lines[1]) == {"file", "error"}
    assert lines[2]["detections"] == []
    assert lines[2]["duration_s"] == 3.0  # 44.1 kHz stereo read as well


def test_for_people_it_reads_as_sentences(tmp_path: Path) -> None:
    quiet = write_wav(tmp_path / "quiet.wav", synth.silence(2.0))
    done = analyze(quiet, tmp_path / "missing.wav")
    assert done.returncode == 1
    assert f"{quiet} (2.0 s, media 0.0 s)" in done.stdout
    assert "nothing heard" in done.stdout
    assert f"{tmp_path / 'missing.wav'}: cannot read:" in done.stdout
