"""The demo in a real browser: scripts/tools/screenshot.py against a demo of its own.

Starts the demo (a real Home Assistant, set up from scratch in a temporary config folder, on a
free port, with the simulated microphone), logs in as demo / demo in headless chromium, opens
the Guard Mode dashboard and checks that every Guard Mode entity on it is rendered (text through
every shadow root). Skipped where chromium isn't installed (the Python 3.14 root gets it with
``PY314_PACKAGES="... chromium"``). Takes about half a minute.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time

import pytest

from scripts.tools.screenshot import find_chromium

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_enabled")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed (PY314_PACKAGES=... chromium, or apt install chromium)",
)
@pytest.mark.usefixtures("scenario")  # the demo's microphone plays it; built once if missing
def test_the_dashboard_shows_guard_mode(tmp_path: Path) -> None:
    out = REPO / "build" / "test_browser" / "screenshot.png"
    out.unlink(missing_ok=True)
    config = tmp_path / "config"
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.tools.screenshot",
            "--start",
            "--config",
            str(config),
            "--port",
            str(free_port()),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.monotonic() - started
    print(result.stdout)
    print(f"scripts/tools/screenshot took {elapsed:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr[-6000:]
    assert "all of them are on the page" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000  # a rendered dashboard, not a blank page
    shutil.rmtree(config, ignore_errors=True)
