"""Look at the demo in a browser: log in, open the Guard Mode dashboard, check it, screenshot it.

    python -m scripts.tools.screenshot [--url URL | --start [--config DIR --port N]]
        [--out docs/screenshot.png] [--wait-for SOUND]   (scripts/screenshot runs this)

Uses the demo at URL (default http://127.0.0.1:8123) if it answers; otherwise, or with --start,
starts it (``python -m scripts.tools.demo``) and stops it afterwards. Drives headless Debian
chromium over the Chrome DevTools protocol (a websocket, with aiohttp): logs in as demo / demo on
Home Assistant's login page, waits for the Guard Mode dashboard to render, saves a screenshot.
Exit status 1 if an entity of the dashboard is not on the rendered page: the names to look for
come from Home Assistant's API (entity registry + states), the page's text from a walk through
the DOM and every shadow root. --wait-for dog_bark (or glass_break, smoke_alarm, …) waits until
that sound's detection sensor is on before taking the picture.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import AsyncIterator
import contextlib
import itertools
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import aiohttp

from scripts.tools.demo_const import DASHBOARD, PASSWORD, SATELLITE, USERNAME
from scripts.tools.demo_ha import HomeAssistantClient, HomeAssistantError

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--force-prefers-reduced-motion",
    "--lang=en-US",
]

# Every text node of the page, including those inside shadow roots (Home Assistant's frontend is
# made of web components: document.body.innerText sees almost nothing of it); not the text of
# markdown cards (the demo's explanation names the entities too).
DEEP_TEXT_JS = """
(() => {
  const out = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.trim();
      if (text) out.push(text);
      return;
    }
    if (["STYLE", "SCRIPT", "HUI-MARKDOWN-CARD"].includes(node.nodeName)) return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(document);
  return out.join("\\n");
})()
"""

# Find elements by CSS selector through every shadow root; the helper is installed once per page.
DEEP_QUERY_JS = """
window.__deepAll = (selector) => {
  const found = [];
  const visit = (root) => {
    root.querySelectorAll(selector).forEach((el) => found.push(el));
    root.querySelectorAll("*").forEach((el) => { if (el.shadowRoot) visit(el.shadowRoot); });
  };
  visit(document);
  return found;
};
"""


class BrowserError(Exception):
    """The browser or the page did not do what was expected."""


# --- chromium over the DevTools protocol -------------------------------------------------------


class DevTools:
    """One page of a chromium, driven over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self._pending.pop(data.get("id", -1), None)
            if future is None or future.done():
                continue
            if "error" in data:
                future.set_exception(BrowserError(str(data["error"])))
            else:
                future.set_result(data.get("result", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, 60)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, limit_s: float, what: str) -> Any:
        """Evaluate expression until it is truthy; return its value."""
        deadline = time.monotonic() + limit_s
        while True:
            with contextlib.suppress(BrowserError):
                if value := await self.evaluate(expression):
                    return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {limit_s:.0f} s waiting for {what}")
            await asyncio.sleep(0.25)

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@contextlib.asynccontextmanager
async def chromium(
    session: aiohttp.ClientSession, width: int, height: int
) -> AsyncIterator[DevTools]:
    """Start a headless chromium with a fresh profile; yield its page."""
    program = find_chromium()
    if program is None:
        raise BrowserError("chromium is not installed (Debian: apt install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="guard-mode-chromium-", dir=REPO / "build"))
    process = subprocess.Popen(  # noqa: ASYNC220 (started once, stopped in finally)
        [
            program,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.is_file() and len(active.read_text().split()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start (exit status {process.poll()})")
            await asyncio.sleep(0.1)
        port = int(active.read_text().split()[0])
        async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        tools = DevTools(ws)
        try:
            await tools.send("Page.enable")
            await tools.send("Runtime.enable")
            await tools.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield tools
        finally:
            await tools.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        shutil.rmtree(profile, ignore_errors=True)


# --- the check ---------------------------------------------------------------------------------


async def expected_names(client: HomeAssistantClient) -> dict[str, str]:
    """Return entity id → the name the dashboard should show, for its Guard Mode entities."""
    ws = await client.websocket()
    try:
        entities = await ws.command("config/entity_registry/list")
        devices = await ws.command("config/device_registry/list")
        config = await ws.command("lovelace/config", url_path=DASHBOARD)
    finally:
        await ws.close()
    shown = set()

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("entity", "entities") or isinstance(value, (dict, list)):
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)
        elif isinstance(node, str) and "." in node:
            shown.add(node)

    collect(config)
    device_names = {d["id"]: d.get("name_by_user") or d.get("name") or "" for d in devices}
    states = {s["entity_id"]: s for s in await client.get("/api/states")}
    names = {}
    for entity in entities:
        entity_id = entity["entity_id"]
        if entity.get("platform") != "guard_mode" or entity_id not in shown:
            continue
        friendly = states.get(entity_id, {}).get("attributes", {}).get("friendly_name", "")
        device = device_names.get(entity.get("device_id") or "", "")
        name = friendly.removeprefix(f"{device} ") if device else friendly
        names[entity_id] = name or friendly
    return names


async def wait_for_sound(client: HomeAssistantClient, sound: str, limit_s: float) -> None:
    """Wait until the satellite's detection sensor for sound is on."""
    ws = await client.websocket()
    try:
        entities = await ws.command("config/entity_registry/list")
    finally:
        await ws.close()
    targets = [
        e["entity_id"]
        for e in entities
        if e.get("platform") == "guard_mode" and str(e.get("unique_id", "")).endswith(f"-{sound}")
    ]
    if not targets:
        raise BrowserError(f"no Guard Mode sensor for {sound!r}")
    print(f"waiting (up to {limit_s:.0f} s) until {targets[0]} is on…", file=sys.stderr)
    deadline = time.monotonic() + limit_s
    while (await client.get(f"/api/states/{targets[0]}"))["state"] != "on":
        if time.monotonic() > deadline:
            raise BrowserError(f"{targets[0]} did not turn on in {limit_s:.0f} s")
        await asyncio.sleep(0.5)


async def log_in(page: DevTools, url: str) -> str:
    """Log in on Home Assistant's login page as a person would (type, press Enter); return the
    path the app opened after logging in."""
    await page.send("Page.navigate", url=f"{url}/")
    await page.wait_for(
        DEEP_QUERY_JS + 'window.__deepAll("input[type=password]").length > 0',
        60,
        "the login page",
    )
    for selector, text in (
        ('input[autocomplete="username"], input[name="username"]', USERNAME),
        ("input[type=password]", PASSWORD),
    ):
        focused = await page.evaluate(
            DEEP_QUERY_JS
            + f"(() => {{ const el = window.__deepAll({json.dumps(selector)})[0];"
            + " if (!el) return false; el.focus(); return true; })()"
        )
        if not focused:
            raise BrowserError(f"no {selector} field on the login page")
        await page.send("Input.insertText", text=text)
    for kind in ("keyDown", "keyUp"):
        await page.send(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            **({"text": "\r"} if kind == "keyDown" else {}),
        )
    await page.wait_for(
        "!location.pathname.startsWith('/auth/') && !!document.querySelector('home-assistant')",
        60,
        "the log-in to finish (wrong password?)",
    )
    # The app picks the default dashboard once it has connected.
    return str(
        await page.wait_for(
            "location.pathname.length > 1 && location.pathname",
            30,
            "the default dashboard",
        )
    )


async def open_dashboard(page: DevTools, names: dict[str, str], limit_s: float) -> str:
    """Go to the Guard Mode dashboard (in the app, no reload); return its text once it shows."""
    await page.evaluate(
        f"history.pushState(null, '', '/{DASHBOARD}/home');"
        "window.dispatchEvent(new CustomEvent('location-changed'));"
    )
    wanted = json.dumps(sorted(set(names.values()) | {SATELLITE}))
    with contextlib.suppress(BrowserError):
        await page.wait_for(
            f"(() => {{ const text = {DEEP_TEXT_JS}.toLowerCase(); "
            f"return {wanted}.every((name) => text.includes(name.toLowerCase())); }})()",
            limit_s,
            "the dashboard",
        )
    await asyncio.sleep(3)  # graphs and the logbook load after the cards
    return str(await page.evaluate(DEEP_TEXT_JS))


def save(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


async def browser_sessions(client: HomeAssistantClient) -> set[str]:
    """Return the ids of the demo user's login sessions (refresh tokens)."""
    ws = await client.websocket()
    try:
        return {t["id"] for t in await ws.command("auth/refresh_tokens")}
    finally:
        await ws.close()


async def end_sessions(client: HomeAssistantClient, ids: set[str]) -> None:
    """Log the browser out: delete the sessions it made (they'd pile up in the profile)."""
    ws = await client.websocket()
    try:
        for refresh_token_id in ids:
            await ws.command("auth/delete_refresh_token", refresh_token_id=refresh_token_id)
    finally:
        await ws.close()


async def screenshot(url: str, out: Path, width: int, height: int, wait_for: str | None) -> int:
    async with aiohttp.ClientSession() as session:
        client = HomeAssistantClient(session, url)
        await client.login(USERNAME, PASSWORD)
        try:
            names = await expected_names(client)
            if not names:
                print(f"the {DASHBOARD} dashboard shows no Guard Mode entity", file=sys.stderr)
                return 1
            if wait_for:
                await wait_for_sound(client, wait_for, 300)
            before = await browser_sessions(client)
            started = time.monotonic()
            try:
                async with chromium(session, width, height) as page:
                    landed = await log_in(page, url)
                    logged_in = time.monotonic() - started
                    text = await open_dashboard(page, names, 60)
                    shot = await page.send("Page.captureScreenshot", format="png")
            finally:
                await end_sessions(client, await browser_sessions(client) - before)
        finally:
            await client.logout()
    await asyncio.to_thread(save, out, base64.b64decode(shot["data"]))
    text = text.lower()
    missing = {eid: name for eid, name in names.items() if name.lower() not in text}
    if SATELLITE.lower() not in text:
        missing[SATELLITE] = SATELLITE
    elapsed = time.monotonic() - started
    print(
        f"screenshot: {out} ({width}×{height}); in the browser: logged in after "
        f"{logged_in:.1f} s, done after {elapsed:.1f} s"
    )
    print(f"after logging in, the app opened {landed}")
    print(f"checked {len(names)} Guard Mode entities of the dashboard on the rendered page")
    if missing:
        for entity_id, name in sorted(missing.items()):
            print(f"MISSING on the page: {name!r} ({entity_id})", file=sys.stderr)
        return 1
    print("all of them are on the page")
    return 0


# --- the demo, if it isn't running -------------------------------------------------------------


async def answering(url: str) -> bool:
    async with aiohttp.ClientSession() as session:
        client = HomeAssistantClient(session, url)
        try:
            await client.wait_until_up(1)
        except HomeAssistantError:
            return False
    return True


READY = "Guard Mode demo is ready"


@contextlib.asynccontextmanager
async def demo_running(config: Path | None, port: int) -> AsyncIterator[str]:
    """Start the demo (its own process group), wait for its "ready"; stop it as Ctrl-C does."""
    command = [sys.executable, "-m", "scripts.tools.demo", "--quiet", "--port", str(port)]
    if config is not None:
        command += ["--config", str(config), "--mic-port", "0"]
    print(f"starting the demo: {' '.join(command[1:])}", file=sys.stderr)
    process = subprocess.Popen(  # noqa: ASYNC220
        command,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ready = threading.Event()

    def relay() -> None:  # the demo's output, to ours; notice when it's ready
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            if READY in line:
                ready.set()

    relaying = threading.Thread(target=relay, daemon=True)
    relaying.start()
    try:
        deadline = time.monotonic() + 900  # the first start may build the scenario recording
        while not ready.is_set():
            if process.poll() is not None:
                raise HomeAssistantError(f"the demo exited (status {process.returncode})")
            if time.monotonic() > deadline:
                raise HomeAssistantError("the demo did not get ready in 15 minutes")
            await asyncio.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        await asyncio.to_thread(relaying.join, 5)


async def run(args: argparse.Namespace) -> int:
    url = args.url or f"http://127.0.0.1:{args.port}"
    if not args.start and await answering(url):
        return await screenshot(url, args.out, args.width, args.height, args.wait_for)
    async with demo_running(args.config, args.port) as started_url:
        return await screenshot(started_url, args.out, args.width, args.height, args.wait_for)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshot", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running demo (default: http://127.0.0.1:PORT)")
    parser.add_argument("--start", action="store_true", help="start a demo even if one answers")
    parser.add_argument("--config", type=Path, help="with --start: the demo's config folder")
    parser.add_argument("--port", type=int, default=8123, help="the demo's port")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wait-for", metavar="SOUND", help="wait until SOUND is detected")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (BrowserError, HomeAssistantError) as err:
        print(f"screenshot failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
