"""Evidence: what the shared engine hears in a stream, and all it hands to the decision side.

The engine (the worker thread in Home Assistant, or the remote engine service) turns audio into
evidence, in stream-time order; the decider of the stream's satellite turns evidence into
detections (:meth:`.decider.Decider.push`). Nothing else crosses the seam, in either direction
but audio and whether to ship embeddings (see :mod:`.protocol` for the wire form).

* :class:`WindowEvidence`: one 0.96 s window (a regular one every 0.48 s, or one aligned to an
  onset): the tagger's group scores, the detection head's classes, media evidence, level and
  onset (no scores when it was too quiet or :attr:`~WindowEvidence.skipped` after a calm one);
  the window's embedding (float16, unit length) only when learning asked for it;
* :class:`.alarm_pattern.AlarmHit`: a confirmed T3 (smoke) or T4 (CO) cycle;
* :class:`Gap`: audio was lost (a reconnect, or the engine fell behind) up to a stream time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .alarm_pattern import AlarmHit
from .onset import Onset

#: An aligned window that ends this soon after its onset holds the sound at its end: a late one.
LATE_WINDOW_S = 0.5


def late_window(aligned: bool, onset_s: float, end_s: float) -> bool:
    """Return True for a window aligned to end just after its onset (see .analyzer)."""
    return aligned and end_s - onset_s < LATE_WINDOW_S


Embedding = npt.NDArray[np.float16]


@dataclass(frozen=True, slots=True)
class WindowEvidence:
    """What the tagger and the level meter say about one 0.96 s window."""

    start_s: float
    end_s: float
    level_db: float  # RMS level of the window, dBFS
    peak_db: float  # loudest 10 ms frame in the window, dBFS
    scores: Mapping[str, float]  # normalized group scores: 1.0 = at threshold; empty if gated
    confidence: Mapping[str, float]  # raw score of each group's best class
    labels: Mapping[str, str]  # which AudioSet class that was
    media: float  # media evidence 0..1
    onset_s: float  # where the energy rises most inside the window
    embedding: Embedding | None = None  # unit vector (float16), when learning asked for it
    aligned: bool = False  # an extra window aligned to an onset (not one of the regular ones)
    onset: Onset | None = None  # the measured onset it holds, if any
    head: Mapping[str, float] = field(default_factory=dict)  # the detection head's classes
    skipped: bool = False  # not tagged: the window before it was calm (see .analyzer)

    @property
    def late(self) -> bool:
        """Return True for a late window: aligned to end just after its onset."""
        return late_window(self.aligned, self.onset_s, self.end_s)

    @property
    def gated(self) -> bool:
        """Return True when the tagger did not run on the window (no scores)."""
        return not self.scores


@dataclass(frozen=True, slots=True)
class Gap:
    """Audio was lost: the stream goes on at time_s (frames and persistence start afresh)."""

    time_s: float


type Evidence = WindowEvidence | AlarmHit | Gap


class EvidenceStream(Protocol):
    """A stream to an engine, in-process or remote: audio in, evidence out through a callback."""

    name: str
    closed: bool

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        """Queue 16 kHz mono 16-bit audio; never blocks on inference."""

    def mark_gap(self, seconds: float) -> None:
        """Account for time without audio (a reconnect)."""

    def set_embeddings(self, wanted: bool) -> None:
        """Ship each window's embedding in the evidence (learning needs them) or not."""

    def set_every_window(self, wanted: bool) -> None:
        """Tag every regular window, calm ones too (learning that matches each window)."""

    def status(self) -> dict[str, Any]:
        """Return the engine side's counters for diagnostics."""

    def close(self) -> None:
        """Stop; queued audio is discarded and no more evidence comes."""


# (stream, evidence in stream-time order, stream time when it was produced).
type EvidenceCallback = Callable[[EvidenceStream, list[Evidence], float], None]

__all__ = [
    "AlarmHit",
    "Embedding",
    "Evidence",
    "EvidenceCallback",
    "EvidenceStream",
    "Gap",
    "WindowEvidence",
]
