"""Shared test set-up: our custom_components package first, custom integrations enabled."""

from __future__ import annotations

from collections.abc import Generator
import logging
import os
from pathlib import Path

import pytest

import custom_components
from scripts.tools.demo_scenario import Scenario, ScenarioUnavailable, ensure_scenario

REPO = Path(__file__).resolve().parent.parent
# pytest-homeassistant-custom-component ships a testing_config/custom_components package that
# would otherwise shadow ours.
if str(REPO / "custom_components") not in custom_components.__path__:
    custom_components.__path__.insert(0, str(REPO / "custom_components"))
# The plugin logs every SQL statement of the recorder at INFO through a handler on the real
# stderr; the logbook tests would flood the test output with it.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    enable_custom_integrations: None,
) -> None:
    """Let Home Assistant load Guard Mode in every integration test."""


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    """The demo's scenario recording (built once if missing), with its ground truth."""
    try:
        return ensure_scenario()
    except ScenarioUnavailable as err:
        pytest.skip(f"the scenario recording can't be built here: {err}")


# What may be skipped in CI: a copy of the engine that only an add-on build makes. Anything else
# skipped there (no onnxruntime, no scenario recording, no ffmpeg) would hide what it tests.
CI_MAY_SKIP = ("no addon/guard_mode_engine",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI (CI=true), a test skipped for a missing part fails instead."""
    report = yield
    if report.skipped and os.environ.get("CI") == "true":
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(allowed in reason for allowed in CI_MAY_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where all it needs must be installed: {reason}"
    return report
