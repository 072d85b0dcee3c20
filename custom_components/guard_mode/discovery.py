"""What a discovered Wyoming service (``_wyoming._tcp.local.``) is: a microphone, or not.

Home Assistant's zeroconf discovery finds every Wyoming service: speech-to-text, wake word, voice
satellites, microphones. Guard Mode asks each one to describe itself and offers only the ones
that are a microphone: they list a mic program, or stream audio as soon as they are connected to
(as wyoming-mic-external does). A voice satellite is not offered: its microphone is in use by
the satellite, which needs a microphone service of its own to share it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import socket

from homeassistant.core import HomeAssistant
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import async_write_event
from wyoming.info import Describe, Info

from .engine import protocol
from .sources.base import CannotConnect, NotAMicrophone, SourceError
from .sources.wyoming import read_event

DESCRIBE_TIMEOUT_S = 5.0
MAX_EVENTS = 50  # events read while waiting for the description (audio may come first)
NAME_WAIT_S = 1.0  # once audio came, how long its description (its name) is waited for
RESOLVE_TIMEOUT_S = 2.0  # a satellite's host name, compared with a discovered address


class VoiceSatellite(SourceError):
    """A voice satellite: its microphone is the satellite's."""

    reason = "voice_satellite"


@dataclass(frozen=True, slots=True)
class DiscoveredMic:
    """A Wyoming microphone service: its name (when it tells one)."""

    name: str | None


async def async_identify(host: str, port: int) -> DiscoveredMic:
    """Return the microphone at host:port; raise SourceError when it isn't one (or is away)."""
    try:
        async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port, limit=protocol.MAX_HEADER)
    except (OSError, TimeoutError) as err:
        raise CannotConnect(f"cannot connect to tcp://{host}:{port}: {err}") from err
    streams = False  # audio came: a microphone; its description may still follow
    try:
        await async_write_event(Describe().event(), writer)
        async with asyncio.timeout(DESCRIBE_TIMEOUT_S) as deadline:
            for _ in range(MAX_EVENTS):
                if (event := await read_event(reader)) is None:
                    break
                if Info.is_type(event.type):
                    try:
                        info = Info.from_event(event)
                    except (KeyError, TypeError, ValueError, AttributeError) as err:
                        raise NotAMicrophone(
                            f"tcp://{host}:{port} sent a broken description"
                        ) from err
                    return _from_info(info, host, port, streams)
                if not streams and (
                    AudioStart.is_type(event.type) or AudioChunk.is_type(event.type)
                ):
                    streams = True
                    deadline.reschedule(asyncio.get_running_loop().time() + NAME_WAIT_S)
    except (OSError, TimeoutError) as err:
        if not streams:
            raise NotAMicrophone(f"tcp://{host}:{port} did not say what it is") from err
    finally:
        writer.close()
    if streams:
        return DiscoveredMic(None)  # a mic service that streams to whoever connects
    raise NotAMicrophone(f"tcp://{host}:{port} did not say what it is")


async def async_resolves_to(hass: HomeAssistant, host: str, addresses: set[str]) -> bool:
    """Return whether host (an address, or a name the user typed) is one of addresses."""
    if host in addresses:
        return True
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            found = await hass.loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError, TimeoutError:
        return False
    return any(str(info[4][0]) in addresses for info in found)


def _from_info(info: Info, host: str, port: int, streams: bool) -> DiscoveredMic:
    mics = [mic for mic in info.mic if mic.installed]
    if mics or streams:
        return DiscoveredMic(mics[0].name if mics else None)
    if info.satellite is not None:
        raise VoiceSatellite(f"tcp://{host}:{port} is a voice satellite")
    raise NotAMicrophone(f"tcp://{host}:{port} is a Wyoming service, not a microphone")
