"""Hostile or broken engine services against Home Assistant's remote-engine client.

A real Home Assistant with one Wyoming satellite playing a smoke alarm, its audio relayed to an
"engine" on loopback: a fake one that answers the handshake and then misbehaves, or the real
engine service with another token or a TLS certificate. Each test asserts what a user sees (the
detection entities unavailable, a repair, one log line per outage, no traceback), the bound,
and the recovery once a real engine answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
import logging
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events
from wyoming.error import Error
from wyoming.event import Event, async_write_event

from custom_components.guard_mode import remote
from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine import (
    RemoteEngineError,
    RemoteSettings,
    client,
    protocol,
    server as server_module,
)
from custom_components.guard_mode.engine.server import EngineServer, start_server
from custom_components.guard_mode.engine.tagger import load_tagger

from ..certs import make_certificate
from ..engine.service_client import WINDOW
from ..helpers import (
    ENGINE_TOKEN as TOKEN,
    arm,
    choose_remote_engine,
    remote_options,
    satellite_entry,
    setup_entry,
    wait_for,
)
from ..synth import smoke_alarm_audio
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")

INFO = protocol.GuardModeInfo("0.1.0", "numpy", "yamnet.onnx").event()
Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FakeEngine:
    """Answers Guard Mode's handshake (token, describe) like the engine, then runs behaviour."""

    def __init__(self, behaviour: Behaviour, port: int = 0, info: Event = INFO) -> None:
        self.behaviour = behaviour
        self.port = port
        self.info = info
        self.connections = 0
        self.tokens: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FakeEngine:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, limit=protocol.MAX_HEADER
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError, protocol.ProtocolError):
            auth = await protocol.read_event(reader)
            assert auth is not None
            self.tokens.append(protocol.GuardModeAuth.from_event(auth).token)
            await protocol.read_event(reader)  # describe
            await async_write_event(self.info, writer)
            await self.behaviour(reader, writer)
        self._tasks.discard(task)
        writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def raw(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    await asyncio.Event().wait()


@pytest.fixture(autouse=True)
def quick(remote_engine_timeouts: Callable[..., None]) -> None:
    remote_engine_timeouts(repair_after_s=0.3, backoff_max_s=0.3)


def smoke_entity(hass: HomeAssistant, entry: Any) -> str:
    satellite = next(iter(entry.runtime_data.satellites.values()))
    found = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-smoke_alarm"
    )
    assert found is not None
    return found


async def recovers_with_a_real_engine(hass: HomeAssistant, fake: FakeEngine, entity: str) -> None:
    """Replace the fake engine by the real one on its port: everything comes back by itself."""
    port = fake.port
    await fake.stop()
    real = EngineServer(load_tagger(), token=TOKEN)
    await start_server(real, port=port)
    try:
        await wait_for(lambda: hass.states.get(entity).state != "unavailable", limit=20)
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
        await arm(hass, False)
    finally:
        await real.stop()


MALFORMED = {
    "inf-length": b'{"type": "guard-mode-status", "data_length": 1e999}\n',
    "deep-nesting": b'{"type": "ping", "data_length": 200000}\n' + b"[" * 100_000 + b"]" * 100_000,
    "bad-utf8": b'{"type": "guard-mode-status", "data_length": 4}\n\xff\xfe\xfd\xfc',
    "bad-evidence": b'{"type": "guard-mode-evidence", "data": {"segment": 0, "items": [5]}}\n',
    "huge-payload": b'{"type": "pong", "payload_length": 99999999999}\n',
    "unknown-segment": b'{"type": "guard-mode-evidence", "data": {"segment": 7, "time_s": 1.0, '
    b'"items": []}}\n',
}


@pytest.mark.parametrize("garbage", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_event_never_kills_the_stream_silently(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    caplog: pytest.LogCaptureFixture,
    garbage: bytes,
) -> None:
    fake = await FakeEngine(lambda _r, w: raw(w, garbage)).start()
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, **remote_options(fake.port)))
    entity = smoke_entity(hass, entry)
    await arm(hass)
    await wait_for(lambda: hass.states.get(entity).state == "unavailable", limit=10)
    await wait_for(
        lambda: ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is not None
    )
    await wait_for(lambda: fake.connections >= 4, limit=15)  # it keeps reconnecting
    assert caplog.text.count("The remote engine is unreachable") == 1  # once per outage
    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    assert not [r for r in ours if r.exc_info], "a parser failure escaped"
    await recovers_with_a_real_engine(hass, fake, entity)
    assert caplog.text.count("The remote engine is back") == 1


async def test_a_silent_engine_is_dropped_after_the_idle_timeout(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    remote_engine_timeouts: Callable[..., None],
) -> None:
    remote_engine_timeouts(repair_after_s=0.3, backoff_max_s=0.3, idle_s=1.0)
    fake = await FakeEngine(lambda _r, _w: asyncio.Event().wait()).start()  # says nothing
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, **remote_options(fake.port)))
    entity = smoke_entity(hass, entry)
    await arm(hass)
    await wait_for(lambda: hass.states.get(entity).state == "unavailable", limit=10)
    await wait_for(lambda: fake.connections >= 2, limit=10)
    await recovers_with_a_real_engine(hass, fake, entity)


async def test_an_evidence_flood_is_throttled(
    hass: HomeAssistant,
    alarm_mic: MicServer,
) -> None:
    """An engine sending endless windows can't keep the event loop deciding on them."""
    loop = asyncio.get_running_loop()
    window = WINDOW | {"level_db": -90.0, "peak_db": -90.0}  # quiet: nothing to decide

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (event := await protocol.read_event(reader)) and event.type != "audio-start":
            pass  # the client's segment 0 begins
        data = {"segment": 0, "time_s": 1.0, "items": [window] * protocol.MAX_EVIDENCE_ITEMS}
        for _ in range(100_000):
            await async_write_event(Event(protocol.EVIDENCE_TYPE, data), writer)

    fake = await FakeEngine(flood).start()
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, **remote_options(fake.port)))
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await arm(hass)
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows > 0)
    started = loop.time()
    assert satellite.decision is not None
    first = satellite.decision.windows
    await asyncio.sleep(2.0)
    elapsed = loop.time() - started
    decided = satellite.decision.windows - first
    bound = client.EVIDENCE_BURST + client.EVIDENCE_RATE * elapsed + protocol.MAX_EVIDENCE_ITEMS
    assert 0 < decided <= bound
    await arm(hass, False)
    await fake.stop()


async def test_an_engine_of_protocol_1_is_refused(hass: HomeAssistant) -> None:
    """An engine that decides itself (protocol 1) would silently ignore learning: update it."""
    old = protocol.GuardModeInfo("0.0.9", "numpy", "yamnet.onnx", protocol=1).event()
    fake = await FakeEngine(lambda _r, _w: asyncio.Event().wait(), info=old).start()
    try:
        with pytest.raises(RemoteEngineError, match="update the Guard Mode engine add-on"):
            await remote.async_describe(remote.settings_from_options(remote_options(fake.port)))
    finally:
        await fake.stop()


async def test_a_wrong_token_is_refused_and_said_so(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    engine = EngineServer(load_tagger(), token="the-engines-own-token-42")
    await start_server(engine)
    try:
        entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
        result = await choose_remote_engine(hass, entry, engine.port, token="not-the-engines-token")
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "invalid_auth"}
        result = await choose_remote_engine(hass, entry, engine.port, token="short")
        assert result["errors"] == {"engine_token": "bad_token"}
        assert engine.worker.streams == []
    finally:
        await engine.stop()
    assert "not-the-engines-token" not in caplog.text
    assert "the-engines-own-token-42" not in caplog.text


async def test_setup_with_a_refused_token_asks_for_it(hass: HomeAssistant) -> None:
    engine = EngineServer(load_tagger(), token="the-engines-own-token-42")
    await start_server(engine)
    try:
        entry = satellite_entry(1, **remote_options(engine.port))
        entry.add_to_hass(hass)
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_ERROR  # retrying would not help
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [flow["context"]["source"] for flow in flows] == ["reauth"]
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
        # The user gives up on the remote engine: the in-process one.
        hass.config_entries.async_update_entry(entry, options={**entry.options, "engine": "local"})
        await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
    finally:
        await engine.stop()


async def test_removing_guard_mode_leaves_no_repair_behind(hass: HomeAssistant) -> None:
    entry = satellite_entry(1, **remote_options(1))  # an engine that is not there
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is not None
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert not [key for key in ir.async_get(hass).issues if key[0] == DOMAIN]


@pytest.fixture
async def tls_engine(tmp_path: Path) -> AsyncIterator[tuple[EngineServer, str]]:
    _, cert = make_certificate(tmp_path)
    context, pin = server_module.tls_context(str(cert), str(tmp_path / "key.pem"))
    engine = EngineServer(load_tagger(), token=TOKEN, ssl_context=context)
    await start_server(engine)
    yield engine, pin
    await engine.stop()


async def test_tls_with_the_pinned_certificate(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tls_engine: tuple[EngineServer, str],
) -> None:
    engine, pin = tls_engine
    options = remote_options(engine.port, engine_fingerprint=pin.lower())
    await setup_entry(hass, satellite_entry(alarm_mic.port, **options))
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert engine.worker.stats.windows_tagged > 0
    await arm(hass, False)


async def test_tls_with_another_certificate_sends_nothing(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tls_engine: tuple[EngineServer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine, _ = tls_engine
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"arming_mode": "manual", "always_listen_alarms": False, "evidence_clips": False}
        | {"engine": "remote"},
    )
    impostor = "AB:" * 31 + "AB"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "engine_host": "127.0.0.1",
            "engine_port": engine.port,
            "engine_token": TOKEN,
            "engine_fingerprint": impostor,
        },
    )
    assert result["errors"] == {"base": "tls_mismatch"}
    await wait_for(lambda: not engine.connections)
    assert "wrong token" not in caplog.text  # the token was never sent to it
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "engine_host": "127.0.0.1",
            "engine_port": engine.port,
            "engine_token": TOKEN,
            "engine_fingerprint": "not a fingerprint",
        },
    )
    assert result["errors"] == {"engine_fingerprint": "bad_fingerprint"}


async def test_the_remote_engine_errors_name_no_host(hass: HomeAssistant) -> None:
    closed = await FakeEngine(lambda _r, _w: asyncio.sleep(0)).start()
    port = closed.port
    await closed.stop()
    settings = RemoteSettings("localhost", port, TOKEN)
    with pytest.raises(RemoteEngineError) as err:
        await remote.async_describe(settings)
    assert err.value.reason == "cannot_connect"
    assert "localhost" not in str(err.value)
    assert "127.0.0.1" not in str(err.value)
    assert "connection refused" in str(err.value)
    assert TOKEN not in repr(settings)
    _ = smoke_alarm_audio  # the alarm the satellite of the other tests plays


async def _answering(answer: bytes) -> asyncio.Server:
    """A service that reads the token and describe, then answers with answer instead of info."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, protocol.ProtocolError):
            await protocol.read_event(reader)
            await protocol.read_event(reader)
            writer.write(answer)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


ANSWERS = {
    "full": (
        b'{"type": "error", "data": {"code": "too-many-streams", '
        b'"text": "this engine serves 8 streams at most"}}\n',
        "this engine serves 8 streams at most",
    ),
    "garbage": (b"\x00\xff not an event\n", "the remote engine: "),
    "malformed-refusal": (
        b'{"type": "error", "data": {"code": "too-many-streams"}}\n',
        "a malformed error event",
    ),
}


@pytest.mark.parametrize(("answer", "said"), ANSWERS.values(), ids=ANSWERS.keys())
async def test_an_engine_that_answers_no_info_is_not_chosen(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    answer: bytes,
    said: str,
) -> None:
    """The options flow refuses it (not an engine), and the refusal says what it answered."""
    server = await _answering(answer)
    port = int(server.sockets[0].getsockname()[1])
    try:
        entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
        result = await choose_remote_engine(hass, entry, port)
        assert result["type"] is FlowResultType.FORM
        assert result["errors"] == {"base": "not_engine"}
        with pytest.raises(RemoteEngineError, match=said) as err:
            await remote.async_describe(remote.settings_from_options(remote_options(port)))
        assert err.value.reason == "not_engine"
    finally:
        server.close()
        await server.wait_closed()


async def test_an_engine_that_ends_the_stream_is_reconnected(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its status shows in diagnostics, a skipped chunk is no outage, its timeout is one."""
    status = protocol.GuardModeStatus(0, 1.0, seconds_dropped=0.5, bad_chunks=3).event()
    told = asyncio.Event()

    async def ends(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (event := await protocol.read_event(reader)) and event.type != "audio-start":
            pass
        await async_write_event(status, writer)
        await async_write_event(Error("chunk skipped", protocol.ERROR_BAD_AUDIO).event(), writer)
        await told.wait()
        await async_write_event(Error("no audio for 60 s", protocol.ERROR_TIMEOUT).event(), writer)
        await asyncio.Event().wait()

    fake = await FakeEngine(ends).start()
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, **remote_options(fake.port)))
    entity = smoke_entity(hass, entry)
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await arm(hass)
    await wait_for(lambda: satellite.stream is not None and satellite.stream.status()["bad_chunks"])
    assert satellite.stream is not None
    shown = satellite.stream.status()
    assert shown["bad_chunks"] == 3
    assert shown["seconds_dropped"] >= 0.5  # the engine's drops count with the client's
    assert hass.states.get(entity).state != "unavailable"  # a skipped chunk is no outage
    told.set()
    await wait_for(lambda: hass.states.get(entity).state == "unavailable", limit=10)
    await wait_for(
        lambda: ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is not None
    )
    issue = ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE)
    assert issue is not None
    assert "no audio for 60 s" in issue.translation_placeholders["error"]
    await recovers_with_a_real_engine(hass, fake, entity)
    assert caplog.text.count("The remote engine is unreachable") == 1


async def test_a_short_outage_raises_no_repair(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    remote_engine_timeouts: Callable[..., None],
) -> None:
    """The add-on restarting within the minute: unavailable meanwhile, but no repair to read."""
    remote_engine_timeouts(repair_after_s=60.0, backoff_max_s=0.3)
    engine = EngineServer(load_tagger(), token=TOKEN)
    await start_server(engine)
    port = engine.port
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port, **remote_options(port)))
    entity = smoke_entity(hass, entry)
    await arm(hass)
    await wait_for(lambda: engine.worker.stats.windows_tagged > 0, limit=10)
    await engine.stop()
    await wait_for(lambda: hass.states.get(entity).state == "unavailable", limit=10)
    back = EngineServer(load_tagger(), token=TOKEN)
    await start_server(back, port=port)
    try:
        await wait_for(lambda: hass.states.get(entity).state != "unavailable", limit=20)
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
        assert entry.runtime_data.engine._repair_timer is None  # none is pending either
    finally:
        await arm(hass, False)
        await back.stop()


async def test_unloading_during_an_outage_leaves_no_repair_behind(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    remote_engine_timeouts: Callable[..., None],
) -> None:
    """Removing Guard Mode while the engine is down: no repair pops up a minute later."""
    remote_engine_timeouts(repair_after_s=60.0, backoff_max_s=0.3)
    fake = await FakeEngine(lambda _r, w: raw(w, MALFORMED["bad-utf8"])).start()
    try:
        entry = await setup_entry(
            hass, satellite_entry(alarm_mic.port, **remote_options(fake.port))
        )
        engine = entry.runtime_data.engine
        await arm(hass)
        await wait_for(lambda: hass.states.get(smoke_entity(hass, entry)).state == "unavailable")
        assert engine._repair_timer is not None  # the repair would come after a minute
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
        assert engine._repair_timer is None
        assert ir.async_get(hass).async_get_issue(DOMAIN, remote.ISSUE_REMOTE) is None
    finally:
        await fake.stop()
