"""The load test's probe inside Home Assistant: a tiny custom integration, ``loadtest_probe``.

The harness copies this file to CONFIG/custom_components/loadtest_probe/__init__.py (next to a
manifest) and enables it in configuration.yaml. It runs in Home Assistant's own event loop:

- a lag probe: ``asyncio.sleep(0.05)`` in a loop; lag = how much later than asked it woke up;
- a record of the satellites' connectivity binary sensors changing state (from the state
  machine, as an automation would see them);
- a control channel on 127.0.0.1 (JSON lines; the port is written to
  CONFIG/loadtest_control.json): it drives Home Assistant through its own APIs — the config
  flow, the satellite subentry flow, the guard mode switch, entry reloads, the restart action —
  and reads the counters the diagnostics show (entry state, repair issues, satellites, streams,
  engine).

Everything the probe keeps is drained by the harness (bounded deques), so it adds no memory
growth of its own to a soak. It never touches the component's behaviour.
"""

from __future__ import annotations

import asyncio
from collections import deque
import contextlib
import gc
import json
import logging
import os
from pathlib import Path
import sys
import time
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import (
    config_validation as cv,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.typing import ConfigType

DOMAIN = "loadtest_probe"
GUARD = "guard_mode"
CONTROL_FILE = "loadtest_control.json"
LAG_INTERVAL_S = 0.05
SPIKE_S = 0.02  # lags above this are kept with their time
CONFIG_SCHEMA = cv.empty_config_schema(DOMAIN)
_LOGGER = logging.getLogger(__name__)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Start the lag probe, the connectivity record and the control channel."""
    probe = Probe(hass)
    await probe.async_start()
    hass.data[DOMAIN] = probe
    return True


class Probe:
    """What the harness talks to inside Home Assistant."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start empty."""
        self.hass = hass
        self.lags: deque[float] = deque(maxlen=50_000)  # seconds late, drained by the harness
        self.transitions: deque[list[Any]] = deque(maxlen=10_000)
        self.spikes: deque[list[float]] = deque(maxlen=1_000)  # [monotonic time, lag s]
        self.gc = {"collections": 0, "seconds": 0.0, "max_pause_s": 0.0}
        self._gc_started = 0.0
        self.started = time.monotonic()
        self._server: asyncio.Server | None = None

    async def async_start(self) -> None:
        """Start everything and tell the harness the control port."""
        hass = self.hass
        hass.async_create_background_task(self._lag_loop(), "loadtest lag probe")
        gc.callbacks.append(self._gc_callback)
        hass.bus.async_listen(
            EVENT_STATE_CHANGED, self._state_changed, event_filter=self._is_connectivity
        )
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, self._async_stop)
        info = {"port": port, "pid": os.getpid(), "started": self.started}
        await hass.async_add_executor_job(_write_json, Path(hass.config.path(CONTROL_FILE)), info)

    async def _async_stop(self, _event: Event) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._gc_callback)
        if self._server is not None:
            self._server.close()

    def _gc_callback(self, phase: str, _info: dict[str, Any]) -> None:
        """Time the cyclic garbage collector's pauses (they stop every thread, the loop too)."""
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
            return
        pause = now - self._gc_started
        self.gc["collections"] += 1
        self.gc["seconds"] += pause
        self.gc["max_pause_s"] = max(self.gc["max_pause_s"], pause)

    async def _lag_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            lag = loop.time() - start - LAG_INTERVAL_S
            self.lags.append(lag)
            if lag > SPIKE_S:
                self.spikes.append([time.monotonic(), lag])

    @callback
    def _is_connectivity(self, data: Any) -> bool:
        entity_id = data["entity_id"]
        if not entity_id.startswith("binary_sensor."):
            return False
        entry = er.async_get(self.hass).async_get(entity_id)
        return bool(entry and entry.platform == GUARD and entry.unique_id.endswith("-connected"))

    @callback
    def _state_changed(self, event: Event[Any]) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        self.transitions.append(
            [
                time.monotonic(),
                event.data["entity_id"],
                old.state if old else None,
                new.state if new else None,
            ]
        )

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    handler = getattr(self, f"cmd_{request.pop('cmd')}")
                    reply = {"ok": True, **(await handler(**request))}
                except Exception as err:  # report to the harness, keep serving
                    _LOGGER.debug("Probe command failed", exc_info=True)
                    reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        writer.close()

    # --- commands ------------------------------------------------------------------------

    def _entry(self) -> ConfigEntry[Any] | None:
        entries = self.hass.config_entries.async_entries(GUARD)
        return entries[0] if entries else None

    def _entity(self, domain: str, unique_id: str) -> str | None:
        return er.async_get(self.hass).async_get_entity_id(domain, GUARD, unique_id)

    async def cmd_ping(self) -> dict[str, Any]:
        """Answer (the event loop is alive)."""
        return {"t": time.monotonic()}

    async def cmd_setup_entry(self) -> dict[str, Any]:
        """Add Guard Mode through its config flow, as a user does."""
        flows = self.hass.config_entries.flow
        result = await flows.async_init(GUARD, context={"source": "user"})
        if result["type"] == "form":
            result = await flows.async_configure(result["flow_id"], {})
        entry = self._entry()
        return {
            "result": str(result["type"]),
            "reason": result.get("reason"),
            "state": entry.state.value if entry else None,
        }

    async def cmd_add_satellite(self, name: str, host: str, port: int) -> dict[str, Any]:
        """Add a Wyoming satellite through the subentry flow (it tests the microphone)."""
        entry = self._entry()
        assert entry is not None, "no Guard Mode entry"
        subentries = self.hass.config_entries.subentries
        result = await subentries.async_init(
            (entry.entry_id, "satellite"), context={"source": "user"}
        )
        result = await subentries.async_configure(result["flow_id"], {"next_step_id": "wyoming"})
        result = await subentries.async_configure(
            result["flow_id"], {"name": name, "host": host, "port": port}
        )
        subentry = next((s for s in entry.subentries.values() if s.title == name), None)
        return {
            "result": str(result["type"]),
            "errors": result.get("errors"),
            "subentry_id": subentry.subentry_id if subentry else None,
        }

    async def cmd_arm(self, on: bool) -> dict[str, Any]:
        """Arm or disarm with the guard mode switch."""
        entry = self._entry()
        assert entry is not None, "no Guard Mode entry"
        switch = self._entity("switch", f"{entry.entry_id}-guard_mode")
        assert switch is not None, "no guard mode switch"
        await self.hass.services.async_call(
            "switch", "turn_on" if on else "turn_off", {"entity_id": switch}, blocking=True
        )
        state = self.hass.states.get(switch)
        return {"switch": state.state if state else None}

    async def cmd_reload(self) -> dict[str, Any]:
        """Reload the Guard Mode entry."""
        entry = self._entry()
        assert entry is not None, "no Guard Mode entry"
        loaded = await self.hass.config_entries.async_reload(entry.entry_id)
        return {"loaded": loaded, "state": entry.state.value}

    async def cmd_restart(self) -> dict[str, Any]:
        """Restart Home Assistant with its restart action (the process exits with code 100)."""
        self.hass.async_create_task(
            self.hass.services.async_call("homeassistant", "restart", blocking=False)
        )
        return {}

    async def cmd_stop(self) -> dict[str, Any]:
        """Stop Home Assistant with its stop action."""
        self.hass.async_create_task(
            self.hass.services.async_call("homeassistant", "stop", blocking=False)
        )
        return {}

    async def cmd_snapshot(self, drain: bool = True) -> dict[str, Any]:
        """Return lags and connectivity changes since the last drain, and the counters."""
        lags = [round(lag * 1000, 3) for lag in self.lags]
        transitions = list(self.transitions)
        spikes = [[t, round(lag * 1000, 2)] for t, lag in self.spikes]
        gc_stats = {
            "collections": self.gc["collections"],
            "seconds": self.gc["seconds"],
            "max_pause_ms": round(self.gc["max_pause_s"] * 1000, 2),
        }
        if drain:
            self.lags.clear()
            self.transitions.clear()
            self.spikes.clear()
            self.gc["max_pause_s"] = 0.0  # the longest pause since the last drain
        hass = self.hass
        entry = self._entry()
        module = sys.modules.get(f"custom_components.{GUARD}")
        report: dict[str, Any] = {
            "t": time.monotonic(),
            "lags_ms": lags,
            "transitions": transitions,
            "lag_spikes_ms": spikes,
            "gc": gc_stats,
            "issues": sorted(i for (d, i) in ir.async_get(hass).issues if d == GUARD),
            "module_file": getattr(module, "__file__", None),
            "entry": None,
        }
        if entry is None:
            return report
        report["entry"] = {"state": entry.state.value, "reason": entry.reason}
        switch = self._entity("switch", f"{entry.entry_id}-guard_mode")
        switch_state = hass.states.get(switch) if switch else None
        report["switch"] = (
            {"state": switch_state.state, "changed_by": switch_state.attributes.get("changed_by")}
            if switch_state
            else None
        )
        data = getattr(entry, "runtime_data", None)
        if data is None or not hasattr(data, "satellites"):
            return report
        satellites = []
        for satellite in data.satellites.values():
            entity = self._entity("binary_sensor", f"{satellite.id}-connected")
            state = hass.states.get(entity) if entity else None
            stream, decision = satellite.stream, satellite.decision
            satellites.append(
                {
                    "id": satellite.id,
                    "name": satellite.name,
                    "entity": entity,
                    "sensor": state.state if state else None,
                    "listening": satellite.state.listening,
                    "connected": satellite.state.connected,
                    "reconnects": satellite.state.reconnects,
                    "last_error": satellite.state.last_error,
                    "stream": None
                    if stream is None or decision is None
                    else {
                        **stream.status(),
                        **decision.status(),
                        "time_s": round(decision.time_s, 2),
                    },
                }
            )
        report["satellites"] = satellites
        engine = data.engine
        info: dict[str, Any] = dict(engine.diagnostics())
        worker = getattr(engine, "worker", None)
        if worker is not None:
            stats = worker.stats
            thread = getattr(worker, "_thread", None)
            info.update(
                tagger_seconds=stats.tagger_seconds,
                busy_seconds=stats.busy_seconds,
                thread_alive=bool(thread is not None and thread.is_alive()),
            )
        report["engine"] = info
        return report


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
