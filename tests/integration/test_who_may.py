"""Who may change the guard, and what a bad request gets: real Home Assistant, real users.

Actions that change the guard (simulate, analyze_file, mark_false_alarm, forget_learned, teach)
are admin actions; a read-only or a plain user gets Home Assistant's "unauthorized". Bad paths,
silent teaching examples, long satellite names with clips on and what diagnostics show of a
satellite that can't be reached are here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
from pathlib import Path

from homeassistant.auth.models import User
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError, Unauthorized
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.guard_mode.alerts import EVENT_DETECTION
from custom_components.guard_mode.clips import MAX_SLUG, clips_root
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.diagnostics import async_get_config_entry_diagnostics
from custom_components.guard_mode.timeouts import Timeouts
from tests import synth

from ..helpers import (
    arm,
    device_id,
    make_entry,
    satellite_entry,
    satellite_subentry,
    setup_entry,
    the_satellite,
    wait_for,
)
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled", "fast_timeouts")


@pytest.fixture
async def plain_user(hass: HomeAssistant) -> User:
    """A user who is neither admin nor read-only (the default group for new users)."""
    return await hass.auth.async_create_user("Plain", group_ids=["system-users"])


async def test_guard_changing_actions_are_admin_only(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tmp_path: Path,
    hass_read_only_user: User,
    hass_admin_user: User,
    plain_user: User,
) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    device = device_id(hass, the_satellite(hass))
    media = tmp_path / "media"
    media.mkdir()
    hass.config.allowlist_external_dirs = {str(media)}
    wav = str(synth.write_wav(media / "bell.wav", synth.chime()))
    calls = {
        "simulate": {"device_id": device, "sound": "glass_break"},
        "analyze_file": {"path": wav},
        "mark_false_alarm": {"detection_id": "abc-1"},
        "forget_learned": {},
        "teach": {"name": "Bell", "satellites": [device], "files": [wav, wav, wav]},
    }
    detections = async_capture_events(hass, EVENT_DETECTION)
    for user in (hass_read_only_user, plain_user):
        for service, data in calls.items():
            with pytest.raises(Unauthorized):
                await hass.services.async_call(
                    DOMAIN,
                    service,
                    data,
                    blocking=True,
                    context=Context(user_id=user.id),
                    return_response=service == "analyze_file",
                )
    assert detections == []  # nothing was simulated
    assert entry.runtime_data.learning.summary()["custom_sounds"] == {}
    # What only reads may be called by anyone; admins may do the rest.
    await hass.services.async_call(
        DOMAIN,
        "list_learned",
        {},
        blocking=True,
        context=Context(user_id=hass_read_only_user.id),
        return_response=True,
    )
    await hass.services.async_call(
        DOMAIN,
        "simulate",
        calls["simulate"],
        blocking=True,
        context=Context(user_id=hass_admin_user.id),
    )
    assert len(detections) == 1


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/media/a\0b.wav", "control character"),
        ("/media/line\nbreak.wav", "control character"),
        ("relative/file.wav", "full path"),
        ("/" + "x" * 5000, "1 to 4096 characters"),
    ],
    ids=["nul", "newline", "relative", "too-long"],
)
async def test_analyze_file_refuses_bad_paths_clearly(
    hass: HomeAssistant, path: str, why: str
) -> None:
    await setup_entry(hass, make_entry())
    with pytest.raises(ServiceValidationError, match=why) as err:
        await hass.services.async_call(
            DOMAIN, "analyze_file", {"path": path}, blocking=True, return_response=True
        )
    assert "\0" not in str(err.value)
    assert "\n" not in str(err.value)


async def test_teach_refuses_silent_and_steady_examples(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tmp_path: Path,
) -> None:
    entry = await setup_entry(hass, satellite_entry(alarm_mic.port))
    device = device_id(hass, the_satellite(hass))
    media = tmp_path / "media"
    media.mkdir()
    hass.config.allowlist_external_dirs = {str(media)}
    silent = [str(synth.write_wav(media / f"silent_{n}.wav", synth.silence(2.0))) for n in range(3)]
    with pytest.raises(ServiceValidationError, match=r"silent_0\.wav is silent") as err:
        await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Hush", "satellites": [device], "files": silent},
            blocking=True,
        )
    assert "-55 dBFS" in str(err.value)
    hum = [
        str(synth.write_wav(media / f"hum_{n}.wav", synth.tone(120.0 + n, 4.0, -20.0)))
        for n in range(3)
    ]
    with pytest.raises(ServiceValidationError, match=r"hum_0\.wav holds no sound that stands out"):
        await hass.services.async_call(
            DOMAIN,
            "teach",
            {"name": "Hum", "satellites": [device], "files": hum},
            blocking=True,
        )
    assert entry.runtime_data.learning.summary()["custom_sounds"] == {}


async def test_a_long_satellite_name_gets_a_bounded_clip(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tmp_path: Path,
) -> None:
    name = "Kitchen ü/../" + "ø" * 150 + " mic\n" + "x" * 150  # 300+ characters
    hass.config.media_dirs = {"local": str(tmp_path / "media")}
    satellites = [
        satellite_subentry(name, "long", source="wyoming", host="127.0.0.1", port=alarm_mic.port)
    ]
    await setup_entry(hass, make_entry({"evidence_clips": True}, satellites))
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    clip = detections[0].data["clip"]
    assert clip is not None
    relative = clip.split(f"/{DOMAIN}/", 1)[1]
    folder, _ = relative.split("/")
    assert len(folder) <= MAX_SLUG
    assert ".." not in relative
    path = clips_root(hass) / relative
    await wait_for(path.exists, limit=20)  # the clip the event names is written
    await arm(hass, False)


async def test_an_unwritable_clip_folder_means_no_clip_until_it_is_fixed(
    hass: HomeAssistant,
    alarm_mic: MicServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocked = tmp_path / "media"
    blocked.write_text("a file where the media folder should be")
    hass.config.media_dirs = {"local": str(blocked)}
    await setup_entry(hass, satellite_entry(alarm_mic.port, evidence_clips=True))
    satellite = the_satellite(hass)
    detections = async_capture_events(hass, EVENT_DETECTION)
    await arm(hass)
    await wait_for(lambda: satellite.clips_failing is not None, limit=10)
    await wait_for(lambda: bool(detections), limit=20)
    assert detections[0].data["clip"] is None  # the event says: no clip
    await arm(hass, False)
    assert caplog.text.count("evidence clips can't be written") == 1

    blocked.unlink()  # the user makes room for the media folder: clips come back by themselves
    blocked.mkdir()
    await arm(hass)
    await wait_for(lambda: satellite.clips_failing is None, limit=10)
    assert "evidence clips are written again" in caplog.text
    # An alarm heard before that look at the folder finished still says "no clip"; the next
    # session's alerts have one.
    await arm(hass, False)
    detections.clear()
    await arm(hass)
    await wait_for(lambda: bool(detections), limit=20)
    clip = detections[0].data["clip"]
    assert clip is not None
    await wait_for((clips_root(hass) / clip.split(f"/{DOMAIN}/", 1)[1]).exists, limit=20)
    await arm(hass, False)


async def test_diagnostics_show_no_push_id_and_no_resolved_address(
    hass: HomeAssistant, unused_tcp_port: int, use_timeouts: Callable[..., Timeouts]
) -> None:
    use_timeouts(stall_s=0.5)  # "no agent connected" comes at once
    push_id, key = "c0ffee-push-id-4b1d", "push-key-0123456789-abcdefghijkl"
    satellites = [
        satellite_subentry(
            "Hall agent", "push", source="push", push_id=push_id, push_key=key
        ),  # no agent connects
        satellite_subentry(
            "Shed mic", "wyoming", source="wyoming", host="localhost", port=unused_tcp_port
        ),
    ]
    entry = await setup_entry(hass, make_entry({}, satellites))
    await arm(hass)
    hall, shed = entry.runtime_data.satellites.values()
    await wait_for(lambda: hall.state.last_error is not None, limit=15)
    await wait_for(lambda: shed.state.last_error is not None, limit=15)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    await arm(hass, False)
    dumped = json.dumps(diagnostics)
    for secret in (push_id, key, "localhost", "127.0.0.1", "::1"):
        assert secret not in dumped, secret
    assert "connection refused" in (shed.state.last_error or "")
    await asyncio.sleep(0)
