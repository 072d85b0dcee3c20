"""End to end: the scenario recording, streamed at real-time pace, through a real Home Assistant.

A Wyoming microphone service on loopback (scripts/tools/demo_mic.py, the demo's) plays
build/scenario/scenario.wav once, in real time, to a satellite "Living room mic" in the area
"Living room". The ground truth (scenario.json) says what must happen: each sound in the room
(dog, glass, smoke alarm; the alarm with the TV on) raises its ``guard_mode_detection`` event and
turns its binary sensor on; the film's gunfire on the TV is no alert (continuous battle noise at
the TV's level holds no shot that stands out of the programme); nothing else alerts.
Onset-to-event latency (the bus event's time minus the
wall time the sound's first sample was sent) is printed and written to build/e2e_latency.json,
with the engine's per-window scores over each event.

Takes as long as the recording (150 s). Builds the recording first if it's missing (needs
espeak-ng and network: ``PY314_PACKAGES="ffmpeg espeak-ng"``); skipped if it can't be built.
"""

from __future__ import annotations

from bisect import bisect_right
import json
from pathlib import Path
import time
from typing import Any

from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
import pytest

from custom_components.guard_mode.alerts import EVENT_DETECTION, EVENT_SUPPRESSED
from custom_components.guard_mode.const import DOMAIN
from custom_components.guard_mode.engine.frontend import WINDOW_HOP_S
from custom_components.guard_mode.engine.labels import Sound
from scripts.tools.demo_mic import RoomMic
from scripts.tools.demo_scenario import Scenario, Segment

from ..helpers import make_entry, satellite_subentry, setup_entry, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("socket_enabled")]

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "build" / "e2e_latency.json"
SATELLITE = "Living room mic"
# Generous bounds for CI (the design's targets: p95 ≤ 1.5 s; alarms one T3 cycle + 0.5 s).
MAX_LATENCY_S = {"smoke_alarm": 4.0 + 1.5, "co_alarm": 5.6 + 1.5}
DEFAULT_MAX_LATENCY_S = 3.0
TARGET_S = {"smoke_alarm": 4.5, "co_alarm": 6.1}
DEFAULT_TARGET_S = 1.5
# An event belongs to a segment if it fires between t0 - EARLY_S and t1 + LATE_S (story time):
# the engine's windows are 0.96 s, so a detection may start a little before a segment.
EARLY_S = 1.0
LATE_S = 5.0


class Timeline:
    """When each chunk of the recording was sent (wall clock), for story time ↔ wall time."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.firsts: list[int] = []
        self.walls: list[float] = []
        self.last_end = 0

    def on_chunk(self, first: int, end: int, loop: int, wall: float) -> None:
        self.firsts.append(first)
        self.walls.append(wall)
        self.last_end = end

    def sent_at(self, story_s: float) -> float:
        """Return the wall time the sample at story_s was sent."""
        i = bisect_right(self.firsts, round(story_s * self.rate)) - 1
        return self.walls[max(i, 0)]

    def story_at(self, wall: float) -> float:
        """Return how far into the story the microphone was at wall time."""
        i = bisect_right(self.walls, wall) - 1
        return self.firsts[max(i, 0)] / self.rate


def tv_on(scenario: Scenario, t: float) -> bool:
    """Return True if the TV plays at story time t (scenario.json's tv_volume_db breakpoints)."""
    volume = None
    for at, db in scenario.truth.get("tv_volume_db", []):
        if at <= t:
            volume = db
    return volume is not None


async def test_the_scenario_in_real_time(hass: HomeAssistant, scenario: Scenario) -> None:
    timeline = Timeline(scenario.rate)
    mic = await RoomMic(scenario.pcm, scenario.rate, loop=False, on_chunk=timeline.on_chunk).start()
    try:
        report = await _play(hass, scenario, timeline, mic)
    finally:
        await mic.stop()
    _check(report)


async def _play(
    hass: HomeAssistant, scenario: Scenario, timeline: Timeline, mic: RoomMic
) -> dict[str, Any]:
    living_room = ar.async_get(hass).async_create("Living room")
    room_mic = satellite_subentry(
        SATELLITE,
        f"wyoming:127.0.0.1:{mic.port}",
        source="wyoming",
        host="127.0.0.1",
        port=mic.port,
        area=living_room.id,
    )
    entry = make_entry(satellites=[room_mic])
    await setup_entry(hass, entry)
    satellite = next(iter(entry.runtime_data.satellites.values()))
    registry = er.async_get(hass)
    sensors = {
        str(sound): registry.async_get_entity_id("binary_sensor", DOMAIN, f"{satellite.id}-{sound}")
        for sound in Sound
    }
    switch = registry.async_get_entity_id("switch", DOMAIN, f"{entry.entry_id}-guard_mode")
    assert switch is not None
    assert all(sensors.values()), sensors

    events: list[dict[str, Any]] = []
    sensor_on: list[tuple[str, float]] = []  # (sound, wall time it turned on)

    @callback
    def on_bus(event: Event) -> None:
        events.append(
            {
                "type": event.event_type,
                "sound": event.data["sound"],
                "reason": event.data.get("reason"),
                "confidence": event.data.get("confidence"),
                "area": event.data.get("area"),
                "wall": event.time_fired_timestamp,
            }
        )

    @callback
    def on_state(event: Event) -> None:
        new = event.data["new_state"]
        if new is not None and new.state == "on":
            sound = next(s for s, e in sensors.items() if e == event.data["entity_id"])
            sensor_on.append((sound, time.time()))

    hass.bus.async_listen(EVENT_DETECTION, on_bus)
    hass.bus.async_listen(EVENT_SUPPRESSED, on_bus)
    async_track_state_change_event(hass, [e for e in sensors.values() if e], on_state)

    windows: list[dict[str, Any]] = []
    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert satellite.stream is not None
    decider = satellite.decision.decider
    if hasattr(decider, "add_window_listener"):  # the engine's per-window evidence, for the report
        decider.add_window_listener(
            lambda w: windows.append(
                {
                    "start_s": round(w.start_s, 2),
                    "end_s": round(w.end_s, 2),
                    "scores": {k: round(v, 2) for k, v in w.scores.items()},
                    "labels": dict(w.labels),
                    "media": round(w.media, 2),
                }
            )
        )

    total = len(scenario.pcm) // 2
    await wait_for(lambda: timeline.last_end >= total, scenario.duration_s + 60)  # streamed
    # ... and heard: the engine's last complete window of it has been decided on
    last_window_s = scenario.duration_s - WINDOW_HOP_S
    await wait_for(lambda: satellite.decision.time_s >= last_window_s, 30)
    await hass.async_block_till_done()
    return _evaluate(scenario, timeline, events, sensor_on, windows, mic.connections)


def _evaluate(
    scenario: Scenario,
    timeline: Timeline,
    events: list[dict[str, Any]],
    sensor_on: list[tuple[str, float]],
    windows: list[dict[str, Any]],
    connections: int,
) -> dict[str, Any]:
    """Match the events with the ground truth; return the report (problems included)."""
    problems: list[str] = []
    results: dict[str, Any] = {}
    for event in events:
        event["story_s"] = round(timeline.story_at(event["wall"]), 2)
    claimed: set[int] = set()

    def in_segment(segment: Segment, story_s: float) -> bool:
        return segment.t0 - EARLY_S <= story_s <= segment.t1 + LATE_S

    for segment in scenario.events():
        sound = str(segment.sound)
        wanted = (
            "guard_mode_detection" if segment.expect == "detection" else "guard_mode_suppressed"
        )
        onset = timeline.sent_at(segment.t0)
        mine = [
            i
            for i, e in enumerate(events)
            if e["sound"] == sound and in_segment(segment, e["story_s"])
        ]
        claimed.update(mine)
        hits = [events[i] for i in mine if events[i]["type"] == wanted]
        wrong = [events[i] for i in mine if events[i]["type"] != wanted]
        over = [
            {k: w[k] for k in ("start_s", "end_s", "media")}
            | {"score": w["scores"].get(sound), "label": w["labels"].get(sound)}
            for w in windows
            if w["end_s"] > segment.t0 - EARLY_S and w["start_s"] < segment.t1 + 1.0
        ]
        result: dict[str, Any] = {
            "expect": segment.expect,
            "t0": segment.t0,
            "t1": segment.t1,
            "what": segment.what,
            "tv_on": tv_on(scenario, segment.t0),
            "events": [e["type"] for e in hits + wrong],
            "windows": over,
        }
        results[f"{sound}@{segment.t0:g}"] = result
        name = f"{sound} ({segment.what}, {segment.t0:g}–{segment.t1:g} s)"
        if not hits:
            problems.append(
                f"{name}: expected {wanted}, got {[e['type'] for e in wrong] or 'nothing'}; "
                f"per-window {sound} scores (1.0 = threshold): "
                + ", ".join(f"{w['start_s']:.2f}s:{w['score']}" for w in over)
            )
            continue
        latency = hits[0]["wall"] - onset
        limit = MAX_LATENCY_S.get(sound, DEFAULT_MAX_LATENCY_S)
        result |= {
            "latency_s": round(latency, 3),
            "limit_s": limit,
            "target_s": TARGET_S.get(sound, DEFAULT_TARGET_S),
            "confidence": hits[0]["confidence"],
            "reason": hits[0]["reason"],
        }
        if latency > limit:
            problems.append(f"{name}: {wanted} {latency:.2f} s after the onset (limit {limit} s)")
        if wrong:
            problems.append(f"{name}: also {[e['type'] for e in wrong]} (must not alert)")
        if segment.expect == "detection":
            if len(hits) > 1:
                problems.append(f"{name}: {len(hits)} guard_mode_detection events, expected one")
            if hits[0]["area"] != "Living room":
                problems.append(f"{name}: event area {hits[0]['area']!r}, expected 'Living room'")
            turned_on = [w for s, w in sensor_on if s == sound and w >= onset - EARLY_S]
            if not turned_on:
                problems.append(f"{name}: its binary sensor never turned on")
            else:
                result["sensor_on_s"] = round(turned_on[0] - onset, 3)
        elif hits[0]["reason"] not in ("media", "media_player"):
            problems.append(f"{name}: suppressed for {hits[0]['reason']!r}, expected media")
        if segment.sound == "smoke_alarm" and not result["tv_on"]:
            problems.append(f"{name}: the scenario has no TV on during the alarm")

    others = [e for i, e in enumerate(events) if i not in claimed]
    for event in others:
        if event["type"] == "guard_mode_detection":
            problems.append(
                f"unexpected alert: {event['sound']} at {event['story_s']:.1f} s "
                f"(confidence {event['confidence']})"
            )
    if connections != 1:
        problems.append(f"the satellite connected {connections} times (expected once)")
    return {
        "scenario": scenario.truth.get("sha256"),
        "connections": connections,
        "sounds": results,
        "other_events": others,
        "problems": problems,
    }


def _check(report: dict[str, Any]) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nonset-to-event latency (report: {REPORT}):")
    for key, result in report["sounds"].items():
        latency = result.get("latency_s")
        shown = f"{latency:6.2f} s" if latency is not None else "  none  "
        print(
            f"  {key:22} {result['expect']:10} {shown}  "
            f"(target {result.get('target_s', '-')} s, limit {result.get('limit_s', '-')} s)"
        )
    for event in report["other_events"]:
        print(f"  other: {event['type']} {event['sound']} at {event['story_s']} s")
    assert not report["problems"], "\n".join(report["problems"])
