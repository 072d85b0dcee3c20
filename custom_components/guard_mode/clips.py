"""Evidence clips on disk (opt-in): WAV files under the media folder, removed after retention.

Clips live in ``<media>/guard_mode/<satellite>/``, so the Media Browser shows them under
"My media"; events and notifications link them by media-source id. Names are bounded and safe
whatever a satellite is called (a slug of at most ``MAX_SLUG`` characters per part). With clips
off nothing is kept in memory beyond processing and nothing is ever written.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
import logging
from pathlib import Path
import time
import wave

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util, slugify

from .const import DOMAIN
from .engine import SAMPLE_RATE, Pcm16

_LOGGER = logging.getLogger(__name__)
MEDIA_SOURCE = "media-source://media_source"
CLEANUP_INTERVAL = timedelta(hours=6)
MAX_SLUG = 40  # characters of a name in a clip's path: far below any file system's limit


def _media_dir(hass: HomeAssistant) -> tuple[str, Path]:
    """Return the media folder clips go in: its name in the media source, and its path.

    Home Assistant's own ("local") unless the user set ``media_dirs`` without one: then the
    first of those (a folder outside them would not be in the Media Browser).
    """
    dirs = hass.config.media_dirs
    key = "local" if "local" in dirs else next(iter(dirs), "local")
    return key, Path(dirs.get(key) or hass.config.path("media"))


def clips_root(hass: HomeAssistant) -> Path:
    """Return the folder that holds Guard Mode's clips."""
    return _media_dir(hass)[1] / DOMAIN


def _slug(text: str, fallback: str) -> str:
    return slugify(text)[:MAX_SLUG].strip("_") or fallback


def clip_name(satellite: str, sound: str, started: datetime, detection_id: str) -> str:
    """Return a clip's path relative to the clips folder: bounded, and safe for any names."""
    stamp = dt_util.as_local(started).strftime("%Y%m%d-%H%M%S")
    folder = _slug(satellite, "satellite")
    return f"{folder}/{stamp}_{_slug(sound, 'sound')}_{_slug(detection_id, 'clip')}.wav"


def check_folder(folder: Path) -> None:
    """Raise OSError unless clips can be written in folder (blocking: run in an executor)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / ".write_test.part"
    probe.write_bytes(b"")
    probe.unlink()


def media_source_id(hass: HomeAssistant, relative: str) -> str:
    """Return the media-source id of a clip (what the Media Browser and events use)."""
    return f"{MEDIA_SOURCE}/{_media_dir(hass)[0]}/{DOMAIN}/{relative}"


def write_clip(path: Path, pcm: Pcm16) -> None:
    """Write 16 kHz mono 16-bit PCM as a WAV file (blocking: run in an executor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    with wave.open(str(partial), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
    partial.replace(path)


def remove_old_clips(root: Path, days: float) -> tuple[int, list[str]]:
    """Delete clips older than days (blocking); return how many went, and those that can't."""
    if not root.is_dir():
        return 0, []
    cutoff = time.time() - days * 86400
    removed = 0
    failed: list[str] = []
    for path in root.rglob("*"):
        try:  # a clip being written may be renamed or its folder created meanwhile
            if path.suffix in (".wav", ".part") and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        except FileNotFoundError:
            continue
        except OSError as err:  # one clip that can't go (permissions) keeps none of the others
            failed.append(f"{path.name} ({err.strerror or err})")
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):  # not empty (any more), or gone
            folder.rmdir()
    return removed, failed


class ClipJanitor:
    """Removes clips past the retention period, at start-up and every few hours."""

    def __init__(self, hass: HomeAssistant, days: float) -> None:
        """Keep clips for days."""
        self._hass = hass
        self.days = days
        self._unsub: CALLBACK_TYPE | None = None
        self._stuck: list[str] = []  # clips that could not be removed, warned about once

    async def async_run(self, _now: object = None) -> None:
        """Remove old clips now."""
        root = clips_root(self._hass)
        removed, stuck = await self._hass.async_add_executor_job(remove_old_clips, root, self.days)
        if stuck and stuck != self._stuck:
            _LOGGER.warning(
                "Could not remove %s old evidence clip(s) in %s: %s",
                len(stuck),
                root,
                ", ".join(stuck[:3]) + (", …" if len(stuck) > 3 else ""),
            )
        self._stuck = stuck
        if removed:
            _LOGGER.debug("Removed %s evidence clips older than %s days", removed, self.days)

    @callback
    def async_start(self) -> None:
        """Clean up now and every few hours."""
        self._hass.async_create_task(self.async_run(), eager_start=True)
        self._unsub = async_track_time_interval(
            self._hass, self.async_run, CLEANUP_INTERVAL, cancel_on_shutdown=True
        )

    @callback
    def async_stop(self) -> None:
        """Stop cleaning up."""
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
