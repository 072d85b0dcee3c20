"""Wyoming satellites in a real Home Assistant, against a real Wyoming mic service on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
import itertools
import logging
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.util import dt as dt_util
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import (
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.guard_mode import satellite as satellite_module
from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.sources.wyoming import WyomingMicSource
from custom_components.guard_mode.timeouts import Timeouts

from .. import synth
from ..helpers import (
    add_satellite,
    arm,
    hear,
    make_entry,
    satellite_entry,
    satellite_subentry,
    setup_entry,
    state,
    wait_for,
)
from ..synth import pcm16
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled", "fast_timeouts")

CONNECTED = "binary_sensor.kitchen_mic_connected"
LEVEL = "sensor.kitchen_mic_sound_level"


async def test_add_satellite_through_the_flow(hass: HomeAssistant, mic: MicServer) -> None:
    entry = await setup_entry(hass, make_entry())
    kitchen = ar.async_get(hass).async_create("Kitchen")
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "wyoming"}
    )
    assert result["step_id"] == "wyoming"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"],
        {"name": "Kitchen mic", "area": kitchen.id, "host": "127.0.0.1", "port": mic.port},
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mic.connections == 1  # tested before it was saved
    await wait_for(lambda: mic.clients == 0)  # … and the probe closed its connection

    subentry = next(iter(entry.subentries.values()))
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, subentry.subentry_id), entry.entry_id
    )
    assert device is not None
    assert device.name == "Kitchen mic"
    assert device.area_id == kitchen.id
    connected = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{subentry.subentry_id}-connected"
    )
    assert connected is not None
    assert state(hass, connected) == "off"  # disarmed: the microphone stays closed
    assert mic.clients == 0


@pytest.mark.parametrize(
    ("behavior", "port_open", "error"),
    [
        ("normal", False, "cannot_connect"),
        ("asr", True, "not_a_microphone"),
        ("silent", True, "no_audio"),
        ("garbage", True, "not_a_microphone"),
    ],
)
async def test_flow_says_what_is_wrong(
    hass: HomeAssistant, behavior: str, port_open: bool, error: str
) -> None:
    server = await MicServer(behavior=behavior).start()  # type: ignore[arg-type]
    port = server.port
    if not port_open:
        await server.stop()
    try:
        entry = await setup_entry(hass, make_entry())
        result = await add_satellite(
            hass, entry, "wyoming", {"name": "Mic", "host": "127.0.0.1", "port": port}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": error}
        assert result["description_placeholders"]["detail"]  # the plain-words reason
        assert not entry.subentries
    finally:
        await server.stop()


async def test_duplicate_satellite_is_refused(hass: HomeAssistant, mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    result = await add_satellite(
        hass, entry, "wyoming", {"name": "Again", "host": "127.0.0.1", "port": mic.port}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_listens_only_while_armed(hass: HomeAssistant, mic: MicServer) -> None:
    await setup_entry(hass, satellite_entry(mic.port))
    await asyncio.sleep(0.3)
    assert mic.connections == 0  # disarmed: never connected

    await arm(hass)
    await wait_for(lambda: state(hass, CONNECTED) == "on")
    assert mic.clients == 1
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 2)
    assert satellite.stream is not None
    assert satellite.stream.stats.seconds_in > 0.9

    await arm(hass, False)
    took = await wait_for(lambda: mic.clients == 0, limit=2.0)
    assert took < 1.0  # closed within a second of disarming
    assert state(hass, CONNECTED) == "off"
    connections = mic.connections
    await asyncio.sleep(0.5)
    assert mic.connections == connections  # and stays closed


async def test_always_listen_for_alarms_keeps_the_mic_open_when_disarmed(
    hass: HomeAssistant, mic: MicServer
) -> None:
    await setup_entry(hass, satellite_entry(mic.port, always_listen_alarms=True))
    await wait_for(lambda: state(hass, CONNECTED) == "on")
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    satellite = next(iter(entry.runtime_data.satellites.values()))
    assert satellite.stream is not None
    assert satellite.decision.decider.config.enabled == {"smoke_alarm", "co_alarm"}
    await arm(hass)
    assert len(satellite.decision.decider.config.enabled) == 6


async def test_disarming_ends_what_was_heard_while_alarms_are_still_listened_for(
    hass: HomeAssistant,
) -> None:
    """The microphone stays open for alarms: a glass break being heard ends at the disarm."""
    glass = "binary_sensor.kitchen_mic_glass_break"
    room = synth.white_noise(4.0, -70.0, synth.rng(5))
    breaking = await MicServer(audio=pcm16(np.concatenate([room, synth.shattering(8)]))).start()
    try:
        await setup_entry(hass, satellite_entry(breaking.port, always_listen_alarms=True))
        await hass.services.async_call(
            "select",
            "select_option",
            {"entity_id": "select.kitchen_mic_sensitivity", "option": "high"},
            blocking=True,
        )
        await arm(hass)
        await wait_for(lambda: state(hass, glass) == "on", limit=15.0)
        await arm(hass, False)
        assert state(hass, glass) == "off"  # at once, not when its hold runs out
        assert state(hass, CONNECTED) == "on"  # still listening for alarms
    finally:
        await breaking.stop()


async def test_sound_level_sensor(hass: HomeAssistant, mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    registry = er.async_get(hass)
    assert registry.async_get(LEVEL).disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert hass.states.get(LEVEL) is None  # a state every 5 s: off until the user wants it
    registry.async_update_entity(LEVEL, disabled_by=None)
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert state(hass, LEVEL) == "unavailable"
    await arm(hass)
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 1)
    satellite._sample_level(None)
    await hass.async_block_till_done()
    level = float(state(hass, LEVEL))
    assert -16 < level < -8  # a tone peaking at -10.5 dBFS: -13.5 dBFS RMS
    assert registry.async_get(LEVEL).entity_category == "diagnostic"


async def test_a_microphone_s_dc_offset_is_not_heard_as_sound(hass: HomeAssistant) -> None:
    """A cheap I2S microphone reads 5 % of full scale in a silent room: the room is still a
    quiet one (the gate skips the tagger), not a loud one that no sound would stand out of."""
    room = synth.white_noise(3.0, -70.0, synth.rng(5)) + np.float32(0.05)
    quiet = await MicServer(audio=pcm16(room), speed=3.0).start()
    try:
        entry = await setup_entry(hass, satellite_entry(quiet.port))
        await arm(hass)
        satellite = next(iter(entry.runtime_data.satellites.values()))
        await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 8)
        decision = satellite.decision
        assert decision.take_peak_level() < -60
        assert decision.gated_windows == decision.windows
        await arm(hass, False)
    finally:
        await quiet.stop()


@pytest.mark.parametrize(
    "behavior",
    ["garbage", "stall", "close_mid_chunk", "odd_chunks", "huge_chunk", "bad_rate", "stops"],
)
async def test_bad_input_never_breaks_anything(
    hass: HomeAssistant, behavior: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await MicServer(
        audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), behavior=behavior
    ).start()  # type: ignore[arg-type]
    try:
        await setup_entry(hass, satellite_entry(server.port))
        await arm(hass)
        entry = hass.config_entries.async_entries(DOMAIN)[0]
        satellite = next(iter(entry.runtime_data.satellites.values()))
        if behavior == "odd_chunks":  # usable audio: it is processed
            await wait_for(
                lambda: satellite.decision is not None and satellite.decision.windows >= 3
            )
            assert state(hass, CONNECTED) == "on"
        elif behavior in ("bad_rate", "huge_chunk"):  # refused before the engine; retried later
            await wait_for(lambda: server.connections >= 3, limit=8.0)
            why = "sample rate 0 Hz" if behavior == "bad_rate" else "is too big"
            assert why in (satellite.state.last_error or "")
            assert satellite.stream is not None
            assert satellite.decision.windows == 0
        else:  # the satellite notices, reconnects, and keeps trying
            await wait_for(lambda: server.connections >= 3, limit=8.0)
            assert satellite.state.last_error
            if behavior == "stops":
                assert "stopped its microphone" in satellite.state.last_error
        assert entry.runtime_data.engine.worker.stats.errors == 0
        await arm(hass, False)
        await wait_for(lambda: server.clients == 0)
    finally:
        await server.stop()
    assert not [
        r for r in caplog.records if r.name.startswith("custom_components") and r.exc_info
    ], "a source error escaped as an exception"


async def test_outage_logged_once_repair_raised_and_cleared(
    hass: HomeAssistant,
    mic: MicServer,
    caplog: pytest.LogCaptureFixture,
    use_timeouts: Callable[..., Timeouts],
) -> None:
    caplog.set_level(logging.INFO)
    use_timeouts(steady_s=0.5)  # back once its audio has flowed this long
    port = mic.port
    await setup_entry(hass, satellite_entry(port, unreachable_minutes=1))
    await arm(hass)
    await wait_for(lambda: state(hass, CONNECTED) == "on")
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    satellite = next(iter(entry.runtime_data.satellites.values()))

    await mic.stop()  # the service goes away; it refuses connections while down
    await wait_for(lambda: state(hass, CONNECTED) == "off")
    await wait_for(lambda: satellite.state.reconnects >= 4)
    assert caplog.text.count("Kitchen mic is unreachable") == 1

    issue_id = satellite_module.issue_unreachable(satellite.id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=1, seconds=5))
    await hass.async_block_till_done()
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders["name"] == "Kitchen mic"

    back = await MicServer(audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), port=port).start()
    try:
        await wait_for(lambda: state(hass, CONNECTED) == "on", limit=5.0)
        assert not satellite.deaf  # heard again at once ...
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
        # ... and back, its repair gone, once the audio has flowed for steady_s
        await wait_for(lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None)
        assert caplog.text.count("Kitchen mic is back") == 1
    finally:
        await arm(hass, False)
        await back.stop()


async def test_a_source_that_fails_at_once_each_time_is_retried_less_and_less_often(
    hass: HomeAssistant, use_timeouts: Callable[..., Timeouts]
) -> None:
    """A moment of audio is no working connection: the waits between attempts still grow."""
    use_timeouts(backoff_start_s=0.2, backoff_max_s=1.6)
    flapping = await MicServer(behavior="one_chunk").start()
    try:
        await setup_entry(hass, satellite_entry(flapping.port))
        await arm(hass)
        await wait_for(lambda: flapping.connections >= 5, limit=15.0)
        gaps = [b - a for a, b in itertools.pairwise(flapping.connected_at)]
        assert gaps[3] >= 0.75 * 1.6  # the fourth wait is 1.6 s (±25 %), not the first's 0.2 s
        await arm(hass, False)
    finally:
        await flapping.stop()


async def test_a_bug_met_at_every_reconnect_is_logged_with_its_traceback_once(
    hass: HomeAssistant,
    mic: MicServer,
    use_timeouts: Callable[..., Timeouts],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use_timeouts(backoff_start_s=0.05, backoff_max_s=0.1)
    attempts = 0

    async def buggy(self: Any, sink: Any) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError(f"a bug in the source, attempt {attempts}")  # its message varies

    monkeypatch.setattr(WyomingMicSource, "run", buggy)
    await setup_entry(hass, satellite_entry(mic.port))
    await arm(hass)
    await wait_for(lambda: attempts >= 4)
    assert caplog.text.count("Kitchen mic: unexpected error") == 1
    assert caplog.text.count("Traceback") == 1
    assert caplog.text.count("Kitchen mic is unreachable") == 1  # what the user reads, once
    await arm(hass, False)


async def test_a_flapping_microphone_is_one_outage_and_gets_its_repair(
    hass: HomeAssistant, use_timeouts: Callable[..., Timeouts], caplog: pytest.LogCaptureFixture
) -> None:
    """Moments of audio between failures are no recovery: the outage and its repair go on."""
    caplog.set_level(logging.INFO)
    use_timeouts(backoff_start_s=0.1, backoff_max_s=0.2)
    flapping = await MicServer(behavior="one_chunk").start()
    try:
        await setup_entry(hass, satellite_entry(flapping.port, unreachable_minutes=1))
        await arm(hass)
        await wait_for(lambda: flapping.connections >= 5, limit=15.0)
        assert caplog.text.count("Kitchen mic is unreachable") == 1
        assert "Kitchen mic is back" not in caplog.text
        assert "unexpected error" not in caplog.text  # a reset connection is no bug
        entry = hass.config_entries.async_entries(DOMAIN)[0]
        satellite = next(iter(entry.runtime_data.satellites.values()))
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=1, seconds=5))
        await hass.async_block_till_done()
        issue_id = satellite_module.issue_unreachable(satellite.id)
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
        await arm(hass, False)
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    finally:
        await flapping.stop()


async def test_reconfigure_keeps_device_and_entities(hass: HomeAssistant, mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    subentry = next(iter(entry.subentries.values()))
    registry = er.async_get(hass)
    before = registry.async_get(CONNECTED)
    assert before is not None
    other = await MicServer(audio=pcm16(synth.tone(440.0, 1.0, peak_db=-10.5))).start()
    try:
        result = await entry.start_subentry_reconfigure_flow(hass, subentry.subentry_id)
        assert result["step_id"] == "reconfigure"
        result = await hass.config_entries.subentries.async_configure(
            result["flow_id"], {"name": "Pantry mic", "host": "127.0.0.1", "port": other.port}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        assert entry.subentries[subentry.subentry_id].data["port"] == other.port
        after = registry.async_get(CONNECTED)
        assert after is not None
        assert after.id == before.id  # the same entities, on the renamed device
        assert after.device_id is not None
        device = dr.async_get(hass).async_get(after.device_id)
        assert device is not None
        assert device.name == "Pantry mic"
        probes = other.connections  # the flow's test connection
        await arm(hass)
        satellite = entry.runtime_data.satellites[subentry.subentry_id]
        await wait_for(lambda: satellite.state.connected)
        assert hass.states.get(CONNECTED).state == "on"
        assert other.connections == probes + 1  # listening on the new microphone ...
        assert other.clients == 1
        assert mic.connections == 0  # ... never on the old one
        await arm(hass, False)
    finally:
        await other.stop()


def entry_in_area(port: int, area_id: str) -> Any:
    """An entry with "Kitchen mic" at 127.0.0.1:port, added in area_id."""
    subentry = satellite_subentry(
        "Kitchen mic",
        f"wyoming:127.0.0.1:{port}",
        source="wyoming",
        host="127.0.0.1",
        port=port,
        area=area_id,
    )
    return make_entry({}, [subentry])


async def test_the_device_stays_in_the_area_the_user_moved_it_to(
    hass: HomeAssistant, mic: MicServer
) -> None:
    areas = ar.async_get(hass)
    kitchen, garage = areas.async_create("Kitchen"), areas.async_create("Garage")
    entry = await setup_entry(hass, entry_in_area(mic.port, kitchen.id))
    subentry_id = next(iter(entry.subentries))
    devices = dr.async_get(hass)

    def area() -> str | None:
        device = devices.async_get_device_by_identifier((DOMAIN, subentry_id), entry.entry_id)
        assert device is not None
        return device.area_id

    assert area() == kitchen.id  # the area chosen when it was added
    device = devices.async_get_device_by_identifier((DOMAIN, subentry_id), entry.entry_id)
    assert device is not None
    devices.async_update_device(device.id, area_id=garage.id)  # moved on its device page
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert area() == garage.id  # a restart does not move it back

    # Reconfigure offers where it is now; clearing the area there clears the device's.
    result = await entry.start_subentry_reconfigure_flow(hass, subentry_id)
    schema = result["data_schema"].schema
    assert next(k for k in schema if k == "area").description == {"suggested_value": garage.id}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Kitchen mic", "host": "127.0.0.1", "port": mic.port}
    )
    await hass.async_block_till_done()
    assert result["reason"] == "reconfigure_successful"
    assert area() is None


async def test_a_device_taken_out_of_its_area_alerts_without_one(
    hass: HomeAssistant, mic: MicServer
) -> None:
    kitchen = ar.async_get(hass).async_create("Kitchen")
    entry = await setup_entry(hass, entry_in_area(mic.port, kitchen.id))
    devices = dr.async_get(hass)
    device = devices.async_get_device_by_identifier(
        (DOMAIN, next(iter(entry.subentries))), entry.entry_id
    )
    assert device is not None
    devices.async_update_device(device.id, area_id=None)  # cleared on its device page
    detections = async_capture_events(hass, EVENT_DETECTION)
    hear(hass, Sound.DOG_BARK)
    await hass.async_block_till_done()
    assert detections[0].data["area"] is None
    assert detections[0].data["area_id"] is None


async def test_removing_a_satellite_removes_its_device(hass: HomeAssistant, mic: MicServer) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    subentry = next(iter(entry.subentries.values()))
    await arm(hass)
    await wait_for(lambda: mic.clients == 1)
    assert hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: mic.clients == 0)
    assert not entry.runtime_data.satellites
    assert (
        dr.async_get(hass).async_get_device_by_identifier(
            (DOMAIN, subentry.subentry_id), entry.entry_id
        )
        is None
    )
    assert er.async_get(hass).async_get(CONNECTED) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random  # noqa: PLC0415

    rng = random.Random(1)
    delays = [satellite_module.backoff_delay(n, rng, Timeouts()) for n in range(1, 12)]
    assert 0.75 <= delays[0] <= 1.25
    assert all(later > earlier * 1.2 for earlier, later in itertools.pairwise(delays[:6]))
    assert max(delays) <= 60 * 1.25
    assert len({round(d, 3) for d in delays[-4:]}) == 4  # jittered, not a fixed cap
