"""Fixtures for tests that run Guard Mode in Home Assistant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
import sys
from typing import Any
from unittest.mock import PropertyMock, patch

from aiohttp.test_utils import TestClient
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.guard_mode.engine import ClientTimeouts, tagger
from custom_components.guard_mode.engine.server import EngineServer, start_server
from custom_components.guard_mode.engine.tagger import load_tagger
from custom_components.guard_mode.push_view import async_register_push_view
from custom_components.guard_mode.sources.push import PushSource
from custom_components.guard_mode.timeouts import DATA_TIMEOUTS, Timeouts, timeouts

from .. import synth
from ..helpers import ENGINE_TOKEN, FAST_STREAM_TIMEOUTS, make_entry, wait_for_threads
from ..synth import pcm16
from .push_client import KEY, PUSH_ID
from .wyoming_mic import MicServer


@pytest.fixture
def entry() -> MockConfigEntry:
    """Return a manual-mode Guard Mode entry (not yet added)."""
    return make_entry()


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Every entity is enabled, also those a user must enable first."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make `import onnxruntime` fail, as on musl where it has no wheels."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    tagger._onnxruntime.cache_clear()
    assert not tagger.onnxruntime_available()
    yield
    tagger._onnxruntime.cache_clear()


# --- the remote engine ------------------------------------------------------------------------


@pytest.fixture
async def engine_server() -> AsyncIterator[EngineServer]:
    """The engine service (the add-on) on loopback, with ENGINE_TOKEN."""
    server = EngineServer(load_tagger(), token=ENGINE_TOKEN)
    await start_server(server)
    yield server
    await server.stop()


@pytest.fixture
def use_timeouts(hass: HomeAssistant) -> Callable[..., Timeouts]:
    """Return a setter: Guard Mode in this hass waits these :class:`Timeouts` fields (seconds).

    Sources and the remote engine take theirs when they are made, the push view at each use;
    the fields not given keep what was set before (the defaults at first).
    """

    def use(**waits: Any) -> Timeouts:
        hass.data[DATA_TIMEOUTS] = replace(timeouts(hass), **waits)
        return hass.data[DATA_TIMEOUTS]

    return use


@pytest.fixture
def remote_engine_timeouts(use_timeouts: Callable[..., Timeouts]) -> Callable[..., None]:
    """Return a setter: the remote engine Guard Mode starts next gets these timeouts.

    ``repair_after_s`` and the :class:`ClientTimeouts` fields (seconds), so that a test of
    outages needn't wait for the minute a user would.
    """

    def use(*, repair_after_s: float, **client: float) -> None:
        use_timeouts(remote=ClientTimeouts(**client), remote_repair_after_s=repair_after_s)

    return use


# --- Wyoming satellites -----------------------------------------------------------------------


@pytest.fixture
def fast_timeouts(use_timeouts: Callable[..., Timeouts]) -> None:
    """Satellites reconnect and give up quickly, so tests take seconds, not minutes."""
    use_timeouts(backoff_start_s=0.05, backoff_max_s=0.2, probe_s=1.0, stall_s=1.0)


@pytest.fixture
async def mic() -> AsyncIterator[MicServer]:
    """A Wyoming mic service playing a 440 Hz tone."""
    server = await MicServer(audio=pcm16(synth.tone(440.0, 2.0, peak_db=-10.5))).start()
    yield server
    await server.stop()


@pytest.fixture
async def alarm_mic() -> AsyncIterator[MicServer]:
    """A Wyoming mic service playing a smoke alarm, then a quiet room, at 3× real time."""
    server = await MicServer(audio=pcm16(synth.smoke_alarm_audio()), speed=3.0).start()
    yield server
    await server.stop()


# --- stream (camera) satellites ---------------------------------------------------------------


@pytest.fixture
def fast_stream_timeouts(hass: HomeAssistant) -> None:
    """Stream sources Guard Mode makes give up in about a second instead of 5-10 s."""
    hass.data[DATA_TIMEOUTS] = FAST_STREAM_TIMEOUTS


@pytest.fixture
async def no_stream_thread_left() -> AsyncIterator[None]:
    """Every test ends with its decoder threads gone (they may still be exiting just now)."""
    yield
    await wait_for_threads(2.0)


# --- push satellites --------------------------------------------------------------------------


@pytest.fixture
def source() -> PushSource:
    """The kitchen's push source, not yet served."""
    source = PushSource(PUSH_ID, KEY)
    source.satellite = "Kitchen"
    return source


@pytest.fixture
async def sources(hass: HomeAssistant, source: PushSource) -> dict[str, PushSource]:
    """The push ids served by Home Assistant's http, registered as the push view's resolver."""
    assert await async_setup_component(hass, "http", {})
    served = {PUSH_ID: source}
    async_register_push_view(hass, served.get)
    return served


@pytest.fixture
async def client(sources: dict[str, PushSource], hass_client: Any) -> TestClient:
    """An authenticated client of Home Assistant's http, the push view served."""
    client: TestClient = await hass_client()
    return client
