"""Hostile peers on the push endpoint: a real Home Assistant, real websockets on loopback.

The honest agent of "Garage mic" holds the satellite's key; attackers are Home Assistant users
(a read-only one, another admin) without it, and agents that break the protocol's bounds. Each
test asserts the bound and that the honest agent keeps its satellite and its audio gets through
(in a whole set-up, its smoke alarm is detected).
"""

# The push endpoint's fixtures (http, source, sources, client) come from test_source_push.

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
import logging
import time
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events, flush_store

from custom_components.guard_mode import push_view
from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import CONF_PUSH_KEY, DOMAIN
from custom_components.guard_mode.engine import bounds
from custom_components.guard_mode.push_view import KEY_HEADER, KEY_REFUSED
from custom_components.guard_mode.sources import push
from custom_components.guard_mode.sources.push import PushSource
from custom_components.guard_mode.timeouts import Timeouts

from ..helpers import arm, make_entry, satellite_subentry, setup_entry, wait_for
from ..synth import pcm16, smoke_alarm_audio
from .push_client import (
    HELLO,
    KEY,
    PCM,
    PUSH_ID,
    URL,
    Recorder,
    connect,
    expect_closed,
    next_json,
    running,
    start_agent,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")


async def refused(client: TestClient, key: str | None) -> WSServerHandshakeError:
    headers = {} if key is None else {KEY_HEADER: key}
    with pytest.raises(WSServerHandshakeError) as err:
        await client.ws_connect(URL, headers=headers)
    return err.value


# --- who may feed a satellite ------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong", KEY[:-1], KEY + "x"])
async def test_a_read_only_user_can_not_take_a_satellite_over(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    client: TestClient,
    hass_client: Any,
    hass_read_only_access_token: str,
    caplog: pytest.LogCaptureFixture,
    key: str | None,
) -> None:
    honest = await connect(client)
    assert await next_json(honest) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink):
        assert await next_json(honest) == {"type": "start"}
        attacker: TestClient = await hass_client(access_token=hass_read_only_access_token)
        error = await refused(attacker, key)
        assert error.status == 403  # before any websocket exists
        assert error.headers is not None
        assert error.headers.get(push_view.REFUSED_HEADER) == KEY_REFUSED
        # The honest agent was not closed, and its audio (only its audio) is used.
        await honest.send_bytes(PCM)
        await wait_for(lambda: len(sink.chunks) == 1)
        assert source.connections == 1
        assert not honest.closed
    await honest.close()
    refusals = [r for r in caplog.records if "without this satellite's key" in r.getMessage()]
    assert len(refusals) == 1  # logged once, naming the satellite and the user, not the key
    assert "Kitchen" in refusals[0].getMessage()
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("custom_components")
    )
    assert KEY not in ours
    assert PUSH_ID not in ours


async def test_another_admin_without_the_key_is_refused_too(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    client: TestClient,
) -> None:
    honest = await connect(client)
    assert await next_json(honest) == {"type": "stop"}
    error = await refused(client, "not-the-key")  # the very same admin token, no key
    assert error.status == 403
    assert source.connected
    await honest.close()


async def test_replacing_an_agent_needs_the_key(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    source: PushSource,
    client: TestClient,
    hass_client: Any,
    hass_read_only_access_token: str,
) -> None:
    """Another user's token *with* the satellite's key may replace the agent: the key binds."""
    first = await connect(client)
    assert await next_json(first) == {"type": "stop"}
    other: TestClient = await hass_client(access_token=hass_read_only_access_token)
    second = await connect(other, HELLO | {"agent": "moved/1"})
    assert await next_json(second) == {"type": "stop"}
    assert (await next_json(first))["code"] == "replaced"
    await expect_closed(first, push_view.CLOSE_REPLACED)
    assert source.agent == "moved/1"
    await second.close()


# --- what an agent can make Home Assistant hold -------------------------------------------------


async def test_a_chunk_over_a_second_is_refused(
    client: TestClient, source: PushSource, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink) as task:
        assert await next_json(ws) == {"type": "start"}
        await ws.send_bytes(bytes(32000))  # 1 s: the most one message may hold
        await wait_for(lambda: len(sink.chunks) == 1)
        await ws.send_bytes(bytes(32002))  # 1.0000625 s
        error = await next_json(ws)
        assert error["code"] == "chunk_too_big"
        assert "1 s per chunk" in error["message"]
        await expect_closed(ws, push_view.CLOSE_CHUNK_TOO_BIG)
        with pytest.raises(Exception, match="disconnected"):
            await asyncio.wait_for(task, 2)
    assert len(sink.chunks) == 1
    assert "too big" in caplog.text


async def test_a_flood_is_taken_at_a_bounded_rate(
    client: TestClient, source: PushSource, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve seconds of audio at once: the burst at once, the rest at 1.5 × real time."""
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    sink = Recorder()
    async with running(source, sink):
        assert await next_json(ws) == {"type": "start"}
        started = time.monotonic()
        for _ in range(12):
            await ws.send_bytes(bytes(32000))  # a second of audio each
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - started
        taken = len(sink.chunks)  # seconds of audio delivered
        assert taken <= bounds.BURST_S + bounds.RATE_FACTOR * elapsed + 1
        await wait_for(lambda: len(sink.chunks) == 12, 10)  # nothing is lost, only paced
        assert time.monotonic() - started >= (12 - bounds.BURST_S - 1) / bounds.RATE_FACTOR
    await ws.close()
    assert caplog.text.count("sends faster than real time") == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"type": "format", "rate": ' + "[" * 200_000 + "]" * 200_000 + "}", "(at most 8192)"),
        ('{"type": "x", "p": [' + "0, " * 300_000 + "0]}", "(at most 8192)"),
        ('{"type": "format", "rate": 1e999, "width": 2, "channels": 1}', "must be integers"),
        ('{"type": "format", "rate": 10' + "0" * 5000 + ', "width": 2, "channels": 1}', "JSON"),
        ('{"type": "format", "rate": 16000, "width": 2, "channels": 1, "x": "\\ud800"}', ""),
        ("[1, 2, 3]", "JSON object"),
        ('{"type": 5}', "with a type"),
    ],
    ids=["deep-nesting", "huge", "inf", "huge-number", "lone-surrogate", "not-object", "bad-type"],
)
async def test_malformed_json_closes_that_agent_only(
    client: TestClient,
    source: PushSource,
    caplog: pytest.LogCaptureFixture,
    text: str,
    why: str,
) -> None:
    ws = await connect(client)
    assert await next_json(ws) == {"type": "stop"}
    await ws.send_str(text)
    if why == "":  # valid JSON (a lone surrogate escape is allowed): a usable format message
        await ws.send_bytes(bytes(32002))
        assert (await next_json(ws))["code"] == "chunk_too_big"
        await expect_closed(ws, push_view.CLOSE_CHUNK_TOO_BIG)
    else:
        error = await next_json(ws)
        assert error["code"] in ("bad_message", "bad_format")
        assert why in error["message"]
        await expect_closed(ws, (error["code"] == "bad_message" and 4400) or 4415)
    await wait_for(lambda: not source.connected)
    # The handler ended cleanly: no traceback, no heartbeat left to ping a closed socket.
    assert not [r for r in caplog.records if r.exc_info]
    honest = await connect(client)
    assert await next_json(honest) == {"type": "stop"}
    await honest.close()


async def test_a_key_that_is_not_text_is_refused_like_a_wrong_one(
    sources: dict[str, PushSource], client: TestClient, hass_access_token: str
) -> None:
    """Header bytes that are not UTF-8: a 403 like any wrong key, not a server error."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {URL} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {hass_access_token}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n".encode()
        + KEY_HEADER.encode()
        + b": \xff\xfekey\r\n\r\n"
    )
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status.split()[1] == b"403"


async def test_binary_flood_before_hello_is_bounded(
    client: TestClient, source: PushSource, use_timeouts: Callable[..., Timeouts]
) -> None:
    use_timeouts(hello_s=1.0)
    ws = await client.ws_connect(URL, headers={KEY_HEADER: KEY})
    started = time.monotonic()

    async def flood(ws: ClientWebSocketResponse) -> None:
        while not ws.closed:
            await ws.send_bytes(b"\0\0")
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood(ws))
    msg = await ws.receive(timeout=5)
    flooding.cancel()
    await asyncio.gather(flooding, return_exceptions=True)
    assert msg.type is WSMsgType.TEXT
    assert json.loads(msg.data)["code"] == "bad_message"  # no hello within the timeout
    elapsed = time.monotonic() - started
    assert source.ignored <= bounds.EVENT_BURST + bounds.EVENT_RATE * elapsed + 1
    await expect_closed(ws, 4400, 10)


async def test_a_megabyte_of_audio_before_hello_closes_the_agent(
    client: TestClient, source: PushSource, use_timeouts: Callable[..., Timeouts]
) -> None:
    use_timeouts(hello_s=60.0)
    ws = await client.ws_connect(URL, headers={KEY_HEADER: KEY})
    for _ in range(4):  # 4 × 300 kB: each message within bounds, together over 1 MiB
        if ws.closed:
            break
        await ws.send_bytes(bytes(300_000))
    reply = await next_json(ws, within=5)
    assert reply["code"] == "bad_message"
    assert "before its hello" in reply["message"]
    await expect_closed(ws, 4400, 5)


# --- a whole set-up ----------------------------------------------------------------------------


GARAGE_ID = "0123456789abcdef"
GARAGE_KEY = "garage-key-0123456789-abcdefghij"


async def test_push_satellite_alarm_during_a_takeover_attempt(
    hass: HomeAssistant, hass_client: Any, hass_read_only_access_token: str
) -> None:
    satellites = [
        satellite_subentry(
            "Garage mic",
            f"push:{GARAGE_ID}",
            source="push",
            push_id=GARAGE_ID,
            push_key=GARAGE_KEY,
        )
    ]
    await setup_entry(hass, make_entry(satellites=satellites))
    detections = async_capture_events(hass, EVENT_DETECTION)
    url = f"/api/guard_mode/push/{GARAGE_ID}"
    agent: TestClient = await hass_client()
    ws = await agent.ws_connect(url, headers={KEY_HEADER: GARAGE_KEY})
    await ws.send_json(HELLO)
    assert await next_json(ws) == {"type": "stop"}
    await arm(hass)
    assert await next_json(ws) == {"type": "start"}
    attacker: TestClient = await hass_client(access_token=hass_read_only_access_token)
    with pytest.raises(WSServerHandshakeError):
        await attacker.ws_connect(url)
    audio = pcm16(smoke_alarm_audio())
    for position in range(0, len(audio), 3200):
        await ws.send_bytes(audio[position : position + 3200])
        if detections:
            break
        await asyncio.sleep(0.02)
    await wait_for(lambda: bool(detections), limit=10)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert detections[0].data["satellite"] == "Garage mic"
    await arm(hass, False)
    await ws.close()


async def test_push_satellites_get_their_own_key_on_upgrade(
    hass: HomeAssistant, hass_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry from before keys: each push satellite gets one, shown once in a repair."""
    caplog.set_level(logging.DEBUG)
    satellites = [
        satellite_subentry("Garage mic", f"push:{GARAGE_ID}", source="push", push_id=GARAGE_ID)
    ]
    entry = await setup_entry(hass, make_entry(satellites=satellites, minor_version=1))
    assert entry.minor_version == 2
    subentry = next(iter(entry.subentries.values()))
    key = subentry.data[CONF_PUSH_KEY]
    assert len(key) >= 40
    issue_id = push.push_key_issue(subentry.subentry_id)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {"name": "Garage mic", "key": key}
    agent: TestClient = await hass_client()
    url = f"/api/guard_mode/push/{GARAGE_ID}"
    with pytest.raises(WSServerHandshakeError):  # the old agent, without the key
        await agent.ws_connect(url)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    ws = await agent.ws_connect(url, headers={KEY_HEADER: key})
    await ws.send_json(HELLO)
    assert await next_json(ws) == {"type": "stop"}
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None  # the agent has it
    await ws.close()
    assert key not in caplog.text


async def test_a_key_repair_of_a_satellite_removed_meanwhile_goes(hass: HomeAssistant) -> None:
    """Removed while Guard Mode was not loaded: its repair, which shows its key, goes too."""
    stale = push.push_key_issue("01GONE")
    ir.async_create_issue(
        hass,
        DOMAIN,
        stale,
        is_fixable=False,
        is_persistent=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key="push_key_created",
        translation_placeholders={"name": "Old mic", "key": "old-key"},
    )
    await setup_entry(hass, make_entry())
    assert ir.async_get(hass).async_get_issue(DOMAIN, stale) is None


async def test_the_key_repair_survives_a_restart(hass: HomeAssistant) -> None:
    """Restarting before the agent has its key must not lose the key's instructions."""
    satellites = [
        satellite_subentry("Garage mic", f"push:{GARAGE_ID}", source="push", push_id=GARAGE_ID)
    ]
    entry = await setup_entry(hass, make_entry(satellites=satellites, minor_version=1))
    subentry = next(iter(entry.subentries.values()))
    registry = ir.async_get(hass)
    await flush_store(registry._store)
    restarted = ir.IssueRegistry(hass)  # what Home Assistant reads from storage at its next start
    await restarted.async_load()
    issue = restarted.async_get_issue(DOMAIN, push.push_key_issue(subentry.subentry_id))
    assert issue is not None
    assert issue.active
    assert issue.translation_placeholders == {
        "name": "Garage mic",
        "key": subentry.data[CONF_PUSH_KEY],
    }


async def test_a_key_repair_goes_with_its_satellite(hass: HomeAssistant) -> None:
    satellites = [
        satellite_subentry("Garage mic", f"push:{GARAGE_ID}", source="push", push_id=GARAGE_ID)
    ]
    entry = await setup_entry(hass, make_entry(satellites=satellites, minor_version=1))
    subentry = next(iter(entry.subentries.values()))
    issue_id = push.push_key_issue(subentry.subentry_id)
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    assert hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None  # its key is shown no more


async def test_the_real_agent_exits_on_a_refused_key(
    hass: HomeAssistant,
    sources: dict[str, PushSource],
    aiohttp_client: Any,
    hass_access_token: str,
) -> None:
    server: TestClient = await aiohttp_client(hass.http.app)
    url = f"http://127.0.0.1:{server.port}"
    agent = await start_agent(url, hass_access_token, key="not-this-satellites-key")
    try:
        async with asyncio.timeout(15):
            await agent.proc.wait()
    finally:
        code = await agent.stop()
    assert code == 77, agent.log
    assert "refused this satellite's key" in agent.log
    assert "not-this-satellites-key" not in agent.log


async def test_a_push_satellite_is_created_with_its_own_key(
    hass: HomeAssistant, hass_client: Any
) -> None:
    entry = await setup_entry(hass, make_entry())
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "push"}
    )
    assert result["step_id"] == "push"
    push_id = result["description_placeholders"]["push_id"]
    key = result["description_placeholders"]["push_key"]
    assert len(key) >= 40
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Porch mic"}
    )
    await hass.async_block_till_done()
    subentry = next(iter(entry.subentries.values()))
    assert subentry.data[CONF_PUSH_KEY] == key
    # Each satellite gets its own key; reconfiguring shows it and keeps it.
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "push"}
    )
    assert result["description_placeholders"]["push_key"] != key
    result = await entry.start_subentry_reconfigure_flow(hass, subentry.subentry_id)
    assert key in result["description_placeholders"]["push_note"]
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Porch mic"}
    )
    await hass.async_block_till_done()
    assert entry.subentries[subentry.subentry_id].data[CONF_PUSH_KEY] == key
    agent: TestClient = await hass_client()
    ws = await agent.ws_connect(f"/api/guard_mode/push/{push_id}", headers={KEY_HEADER: key})
    await ws.send_json(HELLO)
    assert await next_json(ws) == {"type": "stop"}
    await ws.close()


async def test_a_broken_agent_that_keeps_retrying_is_logged_once(
    client: TestClient,
    source: PushSource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for _ in range(3):
        ws = await connect(client)
        assert await next_json(ws) == {"type": "stop"}
        await ws.send_str("{not json")
        assert (await next_json(ws))["code"] == "bad_message"
        await expect_closed(ws, 4400)
        await wait_for(lambda: not source.connected)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, warned
    assert "Kitchen" in warned[0].getMessage()
