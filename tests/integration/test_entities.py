"""What Home Assistant shows of one satellite and the hub: entities, their states, the device.

The ids are fixed so that unique ids compare, and the backend is numpy (as on Home Assistant OS)
where onnxruntime would be used elsewhere; nothing else in these snapshots varies by machine (the
mic's port is in no entity or device).
"""

from __future__ import annotations

from unittest.mock import patch

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.guard_mode import PLATFORMS

from ..helpers import make_entry, satellite_subentry, setup_entry
from .wyoming_mic import MicServer

pytestmark = pytest.mark.usefixtures("socket_enabled")

ENTRY_ID = "01JGUARDMODE0000000000HOME"
KITCHEN_ID = "01JGUARDMODE00000000KITCHEN"


def kitchen_entry(port: int) -> MockConfigEntry:
    """Guard Mode with one Wyoming satellite, "Kitchen mic", its ids fixed."""
    kitchen = satellite_subentry(
        "Kitchen mic", f"wyoming:127.0.0.1:{port}", source="wyoming", host="127.0.0.1", port=port
    )
    return make_entry(None, [kitchen | {"subentry_id": KITCHEN_ID}], entry_id=ENTRY_ID)


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "no_onnxruntime")
# wake_word: its entity is for voice satellites only (tests/integration/test_voice_satellite.py).
@pytest.mark.parametrize("platform", [p for p in PLATFORMS if p is not Platform.WAKE_WORD])
async def test_entities(
    hass: HomeAssistant,
    mic: MicServer,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
    platform: Platform,
) -> None:
    """A disarmed home with one satellite, each platform on its own (as HA core snapshots)."""
    with patch("custom_components.guard_mode.PLATFORMS", [platform]):
        entry = await setup_entry(hass, kitchen_entry(mic.port))
    await snapshot_platform(hass, entity_registry, snapshot, entry.entry_id)


async def test_devices_the_hub_and_one_per_satellite(
    hass: HomeAssistant,
    mic: MicServer,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    entry = await setup_entry(hass, kitchen_entry(mic.port))
    devices = dr.async_entries_for_config_entry(device_registry, entry.entry_id)
    assert devices == snapshot
