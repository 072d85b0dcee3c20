"""Without onnxruntime (as on Home Assistant OS) Guard Mode still detects, on the numpy backend."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics
from custom_components.guard_mode.engine.server import EngineServer
from custom_components.guard_mode.engine_runtime import ISSUE_NUMPY_BUSY

from ..helpers import (
    arm,
    make_entry,
    remote_options,
    satellite_entry,
    satellite_subentry,
    setup_entry,
    wait_for,
)
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.mark.usefixtures("no_onnxruntime")
async def test_detections_without_onnxruntime(hass: HomeAssistant, alarm_mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    backend = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{entry.entry_id}-backend")
    assert hass.states.get(backend).state == "numpy"
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    assert detections[0].data["sound"] == "smoke_alarm"
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["engine"]["backend"] == "numpy"
    await arm(hass, False)


def many_satellites(count: int) -> MockConfigEntry:
    return make_entry(
        satellites=(
            satellite_subentry(
                f"Mic {n}",
                f"wyoming:127.0.0.1:{1 + n}",
                source="wyoming",
                host="127.0.0.1",
                port=1 + n,
            )
            for n in range(count)
        )
    )


@pytest.mark.usefixtures("no_onnxruntime")
async def test_many_satellites_on_numpy_raise_a_repair(
    hass: HomeAssistant, engine_server: EngineServer
) -> None:
    entry = await setup_entry(hass, many_satellites(4))
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NUMPY_BUSY)
    assert issue is not None
    assert issue.translation_placeholders == {"count": "4"}
    # Its advice followed: the engine service (the add-on) instead; the repair goes.
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, **remote_options(engine_server.port)}
    )
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NUMPY_BUSY) is None


async def test_few_satellites_or_onnxruntime_raise_no_repair(hass: HomeAssistant) -> None:
    await setup_entry(hass, many_satellites(4))  # onnxruntime is available here
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_NUMPY_BUSY) is None
