"""What the tests share besides fixtures: Guard Mode entries, finding its parts, acting, waiting.

Test audio is made by ``tests/synth.py``; fixtures live in the ``conftest.py`` files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import timedelta
import threading
import time
from typing import Any

from homeassistant.config_entries import ConfigSubentryData
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.guard_mode.config_flow import GuardModeConfigFlow
from custom_components.guard_mode.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.guard_mode.engine.decider import DeciderEvent, Detection, EventKind
from custom_components.guard_mode.engine.labels import Sound
from custom_components.guard_mode.engine.tagger import Tagger, onnxruntime_available
from custom_components.guard_mode.satellite import Satellite
from custom_components.guard_mode.timeouts import Timeouts

SWITCH = "switch.guard_mode"
ENGINE_TOKEN = "remote-token-0123456789"  # the token of the engine_server fixture
# Stream sources give up in about a second instead of 5-10 s.
FAST_STREAM_TIMEOUTS = Timeouts(probe_s=3.0, stall_s=1.0, open_s=1.0)

# --- config entries ---------------------------------------------------------------------------


def make_entry(
    options: dict[str, Any] | None = None,
    satellites: Iterable[ConfigSubentryData] = (),
    minor_version: int = GuardModeConfigFlow.MINOR_VERSION,
    entry_id: str | None = None,
) -> MockConfigEntry:
    """Return a Guard Mode config entry as the config flow creates it, with satellites.

    An older minor_version makes an entry as an older Guard Mode saved it (it is migrated);
    entry_id fixes the id (otherwise new each time), as snapshots of unique ids need.
    """
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=entry_id,
        title="Guard Mode",
        unique_id=DOMAIN,
        version=GuardModeConfigFlow.VERSION,
        minor_version=minor_version,
        data={},
        options={**DEFAULT_OPTIONS, **(options or {})},
        subentries_data=tuple(satellites),
    )


def satellite_subentry(title: str, unique_id: str, **data: Any) -> ConfigSubentryData:
    """Return a satellite subentry as the satellite flow creates it."""
    return ConfigSubentryData(
        data=data, subentry_type="satellite", title=title, unique_id=unique_id
    )


def satellite_entry(port: int, **options: Any) -> MockConfigEntry:
    """An entry with one Wyoming satellite, "Kitchen mic", listening to 127.0.0.1:port."""
    kitchen = satellite_subentry(
        "Kitchen mic", f"wyoming:127.0.0.1:{port}", source="wyoming", host="127.0.0.1", port=port
    )
    return make_entry(options, [kitchen])


def push_satellite_entry(**options: Any) -> MockConfigEntry:
    """An entry with one push satellite, "Kitchen mic" (no audio until an agent connects)."""
    kitchen = satellite_subentry("Kitchen mic", "push:k1", source="push", push_id="k1")
    return make_entry(options, [kitchen])


def remote_options(port: int, **more: Any) -> dict[str, Any]:
    """The options of an entry that uses the engine service on loopback."""
    return {
        "engine": "remote",
        "engine_host": "127.0.0.1",
        "engine_port": port,
        "engine_token": ENGINE_TOKEN,
        **more,
    }


async def remote_engine_form(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, Any]:
    """Open entry's options, choose the remote engine; return its form (the next step)."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            "arming_mode": "manual",
            "always_listen_alarms": False,
            "evidence_clips": False,
            "engine": "remote",
        },
    )
    assert result["step_id"] == "remote_engine"
    return dict(result)


async def choose_remote_engine(
    hass: HomeAssistant, entry: MockConfigEntry, port: int, token: str = ENGINE_TOKEN
) -> dict[str, Any]:
    """Switch entry to the engine service at 127.0.0.1:port in its options flow; the result."""
    result = await remote_engine_form(hass, entry)
    return dict(
        await hass.config_entries.options.async_configure(
            result["flow_id"],
            {"engine_host": "127.0.0.1", "engine_port": port, "engine_token": token},
        )
    )


async def add_satellite(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str, answers: dict[str, Any]
) -> dict[str, Any]:
    """Add a satellite through its flow: Add satellite → kind → answers; the last result."""
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, "satellite"), context={"source": "user"}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {"next_step_id": kind}
    )
    return dict(await hass.config_entries.subentries.async_configure(result["flow_id"], answers))


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """Add entry to hass and set it up."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


# --- finding Guard Mode's parts ---------------------------------------------------------------


def state(hass: HomeAssistant, entity_id: str) -> str:
    """The state of an entity that must exist."""
    current = hass.states.get(entity_id)
    assert current is not None, entity_id
    return current.state


def entity_id(hass: HomeAssistant, platform: str, unique_id: str) -> str:
    """The entity id of Guard Mode's entity with this unique id."""
    found = er.async_get(hass).async_get_entity_id(platform, DOMAIN, unique_id)
    assert found is not None, unique_id
    return found


def the_satellite(hass: HomeAssistant) -> Satellite:
    """The only satellite of the only Guard Mode entry."""
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    return next(iter(entry.runtime_data.satellites.values()))


def device_id(hass: HomeAssistant, satellite: Satellite) -> str:
    """The id of the satellite's device (what a user picks in an action's form)."""
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, satellite.id), satellite.entry_id
    )
    assert device is not None
    return device.id


# --- acting as a user, or as the engine -------------------------------------------------------


async def arm(hass: HomeAssistant, on: bool = True) -> None:
    """Arm (or disarm) the guard with its switch."""
    await hass.services.async_call(
        "switch", "turn_on" if on else "turn_off", {"entity_id": SWITCH}, blocking=True
    )


async def simulate(hass: HomeAssistant, sound: str, confidence: float = 0.9) -> None:
    """Run the simulate action on the only satellite."""
    await hass.services.async_call(
        DOMAIN,
        "simulate",
        {
            "device_id": device_id(hass, the_satellite(hass)),
            "sound": sound,
            "confidence": confidence,
        },
        blocking=True,
    )


def hear(
    hass: HomeAssistant, sound: Sound, confidence: float = 0.9, peak_db: float = -20.0
) -> None:
    """What the engine reports when it hears a sound (a real, not simulated, alert)."""
    satellite = the_satellite(hass)
    detection = Detection(f"d-{sound}", sound, 1.0, 1.5, confidence, "heard", peak_db)
    satellite.alerts.async_handle(satellite, DeciderEvent(EventKind.ONSET, detection))


async def gathered(hass: HomeAssistant) -> None:
    """Let the gathering moment pass (alerts of one sound within 2 s are one notification)."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=3))
    await hass.async_block_till_done()


# --- waiting ----------------------------------------------------------------------------------


async def wait_for(condition: Callable[[], object], limit: float = 5.0) -> float:
    """Wait until condition holds (polled: there is no event to wait for); return how long."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def stream_threads() -> list[threading.Thread]:
    """The stream source's decoder threads that are running."""
    return [t for t in threading.enumerate() if t.name.startswith("guard_mode stream")]


async def wait_for_threads(limit: float) -> float:
    """Wait until no decoder thread is left; return how long that took."""
    return await wait_for(lambda: not stream_threads(), limit)


async def persistent_notifications(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator
) -> dict[str, dict[str, Any]]:
    """The persistent notifications Home Assistant shows, by id (as the frontend reads them)."""
    assert await async_setup_component(hass, "persistent_notification", {})
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "persistent_notification/get"})
    response = await client.receive_json()
    assert response["success"], response
    return {n["notification_id"]: n for n in response["result"]}


# --- the engine's files and backends ----------------------------------------------------------

needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime missing")
BACKENDS = ["numpy", pytest.param("onnxruntime", marks=needs_ort)]  # both, where they run


def zero_block(data: bytes) -> bytes:
    """Zero 4 KiB in the middle of a weights file: still loadable, wrong scores."""
    middle = len(data) // 2
    return data[:middle] + bytes(4096) + data[middle + 4096 :]


class BreakableTagger:
    """The real tagger, and a switch that makes every inference fail (a broken session)."""

    def __init__(self, inner: Tagger) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.model_path = inner.model_path
        self.broken = False

    def infer(self, patches: Any, *, embeddings: bool = False) -> Any:
        if self.broken:
            raise RuntimeError("the inference session is broken")
        return self.inner.infer(patches, embeddings=embeddings)
