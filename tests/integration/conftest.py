"""Fixtures for tests that run Guard Mode in Home Assistant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigSubentryData
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.guard_mode import engine_runtime
from custom_components.guard_mode.config_flow import GuardModeConfigFlow
from custom_components.guard_mode.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.guard_mode.engine import ClientTimeouts
from custom_components.guard_mode.engine.server import EngineServer, start_server
from custom_components.guard_mode.engine.tagger import load_tagger
from custom_components.guard_mode.remote import RemoteEngine


def make_entry(
    options: dict[str, Any] | None = None,
    satellites: Iterable[ConfigSubentryData] = (),
    minor_version: int = GuardModeConfigFlow.MINOR_VERSION,
) -> MockConfigEntry:
    """Return a Guard Mode config entry as the config flow creates it, with satellites.

    An older minor_version makes an entry as an older Guard Mode saved it (it is migrated).
    """
    return MockConfigEntry(
        domain=DOMAIN,
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


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """Add entry to hass and set it up."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


@pytest.fixture
def entry() -> MockConfigEntry:
    """Return a manual-mode Guard Mode entry (not yet added)."""
    return make_entry()


ENGINE_TOKEN = "remote-token-0123456789"


@pytest.fixture
async def engine_server() -> AsyncIterator[EngineServer]:
    """The engine service (the add-on) on loopback, with ENGINE_TOKEN."""
    server = EngineServer(load_tagger(), token=ENGINE_TOKEN)
    await start_server(server)
    yield server
    await server.stop()


@pytest.fixture
def remote_engine_timeouts(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Return a setter: the remote engine Guard Mode starts next gets these timeouts.

    ``repair_after_s`` and the :class:`ClientTimeouts` fields (seconds) are passed to its
    constructor, so that a test of outages needn't wait for the minute a user would.
    """

    def use(*, repair_after_s: float, **timeouts: float) -> None:
        factory = partial(
            RemoteEngine, timeouts=ClientTimeouts(**timeouts), repair_after_s=repair_after_s
        )
        monkeypatch.setattr(engine_runtime, "RemoteEngine", factory)

    return use
