"""Processes of the load test: Home Assistant (with the probe), the mic fleets, /proc readings.

Every child process is registered here and ended by :func:`cleanup` (the harness calls it in a
``finally``, also on Ctrl-C); the children also ask the kernel to SIGTERM them if the harness
dies (PR_SET_PDEATHSIG), so nothing outlives a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = Path("custom_components/guard_mode")
MODEL = COMPONENT / "engine/data/yamnet.onnx"
PROBE_SOURCE = Path(__file__).with_name("loadtest_probe.py")
HASS_WRAPPER = Path(__file__).with_name("loadtest_hass.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_children: set[asyncio.subprocess.Process] = set()


class HarnessError(Exception):
    """Something the harness needs did not happen (a child died, a timeout passed)."""


def log(message: str) -> None:
    """Print a progress line on stderr."""
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """Return a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- /proc ----------------------------------------------------------------------------------


def _stat_fields(path: str) -> tuple[str, list[str]]:
    text = Path(path).read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return comm, text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds of a process (all its threads, living and ended)."""
    _, fields = _stat_fields(f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Return {tid: (thread name, CPU seconds)} of a process's living threads."""
    result = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            comm, fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
            result[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return result


def rss_mb(pid: int) -> float:
    """Return the resident set size of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no VmRSS for {pid}")


def machine_cpu() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the machine so far (all cores)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def loadavg() -> list[float]:
    """Return the 1, 5 and 15 minute load averages."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def thread_split(
    pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """Return CPU seconds between two thread readings: event loop, engine, executor, rest."""
    split = {"event_loop": 0.0, "engine": 0.0, "executor": 0.0, "recorder": 0.0, "other": 0.0}
    for tid, (name, seconds) in after.items():
        spent = seconds - before.get(tid, (name, 0.0))[1]
        if tid == pid:
            split["event_loop"] += spent
        elif name.startswith("guard_mode_eng"):
            split["engine"] += spent
        elif name.startswith("SyncWorker"):
            split["executor"] += spent
        elif name.lower().startswith("recorder"):
            split["recorder"] += spent
        else:
            split["other"] += spent
    return {key: round(value, 2) for key, value in split.items()}


# --- children -------------------------------------------------------------------------------


async def spawn(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start a child in its own session (Ctrl-C reaches the harness, which ends it in order)."""
    proc = await asyncio.create_subprocess_exec(*args, start_new_session=True, **kwargs)
    _children.add(proc)
    return proc


async def end(proc: asyncio.subprocess.Process, grace_s: float = 10.0) -> int | None:
    """SIGTERM a child, then SIGKILL it if it has not exited within grace_s; return its code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    _children.discard(proc)
    return proc.returncode


async def cleanup() -> None:
    """End every child still running."""
    await asyncio.gather(*(end(proc, 15.0) for proc in list(_children)), return_exceptions=True)


def kill_now() -> None:
    """SIGKILL every child (last resort, synchronous)."""
    for proc in list(_children):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


# --- the config dir, as after a HACS install ------------------------------------------------


def hacs_files() -> list[Path]:
    """Return what HACS copies: the tracked files of custom_components/guard_mode."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", str(COMPONENT)],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        files = [Path(name) for name in out.decode().split("\0") if name]
    except OSError, subprocess.CalledProcessError:
        files = []
    if not files:  # not a git checkout: the folder without caches
        files = [
            path.relative_to(ROOT)
            for path in (ROOT / COMPONENT).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        ]
    return files


def git_state() -> dict[str, Any]:
    """Return the commit the run is on and whether the component differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", str(COMPONENT)],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except OSError, subprocess.CalledProcessError:
        return {"commit": None, "component_modified": None}
    return {"commit": commit.strip(), "component_modified": bool(changed.strip())}


def prepare_config(config: Path, http_port: int, recorder: bool) -> None:
    """Create a fresh config dir: the HACS copy of Guard Mode, the probe, configuration.yaml."""
    shutil.rmtree(config, ignore_errors=True)
    for name in hacs_files():
        (config / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, config / name)
    probe = config / "custom_components/loadtest_probe"
    probe.mkdir(parents=True)
    shutil.copy2(PROBE_SOURCE, probe / "__init__.py")
    manifest = {
        "domain": "loadtest_probe",
        "name": "Guard Mode load test probe",
        "codeowners": [],
        "dependencies": [],
        "documentation": "https://github.com/guard-mode/guard-mode",
        "iot_class": "local_push",
        "requirements": [],
        "version": "1.0.0",
    }
    (probe / "manifest.json").write_text(json.dumps(manifest, indent=2))
    lines = [
        "homeassistant:",
        "  name: Load test",
        "  time_zone: UTC",
        "  unit_system: metric",
        "logger:",
        "  default: warning",
        "  logs:",
        "    custom_components.guard_mode: info",
        "    homeassistant.config_entries: info",
        "loadtest_probe:",
    ]
    if recorder:
        lines += ["recorder:", "  purge_keep_days: 1"]
    (config / "configuration.yaml").write_text("\n".join(lines) + "\n")
    write_http_settings(config, http_port)


def write_http_settings(config: Path, http_port: int) -> None:
    """Serve on 127.0.0.1:http_port, confirmed, as Settings → System → Network stores it.

    HTTP settings live in Home Assistant's storage; an ``http:`` block in configuration.yaml
    would be migrated as an unconfirmed trial that Home Assistant reverts, with a restart,
    after five minutes.
    """
    from homeassistant.components.http import config as http_config  # noqa: PLC0415

    stable = http_config.HTTP_STORAGE_SCHEMA(
        {"server_host": ["127.0.0.1"], "server_port": http_port}
    )
    stable.update(created_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    stable.update(error=None, error_message=None)
    storage = config / ".storage"
    storage.mkdir(exist_ok=True)
    (storage / "http").write_text(
        json.dumps(
            {
                "version": http_config.STORAGE_VERSION,
                "minor_version": http_config.STORAGE_MINOR_VERSION,
                "key": http_config.STORAGE_KEY,
                "data": {"stable": stable, "pending": None, "yaml_migration_done": True},
            },
            indent=2,
        )
    )


def corrupt_model(config: Path, keep_bytes: int = 4096) -> int:
    """Truncate the model file of the config dir's copy; return its original size."""
    path = config / MODEL
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(keep_bytes)
    return size


def restore_model(config: Path) -> None:
    """Put the repository's model file back into the config dir's copy."""
    shutil.copy2(ROOT / MODEL, config / MODEL)


# --- Home Assistant -------------------------------------------------------------------------


class HomeAssistant:
    """Home Assistant in its own process, driven through the probe's control channel."""

    def __init__(
        self,
        run_dir: Path,
        config: Path,
        log_file: Path,
        *,
        cpu: int | None = None,
        backoff: tuple[float, float, float] | None = None,  # first, longest wait; steady
        stall_timeout: float | None = None,
    ) -> None:
        """Describe how to start it (call start)."""
        self.run_dir = run_dir
        self.config = config
        self.log_file = log_file
        self.cpu = cpu
        self.backoff = backoff
        self.stall_timeout = stall_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.started_at = 0.0
        self.ready_after_s = 0.0

    @property
    def pid(self) -> int:
        """Return the process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 300.0) -> None:
        """Start the process and wait until the probe answers."""
        control = self.config / "loadtest_control.json"
        control.unlink(missing_ok=True)
        args = [sys.executable, "-P", str(HASS_WRAPPER), "--config", str(self.config)]
        args += ["--log-file", str(self.log_file)]
        if self.cpu is not None:
            args += ["--cpu", str(self.cpu)]
        if self.backoff is not None:
            args += ["--backoff", *(str(v) for v in self.backoff)]
        if self.stall_timeout is not None:
            args += ["--stall-timeout", str(self.stall_timeout)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        # Home Assistant builds its SSL contexts at import time from REQUESTS_CA_BUNDLE; point it
        # at certifi's bundle in the venv, a file nothing rewrites while we start (no request
        # leaves the host in these tests).
        with contextlib.suppress(ImportError):
            import certifi  # noqa: PLC0415

            env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"] = certifi.where()
        console = (self.run_dir / "hass-console.log").open("ab")
        self.started_at = time.monotonic()
        self.proc = await spawn(
            *args,
            cwd=str(self.run_dir),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
        )
        console.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise HarnessError(
                    f"Home Assistant exited with {self.proc.returncode} while starting "
                    f"(see {self.run_dir / 'hass-console.log'} and {self.log_file})"
                )
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(control.read_text())
                if info["pid"] == self.proc.pid:
                    break
            if time.monotonic() > deadline:
                raise HarnessError(f"Home Assistant did not start in {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
        self._reader, self._writer = await asyncio.open_connection(
            "127.0.0.1", info["port"], limit=64 * 1024 * 1024
        )
        self.ready_after_s = time.monotonic() - self.started_at

    async def call(self, cmd: str, timeout_s: float = 120.0, **args: Any) -> dict[str, Any]:
        """Run a probe command; raise HarnessError when it fails."""
        if self._writer is None or self._reader is None or not self.alive:
            raise HarnessError(f"Home Assistant is not running (command {cmd})")
        async with self._lock:
            self._writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            await self._writer.drain()
            try:
                async with asyncio.timeout(timeout_s):
                    line = await self._reader.readline()
            except TimeoutError as err:
                raise HarnessError(f"probe command {cmd} took over {timeout_s:.0f} s") from err
        if not line:
            raise HarnessError(f"Home Assistant closed the control channel (command {cmd})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.pop("ok"):
            raise HarnessError(f"probe command {cmd} failed: {reply.get('error')}")
        return reply

    def _disconnect(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def wait_exit(self, timeout_s: float) -> int:
        """Wait for the process to exit by itself; return its exit code."""
        assert self.proc is not None
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
        self._disconnect()
        _children.discard(self.proc)
        return code

    async def stop(self, timeout_s: float = 60.0) -> int | None:
        """Stop it with Home Assistant's stop action; SIGTERM/SIGKILL if that does not work."""
        if self.proc is None:
            return None
        if self.alive:
            with contextlib.suppress(HarnessError, OSError):
                await self.call("stop", timeout_s=10.0)
            with contextlib.suppress(TimeoutError):
                await self.wait_exit(timeout_s)
        self._disconnect()
        return await end(self.proc, 15.0)


# --- Wyoming mic services -------------------------------------------------------------------


class MicFleet:
    """Wyoming mic services in a process of their own (scripts/tools/loadtest_mics.py)."""

    def __init__(self, label: str, specs: list[dict[str, Any]], run_dir: Path) -> None:
        """Describe the services (port 0: any free port; fixed after the first start)."""
        self.label = label
        self.specs = [dict(spec) for spec in specs]
        self.run_dir = run_dir
        self.cpus: set[int] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {}
        self._stats_wait: asyncio.Future[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def names(self) -> list[str]:
        """Return the services' names."""
        return [spec["name"] for spec in self.specs]

    async def start(self, timeout_s: float = 120.0) -> None:
        """Start the process (same ports as before on a restart) and wait until it listens."""
        for spec in self.specs:
            spec["port"] = self.ports.get(spec["name"], spec.get("port", 0))
        stderr = (self.run_dir / f"mics-{self.label}.log").open("ab")
        self.proc = await spawn(
            sys.executable,
            "-m",
            "scripts.tools.loadtest_mics",
            json.dumps(self.specs),
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        stderr.close()
        if self.cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, self.cpus)
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise HarnessError(f"mic services {self.label} exited while starting")
                    event = json.loads(line)
                    if event.get("ev") == "ready":
                        self.ports = event["ports"]
                        break
        except TimeoutError as err:
            raise HarnessError(f"mic services {self.label} did not start") from err
        self._task = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("ev") == "stats":
                    self.stats = event["mics"]
                    if self._stats_wait is not None and not self._stats_wait.done():
                        self._stats_wait.set_result(self.stats)
                elif event.get("ev") in ("connect", "disconnect"):
                    self.events.append(event)

    def connections(self, name: str, since: float = 0.0) -> int:
        """Return connections accepted by a service since a monotonic time."""
        return sum(
            1 for e in self.events if e["ev"] == "connect" and e["name"] == name and e["t"] >= since
        )

    def disconnects(self, name: str, since: float = 0.0) -> list[dict[str, Any]]:
        """Return disconnect events of a service since a monotonic time."""
        return [
            e
            for e in self.events
            if e["ev"] == "disconnect" and e["name"] == name and e["t"] >= since
        ]

    async def command(self, **command: Any) -> None:
        """Send a command to the process."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def get_stats(self) -> dict[str, Any]:
        """Return every service's counters."""
        self._stats_wait = asyncio.get_running_loop().create_future()
        await self.command(cmd="stats")
        async with asyncio.timeout(10):
            return await self._stats_wait

    async def kill(self) -> None:
        """SIGKILL the process: every service vanishes at once, as in a crash or power cut."""
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        _children.discard(self.proc)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def stop(self) -> None:
        """End the process."""
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            await end(self.proc, 5.0)
