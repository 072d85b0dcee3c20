"""A push satellite end to end: an authenticated agent streams into the engine while armed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.push_view import KEY_HEADER

from ..helpers import arm, make_entry, satellite_subentry, setup_entry, wait_for
from ..synth import pcm16, smoke_alarm_audio

pytestmark = pytest.mark.usefixtures("socket_enabled")
PUSH_ID = "0123456789abcdef"
KEY = "garage-key-0123456789-abcdefghij"
HELLO = {"type": "hello", "agent": "test-agent/1", "rate": 16000, "width": 2, "channels": 1}


def push_entry() -> MockConfigEntry:
    return make_entry(
        satellites=[
            satellite_subentry(
                "Garage mic", f"push:{PUSH_ID}", source="push", push_id=PUSH_ID, push_key=KEY
            )
        ]
    )


async def test_push_agent_streams_only_while_armed(
    hass: HomeAssistant, hass_client: Any, hass_client_no_auth: Any
) -> None:
    entry = await setup_entry(hass, push_entry())
    satellite = next(iter(entry.runtime_data.satellites.values()))
    connected = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-connected"
    )
    detections = async_capture_events(hass, EVENT_DETECTION)
    url = f"/api/guard_mode/push/{PUSH_ID}"

    anonymous = await hass_client_no_auth()
    refused = await anonymous.get(url)
    assert refused.status == 401  # nothing listens unauthenticated

    client = await hass_client()
    ws = await client.ws_connect(url, headers={KEY_HEADER: KEY})
    await ws.send_json(HELLO)
    assert json.loads((await ws.receive(timeout=2)).data) == {"type": "stop"}  # disarmed

    await arm(hass)
    assert json.loads((await ws.receive(timeout=2)).data) == {"type": "start"}
    audio = pcm16(smoke_alarm_audio())
    step = 3200  # 100 ms
    for position in range(0, len(audio), step):
        await ws.send_bytes(audio[position : position + step])
        if position % (step * 10) == 0:
            await asyncio.sleep(0.02)  # about 5x real time
        if detections:
            break
    await wait_for(lambda: bool(detections), limit=10)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert detections[0].data["satellite"] == "Garage mic"
    assert hass.states.get(connected).state == "on"

    await arm(hass, False)
    message = await ws.receive(timeout=1)  # the agent is told to close its microphone at once
    assert message.type is WSMsgType.TEXT
    assert json.loads(message.data) == {"type": "stop"}
    await ws.close()
