"""What HACS and Home Assistant read from the repository is complete and consistent."""

from __future__ import annotations

import ast
import json
from pathlib import Path
import re
import struct
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import yaml

from scripts.tools import check_wheels, release_notes

REPO = Path(__file__).resolve().parent.parent
COMPONENT = REPO / "custom_components" / "guard_mode"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip()):
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_manifest_is_complete() -> None:
    manifest = _json(COMPONENT / "manifest.json")
    assert manifest["domain"] == "guard_mode"
    assert manifest["name"] == "Guard Mode"
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["integration_type"] == "hub"
    # One hub per Home Assistant is the config flow's rule: single_config_entry would make Home
    # Assistant drop every discovered microphone once the hub exists.
    assert "single_config_entry" not in manifest
    assert manifest["zeroconf"] == ["_wyoming._tcp.local."]
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    for key in ("documentation", "issue_tracker"):
        assert manifest[key].startswith("https://")
    assert manifest["codeowners"]
    for requirement in manifest["requirements"]:  # ranges, so Home Assistant's bumps fit
        assert ">=" in requirement, f"{requirement}: a range from the version tested"


def test_requirements_agree_with_home_assistant() -> None:
    """Each range holds the version Home Assistant pins, which is the one tested here."""
    installed = check_wheels.installed_home_assistant()[1]
    dev = _pins((REPO / "requirements_dev.txt").read_text().splitlines())
    for text in _json(COMPONENT / "manifest.json")["requirements"]:
        requirement = Requirement(text)
        key = canonicalize_name(requirement.name)
        assert key in installed, f"Home Assistant pins no {key}: nothing to agree with"
        assert requirement.specifier.contains(installed[key]), f"HA pins {key}=={installed[key]}"
        assert dev.get(key) == installed[key], f"requirements_dev.txt must pin {key}"


def test_test_requirements_are_home_assistants_pins() -> None:
    """What the tests install for Home Assistant's own components is what it would install."""
    installed = check_wheels.installed_home_assistant()[1]
    tests = _pins((REPO / "requirements_test.txt").read_text().splitlines())
    shared = {key: version for key, version in tests.items() if key in installed}
    assert {"pyturbojpeg", "mutagen", "ha-ffmpeg", "sqlalchemy"} <= set(shared)
    assert shared == {key: installed[key] for key in shared}


def test_hacs_json() -> None:
    hacs = _json(REPO / "hacs.json")
    assert hacs["name"] == "Guard Mode"
    assert hacs["content_in_root"] is False
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", hacs["homeassistant"])


def test_brand_icon_is_a_square_png() -> None:
    for name, size in (("icon.png", 256), ("icon@2x.png", 512)):
        data = (COMPONENT / "brand" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (size, size)


def test_english_translation_matches_strings() -> None:
    assert _json(COMPONENT / "translations" / "en.json") == _json(COMPONENT / "strings.json")


def test_every_entity_has_a_name_and_an_icon() -> None:
    strings = _json(COMPONENT / "strings.json")["entity"]
    icons = _json(COMPONENT / "icons.json")["entity"]
    named_after_their_device = {("switch", "guard_mode")}  # the hub's main feature
    for platform, keys in strings.items():
        for key, entry in keys.items():
            named = bool(entry.get("name"))
            assert named != ((platform, key) in named_after_their_device), (
                f"{platform}.{key}: a name, unless it is named after its device"
            )
            assert key in icons.get(platform, {}) or platform in {"binary_sensor", "event"}, (
                f"{platform}.{key} has no icon in icons.json"
            )


def test_quality_scale_lists_every_rule() -> None:
    text = (COMPONENT / "quality_scale.yaml").read_text()
    rules = set(re.findall(r"^  ([a-z-]+):", text, re.MULTILINE))
    for rule in (
        "config-flow", "test-before-configure", "unique-config-entry", "runtime-data",
        "config-entry-unloading", "diagnostics", "repair-issues", "strict-typing",
        "entity-translations", "icon-translations", "exception-translations",
    ):  # fmt: skip
        assert rule in rules
    statuses = re.findall(r"^  [a-z-]+: (\w+)$|^    status: (\w+)$", text, re.MULTILINE)
    assert {s for pair in statuses for s in pair if s} <= {"done", "todo", "exempt"}


def test_manifest_claims_the_tier_its_rules_reach() -> None:
    """The manifest's quality_scale is the highest tier whose rules, and every lower tier's, are
    all done or exempt: a todo in Silver (test coverage below 95 %) means Bronze is claimed."""
    tiers = ("bronze", "silver", "gold", "platinum")
    open_in: dict[str, list[str]] = {tier: [] for tier in tiers}
    tier = ""
    rule = ""
    for line in (COMPONENT / "quality_scale.yaml").read_text().splitlines():
        if match := re.match(r"^  # (\w+)$", line):
            tier = match[1].lower()
        elif match := re.match(r"^  ([a-z-]+):\s*(\w*)$", line):
            rule = match[1]
            if match[2] == "todo":
                open_in[tier].append(rule)
        elif re.match(r"^    status: todo$", line):
            open_in[tier].append(rule)
    reached = "no tier"
    for tier in tiers:
        if open_in[tier]:
            break
        reached = tier
    claimed = _json(COMPONENT / "manifest.json").get("quality_scale")
    assert claimed == reached, f"manifest claims {claimed}; the rules reach {reached} ({open_in})"


def _function(module: Path, name: str) -> ast.AsyncFunctionDef | ast.FunctionDef:
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{name} not in {module.name}")


def test_patterns_core_checks_for() -> None:
    """What Home Assistant core's quality-scale checks read in the code (hassfest checks them
    for core integrations only): runtime_data set in async_setup_entry, a typed options flow
    entry, ConfigEntryNotReady raised."""
    setup = _function(COMPONENT / "__init__.py", "async_setup_entry")
    entry_arg = setup.args.args[1].arg
    assert any(
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == entry_arg
        and node.attr == "runtime_data"
        and isinstance(node.ctx, ast.Store)
        for node in ast.walk(setup)
    ), "async_setup_entry must set entry.runtime_data itself"
    raised = {
        node.exc.func.id
        for node in ast.walk(setup)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
    }
    assert "ConfigEntryNotReady" in raised
    options_flow = _function(COMPONENT / "config_flow.py", "async_get_options_flow")
    annotation = options_flow.args.args[0].annotation
    assert isinstance(annotation, ast.Name)
    assert re.fullmatch(r"[A-Za-z]+ConfigEntry", annotation.id)
    assert annotation.id != "ConfigEntry"


def test_every_form_field_is_described() -> None:
    """Each field of each form has a label and a description (data_description)."""

    def steps(node: Any) -> Any:
        if isinstance(node, dict):
            if "data" in node and isinstance(node["data"], dict):
                yield node
            for value in node.values():
                yield from steps(value)

    strings = _json(COMPONENT / "strings.json")
    found = list(steps(strings))
    assert len(found) >= 8
    for step in found:
        missing = set(step["data"]) - set(step.get("data_description", {}))
        assert not missing, f"{step.get('title')}: no data_description for {sorted(missing)}"


def test_a_release_is_one_version_everywhere() -> None:
    """What the release workflow checks for the tag: one version, with its CHANGELOG notes."""
    version = _json(COMPONENT / "manifest.json")["version"]
    assert set(release_notes.versions().values()) == {version}
    assert release_notes.notes(version).strip()
    assert release_notes.main([f"v{version}"]) == 0
    assert release_notes.main(["v99.0.0"]) == 1  # a tag that is not the version is refused


def test_workflows_run_the_checks() -> None:
    """GitHub runs hassfest, the HACS action and .ci/run on every push and pull request."""
    workflows = REPO / ".github" / "workflows"

    def load(name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((workflows / name).read_text())
        loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads `on` as true
        return loaded

    def steps(workflow: dict[str, Any]) -> list[str]:
        return [
            str(step.get("uses") or step.get("run"))
            for job in workflow["jobs"].values()
            for step in job["steps"]
        ]

    for name in ("validate.yml", "tests.yml"):
        assert {"push", "pull_request"} <= set(load(name)["on"])
    validate = steps(load("validate.yml"))
    assert any(step.startswith("home-assistant/actions/hassfest") for step in validate)
    assert any(step.startswith("hacs/action") for step in validate)
    assert ".ci/run" in steps(load("tests.yml"))
    release = load("release.yml")
    assert release["on"]["push"]["tags"] == ["v*.*.*"]
    assert any("release_notes.py" in step for step in steps(release))
    assert any("sync_engine.sh" in step for step in steps(release))
