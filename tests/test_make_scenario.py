"""Fast checks of the scenario builder's pure parts (scripts/tools/make_scenario.py).

No network, no espeak-ng, no model: the mixing, the levels, the timeline, the comparison with the
engine's output, the .deb reading and the pinning logic, on synthetic audio and synthetic .debs.
"""

from __future__ import annotations

from dataclasses import replace
import hashlib
import io
import itertools
import json
import lzma
from pathlib import Path
import re
import shutil
import tarfile

import numpy as np
import pytest

from custom_components.guard_mode.engine.audio import read_audio_bytes
from scripts.tools import make_scenario as ms
from tests import synth

SR = ms.SAMPLE_RATE


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- signal helpers --------------------------------------------------------------------------


def test_frame_peak_of_a_sine_and_set_frame_peak() -> None:
    sine = synth.tone(1000.0, 1.0, peak_db=20 * np.log10(0.5))
    assert ms.frame_peak_db(sine) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    louder = ms.set_frame_peak(sine, -20.0)
    assert ms.frame_peak_db(louder) == pytest.approx(-20.0, abs=1e-3)
    silence = np.zeros(SR, np.float32)
    assert not ms.set_frame_peak(silence, -20.0).any()  # silence stays silence


def test_add_at_places_scales_and_cuts() -> None:
    out = np.zeros(SR)
    ms.add_at(out, np.ones(SR // 2), 0.75, gain_db=-6.0)
    start = round(0.75 * SR)
    assert not out[:start].any()
    assert out[start:] == pytest.approx(ms.db_to_amp(-6.0))  # cut at the end of out
    out2 = np.zeros(10)
    ms.add_at(out2, np.arange(1, 6), -2 / SR)  # starts before 0: its head is dropped
    assert list(out2[:3]) == [3, 4, 5]


def test_fade_and_speed() -> None:
    x = np.ones(SR, np.float32)
    y = ms.fade(x, 0.1, 0.2)
    assert y[0] == 0.0
    assert y[-1] < 1e-3
    assert y[SR // 2] == 1.0
    assert len(ms.change_speed(x, 1.25)) == int(SR / 1.25)
    assert ms.change_speed(x, 1.0) is not x


def test_loop_to() -> None:
    x = np.arange(1, SR + 1, dtype=np.float32)
    y = ms.loop_to(x, 2.5, crossfade_s=0.1)
    assert len(y) == round(2.5 * SR)
    assert y[: SR - SR // 10].tolist() == x[: SR - SR // 10].tolist()
    assert ms.loop_to(x, 0.5).tolist() == x[: SR // 2].tolist()


def test_trim_and_active_span() -> None:
    burst = synth.place(synth.white_noise(0.5, -20.0, synth.rng(1)), 1.0, 3.0)
    t0, t1 = ms.active_span(burst)
    assert t0 == pytest.approx(1.0, abs=0.03)
    assert t1 == pytest.approx(1.5, abs=0.03)
    trimmed = ms.trim_silence(burst)
    assert len(trimmed) / SR == pytest.approx(0.5, abs=0.05)  # whole 25 ms frames


def test_volume_envelope_on_ramps_and_off() -> None:
    points = ((0.95, None), (1.0, 0.0), (2.0, 0.0), (3.0, -20.0), (4.0, None))
    gain = ms.volume_envelope(points, 5.0)
    at = lambda s: gain[round(s * SR)]  # noqa: E731
    assert at(0.5) == 0.0  # off before it is switched on
    assert at(1.5) == pytest.approx(1.0)
    assert at(2.5) == pytest.approx(ms.db_to_amp(-10.0), rel=1e-3)  # linear in dB
    assert at(3.5) == pytest.approx(0.1, rel=1e-3)
    assert at(4.5) == 0.0  # switched off
    assert ms.volume_envelope((), 1.0) == pytest.approx(1.0)


def test_speaker_eq_cuts_bass_keeps_voice() -> None:
    def gain_db(freq: float) -> float:
        x = synth.tone(freq, 1.0, -20.0)
        return synth.rms_db(ms.speaker_eq(x)) - synth.rms_db(x)

    assert gain_db(50.0) < -15.0
    assert abs(gain_db(1000.0)) < 0.5
    assert gain_db(7900.0) < -2.0


def test_pcm16_wav_round_trip_through_the_engine_reader() -> None:
    x = synth.tone(440.0, 0.5, -6.0)
    pcm = ms.to_pcm16(x)
    decoded = read_audio_bytes(ms.wav_bytes(pcm), name="t.wav")
    assert decoded.source_rate == SR
    assert decoded.samples == pytest.approx(pcm / 32768.0, abs=1e-7)
    assert ms.to_pcm16(np.array([2.0, -2.0])).tolist() == [32767, -32768]


# --- story, rendering and ground truth -------------------------------------------------------


def fake_clips() -> dict[str, ms.Audio]:
    """Stand-ins for the recordings, the same lengths as the real ones (no downloads)."""
    gen = synth.rng(7)

    def burst(seconds: float, decay_s: float) -> ms.Audio:
        noise = synth.white_noise(seconds, -20.0, gen)
        return (noise * np.exp(-np.arange(len(noise)) / (decay_s * SR))).astype(np.float32)

    music = synth.music_like(5.0, gen, -25.0)
    return {
        "bark": burst(0.54, 0.1),
        "glass_break_1": burst(0.55, 0.08),
        "glass_break_2": burst(0.83, 0.15),
        "glass_break_3": burst(0.67, 0.12),
        "film_gunfire": np.concatenate([burst(0.4, 0.05) for _ in range(14)]),
        "score_theme": ms.loop_to(music, 35.0),
        "score_1812": ms.loop_to(music[SR:], 34.3),
        "presenter": ms.loop_to(synth.speech_like(6.0, gen, -25.0), 73.0, crossfade_s=0.1),
        "smoke_alarm_t3": ms.smoke_alarm_t3("test"),
    }


def fake_speech(story: ms.Story) -> list[list[ms.Audio]]:
    gen = synth.rng(8)
    return [[synth.speech_like(3.0, gen, -25.0) for _ in block.lines] for block in story.dialogue]


@pytest.fixture(scope="module")
def clips() -> dict[str, ms.Audio]:
    return fake_clips()


@pytest.fixture(scope="module")
def rendered(clips: dict[str, ms.Audio]) -> ms.Rendered:
    return ms.render(ms.STORY, clips, fake_speech(ms.STORY))


def test_render_levels_and_length(rendered: ms.Rendered) -> None:
    audio, levels = rendered.audio, rendered.levels
    assert len(audio) == round(ms.STORY.duration_s * SR)
    assert levels["sample_peak_db"] < ms.MAX_PEAK_DB
    tv_moderate = levels["tv_typical_peak_db@15s"]
    tv_quiet = levels[f"tv_typical_peak_db@{ms.TV_DOWN_S:g}s"]
    assert tv_moderate - tv_quiet == pytest.approx(-ms.TV_QUIET_DB, abs=2.0)
    # the in-room sounds stand well out of the TV (the decider needs 12 dB; keep margin) …
    assert levels["dog_peak_db"] - tv_quiet >= 18.0
    assert levels["glass_peak_db"] - tv_quiet >= 18.0
    # … and the film's gunfire does not: it plays at the TV's level
    assert levels["film_gunfire_peak_db"] - tv_moderate < 6.0
    # the quiet room is quiet: noise floor only, below the engine's -55 dBFS gate
    assert ms.frame_peak_db(audio[: round(14 * SR)]) < -55.0


def test_timeline_covers_the_scenario_in_order(rendered: ms.Rendered) -> None:
    segments = rendered.segments
    assert segments[0]["t0"] == 0.0
    assert segments[-1]["t1"] == ms.STORY.duration_s
    for a, b in itertools.pairwise(segments):
        assert a["t1"] == b["t0"]
        assert a["t1"] > a["t0"]
    assert {tuple(s) for s in map(dict.keys, segments)} == {("t0", "t1", "what", "expect", "sound")}
    events = [(s["expect"], s["sound"]) for s in segments if s["sound"]]
    assert events == [
        ("nothing", "gunshot"),
        ("detection", "dog_bark"),
        ("detection", "glass_break"),
        ("detection", "smoke_alarm"),
    ]
    by_sound = {s["sound"]: s for s in segments if s["sound"]}
    assert by_sound["gunshot"]["t0"] >= ms.TV_ON_S + 30.0  # ≥ 30 s of TV before the battle
    assert by_sound["dog_bark"]["t1"] - by_sound["dog_bark"]["t0"] == pytest.approx(5.0, abs=0.5)
    assert by_sound["smoke_alarm"]["t1"] - by_sound["smoke_alarm"]["t0"] >= 3 * 4.0 - 1.6
    assert segments[-1]["t1"] - segments[-1]["t0"] >= 9.5  # quiet again at the end
    assert json.loads(json.dumps(segments)) == segments


def test_tv_off_variant_has_no_tv_after_the_film(clips: dict[str, ms.Audio]) -> None:
    story = ms.VARIANTS["tv-off"]()
    result = ms.render(story, clips, fake_speech(story))
    assert f"tv_typical_peak_db@{ms.TV_DOWN_S:g}s" not in result.levels
    after = result.audio[round((ms.TV_DOWN_S + 1) * SR) : round((ms.DOG_S - 1) * SR)]
    assert ms.frame_peak_db(after) < -55.0
    assert [s["sound"] for s in result.segments if s["sound"]] == [
        "gunshot",
        "dog_bark",
        "glass_break",
        "smoke_alarm",
    ]


def test_timeline_rejects_overlapping_events() -> None:
    story = ms.STORY
    cue_a = ms.Cue("bark", 90.0, -18.0, "room", event="dog")
    cue_b = ms.Cue("glass_break_1", 91.0, -18.0, "room", event="glass")
    placed = [ms.Placed(cue_a, 90.0, 92.0, -18.0), ms.Placed(cue_b, 91.0, 92.0, -18.0)]
    with pytest.raises(ms.ScenarioError, match="overlap"):
        ms.timeline(story, placed)


def test_dialogue_that_overruns_its_block_is_an_error() -> None:
    spoken = [[np.zeros(30 * SR, np.float32)] * len(b.lines) for b in ms.STORY.dialogue]
    with pytest.raises(ms.ScenarioError, match="dialogue block 0"):
        ms.dialogue_cues(ms.STORY, spoken)


def test_a_small_story_of_its_own_and_the_clipping_guard() -> None:
    burst = synth.white_noise(0.5, -20.0, synth.rng(3))
    click = np.zeros(SR // 2, np.float32)
    click[100] = 1.0  # one sample: 26 dB above its loudest 25 ms frame
    story = ms.Story(
        duration_s=3.0,
        scenes=(ms.Scene(0.0, 3.0, "room"),),
        voices={},
        dialogue=(),
        cues=(ms.Cue("burst", 1.0, -20.0, "room", event="burst"),),
        events={"burst": ms.Event("a burst", "nothing", None)},
        rooms={},
        tv_volume=((0.0, None),),
    )
    result = ms.render(story, {"burst": burst}, [])
    assert [s["what"] for s in result.segments] == ["room", "a burst", "room"]
    assert result.levels["burst_peak_db"] == pytest.approx(-20.0, abs=0.1)
    assert len(result.audio) == 3 * SR
    clicking = replace(story, cues=(ms.Cue("click", 1.0, -20.0, "room", event="burst"),))
    with pytest.raises(ms.ScenarioError, match="peaks at"):
        ms.render(clicking, {"click": click}, [])


# --- comparison with the engine ---------------------------------------------------------------

SEGMENTS = [
    {"t0": 0.0, "t1": 10.0, "what": "tv", "expect": "nothing", "sound": None},
    {"t0": 10.0, "t1": 12.0, "what": "film", "expect": "suppressed", "sound": "gunshot"},
    {"t0": 12.0, "t1": 20.0, "what": "tv", "expect": "nothing", "sound": None},
    {"t0": 20.0, "t1": 22.0, "what": "dog", "expect": "detection", "sound": "dog_bark"},
    {"t0": 22.0, "t1": 30.0, "what": "room", "expect": "nothing", "sound": None},
]


def det(sound: str, start: float, end: float, reason: str | None = None) -> dict[str, object]:
    return {
        "sound": sound,
        "start_s": start,
        "end_s": end,
        "confidence": 0.9,
        "suppressed": reason is not None,
        "reason": reason,
    }


def test_compare_accepts_the_expected_output() -> None:
    problems, notes = ms.compare(
        SEGMENTS, [det("gunshot", 10.5, 12.5, "media"), det("dog_bark", 20.4, 23.0)]
    )
    assert problems == []
    assert notes == []


def test_compare_finds_misses_alerts_and_false_alarms() -> None:
    problems, _ = ms.compare(
        SEGMENTS, [det("gunshot", 10.5, 12.5), det("dog_bark", 20.4, 23.0, "media")]
    )
    assert any("alerted on gunshot" in p for p in problems)
    assert any(p.startswith("missed dog_bark") and "suppressed: media" in p for p in problems)
    problems, notes = ms.compare(
        SEGMENTS,
        [
            det("dog_bark", 20.4, 23.0),
            det("glass_break", 5.0, 6.0),
            det("baby_cry", 14, 15, "media"),
        ],
    )
    assert problems == [
        "did not hear gunshot at 10.0-12.0 s (film) (expected a suppressed detection)",
        "false alarm: glass_break at 5.0-6.0 s",
    ]
    assert notes == ["also heard (suppressed, media): baby_cry at 14-15 s"]
    # a detection of the right sound far from its segment does not count for it
    problems, _ = ms.compare(SEGMENTS, [det("gunshot", 11, 12, "media"), det("dog_bark", 26, 27)])
    assert any(p.startswith("missed dog_bark") for p in problems)
    assert "false alarm: dog_bark at 26-27 s" in problems


# --- pinned sources ---------------------------------------------------------------------------


def test_sources_json_pins_every_recording() -> None:
    sources = ms.load_sources()
    hex64 = re.compile(r"^[0-9a-f]{64}$")
    used = {source for source, _ in ms.RECORDED_CLIPS.values()}
    assert used <= set(sources.debs)
    debs = {}
    for src in sources.debs.values():
        assert hex64.match(src.deb_sha256)
        assert hex64.match(src.file_sha256)
        assert src.license
        assert src.attribution
        assert not src.path.startswith("/")
        assert src.version[0].isdigit()
        debs[src.package, src.version] = src.deb_size
    assert sum(debs.values()) < 22e6  # the whole download stays small
    assert sources.tts_version
    for variant in ms.VARIANTS:  # --record wrote the output of every variant
        assert hex64.match(sources.output[variant]["scenario.wav"])


def make_deb(files: dict[str, bytes]) -> bytes:
    """Return a minimal .deb (ar: debian-binary, control.tar.xz, data.tar.xz)."""

    def tar_xz(entries: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return lzma.compress(buf.getvalue())

    control = b"Package: fake\nVersion: 1.0-1\nArchitecture: all\nMaintainer: x <x@y>\n"
    control += b"Description: fake\n"
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"./control": control})),
        ("data.tar.xz", tar_xz({f"./{k}": v for k, v in files.items()})),
    ]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode("ascii") + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


PATH = "usr/share/sounds/fake/bark.ogg"
FILE = b"OggS fake audio"


def test_extract_member_without_dpkg(monkeypatch: pytest.MonkeyPatch) -> None:
    deb = make_deb({PATH: FILE, "usr/share/doc/fake/copyright": b"GPL"})
    monkeypatch.setattr(ms.shutil, "which", lambda name: None)
    assert ms.extract_member(deb, PATH) == FILE
    assert ms.extract_member(deb, "./" + PATH) == FILE
    with pytest.raises(ms.ScenarioError, match="no file"):
        ms.extract_member(deb, "usr/share/missing.ogg")
    with pytest.raises(ms.ScenarioError, match=r"not a \.deb"):
        ms.extract_member(b"PK\x03\x04 not an ar archive", PATH)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_extract_member_with_dpkg() -> None:
    assert ms.extract_member(make_deb({PATH: FILE}), PATH) == FILE


def fake_source(deb: bytes, version: str = "1.0-1") -> ms.DebSource:
    return ms.DebSource(
        key="bark",
        package="fake",
        version=version,
        deb_sha256=sha(deb),
        deb_size=len(deb),
        path=PATH,
        file_sha256=sha(FILE),
        license="GPL-2+",
        attribution="test",
    )


def fake_apt(monkeypatch: pytest.MonkeyPatch, served: dict[str, bytes]) -> list[str]:
    """Serve .debs by apt spec ("pkg=version" or "pkg"); record the requests."""
    asked: list[str] = []

    def download(spec: str, into: Path) -> Path:
        asked.append(spec)
        if spec not in served:
            raise ms.ScenarioError(f"apt-get download {spec} failed: not found")
        into.mkdir(parents=True, exist_ok=True)
        path = into / f"{spec.replace('=', '_')}.deb"
        path.write_bytes(served[spec])
        return path

    monkeypatch.setattr(ms, "_apt_download", download)
    monkeypatch.setattr(ms, "_run", lambda *a, **k: None)  # no apt-get update
    return asked


def test_fetch_file_downloads_checks_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deb = make_deb({PATH: FILE})
    src = fake_source(deb)
    asked = fake_apt(monkeypatch, {"fake=1.0-1": deb})
    assert ms.fetch_file(src, tmp_path, log=lambda m: None) == FILE
    assert asked == ["fake=1.0-1"]
    assert (tmp_path / "files" / "bark.ogg").read_bytes() == FILE
    assert ms.fetch_file(src, tmp_path, log=lambda m: None) == FILE  # from the cache
    assert asked == ["fake=1.0-1"]


def test_fetch_refuses_a_different_archive_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deb = make_deb({PATH: FILE})
    src = fake_source(deb)
    fake_apt(monkeypatch, {"fake=1.0-1": make_deb({PATH: b"something else"})})
    with pytest.raises(ms.ScenarioError, match=r"\.deb sha256"):
        ms.fetch_file(src, tmp_path / "a", log=lambda m: None)
    other = make_deb({PATH: b"something else"})
    fake_apt(monkeypatch, {"fake=1.0-1": other})
    with pytest.raises(ms.ScenarioError, match=re.escape(f"{PATH}: sha256")):
        ms.fetch_file(replace(src, deb_sha256=sha(other)), tmp_path / "b", log=lambda m: None)


def test_a_pinned_version_gone_from_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = make_deb({PATH: FILE, "usr/share/doc/fake/changelog": b"1.0-2"})
    src = fake_source(make_deb({PATH: FILE}))  # pins 1.0-1, which apt no longer has
    asked = fake_apt(monkeypatch, {"fake": newer})
    logged: list[str] = []
    assert ms.fetch_file(src, tmp_path, log=logged.append) == FILE  # same file: accepted
    assert asked == ["fake=1.0-1", "fake=1.0-1", "fake"]
    assert any("no longer downloadable" in m and "update the pin" in m for m in logged)
    fake_apt(monkeypatch, {"fake": make_deb({PATH: b"changed"})})
    with pytest.raises(ms.ScenarioError, match="pick a new source"):
        ms.fetch_file(src, tmp_path / "again", log=logged.append)


def test_missing_espeak_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ms.shutil, "which", lambda name: None)
    monkeypatch.setattr(ms, "ESPEAK_DEFAULT", "/nonexistent/espeak-ng")
    with pytest.raises(ms.ScenarioError) as err:
        ms.espeak_path()
    assert "PY314_PACKAGES=espeak-ng" in str(err.value)
    assert "apt install espeak-ng" in str(err.value)


def test_check_reports_where_a_rebuild_differs() -> None:
    sources = ms.Sources(
        debs={},
        tts_package="espeak-ng",
        tts_version="1.52.0",
        output={"tv-quiet": {"scenario.wav": "a" * 64, "scenario.json": "b" * 64}},
        decoded={"bark": "c" * 64, "speech_0": "d" * 64},
    )
    same = {"scenario.wav": "a" * 64, "scenario.json": "b" * 64}
    decoded = {"bark": "c" * 64, "speech_0": "d" * 64}
    assert ms.check("tv-quiet", sources, same, decoded, "1.52.0") == []
    problems = ms.check(
        "tv-quiet",
        sources,
        {**same, "scenario.wav": "e" * 64},
        {**decoded, "speech_0": "f"},
        "1.53",
    )
    assert problems[0].startswith("scenario.wav: sha256 eee")
    assert any("speech_0" in p for p in problems)
    assert any("espeak-ng is 1.53" in p for p in problems)
    assert "records no output" in ms.check("tv-off", sources, same, decoded, "1.52.0")[0]
