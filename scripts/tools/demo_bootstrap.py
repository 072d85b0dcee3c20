"""Set up the demo's Home Assistant: boot it once from CONFIG, make it ready to use, stop it.

    python -m scripts.tools.demo_bootstrap --config config --mic-port 10650

Everything goes through Home Assistant's own APIs, in the process that runs it (like
tests/integration/hacs_boot.py): the demo user through the auth API (as onboarding creates the
owner), onboarding marked done in its store, the "Living room" area, Guard Mode through its config
flow, the "Living room mic" satellite through the satellite subentry flow (which tests the
microphone: the demo's mic service must be listening), arming through the switch, and the Guard
Mode dashboard through the WebSocket API the dashboard editor uses. Each step is skipped when it
is already done, so running it again repairs a half-finished set-up and changes nothing else.
Prints a JSON summary on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import sys
from typing import Any

import aiohttp
from homeassistant import bootstrap, runner
from homeassistant.auth.const import GROUP_ID_ADMIN
from homeassistant.auth.models import User
from homeassistant.auth.providers.homeassistant import HassAuthProvider, InvalidUser
from homeassistant.components import onboarding, person
from homeassistant.components.http import config as http_config
from homeassistant.components.onboarding.const import STEPS
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)

from scripts.tools.demo_const import (
    AREA,
    DASHBOARD,
    DASHBOARD_TITLE,
    HA_PORT,
    PASSWORD,
    SATELLITE,
    USER_NAME,
    USERNAME,
)

DOMAIN = "guard_mode"
# The sounds in the order the dashboard shows them (the scenario's first).
SOUNDS = ("dog_bark", "glass_break", "smoke_alarm", "gunshot", "baby_cry", "co_alarm")


class BootstrapError(Exception):
    """A step of the set-up failed."""


async def ensure_user(hass: HomeAssistant, username: str, password: str) -> tuple[User, bool]:
    """Return the demo user (an administrator), creating it as onboarding creates the owner."""
    provider = next(p for p in hass.auth.auth_providers if p.type == "homeassistant")
    assert isinstance(provider, HassAuthProvider)
    await provider.async_initialize()
    for user in await hass.auth.async_get_users():
        for credentials in user.credentials:
            if (
                credentials.auth_provider_type == "homeassistant"
                and credentials.data.get("username") == username
            ):
                return user, False
    try:
        await provider.async_add_auth(username, password)
    except InvalidUser:  # the login exists without a user (a set-up that stopped half-way)
        await provider.async_change_password(username, password)
    user = await hass.auth.async_create_user(USER_NAME, group_ids=[GROUP_ID_ADMIN])
    credentials = await provider.async_get_or_create_credentials({"username": username})
    await hass.auth.async_link_user(user, credentials)
    await person.async_create_person(hass, USER_NAME, user_id=user.id)
    return user, True


async def ensure_onboarded(hass: HomeAssistant) -> bool:
    """Mark every onboarding step done (the owner exists); return True if it wasn't."""
    if onboarding.async_is_onboarded(hass):
        return False
    data: onboarding.OnboardingData = hass.data[onboarding.DOMAIN]
    for step in STEPS:
        if step not in data.steps["done"]:
            data.steps["done"].append(step)
    store = onboarding.OnboardingStorage(
        hass, onboarding.STORAGE_VERSION, onboarding.STORAGE_KEY, private=True
    )
    await store.async_save(data.steps)
    data.onboarded = True
    # What the onboarding's location step would have asked.
    await hass.config.async_update(location_name="Guard Mode demo", country="US")
    return True


async def ensure_http(hass: HomeAssistant, port: int) -> bool:
    """Serve on port, only on this computer (unless the user chose addresses): HTTP settings
    live in Home Assistant's storage (Settings → System → Network), not in configuration.yaml."""
    store = await http_config.async_get_and_load_store(hass)
    meta = ("created_at", "error", "error_message")
    stable = {key: value for key, value in store.stable.items() if key not in meta}
    wanted = {**stable, "server_port": port}
    wanted.setdefault("server_host", ["127.0.0.1"])
    if wanted == stable:
        return False
    await store.async_set_pending(http_config.HTTP_STORAGE_SCHEMA(wanted))
    await store.async_promote_pending()  # what "Confirm" does; applies at the next start
    return True


async def ensure_entry(hass: HomeAssistant) -> tuple[ConfigEntry[Any], bool]:
    """Return the Guard Mode hub, adding it through its config flow if needed."""
    if entries := hass.config_entries.async_entries(DOMAIN):
        entry = entries[0]
        if entry.state is not ConfigEntryState.LOADED:
            raise BootstrapError(
                f"Guard Mode is {entry.state.value}: see config/home-assistant.log"
            )
        return entry, False
    flow = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
    if result["type"] != "create_entry":
        raise BootstrapError(f"the Guard Mode config flow ended with {result}")
    await hass.async_block_till_done()
    return hass.config_entries.async_entries(DOMAIN)[0], True


async def ensure_satellite(
    hass: HomeAssistant, entry: ConfigEntry[Any], area_id: str, host: str, port: int
) -> tuple[str, str | None]:
    """Return the demo satellite's subentry id, and "added" or "moved" (to another mic port) if
    the subentry flow (or its reconfigure step) had to add or re-point it."""
    form = {"name": SATELLITE, "area": area_id, "host": host, "port": port}
    unique_id = f"wyoming:{host.lower()}:{port}"
    for subentry in entry.subentries.values():
        if subentry.subentry_type == "satellite" and subentry.unique_id == unique_id:
            return subentry.subentry_id, None
    manager = hass.config_entries.subentries
    for subentry in entry.subentries.values():
        if subentry.subentry_type == "satellite" and subentry.title == SATELLITE:
            # Same satellite, another mic port (--mic-port): reconfigure it, keeping its entities.
            result = await manager.async_init(
                (entry.entry_id, "satellite"),
                context={"source": "reconfigure", "subentry_id": subentry.subentry_id},
            )
            result = await manager.async_configure(result["flow_id"], form)
            if result.get("reason") != "reconfigure_successful":
                raise BootstrapError(f"reconfiguring {SATELLITE} ended with {result}")
            await hass.async_block_till_done()
            return subentry.subentry_id, "moved"
    result = await manager.async_init((entry.entry_id, "satellite"), context={"source": "user"})
    result = await manager.async_configure(result["flow_id"], {"next_step_id": "wyoming"})
    result = await manager.async_configure(result["flow_id"], form)
    if result["type"] != "create_entry":
        raise BootstrapError(
            f"adding {SATELLITE} (tcp://{host}:{port}) ended with {result.get('errors') or result}"
        )
    await hass.async_block_till_done()
    for subentry in entry.subentries.values():
        if subentry.unique_id == unique_id:
            return subentry.subentry_id, "added"
    raise BootstrapError(f"{SATELLITE} was added but is not in the config entry")


def entity_ids(hass: HomeAssistant, entry_id: str, satellite_id: str) -> dict[str, str]:
    """Return the demo's entity ids by role, looked up by unique id in the entity registry."""
    registry = er.async_get(hass)
    wanted = {
        "switch": ("switch", f"{entry_id}-guard_mode"),
        "microphones": ("binary_sensor", f"{entry_id}-microphones"),
        "last_detection": ("sensor", f"{entry_id}-last_detection"),
        "backend": ("sensor", f"{entry_id}-backend"),
        "connected": ("binary_sensor", f"{satellite_id}-connected"),
        "sound_level": ("sensor", f"{satellite_id}-sound_level"),
        "event": ("event", f"{satellite_id}-detection"),
        **{sound: ("binary_sensor", f"{satellite_id}-{sound}") for sound in SOUNDS},
    }
    found = {}
    for role, (platform, unique_id) in wanted.items():
        entity_id = registry.async_get_entity_id(platform, DOMAIN, unique_id)
        if entity_id is None:
            raise BootstrapError(f"no {platform} entity with unique id {unique_id}")
        found[role] = entity_id
    return found


def tile(entity_id: str, **options: Any) -> dict[str, Any]:
    """Return a tile card showing the entity's own name (not its device's in front of it)."""
    return {"type": "tile", "entity": entity_id, "name": {"type": "entity"}, **options}


def short_names(hass: HomeAssistant, ids: dict[str, str]) -> dict[str, str]:
    """Return each entity's own name: its friendly name without its device's name in front."""
    entities, devices = er.async_get(hass), dr.async_get(hass)
    names = {}
    for role, entity_id in ids.items():
        state = hass.states.get(entity_id)
        name = str(state.attributes.get("friendly_name", entity_id)) if state else entity_id
        entry = entities.async_get(entity_id)
        device = devices.async_get(entry.device_id) if entry and entry.device_id else None
        if device is not None and device.name and name.startswith(f"{device.name} "):
            name = name.removeprefix(f"{device.name} ")
        names[role] = name
    return names


def dashboard_config(ids: dict[str, str], names: dict[str, str], device_id: str) -> dict[str, Any]:
    """Return the Guard Mode dashboard: the hub, the satellite, and what it heard."""
    intro = (
        "This demo's **Living room mic** is simulated: it hears a 2.5-minute recording, in a "
        "loop. The TV plays a war film (its gunfire is *ignored*: it comes from the TV), then, "
        "with the TV turned down, a **dog barks** (1:30), a **window breaks** (1:44) and a "
        "**smoke alarm** goes off (1:52). Turn *Guard Mode* off and on to start the story again."
    )
    sound_tiles = [tile(ids[sound], state_content="state") for sound in SOUNDS]
    return {
        "title": DASHBOARD_TITLE,
        "views": [
            {
                "title": DASHBOARD_TITLE,
                "path": "home",
                "icon": "mdi:shield-home",
                "type": "sections",
                "max_columns": 3,
                "sections": [
                    {
                        "type": "grid",
                        "cards": [
                            {"type": "heading", "heading": "Guard Mode", "icon": "mdi:shield-home"},
                            tile(
                                ids["switch"],
                                grid_options={"columns": 12},
                                features=[{"type": "toggle"}],
                                features_position="inline",
                            ),
                            tile(ids["microphones"], grid_options={"columns": 12}),
                            tile(
                                ids["last_detection"],
                                grid_options={"columns": 12},
                                state_content=["state", "last_changed"],
                            ),
                            tile(ids["backend"], grid_options={"columns": 12}),
                            {"type": "markdown", "content": intro},
                        ],
                    },
                    {
                        "type": "grid",
                        "cards": [
                            {"type": "heading", "heading": SATELLITE, "icon": "mdi:microphone"},
                            tile(ids["connected"]),
                            tile(ids["sound_level"]),
                            *sound_tiles,
                            {
                                "type": "history-graph",
                                "title": "The last 6 minutes",
                                "hours_to_show": 0.1,
                                "entities": [
                                    {"entity": ids[role], "name": names[role]}
                                    for role in ("sound_level", *SOUNDS[:4])
                                ],
                                "grid_options": {"columns": 12},
                            },
                        ],
                    },
                    {
                        "type": "grid",
                        "cards": [
                            {
                                "type": "heading",
                                "heading": "What it heard",
                                "icon": "mdi:ear-hearing",
                            },
                            {
                                "type": "logbook",
                                "target": {"device_id": [device_id], "entity_id": [ids["switch"]]},
                                "hours_to_show": 1,
                                "grid_options": {"columns": 12, "rows": 8},
                            },
                        ],
                    },
                ],
            }
        ],
    }


async def ensure_dashboard(
    hass: HomeAssistant, user: User, config: dict[str, Any], rewrite: bool
) -> bool:
    """Create the Guard Mode dashboard (the default one) through the WebSocket API."""
    port = hass.config.api.port if hass.config.api else HA_PORT
    base = f"http://127.0.0.1:{port}"
    refresh = await hass.auth.async_create_refresh_token(
        user, client_id=f"{base}/", client_name="Guard Mode demo set-up"
    )
    try:
        token = hass.auth.async_create_access_token(refresh)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{base}/api/websocket") as ws,
        ):
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": token})
            if (answer := await ws.receive_json()).get("type") != "auth_ok":
                raise BootstrapError(f"websocket authentication failed: {answer}")
            ids = iter(range(1, 1000))

            async def command(type_: str, **data: Any) -> Any:
                msg_id = next(ids)
                await ws.send_json({"id": msg_id, "type": type_, **data})
                while (answer := await ws.receive_json()).get("id") != msg_id:
                    pass
                if not answer.get("success"):
                    raise BootstrapError(f"{type_}: {answer.get('error')}")
                return answer.get("result")

            dashboards = await command("lovelace/dashboards/list")
            created = False
            if not any(d.get("url_path") == DASHBOARD for d in dashboards):
                await command(
                    "lovelace/dashboards/create",
                    url_path=DASHBOARD,
                    title=DASHBOARD_TITLE,
                    icon="mdi:shield-home",
                    show_in_sidebar=True,
                    require_admin=False,
                    mode="storage",
                )
                created = True
            if created or rewrite:
                await command("lovelace/config/save", url_path=DASHBOARD, config=config)
            core = await command("frontend/get_system_data", key="core")
            value = dict((core or {}).get("value") or {})
            if value.get("default_panel") != DASHBOARD and (created or rewrite):
                await command(
                    "frontend/set_system_data",
                    key="core",
                    value={**value, "default_panel": DASHBOARD},
                )
            return created
    finally:
        hass.auth.async_remove_refresh_token(refresh)


async def arm(hass: HomeAssistant, switch: str) -> None:
    """Turn the Guard Mode switch on."""
    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)


async def set_up(config_dir: Path, host: str, port: int, http_port: int) -> dict[str, Any]:
    """Boot Home Assistant from config_dir, make sure the demo is set up, stop it."""
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config_dir), skip_pip=False, safe_mode=False)
    )
    if hass is None:
        raise BootstrapError(f"Home Assistant did not start from {config_dir}")
    done: list[str] = []
    try:
        await hass.async_start()
        user, new_user = await ensure_user(hass, USERNAME, PASSWORD)
        if new_user:
            done.append(f"user {USERNAME!r}")
        if await ensure_onboarded(hass):
            done.append("onboarding")
        if await ensure_http(hass, http_port):
            done.append(f"HTTP on 127.0.0.1:{http_port}")
        area = ar.async_get(hass).async_get_area_by_name(AREA)
        if area is None:
            area = ar.async_get(hass).async_create(AREA, icon="mdi:sofa")
            done.append(f"area {AREA!r}")
        entry, new_entry = await ensure_entry(hass)
        if new_entry:
            done.append("Guard Mode")
        satellite_id, changed = await ensure_satellite(hass, entry, area.id, host, port)
        new_satellite = changed == "added"
        if changed:
            done.append(f"satellite {SATELLITE!r} ({changed}: tcp://{host}:{port})")
        ids = entity_ids(hass, entry.entry_id, satellite_id)
        registry = er.async_get(hass)
        if (level := registry.async_get(ids["sound_level"])) and level.disabled_by is not None:
            registry.async_update_entity(level.entity_id, disabled_by=None)  # off by default
            done.append("Sound level sensor enabled")
        if new_entry or new_satellite:
            await arm(hass, ids["switch"])
            done.append("armed")
        device = dr.async_get(hass).async_get_device_by_identifier(
            (DOMAIN, satellite_id), entry.entry_id
        )
        if device is None:
            raise BootstrapError(f"{SATELLITE} has no device")
        config = dashboard_config(ids, short_names(hass, ids), device.id)
        if await ensure_dashboard(hass, user, config, rewrite=new_satellite or new_user):
            done.append(f"dashboard {DASHBOARD!r}")
        switch = hass.states.get(ids["switch"])
        return {
            "done": done,
            "entities": ids,
            "armed": switch is not None and switch.state == "on",
        }
    finally:
        await hass.async_stop()


def main(argv: list[str] | None = None) -> int:
    """Run the set-up; print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="demo_bootstrap", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("config"))
    parser.add_argument("--mic-host", default="127.0.0.1")
    parser.add_argument("--mic-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=HA_PORT, help="Home Assistant's HTTP port")
    args = parser.parse_args(argv)
    try:
        summary = asyncio.run(
            set_up(args.config.resolve(), args.mic_host, args.mic_port, args.port)
        )
    except BootstrapError as err:
        print(f"demo set-up failed: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
