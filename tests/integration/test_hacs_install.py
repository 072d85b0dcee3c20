"""Guard Mode works when installed the way HACS installs it."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import socket
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENT = Path("custom_components/guard_mode")


def _hacs_files() -> list[Path]:
    """Return what HACS copies: the files of custom_components/guard_mode in the repository."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", str(COMPONENT)],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
    except OSError, subprocess.CalledProcessError:
        pytest.skip("not a git checkout: cannot tell which files HACS would copy")
    return [Path(name) for name in out.decode().split("\0") if name]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.usefixtures("socket_enabled")
def test_fresh_config_with_the_hacs_copy_only(tmp_path: Path) -> None:
    config = tmp_path / "config"
    files = _hacs_files()
    assert COMPONENT / "manifest.json" in files
    for name in files:
        (config / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, config / name)
    (config / "configuration.yaml").write_text(
        f"http:\n  server_host: 127.0.0.1\n  server_port: {_free_port()}\n"
    )

    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/integration/hacs_boot.py"), str(config)],
        cwd=tmp_path,  # keep the repository off sys.path
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["result"] == "create_entry"
    assert report["loaded"] is True
    assert report["switch"] == "off"
    assert Path(report["module_file"]).is_relative_to(config)
