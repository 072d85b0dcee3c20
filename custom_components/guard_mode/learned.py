"""What Guard Mode learned from the household, kept in Home Assistant's storage.

"Not a threat" marks keep the embeddings of that detection's windows, per satellite and sound;
custom sounds keep their prototypes and threshold. Embeddings are 1024 numbers per 0.96 s window
from which the audio cannot be played back; no audio is ever stored here.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Collection
import logging
import math
from typing import Any, TypedDict

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
import numpy as np
import numpy.typing as npt

from .const import DOMAIN
from .engine import CustomSound, Vectors, unit
from .storage import DelayedStore

STORAGE_KEY = f"{DOMAIN}.learning"
STORAGE_VERSION = 1
MAX_MARKS = 50  # per satellite and sound: the oldest are forgotten first

Floats = npt.NDArray[np.float32]
_LOGGER = logging.getLogger(__name__)


def encode(vectors: Vectors) -> str:
    """Return vectors [N, 1024] as base64 float16 (compact JSON)."""
    return base64.b64encode(np.asarray(vectors, "<f2").tobytes()).decode()


def decode(text: str) -> Floats:
    """Return the vectors encode() wrote."""
    flat = np.frombuffer(base64.b64decode(text), "<f2").astype(np.float32)
    return unit(flat.reshape(-1, 1024))


def _vectors_ok(text: object) -> bool:
    """Return True when text holds at least one whole, finite vector."""
    if not isinstance(text, str):
        return False
    try:
        vectors = decode(text)
    except binascii.Error, ValueError:
        return False
    return len(vectors) > 0 and bool(np.isfinite(vectors).all())


def _mark_ok(mark: object) -> bool:
    return (
        isinstance(mark, dict)
        and isinstance(mark.get("id"), str)
        and isinstance(mark.get("added"), str)
        and _vectors_ok(mark.get("vectors"))
    )


def _custom_ok(sound: object) -> bool:
    threshold = sound.get("threshold") if isinstance(sound, dict) else None
    return (
        isinstance(sound, dict)
        and isinstance(sound.get("name"), str)
        and isinstance(sound.get("satellites"), list)
        and all(isinstance(satellite, str) for satellite in sound["satellites"])
        and _vectors_ok(sound.get("prototypes"))
        and isinstance(threshold, int | float)
        and not isinstance(threshold, bool)
        and math.isfinite(threshold)
        and isinstance(sound.get("created"), str)
        and isinstance(sound.get("figures", {}), dict)
    )


def usable(stored: object) -> tuple[_Stored, int]:
    """Return what of stored data is usable, and how many items were not (a damaged file)."""
    data: _Stored = {"false_alarms": {}, "custom_sounds": {}}
    if not isinstance(stored, dict):
        return data, 1
    dropped = 0
    false_alarms = stored.get("false_alarms", {})
    if not isinstance(false_alarms, dict):
        false_alarms, dropped = {}, dropped + 1
    for satellite, sounds in false_alarms.items():
        if not isinstance(sounds, dict):
            dropped += 1
            continue
        for sound, marks in sounds.items():
            if not isinstance(marks, list):
                dropped += 1
                continue
            good = [mark for mark in marks if _mark_ok(mark)]
            dropped += len(marks) - len(good)
            if good:
                data["false_alarms"].setdefault(satellite, {})[sound] = good
    custom_sounds = stored.get("custom_sounds", {})
    if not isinstance(custom_sounds, dict):
        custom_sounds, dropped = {}, dropped + 1
    for key, sound in custom_sounds.items():
        if _custom_ok(sound):
            data["custom_sounds"][key] = {"figures": {}, **sound}  # type: ignore[typeddict-item]
        else:
            dropped += 1
    return data, dropped


class _Mark(TypedDict):
    id: str
    added: str
    vectors: str


class _Custom(TypedDict):
    name: str
    satellites: list[str]
    prototypes: str
    threshold: float
    created: str
    figures: dict[str, float]


class _Stored(TypedDict):
    false_alarms: dict[str, dict[str, list[_Mark]]]  # satellite → sound → marks
    custom_sounds: dict[str, _Custom]  # key → sound


def learning_store(hass: HomeAssistant) -> Store[_Stored]:
    """Return the store of what was learned."""
    return Store(hass, STORAGE_VERSION, STORAGE_KEY)


class Learning:
    """The learned data, with listeners told about every change."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Start empty (call async_load)."""
        self.data: _Stored = {"false_alarms": {}, "custom_sounds": {}}
        self._store = DelayedStore(learning_store(hass), lambda: self.data, 1.0)
        self._listeners: list[Callable[[], None]] = []

    async def async_load(self) -> None:
        """Read what was learned before."""
        if (stored := await self._store.async_load()) is None:
            return
        self.data, dropped = usable(stored)
        if dropped:
            _LOGGER.warning(
                "Some of what Guard Mode learned could not be read (%s damaged item(s) in "
                ".storage/%s): they were left out; the rest is kept",
                dropped,
                STORAGE_KEY,
            )
            self._store.async_schedule()  # saved without them

    async def async_save(self) -> None:
        """Write now (before a reload reads it back)."""
        await self._store.async_save()

    async def async_flush(self) -> None:
        """Write a pending change now (unloading: no write may come after a removal)."""
        await self._store.async_flush()

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call listener after every change."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def false_alarms_for(self, satellite_id: str) -> dict[str, Floats]:
        """Return, per sound, the unit vectors the user marked "not a threat" on a satellite."""
        marks = self.data["false_alarms"].get(satellite_id, {})
        return {
            sound: np.concatenate([decode(mark["vectors"]) for mark in items])
            for sound, items in marks.items()
            if items
        }

    def custom_for(self, satellite_id: str) -> tuple[CustomSound, ...]:
        """Return the custom sounds a satellite listens for."""
        sounds = self.data["custom_sounds"]
        return tuple(s for s in self.all_custom() if satellite_id in sounds[s.key]["satellites"])

    def all_custom(self) -> tuple[CustomSound, ...]:
        """Return every custom sound, whichever satellites listen for it."""
        return tuple(
            CustomSound(key, item["name"], decode(item["prototypes"]), item["threshold"])
            for key, item in self.data["custom_sounds"].items()
        )

    def custom_sounds(self) -> dict[str, str]:
        """Return every custom sound: key → name."""
        return {key: item["name"] for key, item in self.data["custom_sounds"].items()}

    @callback
    def async_mark(self, satellite_id: str, sound: str, detection_id: str, vectors: Vectors) -> int:
        """Remember a detection as "not a threat"; return how many marks that sound has now."""
        marks = self.data["false_alarms"].setdefault(satellite_id, {}).setdefault(sound, [])
        marks[:] = [mark for mark in marks if mark["id"] != detection_id]
        marks.append(
            {"id": detection_id, "added": dt_util.utcnow().isoformat(), "vectors": encode(vectors)}
        )
        del marks[:-MAX_MARKS]
        self._changed()
        return len(marks)

    @callback
    def async_add_custom(
        self, sound: CustomSound, satellites: list[str], figures: dict[str, float]
    ) -> None:
        """Keep a taught custom sound (replacing one with the same key)."""
        self.data["custom_sounds"][sound.key] = {
            "name": sound.name,
            "satellites": satellites,
            "prototypes": encode(sound.prototypes),
            "threshold": float(sound.threshold),
            "created": dt_util.utcnow().isoformat(),
            "figures": figures,
        }
        self._changed()

    @callback
    def async_forget(
        self,
        *,
        satellite_id: str | None = None,
        sound: str | None = None,
        custom: str | None = None,
    ) -> int:
        """Forget marks (of a satellite and/or sound; all if neither) or a custom sound.

        A custom sound with a satellite: that satellite no longer listens for it (nor keeps
        marks on it); without: it is forgotten, with every mark made on it.
        """
        removed = 0
        if custom is not None:
            item = self.data["custom_sounds"].get(custom)
            if item is None:
                return 0
            if satellite_id is None or item["satellites"] == [satellite_id]:
                del self.data["custom_sounds"][custom]
                removed += 1
            elif satellite_id in item["satellites"]:
                item["satellites"].remove(satellite_id)
                removed += 1
            sound = custom  # the marks made on it go with it
        for satellite, sounds in self.data["false_alarms"].items():
            if satellite_id not in (None, satellite):
                continue
            for key in list(sounds):
                if sound in (None, key):
                    removed += len(sounds.pop(key))
        if removed:
            self._changed()
        return removed

    @callback
    def async_keep_only(self, satellite_ids: Collection[str]) -> None:
        """Forget what satellites not among satellite_ids (removed ones) learned.

        Their marks go; the custom sounds stay (taught: forgotten only when asked) without them.
        """
        changed = False
        for satellite in [s for s in self.data["false_alarms"] if s not in satellite_ids]:
            del self.data["false_alarms"][satellite]
            changed = True
        for item in self.data["custom_sounds"].values():
            if any(s not in satellite_ids for s in item["satellites"]):
                item["satellites"] = [s for s in item["satellites"] if s in satellite_ids]
                changed = True
        if changed:
            self._changed()

    def summary(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """Return counts only (for diagnostics and the list action): no vectors.

        names: satellite id → name; satellites named alike are told apart ("Mic", "Mic (2)").
        """
        names = _unique(names or {})
        return {
            "false_alarms": {
                names.get(satellite, satellite): {
                    sound: len(marks) for sound, marks in sounds.items()
                }
                for satellite, sounds in self.data["false_alarms"].items()
                if any(sounds.values())
            },
            "custom_sounds": {
                key: {
                    "name": item["name"],
                    "satellites": [names.get(s, s) for s in item["satellites"]],
                    "threshold": round(item["threshold"], 3),
                    "created": item["created"],
                    "figures": item["figures"],
                }
                for key, item in self.data["custom_sounds"].items()
            },
        }

    @callback
    def _changed(self) -> None:
        self._store.async_schedule()
        for listener in list(self._listeners):
            listener()


def _unique(names: dict[str, str]) -> dict[str, str]:
    """Return names with a number after those already used ("Mic", "Mic (2)")."""
    seen: Counter[str] = Counter()
    unique = {}
    for key, name in names.items():
        seen[name] += 1
        unique[key] = name if seen[name] == 1 else f"{name} ({seen[name]})"
    return unique
