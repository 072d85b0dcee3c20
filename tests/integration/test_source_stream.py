"""The stream source against real streams on loopback, decoded by real PyAV.

RTSP comes from a small RTSP server relaying what ``ffmpeg -f rtp`` encodes; HTTP streams are
ffmpeg's live output served by aiohttp. Timeouts are shortened so failures show in about a
second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import socket
import threading
import time

from homeassistant.config_entries import SubentryFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.audio import Pcm16
from custom_components.guard_mode.redact import redact_url
from custom_components.guard_mode.sources import stream as stream_module
from custom_components.guard_mode.sources.base import (
    AudioFormat,
    CannotConnect,
    NoAudio,
    NotAMicrophone,
    SourceError,
)
from custom_components.guard_mode.sources.stream import StreamSource

from ..helpers import (
    FAST_STREAM_TIMEOUTS,
    make_entry,
    satellite_subentry,
    setup_entry,
    state,
    stream_threads,
    wait_for,
    wait_for_threads,
)
from .stream_server import (
    FFMPEG,
    HttpStreamServer,
    RtspServer,
    SilentServer,
    closed_port,
    rtsp_in_thread,
)

pytestmark = pytest.mark.usefixtures("socket_enabled", "no_stream_thread_left")


@pytest.fixture
def decoders() -> None:
    """Skip unless PyAV decodes and the ffmpeg binary serves the test streams."""
    pytest.importorskip("av", reason="PyAV (av) is not installed")
    if FFMPEG is None:
        pytest.skip("the ffmpeg binary is needed to serve test streams")


@pytest.fixture
async def rtsp(decoders: None, tmp_path: Path) -> AsyncIterator[RtspServer]:
    server = await RtspServer().start(tmp_path / "stream.sdp")
    yield server
    await server.stop()


@pytest.fixture
async def http(decoders: None) -> AsyncIterator[HttpStreamServer]:
    server = await HttpStreamServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def silent(decoders: None) -> AsyncIterator[SilentServer]:
    server = await SilentServer().start()
    yield server
    await server.stop()


class Recorder:
    """A sink that checks it is called on the event loop and keeps what it gets."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, Pcm16]] = []
        self.loop_thread = threading.get_ident()
        self.got_audio = asyncio.Event()

    def __call__(self, pcm: Pcm16) -> None:
        assert threading.get_ident() == self.loop_thread, "sink called off the event loop"
        assert pcm.dtype == np.int16
        self.chunks.append((time.monotonic(), pcm))
        self.got_audio.set()

    def samples(self, since: float = 0.0) -> np.ndarray:
        return np.concatenate([pcm for at, pcm in self.chunks if at >= since]) / 32768


def stream_source(url: str) -> StreamSource:
    """Return the stream source of url; it gives up in about a second instead of 5-10 s."""
    return StreamSource(url, timeouts=FAST_STREAM_TIMEOUTS)


async def listen(source: StreamSource, seconds: float) -> Recorder:
    """Run the source for a while, then cancel it as a disarming satellite does."""
    sink = Recorder()
    task = asyncio.create_task(source.run(sink))
    await asyncio.sleep(seconds)
    assert not task.done(), task.exception() if task.done() else None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for_threads(1.0)
    return sink


def assert_tone(sink: Recorder, hz: float = 1000.0) -> None:
    audio = sink.samples()[-16000:]
    assert len(audio) == 16000
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak = np.argmax(spectrum) * 16000 / len(audio)
    assert abs(peak - hz) < 10
    assert 0.05 < np.sqrt(np.mean(audio**2)) < 0.5  # the tone's level survived (sine at -18 dBFS)


async def test_rtsp_probe_and_run(rtsp: RtspServer) -> None:
    source = stream_source(rtsp.url)
    assert await source.probe() == AudioFormat(48000, 2, 2)
    assert source.stats.source_format == "48000 Hz, 16-bit, stereo"

    sink = await listen(source, 3.0)
    assert_tone(sink)
    # Real time: after the first second, 16000 samples a second (within 10 %).
    first = sink.chunks[0][0]
    audio = sink.samples(since=first + 1.0)
    elapsed = sink.chunks[-1][0] - (first + 1.0)
    assert abs(len(audio) / elapsed / 16000 - 1) < 0.1
    assert source.stats.chunks == len(sink.chunks)
    assert source.stats.chunks_dropped == 0
    # The player asked for the audio track over TCP and hung up properly.
    assert any(request.startswith("TEARDOWN") for request in rtsp.requests)


@pytest.mark.usefixtures("decoders")
async def test_rtsp_camera_with_video_sets_up_audio_only(tmp_path: Path) -> None:
    server = await RtspServer(video=True).start(tmp_path / "stream.sdp")
    try:
        sink = await listen(stream_source(server.url), 2.0)
        assert_tone(sink)
        assert server.setups == [f"{server.url}/trackID=1"]  # the camera never sends video
    finally:
        await server.stop()


@pytest.mark.usefixtures("decoders")
async def test_rtsp_video_only_is_not_a_microphone(tmp_path: Path) -> None:
    server = await RtspServer(audio=False, video=True).start(tmp_path / "stream.sdp")
    try:
        with pytest.raises(NotAMicrophone, match="stream has no audio track") as err:
            await stream_source(server.url).probe()
        assert err.value.reason == "not_a_microphone"
    finally:
        await server.stop()


async def test_rtsp_camera_that_sends_no_audio(rtsp: RtspServer) -> None:
    """The SDP announces an audio track, but no packet ever comes (audio off in the camera)."""
    rtsp.paused = True
    start = time.monotonic()
    with pytest.raises(NoAudio) as err:
        await stream_source(rtsp.url).probe()
    assert time.monotonic() - start < 3.5
    assert err.value.reason == "no_audio"
    await wait_for_threads(1.0)


async def test_http_mp3(http: HttpStreamServer) -> None:
    source = stream_source(http.url("audio.mp3"))
    assert await source.probe() == AudioFormat(48000, 2, 1)
    assert_tone(await listen(source, 2.5))


async def test_http_mpegts_with_video_and_audio(http: HttpStreamServer) -> None:
    source = stream_source(http.url("av.ts"))
    assert await source.probe() == AudioFormat(48000, 2, 2)
    assert_tone(await listen(source, 2.0))


async def test_http_video_only_is_not_a_microphone(http: HttpStreamServer) -> None:
    with pytest.raises(NotAMicrophone, match="stream has no audio track"):
        await stream_source(http.url("video.ts")).probe()


@pytest.mark.parametrize(
    ("name", "error", "said"),
    [
        ("nothing.mp3", CannotConnect, "was not found \\(HTTP 404\\)"),
        ("locked.mp3", CannotConnect, "refused the user name or password \\(HTTP 401\\)"),
        ("forbidden.mp3", CannotConnect, "refused access \\(HTTP 403\\)"),
        ("index.html", NotAMicrophone, "is not an audio or video stream FFmpeg can read"),
    ],
)
async def test_http_refusals_say_what_is_wrong(
    http: HttpStreamServer, name: str, error: type[Exception], said: str
) -> None:
    """What a user typing a camera's URL is told: wrong password, no access, a web page."""
    with pytest.raises(error, match=said) as raised:
        await stream_source(http.url(name)).probe()
    reason = "cannot_connect" if error is CannotConnect else "not_a_microphone"
    assert raised.value.reason == reason  # what the flow's form shows


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
@pytest.mark.usefixtures("decoders")
async def test_closed_port_fails_at_once(scheme: str) -> None:
    source = stream_source(f"{scheme}://admin:hunter2@127.0.0.1:{closed_port()}/live")
    start = time.monotonic()
    with pytest.raises(CannotConnect, match="connection refused") as err:
        await source.probe()
    assert time.monotonic() - start < 1.0
    assert "hunter2" not in str(err.value)
    assert "127.0.0.1" not in str(err.value)
    assert f"{scheme}://***@***:" in str(err.value)
    with pytest.raises(CannotConnect):
        await source.run(Recorder())


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://nonexistent.invalid/audio.mp3", "host name is not known"),
        ("file:///etc/passwd", "not a stream URL"),
        ("not a url", "not a stream URL"),
    ],
)
@pytest.mark.usefixtures("decoders")
async def test_unusable_urls(url: str, match: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(host: str, *args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # FFmpeg resolves in C (for real); the check that explains its error goes through Python,
    # where Home Assistant's test plugin refuses DNS: answer as a resolver without the name.
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(CannotConnect, match=match):
        await stream_source(url).probe()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
async def test_silent_server_never_hangs(silent: SilentServer, scheme: str) -> None:
    source = stream_source(f"{scheme}://127.0.0.1:{silent.port}/live")
    start = time.monotonic()
    with pytest.raises((CannotConnect, NoAudio), match="did not answer within 1 s"):
        await source.probe()
    assert 0.9 < time.monotonic() - start < 2.0
    assert silent.connections == 1
    await wait_for_threads(1.0)


async def test_cancel_stops_the_thread_within_a_second(rtsp: RtspServer) -> None:
    sink = Recorder()
    task = asyncio.create_task(stream_source(rtsp.url).run(sink))
    await asyncio.wait_for(sink.got_audio.wait(), 3)
    assert len(stream_threads()) == 1
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 1.0
    assert await wait_for_threads(1.0) < 0.5
    delivered = len(sink.chunks)
    await asyncio.sleep(0.3)
    assert len(sink.chunks) == delivered  # nothing after the cancel
    assert rtsp.requests[-1].startswith("TEARDOWN")


async def test_cancel_while_the_server_is_silent(silent: SilentServer) -> None:
    """run() returns within a second; the thread ends when its read times out."""
    task = asyncio.create_task(
        stream_source(f"rtsp://127.0.0.1:{silent.port}/live").run(Recorder())
    )
    await asyncio.sleep(0.2)
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 1.0
    await wait_for_threads(1.5)


async def test_rtsp_server_dies_mid_stream(rtsp: RtspServer) -> None:
    sink = Recorder()
    task = asyncio.create_task(stream_source(rtsp.url).run(sink))
    await asyncio.wait_for(sink.got_audio.wait(), 3)
    rtsp.drop_clients()
    start = time.monotonic()
    with pytest.raises(SourceError):
        await asyncio.wait_for(task, 3)
    assert time.monotonic() - start < 1.5
    await wait_for_threads(1.0)


async def test_http_server_dies_mid_stream(http: HttpStreamServer) -> None:
    sink = Recorder()
    with pytest.raises(CannotConnect, match=r"ended the stream|failed"):
        await asyncio.wait_for(stream_source(http.url("audio.mp3?seconds=1")).run(sink), 5)
    assert sink.chunks
    await wait_for_threads(1.0)


async def test_stalled_stream_raises_no_audio(rtsp: RtspServer) -> None:
    sink = Recorder()
    task = asyncio.create_task(stream_source(rtsp.url).run(sink))
    await asyncio.wait_for(sink.got_audio.wait(), 3)
    rtsp.paused = True
    start = time.monotonic()
    with pytest.raises(NoAudio, match="sent nothing for 1 s"):
        await asyncio.wait_for(task, 3)
    assert 0.9 < time.monotonic() - start < 2.0
    await wait_for_threads(1.0)


@pytest.mark.usefixtures("decoders")
async def test_a_busy_loop_drops_chunks_instead_of_queueing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "MAX_IN_FLIGHT", 4)
    with rtsp_in_thread(tmp_path / "stream.sdp") as server:  # keeps streaming while we block
        source = stream_source(server.url)
        sink = Recorder()
        task = asyncio.create_task(source.run(sink))
        await asyncio.wait_for(sink.got_audio.wait(), 3)
        before = len(sink.chunks)
        # The point: the event loop is blocked and falls behind, until the decoder thread has
        # dropped 8 chunks (it makes one every 0.1 s).
        deadline = time.monotonic() + 10
        while source.stats.chunks_dropped < 8:
            assert time.monotonic() < deadline, "the decoder thread dropped nothing"
            time.sleep(0.01)  # noqa: ASYNC251
        await asyncio.sleep(0.05)
        assert len(sink.chunks) - before <= 4 + 1  # what was in flight, and maybe one since
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for_threads(1.0)


async def test_sink_errors_end_the_run(rtsp: RtspServer) -> None:
    def broken(pcm: Pcm16) -> None:
        raise ValueError("engine is gone")

    with pytest.raises(ValueError, match="engine is gone"):
        await asyncio.wait_for(stream_source(rtsp.url).run(broken), 3)
    await wait_for_threads(1.0)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://user:pass@cam/x", "rtsp://***@***/x"),
        ("rtsp://admin@192.168.1.5:554/Streaming/101", "rtsp://***@***:554/Streaming/101"),
        ("rtsp://cam.local:8554/front?video&audio", "rtsp://***:8554/front?***&***"),
        (
            "http://go2rtc:1984/api/stream.mp3?src=door&token=s3cret&x-amz-signature=abc",
            "http://***:1984/api/stream.mp3?src=***&token=***&x-amz-signature=***",
        ),
        (
            "https://u:p@cam/cgi?channel=1&user=admin&password=pw&api_key=k&auth=z",
            "https://***@***/cgi?channel=***&user=***&password=***&api_key=***&auth=***",
        ),
        ("rtsp://cam/user=admin_password=x_channel=1.sdp", "rtsp://***/***"),
        ("http://cam/audio.mp3", "http://***/audio.mp3"),
        ("http://[::1/x", "***"),
    ],
)
def test_logs_show_no_credential_and_no_host(url: str, redacted: str) -> None:
    assert redact_url(url, host=False) == redacted
    assert StreamSource(url).describe() == redacted


# --- in Home Assistant: the config flow probes the camera, an armed satellite listens to it


def camera_entry(url: str) -> MockConfigEntry:
    return make_entry(
        satellites=[satellite_subentry("Porch camera", f"stream:{url}", source="stream", url=url)]
    )


async def add_camera_through_the_flow(hass: HomeAssistant, url: str) -> SubentryFlowResult:
    entry = await setup_entry(hass, make_entry())
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": "stream"}
    )
    assert result["step_id"] == "stream"
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"name": "Porch camera", "url": url}
    )
    await hass.async_block_till_done()
    return result


@pytest.mark.usefixtures("fast_stream_timeouts")
async def test_flow_adds_a_camera(hass: HomeAssistant, rtsp: RtspServer) -> None:
    result = await add_camera_through_the_flow(hass, rtsp.url)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert any(request.startswith("PLAY") for request in rtsp.requests)  # probed first


@pytest.mark.usefixtures("decoders", "fast_stream_timeouts")
async def test_flow_says_a_video_only_camera_has_no_audio(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    server = await RtspServer(audio=False, video=True).start(tmp_path / "stream.sdp")
    try:
        result = await add_camera_through_the_flow(hass, server.url)
    finally:
        await server.stop()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_a_microphone"}
    placeholders = result["description_placeholders"]
    assert placeholders is not None
    assert "no audio track" in placeholders["detail"]


async def test_armed_satellite_listens_to_the_camera(hass: HomeAssistant, rtsp: RtspServer) -> None:
    entry = await setup_entry(hass, camera_entry(rtsp.url))
    subentry_id = next(iter(entry.subentries))
    connected = er.async_get(hass).async_get_entity_id(
        "binary_sensor", DOMAIN, f"{subentry_id}-connected"
    )
    assert connected is not None
    assert not stream_threads()  # disarmed: the camera's microphone stays closed

    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    satellite = entry.runtime_data.satellites[subentry_id]
    await wait_for(lambda: satellite.decision is not None and satellite.decision.windows >= 2, 5.0)
    assert state(hass, connected) == "on"

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.guard_mode"}, blocking=True
    )
    assert await wait_for_threads(1.0) < 1.0  # the decoder thread is gone within a second …
    # … and told the camera (the request may still be on its way to the server)
    await wait_for(lambda: rtsp.requests[-1].startswith("TEARDOWN"), 1.0)
    await hass.async_block_till_done()
    assert state(hass, connected) == "off"
