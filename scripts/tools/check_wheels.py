"""Prove every manifest requirement installs wherever Home Assistant runs.

For each requirement in manifest.json and each platform Home Assistant ships on — Home Assistant
OS / container (Alpine, musllinux_1_2) and Core on glibc (manylinux), x86_64 and aarch64 — ask
pip for a binary wheel for Home Assistant's Python. A requirement without a wheel on any of them
would make Guard Mode fail to install there. Prints a table; exit status 1 if anything is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile

MANIFEST = Path(__file__).resolve().parents[2] / "custom_components/guard_mode/manifest.json"
PLATFORMS = {
    "musllinux x86_64 (HA OS, container)": ["musllinux_1_2_x86_64"],
    "musllinux aarch64 (HA OS on Pi, Green, Yellow)": ["musllinux_1_2_aarch64"],
    "manylinux x86_64 (HA Core)": ["manylinux_2_28_x86_64", "manylinux2014_x86_64"],
    "manylinux aarch64 (HA Core)": ["manylinux_2_28_aarch64", "manylinux2014_aarch64"],
}


def has_wheel(requirement: str, platforms: list[str], python: str, dest: Path) -> str | None:
    """Return the wheel pip picks for requirement on platforms, or None."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
        "--dest", str(dest), requirement,
    ]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    before = set(dest.iterdir())
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    new = set(dest.iterdir()) - before
    return next(iter(new)).name if new else "(already downloaded)"


def main() -> int:
    """Check every requirement on every platform; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.14", help="Home Assistant's Python version")
    args = parser.parse_args()
    requirements = json.loads(MANIFEST.read_text())["requirements"]
    missing = 0
    with tempfile.TemporaryDirectory() as tmp:
        for requirement in requirements:
            for name, platforms in PLATFORMS.items():
                dest = Path(tmp) / f"{requirement}-{platforms[0]}"
                dest.mkdir()
                wheel = has_wheel(requirement, platforms, args.python, dest)
                status = wheel or "NO WHEEL"
                missing += wheel is None
                print(f"{requirement:<20} {name:<46} {status}")
    if missing:
        print(f"{missing} requirement/platform pairs have no wheel", file=sys.stderr)
        return 1
    print(f"all {len(requirements)} requirements have wheels on all {len(PLATFORMS)} platforms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
