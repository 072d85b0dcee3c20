"""Shared test set-up: our custom_components package first, custom integrations enabled."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import custom_components

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
