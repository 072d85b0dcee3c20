"""The remote engine: chosen in the options (tested first), detections through it, outages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import wave

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.guard_mode import remote
from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.server import EngineServer, start_server
from custom_components.guard_mode.engine.tagger import load_tagger

from ..helpers import (
    ENGINE_TOKEN as TOKEN,
    BreakableTagger,
    arm,
    choose_remote_engine,
    remote_engine_form,
    remote_options,
    satellite_entry,
    setup_entry,
    wait_for,
)
from ..synth import pcm16, smoke_alarm_audio
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def test_options_test_the_remote_engine_first(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    result = await choose_remote_engine(hass, entry, alarm_mic.port)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_engine"}

    closed = MicServer()
    await closed.start()
    closed_port = closed.port
    await closed.stop()
    result = await choose_remote_engine(hass, entry, closed_port)
    assert result["errors"] == {"base": "cannot_connect"}

    result = await choose_remote_engine(hass, entry, engine_server.port)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()  # the entry reloads with the remote engine
    assert entry.runtime_data.engine.backend == "remote"


async def test_detections_through_the_remote_engine_and_outages(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
    remote_engine_timeouts: Callable[..., None],
) -> None:
    remote_engine_timeouts(repair_after_s=0.2)
    entry = satellite_entry(alarm_mic.port, **remote_options(engine_server.port))
    entry = await setup_entry(hass, entry)
    backend = er.async_get(hass).async_get_entity_id("sensor", DOMAIN, f"{entry.entry_id}-backend")
    assert hass.states.get(backend).state == "remote"
    satellite = next(iter(entry.runtime_data.satellites.values()))
    smoke = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-smoke_alarm"
    )
    detections = async_capture_events(hass, EVENT_DETECTION)

    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert hass.states.get(smoke).state == "on"
    assert engine_server.worker.stats.windows_tagged > 0  # the remote engine did the work

    port = engine_server.port
    await engine_server.stop()  # the add-on goes away
    await wait_for(lambda: hass.states.get(smoke).state == "unavailable", limit=10)
    await wait_for(
        lambda: ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is not None,
        limit=5,
    )

    back = EngineServer(load_tagger(), token=TOKEN)
    await start_server(back, port=port)
    try:
        await wait_for(lambda: hass.states.get(smoke).state != "unavailable", limit=40)
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
    finally:
        await arm(hass, False)
        await back.stop()


async def listening_through(
    hass: HomeAssistant, engine_server: EngineServer, mic: MicServer
) -> MockConfigEntry:
    """Set Guard Mode up with the remote engine, arm, and wait until the engine hears the mic."""
    entry = await setup_entry(hass, satellite_entry(mic.port, **remote_options(engine_server.port)))
    await arm(hass)
    await wait_for(lambda: engine_server.worker.stats.windows_tagged > 0, limit=20)
    return entry


async def test_disarming_during_an_outage_does_not_say_the_engine_is_back(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = await listening_through(hass, engine_server, alarm_mic)
    engine = entry.runtime_data.engine
    await engine_server.stop()  # the add-on goes away while guard mode listens
    await wait_for(lambda: not engine.available, limit=10)
    assert caplog.text.count("The remote engine is unreachable") == 1
    await arm(hass, False)  # its streams close: nothing says the engine came back
    await hass.async_block_till_done()
    assert "The remote engine is back" not in caplog.text


async def test_the_suggested_token_stays_while_the_user_copies_it_to_the_add_on(
    hass: HomeAssistant, alarm_mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))

    async def suggested_token() -> str:
        result = await remote_engine_form(hass, entry)
        hass.config_entries.options.async_abort(result["flow_id"])  # closed, to go to the add-on
        key = next(k for k in result["data_schema"].schema if k == "engine_token")
        return str(key.description["suggested_value"])

    first = await suggested_token()
    assert len(first) >= 16
    assert await suggested_token() == first


async def test_options_can_be_saved_while_the_remote_engine_is_away(
    hass: HomeAssistant, engine_server: EngineServer, alarm_mic: MicServer
) -> None:
    entry = satellite_entry(alarm_mic.port, **remote_options(engine_server.port))
    entry = await setup_entry(hass, entry)
    port = engine_server.port
    await engine_server.stop()  # the add-on is being updated
    result = await choose_remote_engine(hass, entry, port)  # its settings as they are
    assert result["type"] is FlowResultType.CREATE_ENTRY  # saved: nothing new to test
    await hass.async_block_till_done()

    moved = await choose_remote_engine(hass, entry, port + 1)  # new settings are tested first
    assert moved["errors"] == {"base": "cannot_connect"}


async def test_a_refused_token_asks_for_the_new_one(
    hass: HomeAssistant, engine_server: EngineServer, alarm_mic: MicServer
) -> None:
    """The add-on's token was changed: Home Assistant asks for it (reauthentication)."""
    options = remote_options(engine_server.port, engine_token="an-old-token-0123456789")
    entry = satellite_entry(alarm_mic.port, **options)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == "reauth"

    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"engine_token": "short"}
    )
    assert result["errors"] == {"engine_token": "bad_token"}
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"engine_token": "yet-another-wrong-token"}
    )
    assert result["errors"] == {"base": "invalid_auth"}  # checked before it is saved
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"engine_token": TOKEN}
    )
    await hass.async_block_till_done()
    assert result["reason"] == "reauth_successful"
    assert result.get("translation_domain") is None  # our own words: Guard Mode restarted with it
    assert entry.options["engine_token"] == TOKEN
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.engine.backend == "remote"


async def test_a_token_changed_while_guard_mode_listens_asks_for_the_new_one(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await listening_through(hass, engine_server, alarm_mic)
    port = engine_server.port
    await engine_server.stop()  # the add-on restarts with a new token
    changed = EngineServer(load_tagger(), token="a-brand-new-token-0123456789")
    await start_server(changed, port=port)
    try:
        await wait_for(
            lambda: any(
                flow["context"]["source"] == "reauth"
                for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
            ),
            limit=20,
        )
    finally:
        await arm(hass, False)
        await changed.stop()
    assert "failed: the connection failed" not in caplog.text  # said once


async def test_unreachable_remote_engine_at_start_retries(hass: HomeAssistant) -> None:
    closed = MicServer()
    await closed.start()
    port = closed.port
    await closed.stop()
    entry = satellite_entry(port, **remote_options(port))
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state.name == "SETUP_RETRY"
    assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is not None
    # Its satellites can still be reconfigured (they have no device yet).
    result = await entry.start_subentry_reconfigure_flow(hass, next(iter(entry.subentries)))
    assert result["step_id"] == "reconfigure"


async def test_analyze_file_with_the_remote_engine(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
    tmp_path: Path,
) -> None:
    """Files are analyzed on Home Assistant's host (the add-on only hears streams)."""
    entry = satellite_entry(alarm_mic.port, **remote_options(engine_server.port))
    await setup_entry(hass, entry)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    alarm = tmp_path / "alarm.wav"
    with wave.open(str(alarm), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm16(smoke_alarm_audio()))
    response = await hass.services.async_call(
        DOMAIN, "analyze_file", {"path": str(alarm)}, blocking=True, return_response=True
    )
    assert [d["sound"] for d in response["detections"]] == ["smoke_alarm"]
    assert engine_server.worker.stats.windows_tagged == 0  # not sent to the add-on


async def test_a_microphone_outage_through_the_remote_engine(
    hass: HomeAssistant,
    engine_server: EngineServer,
    alarm_mic: MicServer,
) -> None:
    """The mic drops and comes back: what it hears then is decided at the right times.

    The alarm goes on after the outage, ends when the recording's quiet part comes, and is on
    again when the recording plays it again (the engine's segments after the gap are placed
    after the gap in the stream).
    """
    entry = satellite_entry(alarm_mic.port, **remote_options(engine_server.port))
    entry = await setup_entry(hass, entry)
    satellite = next(iter(entry.runtime_data.satellites.values()))
    smoke = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-smoke_alarm"
    )
    states: list[str] = []
    hass.bus.async_listen(
        "state_changed",
        lambda event: (
            states.append(event.data["new_state"].state)
            if event.data["entity_id"] == smoke
            else None
        ),
    )
    await arm(hass)
    await wait_for(lambda: "on" in states, limit=20)
    port = alarm_mic.port
    await alarm_mic.stop()
    await wait_for(lambda: states[-1] == "unavailable", limit=10)
    states.clear()
    again = await MicServer(audio=alarm_mic.audio, speed=3.0, port=port).start()
    try:
        await wait_for(lambda: states[:3] == ["on", "off", "on"], limit=40)
        assert entry.runtime_data.engine.available
    finally:
        await arm(hass, False)
        await again.stop()


async def test_the_remote_engine_s_failing_model_is_shown(
    hass: HomeAssistant, mic: MicServer
) -> None:
    """The add-on's model fails: Home Assistant says so (only alarms are heard), until it works."""
    tagger = BreakableTagger(load_tagger())
    server = EngineServer(tagger, token=TOKEN)
    await start_server(server)
    try:
        await listening_through(hass, server, mic)
        registry = ir.async_get(hass)
        tagger.broken = True
        await wait_for(
            lambda: registry.async_get_issue(DOMAIN, remote.ISSUE_REMOTE_MODEL) is not None,
            limit=20,
        )
        issue = registry.async_get_issue(DOMAIN, remote.ISSUE_REMOTE_MODEL)
        assert issue.translation_placeholders == {"error": "the inference session is broken"}
        tagger.broken = False
        await wait_for(
            lambda: registry.async_get_issue(DOMAIN, remote.ISSUE_REMOTE_MODEL) is None, limit=20
        )
        await arm(hass, False)
    finally:
        await server.stop()
