"""Cameras picked as camera entities: Guard Mode listens through Home Assistant's stream source."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from pathlib import Path
from typing import Any

from homeassistant.config_entries import SubentryFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics

from ..helpers import make_entry, setup_entry, state, wait_for, wait_for_threads
from .ha_devices import StreamCamera, async_add_devices
from .stream_server import FFMPEG, RtspServer

pytestmark = pytest.mark.usefixtures(
    "socket_enabled", "fast_stream_timeouts", "no_stream_thread_left"
)

PORCH = "camera.porch"


@pytest.fixture
async def rtsp_camera(tmp_path: Path) -> AsyncIterator[RtspServer]:
    """What the camera serves (its RTSP stream on loopback)."""
    if FFMPEG is None:
        pytest.skip("the ffmpeg binary is needed to serve test streams")
    server = await RtspServer().start(tmp_path / "stream.sdp")
    yield server
    await server.stop()


def with_password(url: str) -> str:
    """The camera's stream URL as camera integrations give it: with its credentials."""
    return url.replace("rtsp://", "rtsp://admin:hunter2@")


async def camera_flow(hass: HomeAssistant, **answers: Any) -> SubentryFlowResult:
    entry = hass.config_entries.async_entries("guard_mode")[0]
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "stream"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Porch mic"} | answers
    )
    await hass.async_block_till_done()
    return result


async def test_a_camera_entity_becomes_a_satellite_that_listens(
    hass: HomeAssistant, rtsp_camera: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    rtsp = rtsp_camera
    caplog.set_level(logging.DEBUG, logger="custom_components.guard_mode")
    camera = StreamCamera("Porch", with_password(rtsp.url))
    await async_add_devices(hass, camera)
    entry = await setup_entry(hass, make_entry())

    result = await camera_flow(hass, camera=PORCH)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert any(request.startswith("PLAY") for request in rtsp.requests)  # probed first
    subentry = next(iter(entry.subentries.values()))
    assert subentry.data == {"source": "stream", "camera": PORCH}  # no URL, no password kept
    assert subentry.unique_id == f"camera:{PORCH}"

    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    satellite = entry.runtime_data.satellites[subentry.subentry_id]
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 2, 5.0)
    assert state(hass, "binary_sensor.porch_mic_connected") == "on"
    assert satellite.source.describe() == f"camera {PORCH}"
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert "hunter2" not in str(diagnostics)
    assert "hunter2" not in caplog.text

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    assert await wait_for_threads(1.0) < 1.0


async def test_a_renamed_camera_entity_is_followed(
    hass: HomeAssistant, rtsp_camera: RtspServer
) -> None:
    await async_add_devices(hass, StreamCamera("Porch", rtsp_camera.url))
    entry = await setup_entry(hass, make_entry())
    assert (await camera_flow(hass, camera=PORCH))["type"] is FlowResultType.CREATE_ENTRY
    subentry_id = next(iter(entry.subentries))

    er.async_get(hass).async_update_entity(PORCH, new_entity_id="camera.front_door")
    await hass.async_block_till_done()
    subentry = entry.subentries[subentry_id]
    assert subentry.data["camera"] == "camera.front_door"
    assert subentry.unique_id == "camera:camera.front_door"

    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    satellite = entry.runtime_data.satellites[subentry_id]
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 2, 5.0)
    assert satellite.source.describe() == "camera camera.front_door"
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    assert await wait_for_threads(1.0) < 1.0


async def test_a_stream_satellite_can_move_from_its_url_to_a_camera_entity(
    hass: HomeAssistant, rtsp_camera: RtspServer
) -> None:
    """The frontend leaves a cleared field out: a cleared URL must not come back."""
    url = rtsp_camera.url
    await async_add_devices(hass, StreamCamera("Porch", url))
    entry = await setup_entry(hass, make_entry())
    flow = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    flow = await hass.config_entries.subentries.async_configure(
        flow["flow_id"], {"next_step_id": "stream"}
    )
    both = {"name": "Porch mic", "camera": PORCH, "url": url}
    result = await hass.config_entries.subentries.async_configure(flow["flow_id"], both)
    assert result["errors"] == {"base": "camera_or_url"}
    result = await hass.config_entries.subentries.async_configure(  # the URL cleared
        flow["flow_id"], {"name": "Porch mic", "camera": PORCH}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    subentry_id = next(iter(entry.subentries))

    for answers, data in (
        ({"url": url}, {"source": "stream", "url": url}),  # the camera cleared
        ({"camera": PORCH}, {"source": "stream", "camera": PORCH}),  # the URL cleared
    ):
        result = await entry.start_subentry_reconfigure_flow(hass, subentry_id)
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {"name": "Porch mic", **answers}
        )
        await hass.async_block_till_done()
        assert result["reason"] == "reconfigure_successful"
        assert entry.subentries[subentry_id].data == data


async def test_the_form_says_what_is_wrong(hass: HomeAssistant, rtsp_camera: RtspServer) -> None:
    url = rtsp_camera.url
    await async_add_devices(
        hass,
        StreamCamera("Porch", url),
        StreamCamera("Doorbell", None),
        StreamCamera("Garden", None, error=ConnectionResetError("the camera's cloud is down")),
        attic := StreamCamera("Attic", url),
    )
    await setup_entry(hass, make_entry())
    for answers in ({}, {"camera": PORCH, "url": url}):  # neither, or both
        result = await camera_flow(hass, **answers)
        assert result["errors"] == {"base": "camera_or_url"}

    result = await camera_flow(hass, camera="camera.doorbell")  # WebRTC only, say
    assert result["errors"] == {"base": "camera_no_stream"}
    assert "camera camera.doorbell" in result["description_placeholders"]["detail"]

    result = await camera_flow(hass, camera="camera.gone")
    assert result["errors"] == {"base": "cannot_connect"}
    assert "Camera not found" in result["description_placeholders"]["detail"]

    attic._attr_is_on = False  # switched off in its own integration
    result = await camera_flow(hass, camera="camera.attic")
    assert result["errors"] == {"base": "cannot_connect"}
    assert "Camera is off" in result["description_placeholders"]["detail"]

    result = await camera_flow(hass, camera="camera.garden")  # its integration failed
    assert result["errors"] == {"base": "cannot_connect"}
    assert "the camera's cloud is down" in result["description_placeholders"]["detail"]

    result = await camera_flow(hass, url=url)  # the URL is still the fallback
    assert result["type"] is FlowResultType.CREATE_ENTRY
