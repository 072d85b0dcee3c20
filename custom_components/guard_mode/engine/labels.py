"""AudioSet labels → Guard Mode's sound keys and media evidence.

The tagger scores the 521 AudioSet classes of YAMNet. A sound key is a group of classes, each
with its own threshold. A group's normalized score (1.0 = at threshold) is its best member's
score over that member's threshold — or, for the groups in :data:`SUMMED`, the sum over all
members: YAMNet spreads a gunshot over sibling classes (Gunshot, Explosion, Fireworks, ...), and
their sum says "a shot" more reliably than any one of them. How the thresholds were chosen (and
the figures) is in models/yamnet/THRESHOLDS.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

CLASS_MAP = Path(__file__).parent / "data" / "yamnet_class_map.csv"
NUM_CLASSES = 521


class Sound(StrEnum):
    """The sounds Guard Mode alerts on."""

    GLASS_BREAK = "glass_break"
    SMOKE_ALARM = "smoke_alarm"
    CO_ALARM = "co_alarm"
    DOG_BARK = "dog_bark"
    BABY_CRY = "baby_cry"
    GUNSHOT = "gunshot"


ALARM_SOUNDS = frozenset({Sound.SMOKE_ALARM, Sound.CO_ALARM})
# Groups scored by the sum of their members' normalized scores (see the module docstring).
SUMMED = frozenset({Sound.GUNSHOT})
# Sounds a TV or radio often plays; media context can suppress these, never the alarms.
MEDIA_PRONE = frozenset({Sound.GLASS_BREAK, Sound.DOG_BARK, Sound.BABY_CRY, Sound.GUNSHOT})


@dataclass(frozen=True, slots=True)
class Member:
    """One AudioSet class of a group and the score at which it counts as a hit."""

    label: str
    threshold: float


# Member thresholds were set on ../shared/audio/dev (see THRESHOLDS.md): each class's threshold
# sits above what the negative folders (speech, music, household, tv_mix) produce for it.
TAGGER_GROUPS: dict[Sound, tuple[Member, ...]] = {
    Sound.GLASS_BREAK: (
        Member("Glass", 0.45),
        Member("Shatter", 0.30),
        Member("Breaking", 0.40),
        Member("Smash, crash", 0.60),
        Member("Chink, clink", 0.70),
        # Shards falling over a TV's music: YAMNet hears a tinkling percussion.
        Member("Jingle, tinkle", 0.30),
        Member("Tambourine", 0.30),
        Member("Jingle bell", 0.35),
    ),
    Sound.SMOKE_ALARM: (
        Member("Smoke detector, smoke alarm", 0.40),
        Member("Fire alarm", 0.45),
    ),
    Sound.DOG_BARK: (
        Member("Bark", 0.35),
        Member("Bow-wow", 0.35),
        Member("Yip", 0.45),
        Member("Dog", 0.45),
        Member("Growling", 0.60),
        Member("Canidae, dogs, wolves", 0.60),
    ),
    Sound.BABY_CRY: (
        Member("Baby cry, infant cry", 0.40),
        Member("Crying, sobbing", 0.55),
    ),
    Sound.GUNSHOT: (
        Member("Gunshot, gunfire", 0.35),
        Member("Machine gun", 0.45),
        Member("Fusillade", 0.45),
        Member("Artillery fire", 0.50),
        Member("Cap gun", 0.50),
        Member("Explosion", 0.60),
        Member("Firecracker", 0.60),
        Member("Fireworks", 0.70),
    ),
}

# Classes whose presence says "this is a TV, radio or music playing". Weighted: speech alone is
# weaker media evidence than music or an explicit Television/Radio label.
MEDIA_CLASSES: dict[str, float] = {
    "Music": 1.0,
    "Television": 1.0,
    "Radio": 1.0,
    "Theme music": 1.0,
    "Soundtrack music": 1.0,
    "Background music": 1.0,
    "Jingle (music)": 1.0,
    "Speech synthesizer": 0.8,
    "Narration, monologue": 0.8,
    "Speech": 0.7,
    "Conversation": 0.7,
}


@cache
def class_names(path: Path = CLASS_MAP) -> tuple[str, ...]:
    """Return the display names of the 521 classes, in model output order."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    names = tuple(row["display_name"] for row in rows)
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} classes, found {len(names)}")
    return names


def class_index(label: str) -> int:
    """Return the output index of an AudioSet class by display name."""
    try:
        return class_names().index(label)
    except ValueError:
        raise KeyError(f"unknown AudioSet class {label!r}") from None


@dataclass(frozen=True, slots=True)
class GroupTable:
    """Vectorised form of a set of groups: which outputs to read and how to scale them."""

    keys: tuple[Sound, ...]
    index: npt.NDArray[np.intp]  # [K, W] class indices (padded by repeating the last member)
    inverse_threshold: npt.NDArray[np.float32]  # [K, W]
    summed: npt.NDArray[np.bool_]  # [K] groups scored by the sum over their members
    members: npt.NDArray[np.float32]  # [K, W] 1 for a real member, 0 for padding

    def normalized(self, scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return [N, K] group scores where 1.0 means "at threshold"."""
        member = scores[:, self.index] * self.inverse_threshold
        total = (member * self.members).sum(axis=2)
        return np.asarray(np.where(self.summed, total, member.max(axis=2)), np.float32)

    def label(self, row: int, column: int) -> str:
        """Return the AudioSet class at a row (group) and column (member) of the table."""
        members = TAGGER_GROUPS[self.keys[row]]
        return members[min(column, len(members) - 1)].label


@cache
def tagger_groups() -> GroupTable:
    """Return the tagger groups as a table."""
    keys = tuple(TAGGER_GROUPS)
    width = max(len(m) for m in TAGGER_GROUPS.values())
    index = np.zeros((len(keys), width), np.intp)
    inverse = np.zeros((len(keys), width), np.float32)
    real = np.zeros((len(keys), width), np.float32)
    for row, key in enumerate(keys):
        members = TAGGER_GROUPS[key]
        real[row, : len(members)] = 1.0
        for col in range(width):
            member = members[min(col, len(members) - 1)]
            index[row, col] = class_index(member.label)
            inverse[row, col] = 1.0 / member.threshold
    summed = np.array([key in SUMMED for key in keys])
    return GroupTable(keys, index, inverse, summed, real)


@cache
def _media_table() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    index = np.array([class_index(label) for label in MEDIA_CLASSES], np.intp)
    weight = np.array(list(MEDIA_CLASSES.values()), np.float32)
    return index, weight


def media_evidence(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return [N] media evidence in 0..1: the strongest weighted media class of each window."""
    index, weight = _media_table()
    return np.asarray((scores[:, index] * weight).max(axis=1), np.float32)
