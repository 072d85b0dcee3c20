"""Evidence clips: off by default and then nothing touches the disk; on, clips land in media."""

from __future__ import annotations

import os
from pathlib import Path
import time
import wave

from homeassistant.components import media_source
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.clips import ClipJanitor, remove_old_clips
from custom_components.guard_mode.const import DOMAIN

from ..helpers import arm, satellite_entry, setup_entry, the_satellite, wait_for
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
def media_key() -> str:
    """The media folder's name: Home Assistant's "local", unless the user set media_dirs."""
    return "local"


@pytest.fixture
def media(hass: HomeAssistant, tmp_path: Path, media_key: str) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    hass.config.media_dirs = {media_key: str(folder)}
    hass.config.allowlist_external_dirs = {str(folder)}
    return folder


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_no_audio_is_written_when_clips_are_off(
    hass: HomeAssistant, alarm_mic: MicServer, media: Path, tmp_path: Path
) -> None:
    detections = async_capture_events(hass, EVENT_DETECTION)
    await setup_entry(hass, satellite_entry(alarm_mic.port))
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=15)
    satellite = the_satellite(hass)
    assert satellite.stream is not None
    assert satellite.recorder is None  # no pre-roll kept in memory either
    assert detections[0].data["clip"] is None
    await wait_for(lambda: alarm_mic.connections and satellite.decision.time_s > 20, 15)
    await arm(hass, False)
    await hass.async_block_till_done()
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".wav", ".part")]
    assert not files_under(media)


@pytest.mark.parametrize("media_key", ["local", "media"])  # media_dirs: {media: /media}
async def test_clips_when_on_are_in_the_media_browser(
    hass: HomeAssistant, alarm_mic: MicServer, media: Path, media_key: str
) -> None:
    assert await async_setup_component(hass, "media_source", {})
    detections = async_capture_events(hass, EVENT_DETECTION)
    await setup_entry(hass, satellite_entry(alarm_mic.port, evidence_clips=True))
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=15)
    clip_id = detections[0].data["clip"]
    assert clip_id.startswith(f"media-source://media_source/{media_key}/guard_mode/kitchen_mic/")
    clip = media / "guard_mode" / clip_id.split("/guard_mode/", 1)[1]
    await wait_for(clip.exists, limit=15)  # pre-roll + 5 s after the onset
    with wave.open(str(clip)) as wav:
        assert wav.getframerate() == 16000
        assert wav.getnchannels() == 1
        # Up to 5 s of pre-roll (here: what was heard since the microphone opened) + 5 s after.
        assert 5.5 <= wav.getnframes() / 16000 <= 10.01
        audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert np.abs(audio).max() > 0.1 * 32767  # the alarm itself is in the clip

    folder = await media_source.async_browse_media(
        hass, f"media-source://media_source/{media_key}/guard_mode/kitchen_mic"
    )
    assert [child.title for child in folder.children] == [clip.name]
    await arm(hass, False)


async def test_a_clip_for_each_alert_none_for_the_sound_heard_again_in_its_cooldown(
    hass: HomeAssistant, alarm_mic: MicServer, media: Path
) -> None:
    detections = async_capture_events(hass, EVENT_DETECTION)
    await setup_entry(hass, satellite_entry(alarm_mic.port, evidence_clips=True))
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=15)
    first = detections[0].data["detection_id"]
    last = the_satellite(hass).detections.last
    await wait_for(lambda: last["smoke_alarm"].detection_id != first, limit=30)  # the loop again
    assert len(detections) == 1  # heard again in its cooldown: no new alert ...
    assert last["smoke_alarm"].clip is None  # ... and no recording that nothing links to
    await arm(hass, False)
    await hass.async_block_till_done()
    await wait_for(lambda: [p for p in files_under(media) if p.suffix == ".wav"], limit=5)
    assert len(files_under(media)) == 1


def test_retention_removes_only_old_clips(tmp_path: Path) -> None:
    root = tmp_path / DOMAIN
    (root / "kitchen_mic").mkdir(parents=True)
    old = root / "kitchen_mic" / "old.wav"
    new = root / "kitchen_mic" / "new.wav"
    (root / "hall").mkdir()
    older = root / "hall" / "older.wav"
    for path in (old, new, older):
        path.write_bytes(b"RIFF")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    os.utime(older, (ten_days_ago, ten_days_ago))
    assert remove_old_clips(root, days=7) == (2, [])
    assert files_under(root) == [new]
    assert not (root / "hall").exists()  # emptied folders go too


def test_a_clip_that_cant_be_removed_keeps_none_of_the_others(tmp_path: Path) -> None:
    root = tmp_path / DOMAIN
    stuck = root / "attic" / "stuck.wav"  # unlink fails on it (as on a clip of another owner)
    (stuck / "inside").mkdir(parents=True)
    old = root / "kitchen_mic" / "old.wav"
    old.parent.mkdir()
    old.write_bytes(b"RIFF")
    ten_days_ago = time.time() - 10 * 86400
    for path in (stuck, old):
        os.utime(path, (ten_days_ago, ten_days_ago))
    removed, stuck = remove_old_clips(root, days=7)
    assert removed == 1
    assert not old.exists()
    assert [name.split(" ")[0] for name in stuck] == ["stuck.wav"]


async def test_a_stuck_clip_is_warned_about_once(
    hass: HomeAssistant, media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The clean-up runs every few hours: the same stuck clip is told once, not every time."""
    stuck = media / DOMAIN / "attic" / "stuck.wav"
    (stuck / "inside").mkdir(parents=True)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(stuck, (ten_days_ago, ten_days_ago))
    janitor = ClipJanitor(hass, 7)
    for _ in range(3):
        await janitor.async_run()
    assert caplog.text.count("Could not remove 1 old evidence clip(s)") == 1
    assert "stuck.wav" in caplog.text
