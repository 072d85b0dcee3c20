"""Start Home Assistant from a config directory and add Guard Mode through its config flow.

Run by test_hacs_install.py in a separate process, so that only the copy under
CONFIG/custom_components is importable (not the repository's).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import sys

from homeassistant import bootstrap, runner
from homeassistant.config_entries import ConfigEntryState


async def main(config_dir: Path) -> dict[str, object]:
    """Boot, create the entry, report what a user would see, stop."""
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=True, safe_mode=False)
    )
    assert hass is not None
    try:
        flow = await hass.config_entries.flow.async_init("guard_mode", context={"source": "user"})
        result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
        await hass.async_block_till_done()
        entry = hass.config_entries.async_entries("guard_mode")[0]
        module = sys.modules["custom_components.guard_mode"]
        switch = hass.states.get("switch.guard_mode")
        return {
            "result": str(result["type"]),
            "loaded": entry.state is ConfigEntryState.LOADED,
            "module_file": str(module.__file__),
            "switch": switch.state if switch else None,
        }
    finally:
        await hass.async_stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
