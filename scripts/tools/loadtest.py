"""Load, fault and soak tests of Guard Mode in a real Home Assistant.

    scripts/loadtest {load,faults,soak} [--satellites N] [--minutes M] [--json]
    scripts/loadtest hostile [--code DIR] [--only mic|engine] [--json]   (loadtest_hostile.py)

Every mode boots a real Home Assistant (``hass``'s own entry point, in a process of its own) from
a fresh config dir holding the HACS copy of Guard Mode, adds Guard Mode through its config flow
and N Wyoming satellites through the satellite subentry flow, each pointing at its own Wyoming
mic service on 127.0.0.1 (in another process, so their CPU is not Home Assistant's), streaming
synthetic room audio in real time, and arms guard mode. A small probe integration inside Home
Assistant measures event-loop lag and drives the flows; CPU and RSS are read from /proc by this
harness. See docs/load.md.

- ``load`` (N=16, 10 min): lag, CPU, RSS, windows and drops, engine figures; asserts no drops
  and lag p99 < 50 ms.
- ``faults`` (N=6): mic services killed and restarted, a stalled connection, garbage on the
  wire, a corrupted model at start-up, a restart while armed — each asserted.
- ``soak`` (N=4, 60 min): RSS every 30 s; asserts the end within 5 % of the post-warm-up RSS.

Exit status 0 when every assertion holds, 1 otherwise, 2 when the harness itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field
from importlib import metadata
import json
import os
from pathlib import Path
import platform
import re
import shutil
import signal
import sys
import time
from typing import Any

import numpy as np

from .loadtest_procs import (
    ROOT,
    HarnessError,
    HomeAssistant,
    MicFleet,
    cleanup,
    corrupt_model,
    cpu_seconds,
    free_port,
    git_state,
    kill_now,
    loadavg,
    log,
    machine_cpu,
    prepare_config,
    restore_model,
    rss_mb,
    thread_cpu,
    thread_split,
)

WINDOW_HOP_S = 0.48  # the engine's window hop
LAG_TARGET_MS = 50.0
RSS_GROWTH_TARGET_MB = 120.0
SOAK_TOLERANCE = 0.05
RSS_INTERVAL_S = 30.0
SNAPSHOT_INTERVAL_S = 5.0
# Faults mode: quick reconnects (module constants of the component; defaults 1-60 s and 10 s).
FAULT_BACKOFF = (0.25, 2.0, 1.0)  # reconnect waits 0.25 … 2 s; a connection of 1 s is back
FAULT_STALL_TIMEOUT_S = 2.0
DEFAULTS = {"load": (16, 10.0), "faults": (6, 0.0), "soak": (4, 60.0)}


# --- the rig: Home Assistant, the mic services, what the probe reported ---------------------


@dataclass
class Rig:
    """One run's processes and everything sampled from them."""

    mode: str
    run_dir: Path
    recorder: bool = True
    fleets: dict[str, MicFleet] = field(default_factory=dict)
    hass: HomeAssistant | None = None
    lags: list[tuple[float, list[float]]] = field(default_factory=list)  # (snapshot t, lags ms)
    transitions: list[list[Any]] = field(default_factory=list)  # [t, entity, old, new]
    rss: list[tuple[float, float]] = field(default_factory=list)  # (t, MB)
    spikes: list[list[float]] = field(default_factory=list)  # [t, lag ms] of lags over 20 ms
    gc: list[dict[str, float]] = field(default_factory=list)  # per snapshot: t and GC counters
    last: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # name: monotonic start
    rss_next: float | None = None

    @property
    def config(self) -> Path:
        """Return the config dir."""
        return self.run_dir / "config"

    @property
    def log_file(self) -> Path:
        """Return Home Assistant's log file."""
        return self.run_dir / "home-assistant.log"

    @property
    def ha(self) -> HomeAssistant:
        """Return the running Home Assistant."""
        assert self.hass is not None
        return self.hass

    def prepare(self) -> None:
        """Start from an empty run dir with a fresh config dir."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        prepare_config(self.config, free_port(), self.recorder)

    async def start_mics(
        self, groups: dict[str, list[dict[str, Any]]], cpus: set[int] | None
    ) -> None:
        """Start one mic process per group."""
        for label, specs in groups.items():
            fleet = MicFleet(label, specs, self.run_dir)
            fleet.cpus = cpus
            self.fleets[label] = fleet
        await asyncio.gather(*(fleet.start() for fleet in self.fleets.values()))

    def port(self, name: str) -> int:
        """Return the port of a satellite's mic service."""
        for fleet in self.fleets.values():
            if name in fleet.ports:
                return fleet.ports[name]
        raise KeyError(name)

    def fleet_of(self, name: str) -> MicFleet:
        """Return the mic process serving a satellite."""
        return next(fleet for fleet in self.fleets.values() if name in fleet.names)

    async def start_hass(self, **kwargs: Any) -> None:
        """Start Home Assistant and wait until the probe answers."""
        self.hass = HomeAssistant(self.run_dir, self.config, self.log_file, **kwargs)
        await self.hass.start()
        log(f"Home Assistant up in {self.hass.ready_after_s:.1f} s (pid {self.hass.pid})")

    async def snapshot(self) -> dict[str, Any]:
        """Ask the probe for its counters; keep the lags and connectivity changes it drained."""
        snap = await self.ha.call("snapshot")
        self.lags.append((snap["t"], snap.pop("lags_ms")))
        self.transitions.extend(snap.pop("transitions"))
        self.spikes.extend(snap.pop("lag_spikes_ms"))
        self.gc.append({"t": snap["t"], **snap.pop("gc")})
        self.last = snap
        return snap

    def lags_between(self, start: float, stop: float = float("inf")) -> list[float]:
        """Return the lags (ms) reported by snapshots taken in (start, stop]."""
        return [lag for t, lags in self.lags if start < t <= stop for lag in lags]

    def lag_details(self, start: float, stop: float) -> dict[str, Any]:
        """Return the lag spikes (> 20 ms) and the GC pauses between two snapshot times."""
        spikes = sorted((s for s in self.spikes if start < s[0] <= stop), key=lambda s: -s[1])
        gc = [g for g in self.gc if start < g["t"] <= stop]
        first = next((g for g in self.gc if g["t"] >= start), None)
        result: dict[str, Any] = {
            "spikes_over_20ms": len(spikes),
            "worst_spikes": [[round(t - start, 1), ms] for t, ms in spikes[:5]],
        }
        if gc and first is not None:
            collections = seconds = 0.0
            previous = first
            for g in gc:  # counters restart from 0 with a new Home Assistant process
                restarted = g["collections"] < previous["collections"]
                collections += g["collections"] - (0 if restarted else previous["collections"])
                seconds += g["seconds"] - (0 if restarted else previous["seconds"])
                previous = g
            result["gc"] = {
                "collections": int(collections),
                "seconds": round(seconds, 3),
                "max_pause_ms": max(g["max_pause_ms"] for g in gc),
            }
        return result

    def satellites(self, snap: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Return the satellites of a snapshot by name."""
        return {sat["name"]: sat for sat in (snap or self.last).get("satellites", [])}

    async def sample(
        self, until: float, rss_from: float, rss_every: float = RSS_INTERVAL_S
    ) -> None:
        """Take snapshots until a monotonic time, and RSS readings every rss_every from rss_from."""
        if self.rss_next is None:
            self.rss_next = rss_from
        while (now := time.monotonic()) < until:
            if now >= self.rss_next - 0.5:
                self.rss.append((now, rss_mb(self.ha.pid)))
                self.rss_next += rss_every
            await self.snapshot()
            now = time.monotonic()
            await asyncio.sleep(
                max(0.0, min(SNAPSHOT_INTERVAL_S, until - now, self.rss_next - now))
            )
        await self.snapshot()

    async def wait_for(
        self, what: str, condition: Any, timeout_s: float, poll_s: float = 0.25
    ) -> float:
        """Snapshot until condition(snapshot) holds; return the seconds it took."""
        started = time.monotonic()
        while True:
            snap = await self.snapshot()
            if condition(snap):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise HarnessError(f"timed out after {timeout_s:.0f} s waiting for: {what}")
            await asyncio.sleep(poll_s)

    async def add_satellites(self, names: list[str]) -> float:
        """Add every satellite through the subentry flow; return the seconds it took."""
        started = time.monotonic()
        for name in names:
            result = await self.ha.call(
                "add_satellite", name=name, host="127.0.0.1", port=self.port(name)
            )
            if result["result"] != "create_entry":
                raise HarnessError(f"adding satellite {name} failed: {result}")
        return time.monotonic() - started

    async def arm(self, on: bool = True) -> None:
        """Arm (or disarm) guard mode with its switch."""
        result = await self.ha.call("arm", on=on)
        if result["switch"] != ("on" if on else "off"):
            raise HarnessError(f"the guard mode switch did not turn {'on' if on else 'off'}")

    async def close(self) -> None:
        """Stop Home Assistant (its stop action), then the mic services."""
        if self.hass is not None and self.hass.alive:
            with contextlib.suppress(HarnessError, OSError):
                await self.arm(False)
            code = await self.hass.stop()
            log(f"Home Assistant stopped (exit code {code})")
        for fleet in self.fleets.values():
            await fleet.stop()


def all_connected(names: list[str]) -> Any:
    """Return a condition: these satellites' connectivity sensors are on."""

    def check(snap: dict[str, Any]) -> bool:
        sats = {sat["name"]: sat for sat in snap.get("satellites", [])}
        return all(sats.get(name, {}).get("sensor") == "on" for name in names)

    return check


def windows(snap: dict[str, Any], name: str) -> int:
    """Return the windows a satellite's stream has processed."""
    sat = next(sat for sat in snap.get("satellites", []) if sat["name"] == name)
    return int(sat["stream"]["windows"]) if sat.get("stream") else 0


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Return p50/p90/p99/max of lags (ms)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "samples": 0}
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p90": round(float(np.percentile(array, 90)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "max": round(float(array.max()), 2),
        "samples": len(values),
    }


def satellite_specs(count: int, loud_share: float, prefix: str = "sat") -> list[dict[str, Any]]:
    """Return the mic services: the first round(count * loud_share) loud, the rest quiet rooms."""
    loud = round(count * loud_share)
    return [
        {
            "name": f"{prefix}{i:02d}",
            "port": 0,
            "profile": "loud" if i < loud else "quiet",
            "seed": 100 + i,
        }
        for i in range(count)
    ]


def conditions(pinned: int | None) -> dict[str, Any]:
    """Return what the machine and the software were."""
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "ha_pinned_to_cpu": pinned,
        "loadavg_start": loadavg(),
        "python": platform.python_version(),
        "home_assistant": _version("homeassistant"),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "git": git_state(),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pick_cpus(pin: bool) -> tuple[int | None, set[int] | None]:
    """Return (CPU for Home Assistant, CPUs for the mic services) when pinning is possible."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return cpus[-1], set(cpus[:-1])


# --- logs -----------------------------------------------------------------------------------

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (\w+) \(([^)]*)\) \[([^\]]+)\] ")


def log_records(paths: list[Path]) -> list[tuple[str, str, str]]:
    """Return (level, logger, text with continuation lines) of Home Assistant log files."""
    records: list[tuple[str, str, str]] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if match := _RECORD.match(line):
                records.append((match.group(1), match.group(3), line))
            elif records:
                level, logger, text = records[-1]
                records[-1] = (level, logger, text + "\n" + line)
    return records


def log_problems(paths: list[Path]) -> dict[str, Any]:
    """Count errors and tracebacks, in all and those of Guard Mode."""
    records = log_records(paths)
    mine = [
        r
        for r in records
        if r[1].startswith("custom_components.guard_mode") or "custom_components/guard_mode" in r[2]
    ]
    return {
        "errors": sum(1 for r in records if r[0] in ("ERROR", "CRITICAL")),
        "tracebacks": sum(r[2].count("Traceback (most recent call last)") for r in records),
        "guard_mode_errors": [r[2][:400] for r in mine if r[0] in ("ERROR", "CRITICAL")],
        "guard_mode_tracebacks": [r[2][:600] for r in mine if "Traceback" in r[2]],
        "loop_errors": [r[2][:400] for r in records if "Error doing job" in r[2]],
    }


def count_in_log(path: Path, pattern: str) -> int:
    """Count log lines matching a regular expression."""
    if not path.exists():
        return 0
    return len(re.findall(pattern, path.read_text(errors="replace"), flags=re.MULTILINE))


# --- load and soak --------------------------------------------------------------------------


async def streaming_run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Boot, add and arm N satellites, measure; the shared part of load and soak."""
    count, minutes = args.satellites, args.minutes
    soak = mode == "soak"
    if soak:
        warmup = args.warmup if args.warmup is not None else min(300.0, max(30.0, minutes * 15.0))
        measure_s = minutes * 60.0 - warmup
        if measure_s <= 0:
            raise HarnessError("soak: --minutes must be longer than the warm-up")
    else:
        warmup = args.warmup if args.warmup is not None else min(60.0, max(20.0, minutes * 12.0))
        measure_s = minutes * 60.0
    ha_cpu, mic_cpus = pick_cpus(args.pin if args.pin is not None else mode == "load")
    rig = Rig(mode, args.out or ROOT / "build/loadtest" / mode, recorder=not args.no_recorder)
    report: dict[str, Any] = {
        "mode": mode,
        "satellites": count,
        "minutes": minutes,
        "warmup_s": warmup,
        "measured_s": None,
        "conditions": conditions(ha_cpu),
        "logs": str(
            rig.log_file.relative_to(ROOT) if rig.log_file.is_relative_to(ROOT) else rig.log_file
        ),
    }
    specs = satellite_specs(count, args.loud)
    names = [spec["name"] for spec in specs]
    report["profiles"] = {spec["name"]: spec["profile"] for spec in specs}
    started = time.monotonic()
    rig.prepare()
    try:
        log(
            f"{mode}: {count} satellites ({sum(s['profile'] == 'loud' for s in specs)} loud), "
            f"warm-up {warmup:.0f} s, measuring {measure_s / 60:.1f} min; run dir {rig.run_dir}"
        )
        await asyncio.gather(rig.start_mics({"mics": specs}, mic_cpus), rig.start_hass(cpu=ha_cpu))
        ha = rig.ha
        await asyncio.sleep(3)
        await rig.snapshot()
        rss_base = rss_mb(ha.pid)
        t = time.monotonic()
        result = await ha.call("setup_entry")
        if result["state"] != "loaded":
            raise HarnessError(f"Guard Mode did not load: {result}")
        setup_s = time.monotonic() - t
        await asyncio.sleep(3)
        snap = await rig.snapshot()
        rss_model = rss_mb(ha.pid)
        log(
            f"Guard Mode loaded in {setup_s:.1f} s ({snap['module_file']}); "
            f"RSS {rss_base:.0f} -> {rss_model:.0f} MB"
        )
        added_s = await rig.add_satellites(names)
        log(f"{count} satellites added through the subentry flow in {added_s:.1f} s")
        idle_t0, idle_c0 = time.monotonic(), cpu_seconds(ha.pid)
        await asyncio.sleep(10)
        idle_cores = (cpu_seconds(ha.pid) - idle_c0) / (time.monotonic() - idle_t0)
        await rig.snapshot()
        await rig.arm(True)
        t_arm = time.monotonic()
        connect_s = await rig.wait_for("every satellite connected", all_connected(names), 60)
        log(f"armed; all {count} satellites streaming after {connect_s:.1f} s; warming up")
        await rig.sample(t_arm + warmup, t_arm)
        rss_warm = rss_mb(ha.pid)
        snap0 = rig.last
        t0 = time.monotonic()
        cpu0, threads0, machine0 = cpu_seconds(ha.pid), thread_cpu(ha.pid), machine_cpu()
        fleet_pid = rig.fleets["mics"].proc.pid  # type: ignore[union-attr]
        mics0, self0 = cpu_seconds(fleet_pid), _self_cpu()
        log(f"measuring for {measure_s / 60:.1f} min (RSS after warm-up {rss_warm:.0f} MB)")
        await rig.sample(t0 + measure_s, t_arm)
        snap1 = rig.last
        t1 = time.monotonic()
        cpu1, threads1, machine1 = cpu_seconds(ha.pid), thread_cpu(ha.pid), machine_cpu()
        mics1, self1 = cpu_seconds(fleet_pid), _self_cpu()
        rss_end = rss_mb(ha.pid)
        mic_stats = await rig.fleets["mics"].get_stats()
        wall = t1 - t0
        report["measured_s"] = round(wall, 1)
        ha_cores = (cpu1 - cpu0) / wall
        busy_cores = (machine1[0] - machine0[0]) / wall
        mic_cores = (mics1 - mics0) / wall
        own_cores = (self1 - self0) / wall
        report["conditions"].update(
            loadavg_end=loadavg(),
            machine_busy_cores=round(busy_cores, 2),
            other_processes_cores=round(max(0.0, busy_cores - ha_cores - mic_cores - own_cores), 2),
            mic_services_cores=round(mic_cores, 3),
            harness_cores=round(own_cores, 3),
            mic_max_send_late_s=max(stat["max_send_late_s"] for stat in mic_stats.values()),
        )
        report["timings_s"] = {
            "ha_ready": round(ha.ready_after_s, 1),
            "entry_setup": round(setup_s, 1),
            "satellites_added": round(added_s, 1),
            "all_connected_after_arming": round(connect_s, 1),
        }
        report["lag_ms"] = percentiles(rig.lags_between(snap0["t"], snap1["t"]))
        report["lag_ms"]["warmup_max"] = percentiles(rig.lags_between(t_arm, snap0["t"]))["max"]
        report["lag_ms"].update(rig.lag_details(snap0["t"], snap1["t"]))
        split = thread_split(ha.pid, threads0, threads1)
        report["cpu"] = {
            "ha_cores": round(ha_cores, 3),
            "per_satellite_cores": round(ha_cores / count, 4),
            "ha_idle_cores_disarmed": round(idle_cores, 3),
            "threads_cores": {key: round(value / wall, 3) for key, value in split.items()},
        }
        report["rss_mb"] = {
            "ha_without_guard_mode": round(rss_base, 1),
            "model_loaded_before_satellites": round(rss_model, 1),
            "after_warmup": round(rss_warm, 1),
            "end": round(rss_end, 1),
            "growth_with_guard_mode": round(rss_end - rss_base, 1),
            "growth_during_measurement": round(rss_end - rss_warm, 1),
        }
        report.update(stream_figures(snap0, snap1, names, report["profiles"]))
        report["engine"] = engine_figures(snap0, snap1, wall)
        report["log"] = log_problems([rig.log_file])
        if soak:
            report["rss_series"] = rss_series(rig.rss, t_arm, t0, rss_warm, (t1, rss_end))
        report["duration_s"] = round(time.monotonic() - started, 1)
    finally:
        await rig.close()
    return report


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def stream_figures(
    snap0: dict[str, Any], snap1: dict[str, Any], names: list[str], profiles: dict[str, str]
) -> dict[str, Any]:
    """Return windows processed and dropped, overall and per satellite."""
    sats0 = {sat["name"]: sat for sat in snap0["satellites"]}
    sats1 = {sat["name"]: sat for sat in snap1["satellites"]}
    expected = (snap1["t"] - snap0["t"]) / WINDOW_HOP_S
    per = []
    for name in names:
        a, b = sats0[name]["stream"] or {}, sats1[name]["stream"] or {}
        got = b.get("windows", 0) - a.get("windows", 0)
        per.append(
            {
                "name": name,
                "profile": profiles[name],
                "windows": got,
                "windows_ratio": round(got / expected, 3) if expected else None,
                "gated_share": round(
                    (b.get("windows_below_gate", 0) - a.get("windows_below_gate", 0)) / max(got, 1),
                    3,
                ),
                "skipped_calm_share": round(
                    (b.get("windows_skipped_calm", 0) - a.get("windows_skipped_calm", 0))
                    / max(got, 1),
                    3,
                ),
                "seconds_in": round(b.get("seconds_in", 0) - a.get("seconds_in", 0), 1),
                "backlog_s": round(
                    b.get("seconds_in", 0) - b.get("time_s", 0) - b.get("seconds_dropped", 0), 2
                ),
                "seconds_dropped": b.get("seconds_dropped", 0),
                "chunks_dropped": b.get("chunks_dropped", 0),
                "bad_chunks": b.get("bad_chunks", 0),
                "reconnects": sats1[name]["reconnects"],
                "connected": sats1[name]["sensor"] == "on",
            }
        )
    total = sum(p["windows"] for p in per)
    return {
        "windows": {
            "processed": total,
            "expected_real_time": round(expected * len(names)),
            "min_ratio": min(p["windows_ratio"] or 0 for p in per),
            "gated_share": round(
                sum(p["gated_share"] * p["windows"] for p in per) / max(total, 1), 3
            ),
            "seconds_dropped": round(sum(p["seconds_dropped"] for p in per), 2),
            "chunks_dropped": sum(p["chunks_dropped"] for p in per),
            "bad_chunks": sum(p["bad_chunks"] for p in per),
            "reconnects": sum(p["reconnects"] for p in per),
            "max_backlog_s": max(p["backlog_s"] for p in per),
        },
        "per_satellite": per,
    }


def engine_figures(snap0: dict[str, Any], snap1: dict[str, Any], wall: float) -> dict[str, Any]:
    """Return the engine's work during the measurement."""
    a, b = snap0["engine"], snap1["engine"]
    tagged = b["windows_tagged"] - a["windows_tagged"]
    batches = b["batches"] - a["batches"]
    return {
        "backend": b["backend"],
        "windows_tagged": tagged,
        "batches": batches,
        "mean_batch": round(tagged / batches, 2) if batches else None,
        "tagger_ms_per_window": round(
            1000 * (b["tagger_seconds"] - a["tagger_seconds"]) / tagged, 3
        )
        if tagged
        else None,
        "worker_busy_share": round((b["busy_seconds"] - a["busy_seconds"]) / wall, 4),
        "errors": b["errors"],
        "thread_alive": b["thread_alive"],
    }


def rss_series(
    samples: list[tuple[float, float]],
    t_arm: float,
    t0: float,
    base: float,
    end: tuple[float, float],
) -> dict[str, Any]:
    """Summarise the RSS readings (every 30 s from arming); statistics after the warm-up."""
    samples = list(samples)
    if samples and end[0] - samples[-1][0] < 5:  # a reading was just taken at the end
        end = samples.pop()
    after = [(t0, base), *[(t, m) for t, m in samples if t > t0], end]
    ts = np.asarray([t - t0 for t, _ in after])
    mb = np.asarray([m for _, m in after])
    slope = float(np.polyfit(ts, mb, 1)[0]) * 3600 if len(ts) >= 3 and np.ptp(ts) > 0 else 0.0
    return {
        "interval_s": RSS_INTERVAL_S,
        "samples_after_warmup": len(after),
        "after_warmup_mb": round(base, 1),
        "min_mb": round(float(mb.min()), 1),
        "max_mb": round(float(mb.max()), 1),
        "end_mb": round(end[1], 1),
        "end_vs_warmup": round(end[1] / base - 1, 4),
        "slope_mb_per_hour": round(slope, 2),
        "series_min_mb_since_arming": [
            [round((t - t_arm) / 60, 2), round(m, 1)] for t, m in [*samples, end]
        ],
    }


def judge_streaming(report: dict[str, Any], mode: str) -> None:
    """Add targets and the pass/fail verdict (asserted: no drops, lag; soak: RSS too)."""
    w = report["windows"]
    lag_p99 = report["lag_ms"]["p99"]
    drops = w["seconds_dropped"] + w["chunks_dropped"] + w["bad_chunks"]
    real_time = w["min_ratio"] >= 0.97 and w["reconnects"] == 0
    targets: dict[str, dict[str, Any]] = {
        "no_dropped_windows": {
            "value": {
                k: w[k]
                for k in (
                    "seconds_dropped",
                    "chunks_dropped",
                    "bad_chunks",
                    "reconnects",
                    "min_ratio",
                )
            },
            "met": drops == 0 and real_time,
            "asserted": True,
        },
        "lag_p99_below_50ms": {
            "value": lag_p99,
            "met": lag_p99 is not None and lag_p99 < LAG_TARGET_MS,
            "asserted": True,
        },
        "one_core": {
            "value": report["cpu"]["ha_cores"],
            "met": report["cpu"]["ha_cores"] <= 1.0,
            "asserted": False,
        },
        "rss_growth_le_120mb": {
            "value": report["rss_mb"]["growth_with_guard_mode"],
            "met": report["rss_mb"]["growth_with_guard_mode"] <= RSS_GROWTH_TARGET_MB,
            "asserted": False,
        },
    }
    if mode == "soak":
        change = report["rss_series"]["end_vs_warmup"]
        targets["rss_end_within_5pct_of_warmup"] = {
            "value": change,
            "met": abs(change) <= SOAK_TOLERANCE,
            "asserted": True,
        }
    report["targets"] = targets
    failures = []
    if not targets["no_dropped_windows"]["met"]:
        failures.append(
            f"windows were dropped or not processed in real time: {drops:g} dropped "
            f"(s/chunks/bad), {w['reconnects']} reconnects, slowest satellite at "
            f"{100 * w['min_ratio']:.1f} % of real time"
        )
    if not targets["lag_p99_below_50ms"]["met"]:
        failures.append(f"event-loop lag p99 {lag_p99} ms is not below {LAG_TARGET_MS:g} ms")
    if mode == "soak" and not targets["rss_end_within_5pct_of_warmup"]["met"]:
        failures.append(
            f"RSS at the end is {100 * report['rss_series']['end_vs_warmup']:+.1f} % off the "
            f"RSS after the warm-up (allowed ±{100 * SOAK_TOLERANCE:g} %)"
        )
    report["failures"] = failures
    report["passed"] = not failures


def streaming_summary(report: dict[str, Any]) -> str:
    """Return the one-line summary of a load or soak run."""
    lag, w, cpu, rss = report["lag_ms"], report["windows"], report["cpu"], report["rss_mb"]
    text = (
        f"{report['satellites']} satellites, {report['measured_s'] / 60:.1f} min measured: "
        f"lag p50/p99/max {lag['p50']}/{lag['p99']}/{lag['max']} ms, "
        f"{w['processed']} windows ({w['chunks_dropped']} chunks dropped), "
        f"HA {cpu['ha_cores']:.2f} cores ({cpu['per_satellite_cores']:.4f}/satellite), "
        f"RSS {rss['ha_without_guard_mode']:.0f}->{rss['end']:.0f} MB "
        f"(+{rss['growth_with_guard_mode']:.0f})"
    )
    if "rss_series" in report:
        series = report["rss_series"]
        text += (
            f", soak RSS {100 * series['end_vs_warmup']:+.1f} % "
            f"({series['slope_mb_per_hour']:+.1f} MB/h)"
        )
    return text


# --- faults ---------------------------------------------------------------------------------


class Checklist:
    """Assertions of the faults mode, printed as a checklist."""

    def __init__(self) -> None:
        """Start empty."""
        self.items: list[dict[str, Any]] = []

    def check(self, fault: str, what: str, ok: bool, detail: Any = "") -> bool:
        """Record one assertion."""
        self.items.append({"fault": fault, "check": what, "ok": bool(ok), "detail": str(detail)})
        tail = f" — {detail}" if detail != "" else ""
        log(f"  [{'PASS' if ok else 'FAIL'}] ({fault}) {what}{tail}")
        return bool(ok)

    @property
    def passed(self) -> bool:
        """Return True when every check passed."""
        return all(item["ok"] for item in self.items)


def went_off_then_on(rig: Rig, entity: str, since: float) -> tuple[float | None, float | None]:
    """Return when a connectivity sensor first went off after since, and on again after that."""
    off = on = None
    for t, entity_id, _old, new in rig.transitions:
        if entity_id != entity or t < since:
            continue
        if off is None and new == "off":
            off = t
        elif off is not None and new == "on":
            on = t
            break
    return off, on


async def faults_run(args: argparse.Namespace) -> dict[str, Any]:
    """Inject each fault into a running set-up and assert what must happen."""
    count = args.satellites
    if count < 4:
        raise HarnessError(
            "faults needs at least 4 satellites (victims, stall, garbage, bystanders)"
        )
    rig = Rig("faults", args.out or ROOT / "build/loadtest/faults", recorder=not args.no_recorder)
    checks = Checklist()
    specs = satellite_specs(count, 1.0)  # all loud: the engine tags (nearly) every window
    names = [spec["name"] for spec in specs]
    victims = names[: max(1, count // 3)]
    stall, garbage = names[len(victims)], names[len(victims) + 1]
    bystanders = names[len(victims) + 2 :]
    report: dict[str, Any] = {
        "mode": "faults",
        "satellites": count,
        "roles": {
            "killed": victims,
            "stalled": stall,
            "garbage": garbage,
            "bystanders": bystanders,
        },
        "timing": {"backoff_s": FAULT_BACKOFF, "stall_timeout_s": FAULT_STALL_TIMEOUT_S},
        "conditions": conditions(None),
        "logs": str(rig.log_file),
    }
    started = time.monotonic()
    rig.prepare()
    try:
        await rig.start_mics(
            {"victims": specs[: len(victims)], "others": specs[len(victims) :]}, None
        )
        await fault_model(rig, checks)
        await rig.add_satellites(names)
        await rig.arm(True)
        await rig.wait_for("every satellite connected", all_connected(names), 30)
        await asyncio.sleep(3)
        await fault_kill(rig, checks, victims, names[len(victims) :])
        await fault_stall(rig, checks, stall)
        await fault_garbage(rig, checks, garbage)
        await fault_restart(rig, checks, names)
        snap = await rig.snapshot()
        engine = snap.get("engine", {})
        checks.check(
            "all",
            "engine worker alive, no engine errors",
            engine.get("thread_alive") and engine.get("errors") == 0,
            engine,
        )
        problems = log_problems([rig.log_file.with_name("home-assistant.log.1"), rig.log_file])
        checks.check(
            "all",
            "no Guard Mode error or traceback in the logs, no unhandled loop errors",
            not problems["guard_mode_errors"]
            and not problems["guard_mode_tracebacks"]
            and not problems["loop_errors"],
            {k: v for k, v in problems.items() if v},
        )
        report["log"] = problems
        report["lag_ms"] = {  # the whole run: boots, reloads and faults included; not asserted
            **percentiles(rig.lags_between(0)),
            **rig.lag_details(started, float("inf")),
        }
        report["phases_s"] = {name: round(t - started, 1) for name, t in rig.phases.items()}
    except HarnessError as err:
        checks.check("harness", "the run completed", False, err)
    finally:
        await rig.close()
    report["checks"] = checks.items
    report["failures"] = [
        f"({c['fault']}) {c['check']}: {c['detail']}" for c in checks.items if not c["ok"]
    ]
    report["passed"] = checks.passed
    report["duration_s"] = round(time.monotonic() - started, 1)
    return report


async def fault_model(rig: Rig, checks: Checklist) -> None:
    """(d) The model file is corrupted at start-up: setup retry, a repair, then recovery."""
    rig.phases["d_model"] = time.monotonic()
    fault = "d"
    size = corrupt_model(rig.config)
    log(f"(d) model truncated from {size} to 4096 bytes in the config dir's copy; booting")
    await rig.start_hass(backoff=FAULT_BACKOFF, stall_timeout=FAULT_STALL_TIMEOUT_S)
    result = await rig.ha.call("setup_entry")
    snap = await rig.snapshot()
    checks.check(
        fault, "the config flow still creates the entry", result["result"] == "create_entry", result
    )
    entry = snap["entry"] or {}
    checks.check(
        fault,
        "the entry is in setup retry, its reason names the model file",
        entry.get("state") == "setup_retry" and "model file" in str(entry.get("reason")),
        entry,
    )
    checks.check(
        fault,
        "repair issue model_unusable exists",
        "model_unusable" in snap["issues"],
        snap["issues"],
    )
    checks.check(
        fault,
        "the component is the HACS copy in the config dir",
        str(snap["module_file"]).startswith(str(rig.config)),
        snap["module_file"],
    )
    await asyncio.sleep(7)  # Home Assistant retries by itself (first retry after ~5 s)
    snap = await rig.snapshot()
    checks.check(
        fault,
        "nothing crashes: Home Assistant answers, entry still retrying, issue still there",
        rig.ha.alive
        and snap["entry"]["state"] == "setup_retry"
        and "model_unusable" in snap["issues"],
        snap["entry"],
    )
    restore_model(rig.config)
    result = await rig.ha.call("reload")
    snap = await rig.snapshot()
    checks.check(
        fault,
        "after restoring the file and reloading, the entry is loaded",
        result["state"] == "loaded",
        result,
    )
    checks.check(
        fault, "the repair issue is gone", "model_unusable" not in snap["issues"], snap["issues"]
    )


async def fault_kill(
    rig: Rig, checks: Checklist, victims: list[str], bystanders: list[str]
) -> None:
    """(a) Mic services killed (SIGKILL) mid-stream and restarted."""
    rig.phases["a_kill"] = time.monotonic()
    fault = "a"
    fleet = rig.fleets["victims"]
    entities = {sat["name"]: sat["entity"] for sat in rig.last["satellites"]}
    before = await rig.snapshot()
    t_kill = time.monotonic()
    await fleet.kill()
    log(f"(a) SIGKILLed the mic services of {', '.join(victims)}")
    await rig.wait_for(
        "the killed satellites' sensors off",
        lambda s: all(rig.satellites(s)[n]["sensor"] == "off" for n in victims),
        10,
    )
    offs = {n: went_off_then_on(rig, entities[n], t_kill)[0] for n in victims}
    checks.check(
        fault,
        "their connectivity sensors go off",
        all(off is not None for off in offs.values()),
        {n: f"off {off - t_kill:.2f} s after the kill" if off else None for n, off in offs.items()},
    )
    down = await rig.snapshot()
    await asyncio.sleep(6)
    mid = await rig.snapshot()
    outage = mid["t"] - down["t"]
    expected = outage / WINDOW_HOP_S
    slow = {
        n: windows(mid, n) - windows(down, n)
        for n in bystanders
        if windows(mid, n) - windows(down, n) < 0.85 * expected - 2
    }
    checks.check(
        fault,
        "other satellites keep streaming (windows keep increasing at real-time pace)",
        not slow,
        f"{len(bystanders)} bystanders, expected ~{expected:.0f} windows each in {outage:.1f} s"
        + (f"; short: {slow}" if slow else ""),
    )
    engine0, engine1 = down["engine"], mid["engine"]
    checks.check(
        fault,
        "engine unaffected (worker alive, no errors, still tagging)",
        engine1["thread_alive"]
        and engine1["errors"] == engine0["errors"] == 0
        and engine1["windows_tagged"] > engine0["windows_tagged"],
        f"tagged +{engine1['windows_tagged'] - engine0['windows_tagged']}",
    )
    attempts = {
        n: rig.satellites(mid)[n]["reconnects"] - rig.satellites(before)[n]["reconnects"]
        for n in victims
    }
    checks.check(
        fault,
        "reconnect attempts back off (a few in the outage, not a tight loop)",
        all(2 <= a <= 20 for a in attempts.values()),
        f"attempts in {mid['t'] - t_kill:.1f} s: {attempts}",
    )
    t_restart = time.monotonic()
    await fleet.start()
    await rig.wait_for("the restarted satellites' sensors on", all_connected(victims), 15)
    flips = {n: went_off_then_on(rig, entities[n], t_kill) for n in victims}
    checks.check(
        fault,
        "after the restart their sensors go on again (state history: off, then on)",
        all(off is not None and on is not None and on >= t_restart for off, on in flips.values()),
        {
            n: f"on {on - t_restart:.2f} s after the restart" if on else None
            for n, (_, on) in flips.items()
        },
    )
    first = await rig.snapshot()
    await asyncio.sleep(3)
    last = await rig.snapshot()
    checks.check(
        fault,
        "the reconnected satellites stream again",
        all(windows(last, n) > windows(first, n) for n in victims),
        {n: windows(last, n) - windows(first, n) for n in victims},
    )
    await asyncio.sleep(1)  # Home Assistant writes its log from a queue
    counts = {
        n: (
            count_in_log(rig.log_file, rf"Satellite {n} is unreachable"),
            count_in_log(rig.log_file, rf"Satellite {n} is back"),
        )
        for n in victims
    }
    checks.check(
        fault,
        "each outage logged once (unreachable, then back)",
        all(c == (1, 1) for c in counts.values()),
        counts,
    )


async def fault_stall(rig: Rig, checks: Checklist, name: str) -> None:
    """(b) A stalled connection: the service stops sending but keeps the connection open."""
    rig.phases["b_stall"] = time.monotonic()
    fault = "b"
    fleet = rig.fleet_of(name)
    entity = rig.satellites()[name]["entity"]
    t_stall = time.monotonic()
    await fleet.command(cmd="behavior", name=name, behavior="stall")
    log(f"(b) the mic service of {name} stopped sending (connection left open)")
    await rig.wait_for(
        "the stalled satellite's sensor off",
        lambda s: rig.satellites(s)[name]["sensor"] == "off",
        FAULT_STALL_TIMEOUT_S + 8,
    )
    off, _ = went_off_then_on(rig, entity, t_stall)
    noticed = (off - t_stall) if off else None
    checks.check(
        fault,
        f"the satellite notices through the stall timeout ({FAULT_STALL_TIMEOUT_S:g} s)",
        noticed is not None and FAULT_STALL_TIMEOUT_S * 0.7 <= noticed <= FAULT_STALL_TIMEOUT_S + 3,
        f"sensor off after {noticed:.2f} s" if noticed is not None else "no off transition",
    )
    took = await rig.wait_for("the stalled satellite's sensor on", all_connected([name]), 15)
    hung_up = fleet.disconnects(name, t_stall)
    checks.check(
        fault,
        "it hangs up the stalled connection",
        bool(hung_up),
        f"{len(hung_up)} closed by the client",
    )
    checks.check(
        fault,
        "and reconnects (new connection, sensor on)",
        fleet.connections(name, t_stall) >= 1,
        f"{fleet.connections(name, t_stall)} new connection(s), on after {took:.1f} s more",
    )
    first = await rig.snapshot()
    await asyncio.sleep(2)
    last = await rig.snapshot()
    checks.check(
        fault,
        "it streams again",
        windows(last, name) > windows(first, name),
        windows(last, name) - windows(first, name),
    )
    await asyncio.sleep(1)
    logged = count_in_log(
        rig.log_file, rf"Satellite {name} is unreachable: .*stopped sending audio"
    )
    checks.check(
        fault, "the stall is logged once, in plain words", logged == 1, f"{logged} line(s)"
    )


async def fault_garbage(rig: Rig, checks: Checklist, name: str) -> None:
    """(c) Garbage on the wire, on the open connection and on every reconnect for a while."""
    rig.phases["c_garbage"] = time.monotonic()
    fault = "c"
    fleet = rig.fleet_of(name)
    before = await rig.snapshot()
    t_garbage = time.monotonic()
    await fleet.command(cmd="behavior", name=name, behavior="garbage")
    log(f"(c) the mic service of {name} sends garbage instead of events")
    await rig.wait_for(
        "the garbage satellite's sensor off",
        lambda s: rig.satellites(s)[name]["sensor"] == "off",
        10,
    )
    with contextlib.suppress(HarnessError):  # judged below
        await rig.wait_for(
            "three connections with garbage", lambda _: fleet.connections(name, t_garbage) >= 3, 20
        )
    attempts = fleet.connections(name, t_garbage)
    checks.check(
        fault,
        "the satellite reconnects (and gets garbage again)",
        attempts >= 3,
        f"{attempts} connections with garbage",
    )
    snap = await rig.snapshot()
    sat = rig.satellites(snap)[name]
    checks.check(
        fault,
        "no crash: Home Assistant and the engine run, nothing garbled reached the engine",
        rig.ha.alive
        and snap["engine"]["errors"] == 0
        and snap["engine"]["thread_alive"]
        # a remote engine's stream counts bad chunks; a local one gets only converted audio
        and sat["stream"].get("bad_chunks", 0)
        == rig.satellites(before)[name]["stream"].get("bad_chunks", 0),
        f"last error: {sat['last_error']}",
    )
    await fleet.command(cmd="behavior", name=name, behavior="normal")
    took = await rig.wait_for("the garbage satellite's sensor on", all_connected([name]), 15)
    first = await rig.snapshot()
    await asyncio.sleep(2)
    last = await rig.snapshot()
    checks.check(
        fault,
        "once the service behaves, the satellite is back and streams",
        windows(last, name) > windows(first, name),
        f"on after {took:.1f} s",
    )
    await asyncio.sleep(1)
    unreachable = count_in_log(rig.log_file, rf"Satellite {name} is unreachable")
    back = count_in_log(rig.log_file, rf"Satellite {name} is back")
    checks.check(
        fault,
        f"the error is logged once for {attempts} failed connections (and 'back' once)",
        unreachable == 1 and back == 1,
        f"unreachable {unreachable}×, back {back}×",
    )


async def fault_restart(rig: Rig, checks: Checklist, names: list[str]) -> None:
    """(e) Home Assistant restarted (its restart action) while armed."""
    rig.phases["e_restart"] = time.monotonic()
    fault = "e"
    snap = await rig.snapshot()
    checks.check(
        fault,
        "armed before the restart",
        (snap.get("switch") or {}).get("state") == "on",
        snap.get("switch"),
    )
    t_restart = time.monotonic()
    await rig.ha.call("restart")
    log("(e) Home Assistant restarting (homeassistant.restart)")
    code = await rig.ha.wait_exit(120)
    checks.check(
        fault, "Home Assistant exits with the restart code (100)", code == 100, f"exit code {code}"
    )
    await rig.start_hass(backoff=FAULT_BACKOFF, stall_timeout=FAULT_STALL_TIMEOUT_S)
    took = await rig.wait_for(
        "the entry loaded after the restart",
        lambda s: (
            s.get("entry") is not None
            and s["entry"]["state"] == "loaded"
            and s.get("switch") is not None
        ),
        60,
    )
    snap = rig.last
    checks.check(
        fault,
        "comes back armed (switch on, restored from storage)",
        snap["switch"]["state"] == "on",
        f"{snap['switch']} after {took:.1f} s",
    )
    took = await rig.wait_for(
        "every satellite connected after the restart", all_connected(names), 30
    )
    elapsed = time.monotonic() - t_restart
    checks.check(
        fault, "every satellite reconnects", True, f"{elapsed:.1f} s after the restart action"
    )
    first = await rig.snapshot()
    await asyncio.sleep(3)
    last = await rig.snapshot()
    still = [n for n in names if windows(last, n) <= windows(first, n)]
    checks.check(
        fault,
        "and streams",
        not still,
        f"not streaming: {still}" if still else f"{len(names)} streaming",
    )


# --- main -----------------------------------------------------------------------------------


def print_text(report: dict[str, Any]) -> None:
    """Print the report for people: the JSON, then the checklist or targets."""
    print(json.dumps({k: v for k, v in report.items() if k != "checks"}, indent=2))
    if "checks" in report:
        print("\nChecklist:")
        for item in report["checks"]:
            detail = f" — {item['detail']}" if item["detail"] else ""
            print(f"  [{'x' if item['ok'] else ' '}] ({item['fault']}) {item['check']}{detail}")
    if "targets" in report:
        print("\nTargets:")
        for name, target in report["targets"].items():
            kind = "asserted" if target["asserted"] else "reported"
            print(f"  [{'x' if target['met'] else ' '}] {name} = {target['value']} ({kind})")


def summary_line(report: dict[str, Any]) -> str:
    """Return the last line: the verdict."""
    verdict = "PASSED" if report.get("passed") else "FAILED"
    if report["mode"] == "faults":
        checks = report.get("checks", [])
        detail = f"{sum(c['ok'] for c in checks)}/{len(checks)} checks passed"
    else:
        detail = streaming_summary(report) if "lag_ms" in report else ""
    if report.get("failures"):
        detail += " — " + "; ".join(report["failures"])
    return f"loadtest {report['mode']} {verdict} in {report.get('duration_s', 0):.0f} s: {detail}"


async def run(args: argparse.Namespace) -> int:
    """Run the mode; return the exit status."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
    ):  # also when started with SIGINT ignored
        loop.add_signal_handler(sig, task.cancel)
    try:
        if args.mode == "faults":
            report = await faults_run(args)
        else:
            report = await streaming_run(args, args.mode)
            judge_streaming(report, args.mode)
    except HarnessError as err:
        log(f"harness error: {err}")
        return 2
    finally:
        await cleanup()
    run_dir = args.out or ROOT / "build/loadtest" / args.mode
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        print(summary_line(report), file=sys.stderr)
    else:
        print_text(report)
        print("\n" + summary_line(report))
    return 0 if report["passed"] else 1


def main() -> None:
    """Parse the command line and run."""
    if sys.argv[1:2] == ["hostile"]:  # hostile peers: a harness of its own
        from .loadtest_hostile import main as hostile  # noqa: PLC0415

        hostile(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=["load", "faults", "soak"], default="load")
    parser.add_argument(
        "--satellites", "-n", type=int, default=None, help="default: load 16, faults 6, soak 4"
    )
    parser.add_argument(
        "--minutes",
        "-m",
        type=float,
        default=None,
        help="load: measured minutes (10), soak: total (60)",
    )
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds after arming")
    parser.add_argument(
        "--loud", type=float, default=0.25, help="share of loud satellites (default 0.25)"
    )
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument(
        "--pin",
        dest="pin",
        action="store_true",
        default=None,
        help="pin HA to one CPU (load default)",
    )
    pin.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin")
    parser.add_argument(
        "--no-recorder", action="store_true", help="run Home Assistant without its recorder"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run dir (default build/loadtest/MODE)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    args = parser.parse_args()
    count, minutes = DEFAULTS[args.mode]
    args.satellites = args.satellites if args.satellites is not None else count
    args.minutes = args.minutes if args.minutes is not None else minutes
    if args.out is not None:
        args.out = args.out.resolve()
    try:
        code = asyncio.run(run(args))
    except KeyboardInterrupt, asyncio.CancelledError:
        kill_now()
        log("interrupted; every process ended")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
