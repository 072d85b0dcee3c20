"""A camera entity's microphone, through the stream source Home Assistant has for the camera.

The user picks a ``camera`` entity; at every connection Guard Mode asks Home Assistant for that
camera's stream source (``camera.async_get_stream_source``: what the camera integration, or the
go2rtc restream it points at, serves) and decodes its audio like any stream URL. The URL, which
often carries the camera's password, is never stored in Guard Mode's settings and never shown:
the camera is named by its entity id in logs, errors and diagnostics.
"""

from __future__ import annotations

import asyncio

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from ..timeouts import DEFAULT_TIMEOUTS, Timeouts
from .base import AudioFormat, AudioSink, CannotConnect, SourceError
from .stream import StreamSource


class NoCameraStream(SourceError):
    """The camera gives Home Assistant no stream (e.g. it only streams WebRTC to browsers)."""

    reason = "camera_no_stream"


class CameraSource(StreamSource):
    """The audio of a camera entity's stream."""

    def __init__(
        self, hass: HomeAssistant, entity_id: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        """Listen to the camera entity_id (its stream source is asked for at each connection)."""
        super().__init__("", timeouts=timeouts)
        self.hass = hass
        self.entity_id = entity_id

    def describe(self) -> str:
        """Return the camera's entity id (never its stream URL)."""
        return f"camera {self.entity_id}"

    async def _resolve(self) -> None:
        from homeassistant.components.camera import async_get_stream_source  # noqa: PLC0415

        try:
            async with asyncio.timeout(self.timeouts.open_s):
                url = await async_get_stream_source(self.hass, self.entity_id)
        except HomeAssistantError as err:  # not found, off, or no camera integration
            raise CannotConnect(f"{self.describe()} can't be used: {err}") from err
        except TimeoutError as err:
            raise CannotConnect(f"{self.describe()} did not tell its stream in time") from err
        except Exception as err:  # the camera's integration failed to tell it
            raise CannotConnect(f"{self.describe()} could not tell its stream: {err}") from err
        if not url:
            raise NoCameraStream(
                f"{self.describe()} gives Home Assistant no stream to share; "
                "enter the camera's stream URL instead"
            )
        self.url = url

    async def probe(self) -> AudioFormat:
        """Ask Home Assistant for the camera's stream, then wait for its audio."""
        await self._resolve()
        return await super().probe()

    async def run(self, sink: AudioSink) -> None:
        """Ask Home Assistant for the camera's stream (it may have changed), then stream it."""
        await self._resolve()
        await super().run(sink)
