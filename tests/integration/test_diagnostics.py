"""Diagnostics: what a user attaches to a bug report names no host, URL, password or token."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics
from custom_components.guard_mode.engine.server import EngineServer

from ..helpers import (
    ENGINE_TOKEN as TOKEN,
    arm,
    make_entry,
    remote_options,
    satellite_subentry,
    setup_entry,
    wait_for,
)
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")

CAMERA_URL = "rtsp://viewer:hunter2@127.0.0.1:1/living-room"
PUSH_ID = "c0ffee-push-id-4b1d"


async def test_diagnostics_redact_hosts_urls_and_tokens(
    hass: HomeAssistant,
    mic: MicServer,
    engine_server: EngineServer,
) -> None:
    satellites = [
        satellite_subentry(
            "Kitchen mic", "wyoming", source="wyoming", host="127.0.0.1", port=mic.port
        ),
        satellite_subentry("Camera", "stream", source="stream", url=CAMERA_URL),
        satellite_subentry("Hall agent", "push", source="push", push_id=PUSH_ID),
    ]
    options = remote_options(engine_server.port, notify_targets=["notify.mobile_app_alices_phone"])
    entry = await setup_entry(hass, make_entry(options, satellites))
    await arm(hass)
    kitchen, camera, _ = entry.runtime_data.satellites.values()
    await wait_for(lambda: kitchen.state.connected and camera.state.last_error is not None)

    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    await arm(hass, False)
    assert await hass.config_entries.async_unload(entry.entry_id)

    dumped = json.dumps(diagnostics)
    for secret in ("127.0.0.1", "hunter2", "viewer", PUSH_ID, "alices_phone", TOKEN):
        assert secret not in dumped
    # ... while what helps debugging is still there
    assert diagnostics["engine"]["backend"] == "remote"
    kitchen_info, camera_info, _ = diagnostics["satellites"]
    assert kitchen_info["connected"]
    assert kitchen_info["stream"]["seconds_in"] >= 0
    assert camera_info["last_error"]
    assert camera_info["settings"]["url"] == "**REDACTED**"


async def test_diagnostics_of_a_disarmed_home(
    hass: HomeAssistant,
    mic: MicServer,
    snapshot: SnapshotAssertion,
) -> None:
    """What a bug report holds before anything was heard (the port and model vary by machine)."""
    satellite = satellite_subentry(
        "Kitchen mic", "wyoming", source="wyoming", host="127.0.0.1", port=mic.port
    )
    entry = await setup_entry(hass, make_entry(None, [satellite]))
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert diagnostics == snapshot(exclude=props("port", "backend", "blas_threads"))
