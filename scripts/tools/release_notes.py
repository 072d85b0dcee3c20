"""Print a release's notes: its CHANGELOG.md section, once the version is the same everywhere.

    python scripts/tools/release_notes.py VERSION

The release workflow runs it for the tag vVERSION (plain Python, no venv). It fails, saying what
differs, unless VERSION is the version of the integration (manifest.json), of the project
(pyproject.toml) and of the engine add-on (addon/config.yaml, whose image the release builds),
and CHANGELOG.md has a "## VERSION" section.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
import sys
import tomllib

REPO = Path(__file__).resolve().parents[2]


def versions() -> dict[str, str]:
    """Return the version each released file declares."""
    addon = (REPO / "addon" / "config.yaml").read_text()
    match = re.search(r"^version:\s*\"?([^\"\s]+)\"?\s*$", addon, re.MULTILINE)
    return {
        "custom_components/guard_mode/manifest.json": json.loads(
            (REPO / "custom_components" / "guard_mode" / "manifest.json").read_text()
        )["version"],
        "pyproject.toml": tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
            "version"
        ],
        "addon/config.yaml": match[1] if match else "(none)",
    }


def notes(version: str) -> str:
    """Return the CHANGELOG.md section of version (without its heading)."""
    text = (REPO / "CHANGELOG.md").read_text()
    match = re.search(rf"^## {re.escape(version)}\b.*?\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None or not match[1].strip():
        raise ValueError(f"CHANGELOG.md has no section for {version}")
    return match[1].strip() + "\n"


def main(argv: list[str]) -> int:
    """Print the notes of the version given, or say why it can't be released."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    version = argv[0].removeprefix("v")
    wrong = {path: found for path, found in versions().items() if found != version}
    if wrong:
        for path, found in wrong.items():
            print(f"{path} says {found}, not {version}", file=sys.stderr)
        return 1
    try:
        print(notes(version), end="")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
