"""A voice satellite's microphone, streamed by Home Assistant's assist pipeline to Guard Mode.

Opening this source points the satellite's device at its Guard Mode pipeline
(:mod:`..voice_devices`); the pipeline then hands the device's stream (16 kHz mono 16-bit, as
the pipeline delivers it) to Guard Mode's listener entity (:mod:`..wake_word`), which passes it
here. Closing the source (guard mode stops listening, the satellite is removed) puts the device
back as it was; while Home Assistant stops it stays pointed, and Guard Mode picks it up again,
or puts it back, when it starts. Nothing is kept: each chunk goes to the satellite and is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
import logging

from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event

from ..const import DOMAIN
from ..engine import bounds
from ..engine.audio import PcmConverter
from ..timeouts import DEFAULT_TIMEOUTS, Timeouts
from .base import AudioFormat, AudioSink, AudioSource, NoAudio, check_format

_LOGGER = logging.getLogger(__name__)

RATE, WIDTH, CHANNELS = 16000, 2, 1  # what the assist pipeline hands a wake-word engine


class VoiceSource(AudioSource):
    """The stream a voice satellite's device sends Home Assistant's assist pipeline."""

    kind = "voice"

    def __init__(
        self, hass: HomeAssistant, entity_id: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        """Listen to the voice satellite entity_id (an assist_satellite entity)."""
        self.hass = hass
        self.timeouts = timeouts
        self.entity_id = entity_id
        self.satellite_id = ""  # its wake-word id: the satellite's id (set by the satellite)
        self.listener_unique_id = ""  # Guard Mode's listener entity (set by the satellite)
        self._sink: AudioSink | None = None
        self._stream: object | None = None  # the stream being received (the newest wins)
        self._arrived = asyncio.Event()
        self._back = asyncio.Event()  # the device is back: waiting to retry ends
        self._converter = PcmConverter()
        self.streams = 0  # pipeline runs that reached this satellite (diagnostics)
        self.dropped = 0  # chunks that arrived while Guard Mode wasn't listening

    def describe(self) -> str:
        """Return the voice satellite's entity id."""
        return f"voice satellite {self.entity_id}"

    async def probe(self) -> AudioFormat:
        """Check the entity is a voice satellite whose pipeline Home Assistant chooses.

        Its audio can't be waited for here: the device streams only once Guard Mode points it
        at its pipeline, while guard mode listens.
        """
        from ..voice_devices import find_selects  # noqa: PLC0415

        find_selects(self.hass, self.entity_id)
        return check_format(RATE, WIDTH, CHANNELS)

    async def run(self, sink: AudioSink) -> None:
        """Point the device at Guard Mode, hand its stream to sink; put it back when closed."""
        from ..voice_devices import async_voice_devices  # noqa: PLC0415

        devices = await async_voice_devices(self.hass)
        registry = er.async_get(self.hass)
        listener = registry.async_get_entity_id("wake_word", DOMAIN, self.listener_unique_id)
        if listener is None:
            raise NoAudio("Guard Mode's voice satellite listener entity is not set up yet")
        if (found := registry.async_get(listener)) is not None and found.disabled:
            raise NoAudio(  # the device's pipeline would fail on it for ever
                f"Guard Mode's voice satellite listener {listener} is disabled: enable it "
                "(Settings → Devices & services → Entities) for voice satellites to be heard"
            )
        self._sink = sink
        try:
            await devices.async_point(
                self.satellite_id,
                self.satellite,
                self.entity_id,
                listener,
                restart=self._stream is None,  # no run of the device reaches this source
            )
            while True:
                self._arrived.clear()
                try:
                    async with asyncio.timeout(self.timeouts.stall_s):
                        await self._arrived.wait()
                except TimeoutError:
                    raise NoAudio(
                        f"{self.describe()} sent no audio for {self.timeouts.stall_s:.0f} s "
                        "(is its device online and its wake word detected in Home Assistant?)"
                    ) from None
        except asyncio.CancelledError:
            self._let_go(sink)  # nothing more reaches the satellite while the device is put back
            await self._put_back()
            raise
        finally:
            self._let_go(sink)

    async def wait_before_retry(self, delay_s: float) -> None:
        """Wait before pointing the device again, no longer than until it is back.

        Back: its entities available again, or its stream arriving. Closed meanwhile, the
        device is put back.
        """
        self._back.clear()
        unsubscribe = async_track_state_change_event(self.hass, self._entities(), self._changed)
        try:
            async with asyncio.timeout(delay_s):
                await self._back.wait()
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            await self._put_back()
            raise
        finally:
            unsubscribe()

    def _entities(self) -> list[str]:
        """Return the voice satellite's entity and its device's selects and switch."""
        from ..voice_devices import NotAVoiceSatellite, find_selects  # noqa: PLC0415

        try:
            selects = find_selects(self.hass, self.entity_id)
        except NotAVoiceSatellite:
            return [self.entity_id]
        found = (selects.pipeline, selects.location, selects.wake_switch)
        return [self.entity_id, *(entity for entity in found if entity)]

    @callback
    def _changed(self, event: Event[EventStateChangedData]) -> None:
        state = event.data["new_state"]
        if state is not None and state.state not in (STATE_UNAVAILABLE, STATE_UNKNOWN):
            self._back.set()

    def _let_go(self, sink: AudioSink) -> None:
        """Stop handing audio to sink (a session armed again since has its own)."""
        if self._sink is sink:
            self._sink = None

    async def _put_back(self) -> None:
        """Put the device back as it was, unless Home Assistant is stopping (see the module)."""
        if self.hass.is_stopping:
            return
        from ..voice_devices import async_voice_devices  # noqa: PLC0415

        devices = await async_voice_devices(self.hass)
        restore = self.hass.async_create_task(
            devices.async_restore(self.satellite_id, self.satellite)
        )
        await asyncio.shield(restore)

    async def receive(self, stream: AsyncIterable[tuple[bytes, int]]) -> None:
        """Take one pipeline run's stream (the listener entity's); return when it should end.

        It ends when the stream does (putting the device back ends its run: Home Assistant
        invalidates it) or when a newer stream for this satellite arrives. Audio that arrives
        while Guard Mode doesn't listen is dropped unseen.
        """
        token = object()
        self._stream = token
        self.streams += 1
        budget = bounds.audio_budget()
        try:
            await self._receive(token, stream, budget)
        finally:
            if self._stream is token:
                self._stream = None

    async def _receive(
        self, token: object, stream: AsyncIterable[tuple[bytes, int]], budget: bounds.Budget
    ) -> None:
        async for chunk, _timestamp_ms in stream:
            if self._stream is not token:
                return
            if (sink := self._sink) is None:  # until Guard Mode puts the device back
                self.dropped += 1
                self._back.set()  # it streams: a wait to retry is over
                continue
            if problem := bounds.chunk_error(len(chunk), RATE, WIDTH, CHANNELS):
                _LOGGER.warning("Satellite %s: the pipeline sent %s", self.satellite, problem)
                return
            self._arrived.set()
            sink(self._converter.convert(chunk, RATE, WIDTH, CHANNELS))
            if wait := budget.spend(bounds.chunk_seconds(len(chunk), RATE, WIDTH, CHANNELS)):
                self.throttled(wait)
                await asyncio.sleep(wait)
