"""The analyze command line: bounded in length (``--max-seconds``), one JSON object per file."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import wave

import numpy as np

from .test_analyze_contract import analyze as run_analyze


def write_wav(path: Path, seconds: float, rate: int = 4000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(np.full(int(seconds * rate), 128, np.uint8).tobytes())
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return run_analyze("--json", *args)


def test_long_files_are_refused_before_they_are_decoded(tmp_path: Path) -> None:
    short = write_wav(tmp_path / "short.wav", 3.0)
    long = write_wav(tmp_path / "long.wav", 960.0)  # 16 min: over the default 15 min
    result = analyze(str(long), str(short))
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["file"] == str(long)
    assert "longer than the limit of 900 s (960.0 s)" in lines[0]["error"]
    assert lines[1]["duration_s"] == 3.0  # the other files are still analyzed

    result = analyze("--max-seconds", "2", str(short))
    assert result.returncode == 1
    assert "limit of 2 s" in json.loads(result.stdout)["error"]
    result = analyze("--max-seconds", "0", str(short))  # 0: no limit, on the user's say-so
    assert result.returncode == 0, result.stderr


def test_a_bad_limit_is_a_usage_error(tmp_path: Path) -> None:
    result = analyze("--max-seconds", "-1", str(tmp_path / "x.wav"))
    assert result.returncode == 2
    assert "not a number of seconds" in result.stderr
