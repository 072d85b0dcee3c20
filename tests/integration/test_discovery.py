"""Wyoming microphones found by zeroconf are offered as satellites the user confirms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_address
from typing import Any

from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_ZEROCONF
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import area_registry as ar, device_registry as dr
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from homeassistant.loader import async_get_zeroconf
import pytest
from wyoming.audio import AudioFormat
from wyoming.info import Attribution, Info, MicProgram, Satellite

from custom_components.guard_mode.const import DOMAIN

from .. import synth
from ..helpers import (
    arm,
    entity_id,
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

WYOMING = "_wyoming._tcp.local."
BY = Attribution(name="test", url="http://localhost")


def mic_info(name: str = "kitchen-mic") -> Info:
    return Info(
        mic=[
            MicProgram(
                name=name,
                attribution=BY,
                installed=True,
                description="a USB microphone",
                version="1",
                mic_format=AudioFormat(rate=16000, width=2, channels=1),
            )
        ]
    )


def service(port: int, name: str = "kitchen") -> ZeroconfServiceInfo:
    """What Home Assistant's zeroconf hands a flow for a Wyoming service on this machine."""
    return ZeroconfServiceInfo(
        ip_address=ip_address("127.0.0.1"),
        ip_addresses=[ip_address("127.0.0.1")],
        hostname="pi.local.",
        name=f"{name}.{WYOMING}",
        port=port,
        type=WYOMING,
        properties={},
    )


async def discover(hass: HomeAssistant, port: int, name: str = "kitchen") -> Any:
    return await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=service(port, name)
    )


@pytest.fixture
async def mic() -> AsyncIterator[MicServer]:
    server = await MicServer(
        audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), info=mic_info()
    ).start()
    yield server
    await server.stop()


async def test_home_assistant_sends_wyoming_services_to_guard_mode(hass: HomeAssistant) -> None:
    matchers = await async_get_zeroconf(hass)
    assert {"domain": DOMAIN} in matchers[WYOMING]


async def test_a_discovered_microphone_becomes_a_satellite_once_confirmed(
    hass: HomeAssistant, mic: MicServer
) -> None:
    entry = await setup_entry(hass, make_entry())
    kitchen = ar.async_get(hass).async_create("Kitchen")
    result = await discover(hass, mic.port)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"]["name"] == "kitchen-mic"  # as it describes itself
    assert not entry.subentries  # nothing happens until the user confirms

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"name": "Kitchen mic", "area": kitchen.id}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "satellite_added"
    subentry = next(iter(entry.subentries.values()))
    assert subentry.title == "Kitchen mic"
    assert subentry.data["zeroconf_name"] == "kitchen"
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, subentry.subentry_id), entry.entry_id
    )
    assert device is not None
    assert device.area_id == kitchen.id
    connected = entity_id(hass, "binary_sensor", f"{subentry.subentry_id}-connected")
    await arm(hass)
    await wait_for(lambda: state(hass, connected) == "on")

    result = await discover(hass, mic.port)  # announced again: nothing to offer
    assert result["reason"] == "already_a_satellite"


async def test_a_satellite_follows_its_microphone_to_a_new_address(
    hass: HomeAssistant, mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))  # added by hand
    result = await discover(hass, mic.port)
    assert result["reason"] == "already_a_satellite"  # … and now known by its service name
    subentry = next(iter(entry.subentries.values()))
    assert subentry.data["zeroconf_name"] == "kitchen"
    await hass.async_block_till_done()
    assert entry.runtime_data.satellites  # no reload for learning its name

    moved = await MicServer(
        audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), info=mic_info()
    ).start()
    try:
        await mic.stop()  # the Pi restarted the service on another port
        result = await discover(hass, moved.port)
        assert result["reason"] == "already_a_satellite"
        await hass.async_block_till_done()
        assert entry.subentries[subentry.subentry_id].data["port"] == moved.port
        await arm(hass)
        await wait_for(lambda: state(hass, "binary_sensor.kitchen_mic_connected") == "on")
        assert moved.clients == 1
    finally:
        await arm(hass, False)
        await moved.stop()


async def test_a_stale_satellite_at_a_moved_microphones_new_address_is_left_alone(
    hass: HomeAssistant, mic: MicServer
) -> None:
    """The garage's microphone is unplugged; the kitchen's now announces the garage's old
    address: the garage satellite must not start listening to the kitchen."""
    garage = satellite_subentry(
        "Garage mic",
        f"wyoming:127.0.0.1:{mic.port}",
        source="wyoming",
        host="127.0.0.1",
        port=mic.port,
        zeroconf_name="garage",
    )
    kitchen = satellite_subentry(
        "Kitchen mic",
        "wyoming:127.0.0.1:1",
        source="wyoming",
        host="127.0.0.1",
        port=1,
        zeroconf_name="kitchen",
    )
    entry = await setup_entry(hass, make_entry({}, [garage, kitchen]))
    before = {s.title: dict(s.data) for s in entry.subentries.values()}
    result = await discover(hass, mic.port, "kitchen")
    assert result["reason"] == "already_a_satellite"  # the address is the garage's satellite's
    await hass.async_block_till_done()
    assert {s.title: dict(s.data) for s in entry.subentries.values()} == before


async def test_a_microphone_added_by_host_name_is_known_at_its_address(
    hass: HomeAssistant, mic: MicServer
) -> None:
    by_name = satellite_subentry(
        "Kitchen mic",
        f"wyoming:localhost:{mic.port}",
        source="wyoming",
        host="localhost",
        port=mic.port,
    )
    entry = await setup_entry(hass, make_entry({}, [by_name]))
    result = await discover(hass, mic.port)  # announced at 127.0.0.1
    assert result["reason"] == "already_a_satellite"  # not offered a second time
    await hass.async_block_till_done()
    (subentry,) = entry.subentries.values()
    assert subentry.data["host"] == "localhost"  # the name the user typed stays
    assert subentry.data["zeroconf_name"] == "kitchen"


async def test_a_service_renamed_at_a_satellites_address_is_not_offered_again(
    hass: HomeAssistant, mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    await discover(hass, mic.port)  # known as "kitchen"
    result = await discover(hass, mic.port, "kitchen-2")  # its service renamed
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_a_satellite"
    assert len(entry.subentries) == 1


async def test_a_renamed_discovered_satellite_is_still_followed(
    hass: HomeAssistant, mic: MicServer
) -> None:
    entry = await setup_entry(hass, satellite_entry(mic.port))
    await discover(hass, mic.port)  # now known by its service name
    subentry = next(iter(entry.subentries.values()))
    result = await entry.start_subentry_reconfigure_flow(hass, subentry.subentry_id)
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Pantry mic", "host": "127.0.0.1", "port": mic.port}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.subentries[subentry.subentry_id].data["zeroconf_name"] == "kitchen"


async def test_discovery_before_the_hub_sets_guard_mode_up(
    hass: HomeAssistant, mic: MicServer
) -> None:
    result = await discover(hass, mic.port)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"name": "Kitchen mic"}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    assert entry.unique_id == DOMAIN
    assert [s.title for s in entry.subentries.values()] == ["Kitchen mic"]
    assert hass.states.get("switch.guard_mode") is not None
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    assert result["reason"] == "single_instance_allowed"  # still one hub


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        (
            {"behavior": "silent", "info": Info(satellite=Satellite("hall", BY, True, None, "1"))},
            "voice_satellite",
        ),
        ({"behavior": "asr"}, "not_a_microphone"),
        (None, "cannot_connect"),
    ],
    ids=["voice-satellite", "speech-to-text", "gone"],
)
async def test_only_microphones_are_offered(
    hass: HomeAssistant, server: dict[str, Any] | None, reason: str
) -> None:
    await setup_entry(hass, make_entry())
    other = await MicServer(**(server or {})).start()
    if server is None:
        await other.stop()
    try:
        result = await discover(hass, other.port, "hall")
    finally:
        await other.stop()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason
    assert not hass.config_entries.flow.async_progress()


async def test_an_ignored_microphone_stays_ignored(hass: HomeAssistant, mic: MicServer) -> None:
    await setup_entry(hass, make_entry())
    result = await discover(hass, mic.port)
    await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_IGNORE},
        data={"unique_id": "wyoming_mic:kitchen", "title": "kitchen-mic"},
    )
    await hass.async_block_till_done()
    assert not hass.config_entries.flow.async_progress()
    result = await discover(hass, mic.port)
    assert result["reason"] == "already_configured"
    assert len(hass.config_entries.async_loaded_entries(DOMAIN)) == 1


async def test_a_microphone_gone_before_it_is_confirmed(
    hass: HomeAssistant, mic: MicServer
) -> None:
    await setup_entry(hass, satellite_entry(mic.port))  # another microphone is a satellite
    other = await MicServer(
        audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5)), info=mic_info("hall-mic")
    ).start()
    result = await discover(hass, other.port, "hall")
    assert result["step_id"] == "zeroconf_confirm"
    await other.stop()  # unplugged while the user reads the form
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {"name": "Hall mic"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert "connection refused" in result["description_placeholders"]["detail"]


async def test_a_service_without_a_port_is_not_offered(hass: HomeAssistant) -> None:
    info = service(10600)
    info.port = None
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=info
    )
    assert result["reason"] == "not_a_microphone"


async def test_a_mic_that_only_streams_is_offered_under_its_service_name(
    hass: HomeAssistant,
) -> None:
    """wyoming-mic-external answers nothing: it streams to whoever connects."""
    await setup_entry(hass, make_entry())
    plain = await MicServer(audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5))).start()
    try:
        result = await discover(hass, plain.port, "porch-mic")
    finally:
        await plain.stop()
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"]["name"] == "porch-mic"


type Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def discover_odd_service(hass: HomeAssistant, handler: Handler) -> Any:
    """Discover a Wyoming service that handler plays; return the flow's result."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        return await discover(hass, server.sockets[0].getsockname()[1], "odd")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_service_with_a_broken_description_is_not_offered(hass: HomeAssistant) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"type": "info", "data": {"mic": ["not a program"]}}\n')
        await writer.drain()
        await reader.read()

    result = await discover_odd_service(hass, broken)
    assert result["reason"] == "not_a_microphone"


async def test_a_service_that_hangs_up_is_not_offered(hass: HomeAssistant) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    result = await discover_odd_service(hass, hang_up)
    assert result["reason"] == "not_a_microphone"
