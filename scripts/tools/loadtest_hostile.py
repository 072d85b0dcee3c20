"""Hostile peers, measured: what an attacker makes Guard Mode hold, and the honest alarm meanwhile.

    scripts/loadtest hostile [--code DIR] [--json] [--only mic|engine]

Two parts, each a process that runs Guard Mode's own code under attack while this harness
measures it from outside (RSS from /proc, every 0.1 s):

* ``mic`` — Home Assistant's side of Wyoming microphones: a process running the engine worker
  with the shipped model and two ``WyomingMicSource`` satellites, exactly as the integration
  wires them (source → stream → worker). One satellite's mic service is honest (a quiet
  room in real time, then a smoke alarm on cue); the other is hostile: a 16 MiB chunk declared
  4 kHz 8-bit (70 min of audio), audio as fast as TCP takes it, malformed events.
* ``engine`` — the engine service (``engine serve``) as its own process: three clients sending
  1 MiB and 64 KiB pings and never reading, 32 sockets that say nothing, a 16 MiB chunk, and a
  client without the token streaming audio; an honest client streams a smoke alarm in real time.

For every attack: peak RSS above the baseline, worker busy seconds, what the attacker got in,
and the honest alarm's latency (from the alarm's first beep to the detection; one T3 cycle is
4 s). ``--code DIR`` runs the same measurement on another checkout (e.g. ``main`` before a
change): the harness only uses APIs both have, and sends the engine's token first (an older
engine ignores that event).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from functools import partial
import json
import os
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "loadtest-hostile-token-0123456789"
RATE = 16000
CHUNK = 1024  # samples per chunk of the honest mic, like wyoming-mic-external
ALARM_LEAD_S = 1.0  # the synthetic alarm's first beep, from the start of its audio
ATTACK_S = 10.0  # how long an attack runs before the honest satellite's alarm sounds


def log(message: str) -> None:
    print(f"[hostile] {message}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def header(kind: str, data: dict[str, Any] | None = None, payload: int = 0) -> bytes:
    head: dict[str, Any] = {"type": kind}
    if data:
        head["data"] = data
    if payload:
        head["payload_length"] = payload
    return json.dumps(head).encode() + b"\n"


def chunk_event(pcm: bytes, rate: int = RATE, width: int = 2) -> bytes:
    return header("audio-chunk", {"rate": rate, "width": width, "channels": 1}, len(pcm)) + pcm


def room_pcm(seconds: float) -> bytes:
    noise = np.random.default_rng(7).standard_normal(int(seconds * RATE)) * 0.003
    return (noise * 32767).astype("<i2").tobytes()


def alarm_pcm() -> bytes:
    """A piezo T3 smoke alarm (the tests' synthetic one), two cycles after a 1 s lead."""
    from tests import synth  # noqa: PLC0415 - the harness runs from the repository root

    audio = synth.alarm("T3", "piezo", cycles=2, peak_db=-12.0, lead_s=ALARM_LEAD_S).audio
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


# --- the mic part: the victim process ---------------------------------------------------------


async def victim(honest: int, hostile: int) -> None:
    """Run two Wyoming satellites into the engine worker, as the integration does."""
    from custom_components.guard_mode.engine.decision import StreamDecision  # noqa: PLC0415
    from custom_components.guard_mode.engine.tagger import load_shipped_tagger  # noqa: PLC0415
    from custom_components.guard_mode.engine.worker import EngineWorker  # noqa: PLC0415
    from custom_components.guard_mode.sources.base import SourceError  # noqa: PLC0415
    from custom_components.guard_mode.sources.wyoming import WyomingMicSource  # noqa: PLC0415

    worker = EngineWorker(load_shipped_tagger())
    worker.start()
    loop = asyncio.get_running_loop()

    def emit(**event: Any) -> None:
        print(json.dumps(event), flush=True)

    decisions: dict[str, StreamDecision] = {}  # used on the worker thread only

    def on_events(stream: Any, evidence: list[Any], time_s: float) -> None:
        decision = decisions.setdefault(stream.name, StreamDecision())
        for event in decision.push(evidence, time_s):
            if str(event.kind) == "onset":
                found = {"stream": stream.name, "sound": str(event.detection.sound)}
                loop.call_soon_threadsafe(
                    partial(emit, ev="detection", t=time.monotonic(), **found)
                )

    streams = {}
    tasks = []
    for name, port in (("honest", honest), ("hostile", hostile)):
        stream = worker.open_stream(name, on_events)
        streams[name] = stream

        async def listen(port: int = port, stream: Any = stream, name: str = name) -> None:
            source = WyomingMicSource("127.0.0.1", port)
            while True:
                try:
                    # Sources deliver 16 kHz mono now; before, PCM as declared (push_pcm).
                    await source.run(getattr(stream, "push_pcm", stream.push))
                except SourceError as err:
                    emit(ev="error", stream=name, error=str(err)[:200])
                except Exception as err:  # what the satellite's catch-all would log
                    emit(ev="crash", stream=name, error=repr(err)[:200])
                await asyncio.sleep(0.25)

        tasks.append(loop.create_task(listen()))
    emit(ev="ready", pid=os.getpid())
    while True:
        await asyncio.sleep(0.2)
        hostile_stream = streams["hostile"]
        emit(
            ev="stats",
            busy=worker.stats.busy_seconds,
            hostile_in=hostile_stream.stats.seconds_in,
            hostile_dropped=hostile_stream.stats.seconds_dropped,
            honest_in=streams["honest"].stats.seconds_in,
            honest_windows=streams["honest"].analyzer.windows,
        )


class Mic:
    """A Wyoming mic service in the harness; its behaviour can change at any time."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.alarm_at: float | None = None  # monotonic time of the alarm's first beep
        self._alarm = False
        self._server: asyncio.Server | None = None
        self.port = 0
        self._room = room_pcm(10.0)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.behaviour = "stopped"  # every connection's loop ends
        if self._server is not None:
            self._server.close()

    def sound_alarm(self) -> None:
        self._alarm = True

    async def _serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            writer.write(header("audio-start", {"rate": RATE, "width": 2, "channels": 1}))
            behaviour = self.behaviour
            if behaviour == "giant":  # then a second for the engine to take it, as a mic would
                writer.write(chunk_event(bytes(16 << 20), rate=4000, width=1))
                await writer.drain()
                await asyncio.sleep(1.0)
            elif behaviour == "malformed":
                writer.write(b'{"type": "audio-chunk", "data_length": 1e999}\n')
            elif behaviour == "nested":
                writer.write(header("info", payload=0)[:-2] + b', "data_length": 200000}\n')
                writer.write(b"[" * 100_000 + b"]" * 100_000)
            await writer.drain()
            await self._stream(writer, behaviour)
        writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, behaviour: str) -> None:
        step = CHUNK * 2
        started, sent, position = time.monotonic(), 0, 0
        audio = self._room
        while self.behaviour == behaviour:
            if self._alarm and audio is self._room:
                self._alarm, audio, position = False, alarm_pcm(), 0
                self.alarm_at = time.monotonic() + ALARM_LEAD_S
            pcm = audio[position : position + step]
            position += step
            if len(pcm) < step:
                audio, position = self._room, 0
                pcm = self._room[:step]
            writer.write(chunk_event(pcm))
            await writer.drain()
            sent += CHUNK
            if behaviour != "flood":
                await asyncio.sleep(max(0.0, started + sent / RATE - time.monotonic()))


async def mic_part(code: Path) -> list[dict[str, Any]]:
    """Each attack against a fresh victim process (a flood's backlog must not spill over)."""
    return [await mic_attack(code, attack) for attack in MIC_ATTACKS]


MIC_ATTACKS = ("none", "giant", "flood", "malformed", "nested")


async def start_victim(
    code: Path, honest: Mic, hostile: Mic
) -> tuple[asyncio.subprocess.Process, list[dict[str, Any]], asyncio.Task[None]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__)), "victim", str(honest.port), str(hostile.port),
        cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                events.append(event)
                if event["ev"] == "ready":
                    ready.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 120)
    return proc, events, reader


def last_stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next((e for e in reversed(events) if e["ev"] == "stats"), {})


async def mic_attack(code: Path, attack: str) -> dict[str, Any]:
    log(f"mic: {attack}")
    honest, hostile = Mic("normal"), Mic("normal")
    await honest.start()
    await hostile.start()
    proc, events, reader = await start_victim(code, honest, hostile)
    await asyncio.sleep(3)  # model loaded, both connected: the baseline
    base_rss = rss_mb(proc.pid)
    before = last_stats(events)
    started = time.monotonic()
    peak = base_rss
    hostile.behaviour = "normal" if attack == "none" else attack  # it reconnects to this
    while time.monotonic() - started < ATTACK_S:
        await asyncio.sleep(0.1)
        peak = max(peak, rss_mb(proc.pid))
    honest.sound_alarm()
    detected: float | None = None
    while time.monotonic() - started < ATTACK_S + 40:
        await asyncio.sleep(0.1)
        peak = max(peak, rss_mb(proc.pid))
        if honest.alarm_at is None:
            continue
        found = [
            e["t"]
            for e in events
            if e["ev"] == "detection" and e["stream"] == "honest" and e["t"] > honest.alarm_at
        ]
        if found:
            detected = found[0]
            break
    await asyncio.sleep(2)
    peak = max(peak, rss_mb(proc.pid))
    after = last_stats(events)
    elapsed = time.monotonic() - started
    proc.kill()
    await proc.wait()
    reader.cancel()
    await honest.stop()
    await hostile.stop()
    errors = [e for e in events if e["ev"] in ("error", "crash") and e["stream"] == "hostile"]
    return {
        "part": "mic",
        "attack": attack,
        "seconds": round(elapsed, 1),
        "rss_base_mb": round(base_rss, 1),
        "rss_peak_over_base_mb": round(peak - base_rss, 1),
        "worker_busy_s": round(after.get("busy", 0) - before.get("busy", 0), 2),
        "hostile_audio_in_s": round(after.get("hostile_in", 0) - before.get("hostile_in", 0), 1),
        "honest_alarm_latency_s": None
        if detected is None or honest.alarm_at is None
        else round(detected - honest.alarm_at, 2),
        "hostile_errors": sorted({e["error"][:90] for e in errors})[:3],
        "crashes": sum(e["ev"] == "crash" for e in errors),
    }


# --- the engine part: the engine service under attack -----------------------------------------


async def engine_part(code: Path) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "custom_components.guard_mode.engine", "serve",
        "--uri", "tcp://127.0.0.1:0", cwd=code,
        env={**os.environ, "PYTHONPATH": str(code), "GUARD_MODE_ENGINE_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    port = 0
    async with asyncio.timeout(120):
        while not port:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the engine service exited")
            if "listening on tcp://127.0.0.1:" in line:
                port = int(line.split("tcp://127.0.0.1:")[1].split()[0])
    drain = asyncio.create_task(_drain(proc.stdout))
    await asyncio.sleep(2)
    results = []
    for attack, run in ENGINE_ATTACKS.items():
        results.append(await engine_attack(proc.pid, port, attack, run))
    proc.kill()
    await proc.wait()
    drain.cancel()
    return results


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def connect(port: int, token: bool = True) -> tuple[asyncio.StreamReader, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    if token:
        writer.write(header("guard-mode-auth", {"token": TOKEN}))
        await writer.drain()
    return reader, writer


async def read_events(
    reader: asyncio.StreamReader, on_event: Callable[[dict[str, Any]], None]
) -> None:
    """Read Wyoming events (header line, then data) until the connection ends."""
    with contextlib.suppress(ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
        while line := await reader.readline():
            event = json.loads(line)
            if length := event.get("data_length"):
                event.setdefault("data", {}).update(json.loads(await reader.readexactly(length)))
            if length := event.get("payload_length"):
                await reader.readexactly(length)
            on_event(event)


async def honest_alarm(port: int) -> float | None:
    """Stream a smoke alarm in real time; return the seconds from its first beep to the onset."""
    reader, writer = await connect(port)
    pcm = alarm_pcm()
    started = time.monotonic()
    beep = started + ALARM_LEAD_S
    found: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_event(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        onset = event["type"] == "guard-mode-detection" and data.get("kind") == "onset"
        if onset and not found.done():
            found.set_result(time.monotonic())

    listening = asyncio.create_task(read_events(reader, on_event))
    try:
        writer.write(header("audio-start", {"rate": RATE, "width": 2, "channels": 1}))
        for k, position in enumerate(range(0, len(pcm), CHUNK * 2)):
            writer.write(chunk_event(pcm[position : position + CHUNK * 2]))
            await writer.drain()
            if found.done():
                break
            await asyncio.sleep(max(0.0, started + (k + 1) * CHUNK / RATE - time.monotonic()))
        async with asyncio.timeout(10):
            return await asyncio.shield(found) - beep
    except TimeoutError, ConnectionError, OSError:
        return None
    finally:
        listening.cancel()
        writer.close()


async def ping_flood(port: int, size: int) -> Callable[[], Awaitable[None]]:
    writers = []
    for _ in range(3):
        _, writer = await connect(port)
        writers.append(writer)
    data = json.dumps({"text": "x" * size}).encode()
    ping = b'{"type": "ping", "data_length": %d}\n' % len(data) + data

    async def pour(writer: Any) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                writer.write(ping)
                await writer.drain()

    tasks = [asyncio.create_task(pour(w)) for w in writers]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()

    return stop


async def silent_sockets(port: int) -> Callable[[], Awaitable[None]]:
    writers = [(await connect(port, token=False))[1] for _ in range(32)]

    async def stop() -> None:
        for writer in writers:
            writer.close()

    return stop


async def giant_chunk(port: int) -> Callable[[], Awaitable[None]]:
    _, writer = await connect(port)
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(header("audio-start", {"rate": 4000, "width": 1, "channels": 1}))
        writer.write(chunk_event(bytes(16 << 20), rate=4000, width=1))
        await writer.drain()

    async def stop() -> None:
        writer.close()

    return stop


async def no_token(port: int) -> Callable[[], Awaitable[None]]:
    reader, writer = await connect(port, token=False)
    pcm = alarm_pcm()
    got: list[str] = []

    async def pour() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(header("describe"))
            for position in range(0, len(pcm), CHUNK * 2):
                writer.write(chunk_event(pcm[position : position + CHUNK * 2]))
                await writer.drain()
                await asyncio.sleep(CHUNK / RATE)

    listen = read_events(reader, lambda event: got.append(str(event.get("type"))))
    tasks = [asyncio.create_task(pour()), asyncio.create_task(listen)]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        writer.close()
        log(f"engine: the client without a token received: {sorted(set(got))}")

    return stop


async def nothing(_port: int) -> Callable[[], Awaitable[None]]:
    async def stop() -> None:
        pass

    return stop


ENGINE_ATTACKS: dict[str, Callable[[int], Awaitable[Callable[[], Awaitable[None]]]]] = {
    "none": nothing,
    "ping_flood_1MB": lambda port: ping_flood(port, 1_000_000),
    "ping_flood_64KiB": lambda port: ping_flood(port, 60_000),
    "silent_sockets_32": silent_sockets,
    "giant_chunk": giant_chunk,
    "no_token_client": no_token,
}


async def engine_attack(
    pid: int, port: int, attack: str, start: Callable[[int], Awaitable[Callable[[], Any]]]
) -> dict[str, Any]:
    log(f"engine: {attack}")
    base = rss_mb(pid)
    peak = base
    stop = await start(port)
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    await asyncio.sleep(ATTACK_S)
    latency = await honest_alarm(port)
    sampling = False
    await sampler
    await stop()
    await asyncio.sleep(2)
    return {
        "part": "engine",
        "attack": attack,
        "rss_base_mb": round(base, 1),
        "rss_peak_over_base_mb": round(peak - base, 1),
        "honest_alarm_latency_s": None if latency is None else round(latency, 2),
    }


# --- the command ------------------------------------------------------------------------------


def print_table(results: list[dict[str, Any]]) -> None:
    keys = [
        "part",
        "attack",
        "rss_peak_over_base_mb",
        "worker_busy_s",
        "hostile_audio_in_s",
        "honest_alarm_latency_s",
        "crashes",
    ]
    print(" | ".join(keys))
    for row in results:
        print(" | ".join(str(row.get(key, "")) for key in keys))
        if row.get("hostile_errors"):
            print(f"    hostile peer's errors: {row['hostile_errors']}")


async def run(args: argparse.Namespace) -> int:
    code = (args.code or ROOT).resolve()
    log(f"code under test: {code}")
    results: list[dict[str, Any]] = []
    if args.only in (None, "mic"):
        results += await mic_part(code)
    if args.only in (None, "engine"):
        results += await engine_part(code)
    if args.json:
        print(json.dumps({"code": str(code), "results": results}, indent=2))
    else:
        print_table(results)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["victim"]:
        sys.path.insert(0, os.getcwd())
        asyncio.run(victim(int(argv[1]), int(argv[2])))
        return
    parser = argparse.ArgumentParser(prog="scripts/loadtest hostile", description=__doc__)
    parser.add_argument("--code", type=Path, help="checkout to measure (default: this one)")
    parser.add_argument("--only", choices=["mic", "engine"], help="one part only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    sys.exit(asyncio.run(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
