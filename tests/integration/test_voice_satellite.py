"""Voice satellites as guard microphones, through Home Assistant's own assist pipeline.

The devices are stand-ins that behave like an ESPHome voice device in Home Assistant: an Assist
satellite entity that, while its "Wake word engine location" select says "In Home Assistant",
streams its microphone into a pipeline run that starts with the wake word (and starts a new run
whenever one ends, as the firmware does), the pipeline select of assist_pipeline, and the
location select. The pipeline, its wake-word stage and Guard Mode's listener entity are Home
Assistant's real assist_pipeline and wake_word components.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from homeassistant.components import wake_word
from homeassistant.components.assist_pipeline import (
    AssistPipelineSelect,
    PipelineEvent,
    PipelineEventType,
)
from homeassistant.components.assist_pipeline.models import PipelineStage
from homeassistant.components.assist_pipeline.runtime import KEY_ASSIST_PIPELINE
from homeassistant.components.assist_satellite import (
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
)
from homeassistant.components.select import SelectEntity
from homeassistant.components.stt import (
    AudioBitRates,
    AudioChannels,
    AudioCodecs,
    AudioFormats,
    AudioSampleRates,
    SpeechMetadata,
    SpeechResult,
    SpeechResultState,
    SpeechToTextEntity,
)
from homeassistant.components.switch import SwitchEntity
from homeassistant.components.wake_word import DetectionResult, WakeWord, WakeWordDetectionEntity
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics
from custom_components.guard_mode.voice_devices import (
    DATA_VOICE_DEVICES,
    LOCATION_IN_HA,
    pipeline_name,
)
from scripts.tools.demo_scenario import Scenario

from ..helpers import arm, make_entry, remote_options, satellite_subentry, setup_entry, wait_for
from ..synth import pcm16, smoke_alarm_audio
from .ha_devices import Voice, async_add_devices

ON_DEVICE = "On device"
ASSISTANT = "Hall assistant"  # the user's own pipeline
CHUNK = 3200  # 100 ms of 16 kHz mono 16-bit
SILENCE = bytes(CHUNK)


class Nabu(WakeWordDetectionEntity):
    """The user's own wake-word engine (openWakeWord, say): counts what it hears, never wakes."""

    _attr_name = "Nabu"
    _attr_unique_id = "nabu"

    def __init__(self) -> None:
        self.heard = 0  # bytes

    async def get_supported_wake_words(self) -> list[WakeWord]:
        return [WakeWord(id="okay_nabu", name="Okay Nabu")]

    async def _async_process_audio_stream(
        self, stream: Any, wake_word_id: str | None
    ) -> DetectionResult | None:
        async for chunk, _ in stream:
            self.heard += len(chunk)
        return None


class Ears(SpeechToTextEntity):
    """A speech-to-text engine: a pipeline that starts with a wake word must have one."""

    _attr_name = "Ears"
    _attr_unique_id = "ears"
    supported_languages: ClassVar = ["en"]
    supported_formats: ClassVar = [AudioFormats.WAV]
    supported_codecs: ClassVar = [AudioCodecs.PCM]
    supported_bit_rates: ClassVar = [AudioBitRates.BITRATE_16]
    supported_sample_rates: ClassVar = [AudioSampleRates.SAMPLERATE_16000]
    supported_channels: ClassVar = [AudioChannels.CHANNEL_MONO]

    async def async_process_audio_stream(
        self, metadata: SpeechMetadata, stream: Any
    ) -> SpeechResult:
        return SpeechResult("", SpeechResultState.ERROR)


class VoiceDevice:
    """An ESPHome voice device as Home Assistant shows it: satellite, pipeline and location.

    With a wake-word switch instead of a location select, it is an Atom Echo style device:
    it streams to Home Assistant while its "Use wake word" switch is on.
    """

    def __init__(
        self, hass: HomeAssistant, name: str, uid: str, location: str, *, switch: bool = False
    ) -> None:
        info = DeviceInfo(identifiers={("test", uid)}, name=name)
        self.hass = hass
        self.uid = uid
        self.mic: asyncio.Queue[bytes] = asyncio.Queue()
        self.runs: list[str] = []  # the pipeline (name) of each run the device started
        self.errors: list[str] = []
        self.satellite = DeviceSatellite(self, name, info)
        self.pipeline = DevicePipelineSelect(hass, uid, info)
        self.location: LocationSelect | WakeWordSwitch = (
            WakeWordSwitch(self, location == LOCATION_IN_HA, info)
            if switch
            else LocationSelect(self, location, info)
        )
        self._streaming: asyncio.Task[None] | None = None

    @property
    def entities(self) -> list[Any]:
        return [self.satellite, self.pipeline, self.location]

    @property
    def streams(self) -> bool:
        if isinstance(self.location, WakeWordSwitch):
            return bool(self.location.is_on)
        return self.location.current_option == LOCATION_IN_HA

    def follow_location(self) -> None:
        """Stream to Home Assistant while the location says so (the firmware's on_value)."""
        if self.streams and self._streaming is None:
            self._streaming = self.hass.async_create_background_task(
                self._stream(), f"{self.uid} streams"
            )
        elif not self.streams and self._streaming is not None:
            self._streaming.cancel()
            self._streaming = None

    async def _stream(self) -> None:
        """Run pipelines from the wake word, one after the other (continuous mode)."""
        while True:
            self.runs.append(self.pipeline.current_option or "")
            await self.satellite.async_accept_pipeline_from_satellite(
                self._microphone(), start_stage=PipelineStage.WAKE_WORD
            )
            await asyncio.sleep(0.05)

    async def _microphone(self) -> AsyncIterator[bytes]:
        """What the microphone hears: what was played to it, else a quiet room, in real time."""
        while True:
            try:
                yield await asyncio.wait_for(self.mic.get(), 0.1)
            except TimeoutError:
                yield SILENCE

    def play(self, audio: bytes) -> None:
        for position in range(0, len(audio), CHUNK):
            self.mic.put_nowait(audio[position : position + CHUNK])

    async def stop(self) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
            self._streaming = None


class DeviceSatellite(AssistSatelliteEntity):
    """The device's Assist satellite entity (esphome's: pipeline from the device's select)."""

    def __init__(self, device: VoiceDevice, name: str, info: DeviceInfo) -> None:
        self.device = device
        self._attr_name = name
        self._attr_unique_id = f"{device.uid}-assist_satellite"
        self._attr_device_info = info

    @property
    def pipeline_entity_id(self) -> str | None:
        return er.async_get(self.hass).async_get_entity_id(
            "select", "test", f"{self.device.uid}-pipeline"
        )

    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        return AssistSatelliteConfiguration([], [], 1)

    async def async_set_configuration(self, config: AssistSatelliteConfiguration) -> None:
        return None

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        if event.type is PipelineEventType.ERROR and event.data:
            self.device.errors.append(event.data["code"])


class DevicePipelineSelect(AssistPipelineSelect):
    """The device's "Assistant" select (assist_pipeline's, as the esphome one is)."""

    def __init__(self, hass: HomeAssistant, uid: str, info: DeviceInfo) -> None:
        super().__init__(hass, "test", uid)
        self._attr_device_info = info
        self._attr_name = f"{uid} assistant"


class LocationSelect(SelectEntity):
    """The firmware's "Wake word engine location" select."""

    _attr_options: ClassVar = [LOCATION_IN_HA, ON_DEVICE]

    def __init__(self, device: VoiceDevice, location: str, info: DeviceInfo) -> None:
        self.device = device
        self._attr_current_option = location
        self._attr_name = f"{device.uid} wake word engine location"
        self._attr_unique_id = f"{device.uid}-wake_word_engine_location"
        self._attr_device_info = info

    async def async_select_option(self, option: str) -> None:
        self._attr_current_option = option
        self.async_write_ha_state()
        self.device.follow_location()


class WakeWordSwitch(SwitchEntity):
    """The "Use wake word" switch of Atom Echo style firmware."""

    def __init__(self, device: VoiceDevice, on: bool, info: DeviceInfo) -> None:
        self.device = device
        self._attr_is_on = on
        self._attr_name = "Use wake word"
        self._attr_unique_id = f"{device.uid}-use_wake_word"
        self._attr_device_info = info

    async def async_turn_on(self, **kwargs: Any) -> None:
        self._attr_is_on = True
        self.async_write_ha_state()
        self.device.follow_location()

    async def async_turn_off(self, **kwargs: Any) -> None:
        self._attr_is_on = False
        self.async_write_ha_state()
        self.device.follow_location()


class Home:
    """Home Assistant with its assist pipeline, a user's assistant and two voice devices."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.hass = hass
        self.nabu = Nabu()

    async def start(self) -> None:
        hass = self.hass
        assert await async_setup_component(hass, "homeassistant", {})  # conversation needs it
        assert await async_setup_component(hass, "assist_pipeline", {})
        # The hall device detects its wake word itself; the kitchen one streams to Nabu.
        self.hall = VoiceDevice(hass, "Hall voice", "hall", ON_DEVICE)
        self.kitchen = VoiceDevice(hass, "Kitchen voice", "kitchen", LOCATION_IN_HA)
        await async_add_devices(
            hass,
            self.nabu,
            Ears(),
            Voice("Piper"),
            *self.hall.entities,
            *self.kitchen.entities,
        )
        store = hass.data[KEY_ASSIST_PIPELINE].pipeline_store
        assistant = await store.async_create_item(
            {
                "conversation_engine": "conversation.home_assistant",
                "conversation_language": "en",
                "language": "en",
                "name": ASSISTANT,
                "stt_engine": "stt.ears",
                "stt_language": "en",
                "tts_engine": "tts.piper",
                "tts_language": "en",
                "tts_voice": None,
                "wake_word_entity": "wake_word.nabu",
                "wake_word_id": "okay_nabu",
            }
        )
        store.async_set_preferred_item(assistant.id)  # the kitchen one uses "preferred"
        await self.choose(self.hall.pipeline.entity_id, ASSISTANT)
        self.hall.follow_location()  # the devices connect
        self.kitchen.follow_location()
        await hass.async_block_till_done()

    async def choose(self, entity_id: str | None, option: str) -> None:
        await self.hass.services.async_call(
            "select", "select_option", {"entity_id": entity_id, "option": option}, blocking=True
        )

    def selects(self, device: VoiceDevice) -> tuple[str, str]:
        pipeline = self.hass.states.get(device.pipeline.entity_id or "")
        location = self.hass.states.get(device.location.entity_id or "")
        assert pipeline is not None
        assert location is not None
        return pipeline.state, location.state

    def guard_pipelines(self) -> list[str]:
        store = self.hass.data[KEY_ASSIST_PIPELINE].pipeline_store
        return sorted(p.name for p in store.async_items() if p.name.startswith("Guard Mode"))

    async def stop(self) -> None:
        await self.hall.stop()
        await self.kitchen.stop()


@pytest.fixture
async def home(hass: HomeAssistant) -> AsyncIterator[Home]:
    home = Home(hass)
    await home.start()
    yield home
    await home.stop()


def voice_subentry(name: str, entity_id: str) -> Any:
    return satellite_subentry(name, f"voice:{entity_id}", source="voice", voice_satellite=entity_id)


HALL, KITCHEN = "assist_satellite.hall_voice", "assist_satellite.kitchen_voice"


def voice_entry(**options: Any) -> MockConfigEntry:
    return make_entry(
        options=options,
        satellites=[voice_subentry("Hall mic", HALL), voice_subentry("Kitchen mic", KITCHEN)],
    )


def satellite_of(entry: MockConfigEntry, name: str) -> Any:
    return next(s for s in entry.runtime_data.satellites.values() if s.name == name)


def connected(hass: HomeAssistant, satellite: Any) -> bool:
    entity_id = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{satellite.id}-connected"
    )
    state = hass.states.get(entity_id or "")
    return state is not None and state.state == "on"


async def hall_streaming(hass: HomeAssistant) -> tuple[MockConfigEntry, Any]:
    """Set up both voice satellites, arm, and wait until the hall's device streams to its own."""
    entry = await setup_entry(hass, voice_entry())
    await arm(hass)
    hall = satellite_of(entry, "Hall mic")
    await wait_for(lambda: connected(hass, hall))
    return entry, hall


async def stopped_while_armed(hass: HomeAssistant) -> MockConfigEntry:
    """Arm the voice satellites, then Home Assistant stops (or crashes): devices stay pointed."""
    entry = await setup_entry(hass, voice_entry())
    await arm(hass)
    await wait_for(lambda: connected(hass, satellite_of(entry, "Hall mic")))
    hass.set_state(CoreState.stopping)
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.set_state(CoreState.running)
    return entry


def saved_armed(hass_storage: dict[str, Any], armed: bool) -> None:
    """Leave the armed state in .storage as Guard Mode saves it (writes wait while stopping)."""
    hass_storage["guard_mode.state"] = {
        "version": 1,
        "minor_version": 1,
        "key": "guard_mode.state",
        "data": {"armed": armed, "source": "manual", "followed_verdict": None},
    }


def excerpt(scenario: Scenario, t0: float, t1: float) -> bytes:
    return scenario.pcm[int(t0 * scenario.rate) * 2 : int(t1 * scenario.rate) * 2]


async def test_two_devices_stream_the_scenario_each_to_its_own_satellite(
    hass: HomeAssistant, home: Home, scenario: Scenario
) -> None:
    entry = await setup_entry(hass, voice_entry())
    hall, kitchen = satellite_of(entry, "Hall mic"), satellite_of(entry, "Kitchen mic")
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: connected(hass, hall) and connected(hass, kitchen))

    # The same moments of the living room, heard at the same time by both devices: the window
    # breaking (104 s) by the hall, the smoke alarm (112 s) by the kitchen.
    home.hall.play(excerpt(scenario, 98, 110))
    home.kitchen.play(excerpt(scenario, 110, 128))
    await wait_for(
        lambda: {e.data["satellite"] for e in detections} >= {"Hall mic", "Kitchen mic"}, 60
    )
    heard = {(e.data["satellite"], e.data["sound"]) for e in detections}
    assert ("Hall mic", "glass_break") in heard
    assert ("Kitchen mic", "smoke_alarm") in heard
    assert ("Hall mic", "smoke_alarm") not in heard  # each stream reached its own satellite
    assert ("Kitchen mic", "glass_break") not in heard


async def test_two_satellites_named_alike_each_hear_their_own_device(
    hass: HomeAssistant, home: Home
) -> None:
    both = [voice_subentry("Living room", entity) for entity in (HALL, KITCHEN)]
    entry = await setup_entry(hass, make_entry(satellites=both))
    satellites = list(entry.runtime_data.satellites.values())
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: all(connected(hass, satellite) for satellite in satellites))
    name = pipeline_name("Living room")
    assert home.guard_pipelines() == [name, f"{name} (2)"]  # one each
    kitchen = next(s for s in satellites if s.source.entity_id.endswith("kitchen_voice"))
    home.kitchen.play(pcm16(smoke_alarm_audio()[: 16000 * 12]))
    await wait_for(lambda: bool(detections), 30)
    assert {e.data["satellite_id"] for e in detections} == {kitchen.id}
    await arm(hass, False)
    await wait_for(lambda: home.guard_pipelines() == [])


async def test_arming_points_the_devices_at_guard_mode_and_disarming_puts_them_back(
    hass: HomeAssistant, home: Home
) -> None:
    before = {"hall": home.selects(home.hall), "kitchen": home.selects(home.kitchen)}
    assert before == {"hall": (ASSISTANT, ON_DEVICE), "kitchen": ("preferred", LOCATION_IN_HA)}
    await wait_for(lambda: home.nabu.heard > 0)  # the kitchen device streams to its wake word
    entry = await setup_entry(hass, voice_entry())
    hall, kitchen = satellite_of(entry, "Hall mic"), satellite_of(entry, "Kitchen mic")
    assert home.guard_pipelines() == []  # nothing changes while disarmed

    await arm(hass)
    await wait_for(lambda: connected(hass, hall) and connected(hass, kitchen))
    assert home.selects(home.hall) == (pipeline_name("Hall mic"), LOCATION_IN_HA)
    assert home.selects(home.kitchen) == (pipeline_name("Kitchen mic"), LOCATION_IN_HA)
    assert home.guard_pipelines() == [pipeline_name("Hall mic"), pipeline_name("Kitchen mic")]
    # The kitchen's run on its own pipeline was ended at once, as an edited pipeline's is.
    assert home.kitchen.runs[-1] == pipeline_name("Kitchen mic")
    assert "wake_word_detection_aborted" in home.kitchen.errors
    listener = hass.states.get("wake_word.guard_mode_voice_satellite_listener")
    assert listener is not None
    assert listener.state == "unknown"
    nabu_heard = home.nabu.heard
    assert hall.stream is not None
    heard_s = hall.stream.stats.seconds_in
    home.hall.play(pcm16(smoke_alarm_audio()[: 16000 * 5]))
    await wait_for(lambda: hall.stream is not None and hall.stream.stats.seconds_in > heard_s + 0.5)
    assert home.nabu.heard == nabu_heard  # its own wake word engine hears nothing while armed

    await arm(hass, False)
    await wait_for(
        lambda: (
            (home.selects(home.kitchen), home.selects(home.hall))
            == (before["kitchen"], before["hall"])
        )
    )
    assert home.guard_pipelines() == []
    assert not hall.state.listening
    assert not kitchen.state.listening
    await wait_for(lambda: home.kitchen.runs[-1] == "preferred")  # a voice assistant again
    await wait_for(lambda: home.nabu.heard > nabu_heard)
    dropped = kitchen.source.dropped
    nabu_heard = home.nabu.heard
    await wait_for(lambda: home.nabu.heard >= nabu_heard + 8000)  # 0.25 s more streamed ...
    assert kitchen.source.dropped == dropped  # ... and Guard Mode's listener receives nothing


async def test_a_restart_while_armed_keeps_them_and_disarming_then_puts_them_back(
    hass: HomeAssistant, home: Home, hass_storage: dict[str, Any]
) -> None:
    before = home.selects(home.hall)
    entry = await stopped_while_armed(hass)
    assert home.selects(home.hall) == (pipeline_name("Hall mic"), LOCATION_IN_HA)
    saved = hass_storage["guard_mode.voice_devices"]["data"]
    assert set(saved) == {s.subentry_id for s in entry.subentries.values()}
    saved_armed(hass_storage, True)  # as the hub saves it a second after arming

    assert await hass.config_entries.async_setup(entry.entry_id)  # started again, still armed
    await hass.async_block_till_done()
    hall = satellite_of(entry, "Hall mic")
    await wait_for(lambda: connected(hass, hall))
    assert home.guard_pipelines() == [pipeline_name("Hall mic"), pipeline_name("Kitchen mic")]

    await arm(hass, False)
    await wait_for(
        lambda: (
            home.selects(home.hall) == before
            and home.selects(home.kitchen) == ("preferred", LOCATION_IN_HA)
        )
    )
    assert home.guard_pipelines() == []


async def test_started_disarmed_after_a_crash_while_armed_puts_the_devices_back(
    hass: HomeAssistant, home: Home, hass_storage: dict[str, Any]
) -> None:
    before = home.selects(home.hall)
    entry = await stopped_while_armed(hass)
    saved_armed(hass_storage, False)  # the crash came before the armed state was saved

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: home.selects(home.hall) == before)
    assert home.selects(home.kitchen) == ("preferred", LOCATION_IN_HA)
    assert home.guard_pipelines() == []


async def test_devices_are_put_back_when_set_up_fails(
    hass: HomeAssistant, home: Home, hass_storage: dict[str, Any]
) -> None:
    """A restart while armed, then set-up fails (a newer version's state, after a downgrade):
    the devices must not stay pointed at a Guard Mode that doesn't run."""
    before = home.selects(home.hall)
    entry = await stopped_while_armed(hass)
    hass_storage["guard_mode.state"] = {"version": 99, "key": "guard_mode.state", "data": {}}

    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert home.selects(home.hall) == before
    assert home.selects(home.kitchen) == ("preferred", LOCATION_IN_HA)
    assert home.guard_pipelines() == []


async def test_a_damaged_put_back_record_loses_only_that_device(
    hass: HomeAssistant,
    home: Home,
    hass_storage: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = home.selects(home.hall)
    entry = await stopped_while_armed(hass)
    saved_armed(hass_storage, False)
    saved = hass_storage["guard_mode.voice_devices"]["data"]
    kitchen_id = next(s.subentry_id for s in entry.subentries.values() if s.title == "Kitchen mic")
    del saved[kitchen_id]["pipeline_select"]  # a half-written file
    del hass.data[DATA_VOICE_DEVICES]  # read again from .storage, as after a restart

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: home.selects(home.hall) == before)  # the other one is put back
    assert caplog.text.count("What 1 voice device(s) had before") == 1
    # The kitchen still names Guard Mode's pipeline: the next arming starts it afresh, and
    # disarming gives it the preferred pipeline, not Guard Mode's old one, for good.
    await arm(hass)
    await wait_for(lambda: connected(hass, satellite_of(entry, "Kitchen mic")))
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.kitchen) == ("preferred", LOCATION_IN_HA))
    assert home.guard_pipelines() == []


@pytest.mark.usefixtures("socket_enabled")  # the remote engine is tried (and not there)
async def test_devices_are_put_back_while_guard_mode_can_not_start(
    hass: HomeAssistant, home: Home, hass_storage: dict[str, Any]
) -> None:
    """A restart while armed, and then the remote engine is gone: the devices must not stay
    pointed at a Guard Mode that can't listen (their voice assistant would not work)."""
    before = home.selects(home.hall)
    entry = await stopped_while_armed(hass)
    saved_armed(hass_storage, True)
    hass.config_entries.async_update_entry(
        entry,
        options={**entry.options, **remote_options(1)},  # nothing listens on port 1
    )

    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    await wait_for(lambda: home.selects(home.hall) == before)
    assert home.guard_pipelines() == []


async def test_always_listen_for_alarms_keeps_the_devices_pointed_while_disarmed(
    hass: HomeAssistant, home: Home
) -> None:
    entry = await setup_entry(hass, voice_entry(always_listen_alarms=True))
    hall = satellite_of(entry, "Hall mic")
    detections = async_capture_events(hass, EVENT_DETECTION)
    await wait_for(lambda: connected(hass, hall))
    assert home.selects(home.hall) == (pipeline_name("Hall mic"), LOCATION_IN_HA)
    home.hall.play(pcm16(smoke_alarm_audio()))
    await wait_for(lambda: bool(detections), 30)
    assert detections[0].data["sound"] == "smoke_alarm"
    assert detections[0].data["satellite"] == "Hall mic"


async def test_removing_a_voice_satellite_puts_its_device_back(
    hass: HomeAssistant, home: Home
) -> None:
    before = home.selects(home.hall)
    entry, hall = await hall_streaming(hass)
    assert hass.config_entries.async_remove_subentry(entry, hall.id)
    await wait_for(lambda: home.selects(home.hall) == before)
    assert home.guard_pipelines() == [pipeline_name("Kitchen mic")]


async def test_a_device_offline_when_disarmed_is_put_back_when_it_comes_online(
    hass: HomeAssistant, home: Home
) -> None:
    before = home.selects(home.hall)
    await hall_streaming(hass)
    await home.hall.stop()  # unplugged: its entities are unavailable
    home.hall.pipeline._attr_available = False
    home.hall.pipeline.async_write_ha_state()
    await arm(hass, False)
    await hass.async_block_till_done()
    assert pipeline_name("Hall mic") in home.guard_pipelines()  # it can't be put back yet
    assert home.selects(home.kitchen) == ("preferred", LOCATION_IN_HA)  # the other one is

    home.hall.pipeline._attr_available = True  # plugged in again
    home.hall.pipeline.async_write_ha_state()
    await wait_for(lambda: home.selects(home.hall) == before)
    await wait_for(lambda: home.guard_pipelines() == [])


async def test_a_device_gone_quiet_is_put_back_when_disarmed_while_reconnecting(
    hass: HomeAssistant, home: Home, use_timeouts: Callable[..., Any]
) -> None:
    """Disarmed while the satellite waits to try its silent device again: it is put back."""
    use_timeouts(stall_s=1.0, backoff_start_s=60.0, backoff_max_s=60.0)
    before = home.selects(home.hall)
    _, hall = await hall_streaming(hass)
    await home.hall.stop()  # its stream stops (Wi-Fi gone); the satellite waits a minute
    await wait_for(lambda: hall.state.reconnects >= 1)
    assert home.selects(home.hall)[0] == pipeline_name("Hall mic")  # armed: still pointed
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.hall) == before)
    await wait_for(lambda: home.guard_pipelines() == [])


def set_online(device: VoiceDevice, online: bool) -> None:
    """The device connects or drops: its own location select goes with it (its assistant select
    is Home Assistant's and stays available)."""
    device.location._attr_available = online
    device.location.async_write_ha_state()


async def test_a_device_offline_when_armed_is_pointed_when_back_and_put_back_as_it_was(
    hass: HomeAssistant, home: Home, use_timeouts: Callable[..., Any]
) -> None:
    use_timeouts(stall_s=1.0, backoff_start_s=30.0, backoff_max_s=30.0)
    before = home.selects(home.hall)
    set_online(home.hall, False)
    entry = await setup_entry(hass, voice_entry())
    await arm(hass)
    hall = satellite_of(entry, "Hall mic")
    await wait_for(lambda: hall.state.reconnects >= 1)  # it can't be pointed while offline
    assert home.selects(home.hall)[0] == before[0]
    set_online(home.hall, True)  # back (rebooted): heard at once, not after the 30 s backoff
    await wait_for(lambda: connected(hass, hall), limit=10.0)
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.hall) == before)  # its wake word on the device again


async def test_a_device_offline_when_disarmed_gets_its_wake_word_back_when_it_returns(
    hass: HomeAssistant, home: Home
) -> None:
    before = home.selects(home.hall)
    await hall_streaming(hass)
    set_online(home.hall, False)
    await arm(hass, False)
    await hass.async_block_till_done()
    assert pipeline_name("Hall mic") in home.guard_pipelines()  # waiting for the device
    set_online(home.hall, True)
    await wait_for(lambda: home.selects(home.hall) == before)
    await wait_for(lambda: home.guard_pipelines() == [])


async def test_a_satellite_moved_to_another_device_puts_both_back(
    hass: HomeAssistant, home: Home
) -> None:
    """The hall's device dies while armed; the user gives its satellite the kitchen's device."""
    before = {"hall": home.selects(home.hall), "kitchen": home.selects(home.kitchen)}
    entry = await setup_entry(hass, make_entry(satellites=[voice_subentry("Hall mic", HALL)]))
    await arm(hass)
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await wait_for(lambda: connected(hass, satellite))
    set_online(home.hall, False)
    subentry = next(iter(entry.subentries.values()))
    hass.config_entries.async_update_subentry(
        entry, subentry, data={**subentry.data, "voice_satellite": KITCHEN}, unique_id=KITCHEN
    )
    await hass.async_block_till_done()
    satellite = next(iter(entry.runtime_data.satellites.values()))
    await wait_for(lambda: connected(hass, satellite))  # the kitchen's device streams to it
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.kitchen) == before["kitchen"])
    set_online(home.hall, True)  # the hall's device is back: it gets its own assistant back
    await wait_for(lambda: home.selects(home.hall) == before["hall"])
    await wait_for(lambda: home.guard_pipelines() == [])


async def test_a_device_whose_entities_are_renamed_while_armed_is_put_back(
    hass: HomeAssistant, home: Home
) -> None:
    before = home.selects(home.hall)
    await hall_streaming(hass)
    registry = er.async_get(hass)
    for entity in (home.hall.pipeline, home.hall.location):  # the user renames them
        assert entity.entity_id is not None
        registry.async_update_entity(entity.entity_id, new_entity_id=f"{entity.entity_id}_2")
    await hass.async_block_till_done()
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.hall) == before)


async def test_a_renamed_voice_satellite_entity_is_followed_while_armed(
    hass: HomeAssistant, home: Home
) -> None:
    before = home.selects(home.hall)
    entry, hall = await hall_streaming(hass)
    renamed = f"{HALL}_2"
    er.async_get(hass).async_update_entity(HALL, new_entity_id=renamed)
    await hass.async_block_till_done()
    subentry = next(s for s in entry.subentries.values() if s.title == "Hall mic")
    assert subentry.data["voice_satellite"] == renamed
    assert subentry.unique_id == f"voice:{renamed}"
    hall = satellite_of(entry, "Hall mic")
    await wait_for(lambda: connected(hass, hall))  # it streams from the renamed entity's device
    await arm(hass, False)
    await wait_for(lambda: home.selects(home.hall) == before)


async def test_a_disabled_listener_entity_is_named_as_the_reason(
    hass: HomeAssistant, home: Home
) -> None:
    entry = await setup_entry(hass, voice_entry())
    registry = er.async_get(hass)
    listener = registry.async_get_entity_id("wake_word", DOMAIN, f"{entry.entry_id}-voice_listener")
    assert listener is not None
    registry.async_update_entity(listener, disabled_by=er.RegistryEntryDisabler.USER)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await arm(hass)
    hall = satellite_of(entry, "Hall mic")
    await wait_for(lambda: hall.state.last_error is not None)
    assert f"{listener} is disabled" in hall.state.last_error
    await arm(hass, False)


async def test_add_a_voice_satellite_in_the_ui(hass: HomeAssistant, home: Home) -> None:
    entry = await setup_entry(hass, make_entry())
    hass.states.async_set("assist_satellite.no_device", "idle")
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    assert "voice" in result["menu_options"]
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "voice"}
    )
    assert result["type"] is FlowResultType.FORM
    # Not a voice satellite: an entity whose device has no assistant select.
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "", "voice_satellite": "assist_satellite.no_device"}
    )
    assert result["errors"] == {"base": "not_a_voice_satellite"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "", "voice_satellite": "assist_satellite.hall_voice"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    (subentry,) = entry.subentries.values()
    assert subentry.title == "Hall voice"
    assert subentry.data == {"source": "voice", "voice_satellite": "assist_satellite.hall_voice"}


async def test_an_atom_echo_style_device_is_switched_on_and_back_off(
    hass: HomeAssistant, home: Home
) -> None:
    """A device with a "Use wake word" switch (push-to-talk while it is off)."""
    echo = VoiceDevice(hass, "Echo", "echo", ON_DEVICE, switch=True)
    await async_add_devices(hass, *echo.entities)
    await home.choose(echo.pipeline.entity_id, ASSISTANT)
    switch = echo.location.entity_id or ""
    entry = await setup_entry(
        hass,
        make_entry(
            satellites=[
                satellite_subentry(
                    "Echo mic",
                    "voice:assist_satellite.echo",
                    source="voice",
                    voice_satellite="assist_satellite.echo",
                )
            ]
        ),
    )
    await arm(hass)
    await wait_for(lambda: connected(hass, satellite_of(entry, "Echo mic")))
    assert hass.states.get(switch).state == "on"
    assert echo.runs[-1] == pipeline_name("Echo mic")
    (shown,) = (await async_get_config_entry_diagnostics(hass, entry))["satellites"]
    assert shown["voice"]["device"]["wake_switch_state"] == "off"  # what it gets back
    assert shown["voice"]["streams"] >= 1
    await arm(hass, False)
    await wait_for(lambda: hass.states.get(switch).state == "off")
    assert hass.states.get(echo.pipeline.entity_id or "").state == ASSISTANT
    await echo.stop()


async def test_the_listener_names_one_wake_word_per_voice_satellite(
    hass: HomeAssistant, home: Home, hass_ws_client: Any
) -> None:
    """What the pipeline editor shows for Guard Mode's listener: a 'wake word' per satellite."""
    entry = await setup_entry(hass, voice_entry())
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "wake_word/info", "entity_id": "wake_word.guard_mode_voice_satellite_listener"}
    )
    result = (await client.receive_json())["result"]
    assert sorted((w["id"], w["name"]) for w in result["wake_words"]) == sorted(
        (s.subentry_id, pipeline_name(s.title)) for s in entry.subentries.values()
    )


async def test_a_pipeline_pointed_at_the_listener_by_hand_is_drained_unseen(
    hass: HomeAssistant, home: Home
) -> None:
    """A stream for no Guard Mode satellite (a removed one): read to its end, never detected."""
    await setup_entry(hass, voice_entry())
    listener = wake_word.async_get_wake_word_detection_entity(
        hass, "wake_word.guard_mode_voice_satellite_listener"
    )
    assert listener is not None
    sent = 0

    async def microphone() -> AsyncIterator[tuple[bytes, int]]:
        nonlocal sent
        for chunk in range(20):
            sent += 1
            yield pcm16(smoke_alarm_audio()[chunk * 1600 : (chunk + 1) * 1600]), chunk * 100

    assert await listener.async_process_audio_stream(microphone(), "removed-satellite") is None
    assert sent == 20  # drained, so that the device doesn't retry in a loop
