"""Prove every manifest requirement installs wherever Home Assistant runs, now and next release.

Guard Mode's manifest requirements are ranges. Home Assistant pins the same packages (its
package constraints, and its integrations' requirements such as the Wyoming integration's), and
pip installs what Home Assistant pins: a range that leaves out Home Assistant's pin makes the
install fail, or downgrades what Home Assistant uses. So, for the Home Assistant this project
targets (the installed one) and for the newest Home Assistant release on the package index:

1. each requirement's range must contain Home Assistant's pin of that package;
2. the pinned version (or, unpinned, the newest in range) must have a binary wheel for Home
   Assistant's Python on every platform Home Assistant ships on — Home Assistant OS / container
   (Alpine, musllinux_1_2) and Core on glibc (manylinux), x86_64 and aarch64.

Prints a table; exit status 1 if anything is missing. ``--offline`` checks only the installed
Home Assistant's pins against the ranges (no download).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import zipfile

import homeassistant
from homeassistant.const import __version__
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

MANIFEST = Path(__file__).resolve().parents[2] / "custom_components/guard_mode/manifest.json"
PLATFORMS = {
    "musllinux x86_64 (HA OS, container)": ["musllinux_1_2_x86_64"],
    "musllinux aarch64 (HA OS on Pi, Green, Yellow)": ["musllinux_1_2_aarch64"],
    "manylinux x86_64 (HA Core)": ["manylinux_2_28_x86_64", "manylinux2014_x86_64"],
    "manylinux aarch64 (HA Core)": ["manylinux_2_28_aarch64", "manylinux2014_aarch64"],
}


def pins(lines: Iterable[str]) -> dict[str, str]:
    """Return the exact pins (name == version) among requirement lines."""
    found = {}
    for line in lines:
        text = line.split("#")[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except ValueError:
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            found[canonicalize_name(requirement.name)] = specs[0].version
    return found


def pins_of_files(files: dict[str, str]) -> dict[str, str]:
    """Return Home Assistant's pins: package constraints, then its integrations' requirements."""
    found = {}
    for name, text in files.items():
        if name.endswith("manifest.json"):
            found |= pins(json.loads(text).get("requirements", []))
    constraints = next(text for name, text in files.items() if name.endswith("constraints.txt"))
    return found | pins(constraints.splitlines())


def installed_home_assistant() -> tuple[str, dict[str, str]]:
    """Return the installed Home Assistant's version and pins."""
    root = Path(homeassistant.__file__).parent
    files = {"package_constraints.txt": (root / "package_constraints.txt").read_text()}
    for manifest in (root / "components").glob("*/manifest.json"):
        files[str(manifest)] = manifest.read_text()
    return __version__, pins_of_files(files)


def newest_home_assistant(python: str, dest: Path) -> tuple[str, dict[str, str]]:
    """Download the newest Home Assistant wheel (no dependencies); return its version and pins."""
    pip(["homeassistant"], [], python, dest)
    wheel = next(dest.glob("homeassistant-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        files = {
            name: archive.read(name).decode()
            for name in archive.namelist()
            if name == "homeassistant/package_constraints.txt"
            or (name.startswith("homeassistant/components/") and name.endswith("/manifest.json"))
        }
    return wheel.name.split("-")[1], pins_of_files(files)


def pip(requirements: list[str], platforms: list[str], python: str, dest: Path) -> str | None:
    """Download binary wheels (no dependencies); return the new file's name, or None on failure."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
        "--dest", str(dest), *requirements,
    ]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    before = set(dest.iterdir())
    if subprocess.run(command, capture_output=True, text=True, check=False).returncode != 0:
        return None
    new = set(dest.iterdir()) - before
    return next(iter(new)).name if new else "(already downloaded)"


def main() -> int:
    """Check every requirement against each Home Assistant's pins and on every platform."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        default="3.14.2",  # a bare 3.14 reads as 3.14.0, which Home Assistant refuses
        help="Home Assistant's Python version",
    )
    parser.add_argument("--offline", action="store_true", help="only the installed pins")
    args = parser.parse_args()
    requirements = [Requirement(text) for text in json.loads(MANIFEST.read_text())["requirements"]]
    problems = 0
    with tempfile.TemporaryDirectory() as tmp:
        releases = [installed_home_assistant()]
        if not args.offline:
            releases.append(newest_home_assistant(args.python, Path(tmp)))
        wanted: set[str] = set()
        for version, ha_pins in releases:
            for requirement in requirements:
                pinned = ha_pins.get(canonicalize_name(requirement.name))
                if pinned is None:
                    verdict = f"not pinned: the newest in {requirement}"
                    wanted.add(str(requirement))
                elif requirement.specifier.contains(pinned, prereleases=True):
                    verdict = f"=={pinned}, in {requirement}"
                    wanted.add(f"{requirement.name}=={pinned}")
                else:
                    verdict = f"=={pinned}, OUTSIDE {requirement}"
                    problems += 1
                print(f"Home Assistant {version:<10} {requirement.name:<8} {verdict}")
        if args.offline:
            wanted.clear()
        for requirement_text in sorted(wanted):
            for name, platforms in PLATFORMS.items():
                dest = Path(tmp) / f"{requirement_text}-{platforms[0]}"
                dest.mkdir()
                wheel = pip([requirement_text], platforms, args.python, dest)
                problems += wheel is None
                print(f"{requirement_text:<20} {name:<46} {wheel or 'NO WHEEL'}")
    if problems:
        print(f"{problems} problem(s): see above", file=sys.stderr)
        return 1
    checked = ", ".join(version for version, _ in releases)
    wheels = "wheels not checked (offline)" if args.offline else "have wheels everywhere"
    print(f"all {len(requirements)} requirements fit Home Assistant {checked}; {wheels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
