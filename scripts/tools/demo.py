"""The Guard Mode demo: a real Home Assistant, set up and armed, with a simulated microphone.

    python -m scripts.tools.demo [--reset] [--config DIR] [--port N] [--mic-port N]
    (scripts/develop runs this)

1. builds the scenario recording if it's missing (scripts/make_scenario; needs espeak-ng);
2. starts the "Living room mic": a Wyoming microphone service on 127.0.0.1:MIC_PORT that hears
   the recording in a loop at real-time pace (demo_mic.py);
3. the first time (or when something is missing) sets Home Assistant up through its own APIs
   (demo_bootstrap.py): user demo / demo, onboarding done, area, Guard Mode, the satellite, armed,
   the Guard Mode dashboard;
4. starts ``hass --config DIR`` and narrates, in this terminal, what the microphone is hearing
   and what Home Assistant made of it.

Ctrl-C (SIGINT to the process group, or SIGTERM to this process) stops Home Assistant and the
microphone. ``--reset`` deletes DIR's state first (everything but configuration.yaml and
README.md). A restart from Home Assistant's UI restarts it here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
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

import aiohttp

from scripts.tools.demo_const import HA_PORT, MIC_PORT, PASSWORD, SATELLITE, USERNAME
from scripts.tools.demo_ha import HomeAssistantClient, HomeAssistantError
from scripts.tools.demo_mic import RoomMic
from scripts.tools.demo_scenario import Scenario, ScenarioUnavailable, Segment, ensure_scenario

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config"
TRACKED = {"configuration.yaml", "README.md"}  # what --reset keeps
# The hub's switch; a demo config made before it was named after its device has it as
# switch.guard_mode_guard_mode (Home Assistant keeps an entity's id).
SWITCH_PREFIX = "switch.guard_mode"
RESTART_EXIT_CODE = 100  # Home Assistant asks to be restarted
STOP_TIMEOUT_S = 60.0
START_TIMEOUT_S = 300.0
SOUND_WORDS = {
    "glass_break": "glass breaking",
    "smoke_alarm": "a smoke alarm",
    "co_alarm": "a CO alarm",
    "dog_bark": "a dog barking",
    "baby_cry": "a baby crying",
    "gunshot": "a gunshot",
}
REASON_WORDS = {"media": "it came from the TV", "media_player": "a media player was playing"}


def say(message: str) -> None:
    """Print a line of the demo's own (Home Assistant's log lines go to the same terminal)."""
    print(f"demo │ {message}", flush=True)


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


# --- the config folder -------------------------------------------------------------------------


def reset(config: Path) -> None:
    """Delete the demo's Home Assistant state (not the tracked files)."""
    is_state = (config / ".HA_VERSION").is_file() or (config / ".storage").is_dir()
    if config != DEFAULT_CONFIG.resolve() and not is_state:
        raise SystemExit(f"--reset: {config} doesn't look like a Home Assistant config folder")
    if config in (REPO, *REPO.parents):
        raise SystemExit(f"--reset: refusing to empty {config}")
    for path in config.iterdir():
        if path.name in TRACKED:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    say(f"--reset: deleted Home Assistant's state in {config}")


def prepare_config(config: Path) -> None:
    """Give config the demo's configuration.yaml (if it's another folder) and Guard Mode."""
    config.mkdir(parents=True, exist_ok=True)
    if config.resolve() != DEFAULT_CONFIG.resolve():
        shutil.copyfile(DEFAULT_CONFIG / "configuration.yaml", config / "configuration.yaml")
    link = config / "custom_components" / "guard_mode"
    link.parent.mkdir(exist_ok=True)
    target = os.path.relpath(REPO / "custom_components" / "guard_mode", link.parent)
    if not (link.is_symlink() and os.readlink(link) == target):
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


def _storage(config: Path, key: str) -> Any:
    try:
        return json.loads((config / ".storage" / key).read_text(encoding="utf-8")).get("data", {})
    except OSError, ValueError:
        return {}


def missing_setup(config: Path, port: int, mic_port: int) -> list[str]:
    """Return what the demo set-up lacks (read-only look at Home Assistant's storage)."""
    missing = []
    steps = set(_storage(config, "onboarding").get("done", []))
    if not {"user", "core_config", "analytics", "integration"} <= steps:
        missing.append("onboarding")
    users = _storage(config, "auth_provider.homeassistant").get("users", [])
    if not any(u.get("username") == USERNAME for u in users):
        missing.append(f"user {USERNAME!r}")
    entries = _storage(config, "core.config_entries").get("entries", [])
    hub = next((e for e in entries if e.get("domain") == "guard_mode"), None)
    if hub is None:
        missing.append("Guard Mode")
    elif not any(
        s.get("unique_id") == f"wyoming:127.0.0.1:{mic_port}" for s in hub.get("subentries", [])
    ):
        missing.append(f"satellite {SATELLITE!r} on port {mic_port}")
    if _storage(config, "http").get("stable", {}).get("server_port") != port:
        missing.append(f"HTTP on port {port}")
    dashboards = _storage(config, "lovelace_dashboards").get("items", [])
    if not any(d.get("url_path") == "guard-mode" for d in dashboards):
        missing.append("dashboard")
    return missing


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_command(args: list[str]) -> list[str]:
    """Run a child so that it gets SIGTERM if this process dies (no orphans)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *args] if setpriv else args


# --- narration ---------------------------------------------------------------------------------


@dataclass
class Narrator:
    """Tells what the microphone is hearing and what Home Assistant reported."""

    scenario: Scenario
    quiet: bool = False
    muted: bool = False  # while the set-up's Home Assistant listens (briefly)
    onsets: dict[str, float] = field(default_factory=dict)  # sound → wall time its segment began

    def on_chunk(self, first: int, end: int, loop: int, wall: float) -> None:
        rate = self.scenario.rate
        quiet = self.quiet or self.muted
        if first == 0 and not quiet:
            again = ", again" if loop else ""
            length = f"{self.scenario.duration_s:.0f} s"
            say(f"▶ the mic plays the scenario from the start ({length}{again})")
        for segment in self.scenario.segments:
            if first <= round(segment.t0 * rate) < end:
                if segment.sound:
                    self.onsets[segment.sound] = wall
                if not quiet:
                    say(f"  {clock(segment.t0)}  {segment.what}{expectation(segment)}")

    def on_event(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        sound = str(data.get("sound"))
        words = SOUND_WORDS.get(sound, sound.replace("_", " "))
        if event.get("event_type") == "guard_mode_detection":
            message = f"heard {words} (confidence {round(100 * float(data['confidence']))} %)"
            if data.get("simulated"):
                message += " (simulated)"
        else:
            reason = REASON_WORDS.get(str(data.get("reason")), str(data.get("reason")))
            message = f"heard {words}, ignored: {reason}"
        latency = ""
        onset = self.onsets.get(sound)
        with contextlib.suppress(KeyError, ValueError):
            fired = datetime.fromisoformat(event["time_fired"]).timestamp()
            if onset is not None and 0 <= fired - onset < 30 and not data.get("simulated"):
                latency = f"  [{fired - onset:.1f} s after the sound began]"
        say(f"  ◀ Home Assistant: {data.get('satellite')} {message}{latency}")


def expectation(segment: Segment) -> str:
    if segment.expect == "detection":
        return f"   → expect an alert: {segment.sound}"
    if segment.expect == "suppressed":
        return f"   → expect it to be ignored: {segment.sound} from the TV"
    return ""


# --- Home Assistant ----------------------------------------------------------------------------


@dataclass
class Demo:
    """Runs the microphone, sets Home Assistant up once, runs it until asked to stop."""

    config: Path
    port: int
    mic_port: int
    quiet: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    hass: asyncio.subprocess.Process | None = None
    started: float = field(default_factory=time.monotonic)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._signalled, signum)
        try:
            scenario = await asyncio.to_thread(ensure_scenario, build=False)
        except ScenarioUnavailable:
            if not await self._child([sys.executable, "-m", "scripts.tools.demo_scenario"]):
                return 1
            scenario = await asyncio.to_thread(ensure_scenario, build=False)
        for port, what in ((self.port, "Home Assistant"), (self.mic_port, "the demo microphone")):
            if not port_free(port):
                say(f"port {port} ({what}) is in use: is the demo already running?")
                return 1
        narrator = Narrator(scenario, quiet=self.quiet)
        mic = RoomMic(scenario.pcm, scenario.rate, port=self.mic_port, on_chunk=narrator.on_chunk)
        await mic.start()
        try:
            if missing := missing_setup(self.config, self.port, self.mic_port):
                say(f"setting Home Assistant up in {self.config} ({', '.join(missing)})…")
                narrator.muted = True
                if not await self._bootstrap():
                    return 1
                narrator.muted = False
            return await self._serve(narrator)
        finally:
            await mic.stop()

    def _env(self) -> dict[str, str]:
        # The port Home Assistant starts on before its HTTP settings are stored (first start).
        return {**os.environ, "SETUP_PORT": str(self.port)}

    def _signalled(self, signum: int) -> None:
        if not self.stop.is_set():
            say(f"{signal.Signals(signum).name}: stopping Home Assistant and the microphone…")
        self.stop.set()

    async def _child(self, command: list[str]) -> bytes | None:
        """Run a child to its end (its output: None if it failed or we were stopped)."""
        process = await asyncio.create_subprocess_exec(
            *child_command(command),
            cwd=REPO,
            stdout=subprocess.PIPE,
            env=self._env(),
            start_new_session=True,  # Ctrl-C is for us; we stop our children
        )
        communicate = asyncio.ensure_future(process.communicate())
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({communicate, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not communicate.done():
            await terminate(process)
            communicate.cancel()
            return None
        out, _ = communicate.result()
        return out if process.returncode == 0 else None

    async def _bootstrap(self) -> bool:
        out = await self._child(
            [
                sys.executable,
                "-m",
                "scripts.tools.demo_bootstrap",
                "--config",
                str(self.config),
                "--mic-port",
                str(self.mic_port),
                "--port",
                str(self.port),
            ]
        )
        if out is None:
            if not self.stop.is_set():
                say("the set-up failed; see the messages above")
            return False
        summary = json.loads(out.decode().strip().splitlines()[-1])
        done = ", ".join(summary["done"]) or "nothing to do"
        say(f"set up in {time.monotonic() - self.started:.0f} s: {done}")
        return True

    async def _serve(self, narrator: Narrator) -> int:
        while True:
            say(f"starting Home Assistant from {self.config}…")
            self.hass = await asyncio.create_subprocess_exec(
                *child_command(
                    [sys.executable, "-m", "homeassistant", "--config", str(self.config)]
                ),
                cwd=REPO,
                env=self._env(),
                # Not in our process group: Ctrl-C reaches only us, and we stop Home Assistant
                # once we have logged out of it. If we die, setpriv's pdeathsig stops it.
                start_new_session=True,
            )
            watcher = asyncio.create_task(self._watch(narrator))
            exited = asyncio.ensure_future(self.hass.wait())
            stopping = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            stopping.cancel()
            if self.stop.is_set():
                await terminate(self.hass)
                say("stopped.")
                return 0
            code = self.hass.returncode
            if code == RESTART_EXIT_CODE:
                say("Home Assistant asked for a restart")
                continue
            say(f"Home Assistant exited (status {code}); stopping the demo")
            return 1 if code is None else code

    async def _watch(self, narrator: Narrator) -> None:
        """Once Home Assistant answers: say how to log in, then report its detections."""
        url = f"http://127.0.0.1:{self.port}"
        async with aiohttp.ClientSession() as session:
            client = HomeAssistantClient(session, url)
            try:
                await client.wait_until_up(
                    START_TIMEOUT_S,
                    alive=lambda: self.hass is not None and self.hass.returncode is None,
                )
                await client.login(USERNAME, PASSWORD)
                await self._banner(client)
                while True:
                    try:
                        ws = await client.websocket()
                    except (HomeAssistantError, aiohttp.ClientError) as err:
                        say(f"(can't follow Home Assistant's events: {err}; retrying)")
                        await asyncio.sleep(5)
                        continue
                    try:
                        for event_type in ("guard_mode_detection", "guard_mode_suppressed"):
                            await ws.subscribe_events(event_type, narrator.on_event)
                        await ws.subscribe_events("state_changed", switch_changed)
                        await ws.wait_closed()
                    finally:
                        await ws.close()
                    await asyncio.sleep(2)
            except HomeAssistantError as err:
                say(f"(can't follow Home Assistant: {err})")
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(client.logout())

    async def _banner(self, client: HomeAssistantClient) -> None:
        """Wait until Guard Mode is up (and its mic connected, if armed); say how to log in."""
        deadline = time.monotonic() + START_TIMEOUT_S
        armed = connected = None
        while time.monotonic() < deadline:
            states = {s["entity_id"]: s for s in await client.get("/api/states")}
            armed = next(
                (s["state"] for e, s in states.items() if e.startswith(SWITCH_PREFIX)), None
            )
            connected = next(
                (
                    s["state"]
                    for s in states.values()
                    if s["attributes"].get("friendly_name") == f"{SATELLITE} Connected"
                ),
                None,
            )
            if armed == "off" or (armed == "on" and connected == "on"):
                break
            await asyncio.sleep(0.5)
        say("")
        say(
            f"Guard Mode demo is ready after {time.monotonic() - self.started:.0f} s: "
            f"open http://localhost:{self.port} and log in as {USERNAME} / {PASSWORD}"
        )
        if armed == "on":
            link = "connected" if connected == "on" else f"connection: {connected}"
            say(f"Guard mode is ARMED; {SATELLITE} ({link})")
            say("hears the scenario (150 s, in a loop): watch the Guard Mode dashboard and its")
            say("logbook; this terminal tells what the mic hears and what Home Assistant reported.")
        else:
            say(f"Guard mode is {armed}: turn the Guard Mode switch on to listen.")
        say("Ctrl-C stops Home Assistant and the microphone.")
        say("")


def switch_changed(event: dict[str, Any]) -> None:
    """Say when guard mode is armed or disarmed."""
    data = event.get("data", {})
    if not str(data.get("entity_id")).startswith(SWITCH_PREFIX):
        return
    new = (data.get("new_state") or {}).get("state")
    old = (data.get("old_state") or {}).get("state")
    if new != old and new in ("on", "off") and old in ("on", "off"):
        what = "ARMED: the mic opens" if new == "on" else "disarmed: the mic closes"
        say(f"  ◀ Guard mode {what}")


async def terminate(process: asyncio.subprocess.Process) -> None:
    """Ask a child to stop (SIGTERM); kill it if it hasn't within STOP_TIMEOUT_S."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        say(f"process {process.pid} did not stop in {STOP_TIMEOUT_S:.0f} s: killing it")
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/develop", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reset", action="store_true", help="start from scratch (deletes DIR's state)"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config folder")
    parser.add_argument("--port", type=int, default=HA_PORT, help="Home Assistant's port")
    parser.add_argument(
        "--mic-port", type=int, default=MIC_PORT, help="the demo mic's port (0: any)"
    )
    parser.add_argument("--quiet", action="store_true", help="don't narrate the scenario")
    args = parser.parse_args(argv)
    config = args.config.resolve()
    if args.reset and config.is_dir():
        reset(config)
    prepare_config(config)
    mic_port = args.mic_port or free_port()
    demo = Demo(config=config, port=args.port, mic_port=mic_port, quiet=args.quiet)
    return asyncio.run(demo.run())


if __name__ == "__main__":
    sys.exit(main())
