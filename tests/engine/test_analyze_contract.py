"""The command line other tools rely on: ``python -m custom_components.guard_mode.engine analyze``.

Its contract (README, "Command line"): one JSON object per file on its own line; a file that can't
be read gives an object with "error" and exit status 1 at the end, after the other files are
processed. Files are bounded in length (``--max-seconds``).
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
    smoke = synth.write_wav(tmp_path / "smoke.wav", alarm)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    quiet = synth.write_wav(tmp_path / "quiet.wav", np.zeros(3 * 44100), rate=44100, channels=2)

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
    quiet = synth.write_wav(tmp_path / "quiet.wav", synth.silence(2.0))
    done = analyze(quiet, tmp_path / "missing.wav")
    assert done.returncode == 1
    assert f"{quiet} (2.0 s, media 0.0 s)" in done.stdout
    assert "nothing heard" in done.stdout
    assert f"{tmp_path / 'missing.wav'}: cannot read:" in done.stdout


# --- bounded in length (--max-seconds)


def silent_wav(path: Path, seconds: float, rate: int = 4000) -> Path:
    """A long file that costs little to write: 8-bit silence at 4 kHz."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(np.full(int(seconds * rate), 128, np.uint8).tobytes())
    return path


def test_long_files_are_refused_before_they_are_decoded(tmp_path: Path) -> None:
    short = silent_wav(tmp_path / "short.wav", 3.0)
    long = silent_wav(tmp_path / "long.wav", 960.0)  # 16 min: over the default 15 min
    result = analyze("--json", str(long), str(short))
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["file"] == str(long)
    assert "longer than the limit of 900 s (960.0 s)" in lines[0]["error"]
    assert lines[1]["duration_s"] == 3.0  # the other files are still analyzed

    result = analyze("--json", "--max-seconds", "2", str(short))
    assert result.returncode == 1
    assert "limit of 2 s" in json.loads(result.stdout)["error"]
    result = analyze("--json", "--max-seconds", "0", str(short))  # 0: no limit, user's say-so
    assert result.returncode == 0, result.stderr


def test_a_bad_limit_is_a_usage_error(tmp_path: Path) -> None:
    result = analyze("--json", "--max-seconds", "-1", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert "not a number of seconds" in result.stderr
