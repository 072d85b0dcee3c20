"""A guard that can't hear says so: a deaf satellite's detection entities are unavailable."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
import pytest

from .. import synth
from ..helpers import arm, satellite_entry, setup_entry, state, wait_for
from ..synth import pcm16
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled", "fast_timeouts")

CONNECTED = "binary_sensor.kitchen_mic_connected"

SMOKE = "binary_sensor.kitchen_mic_smoke_alarm"
GLASS = "binary_sensor.kitchen_mic_glass_break"
EVENT = "event.kitchen_mic_sound"
LISTENING = "sensor.guard_mode_microphones_listening"


async def test_unreachable_microphone_makes_its_detections_unavailable(
    hass: HomeAssistant,
) -> None:
    mic = await MicServer(audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5))).start()
    port = mic.port
    await mic.stop()  # the service is down when guard mode is armed
    await setup_entry(hass, satellite_entry(port))
    assert state(hass, LISTENING) == "0"
    assert state(hass, SMOKE) == "off"  # disarmed: closed by choice, and that is no outage
    assert hass.states.get(LISTENING).attributes["satellites"] == 1

    await arm(hass)
    await wait_for(lambda: state(hass, SMOKE) == "unavailable")
    for entity_id in (GLASS, EVENT):
        assert state(hass, entity_id) == "unavailable"
    assert state(hass, CONNECTED) == "off"  # the diagnostic sensor still tells why
    assert state(hass, LISTENING) == "0"
    assert hass.states.get(LISTENING).attributes["not_heard"] == ["Kitchen mic"]

    back = await MicServer(audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), port=port).start()
    try:
        await wait_for(lambda: state(hass, SMOKE) == "off")
        assert state(hass, EVENT) != "unavailable"
        assert state(hass, LISTENING) == "1"
        assert hass.states.get(LISTENING).attributes["not_heard"] == []

        await back.stop()  # gone while armed: unavailable again, and counted out
        await wait_for(lambda: state(hass, SMOKE) == "unavailable")
        assert state(hass, LISTENING) == "0"

        await arm(hass, False)  # disarmed: the microphone is closed on purpose
        await wait_for(lambda: state(hass, SMOKE) == "off")
        assert state(hass, EVENT) != "unavailable"
        assert hass.states.get(LISTENING).attributes["not_heard"] == []
    finally:
        await back.stop()
