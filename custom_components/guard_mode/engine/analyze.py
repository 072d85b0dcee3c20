"""Analyze audio files with the streaming engine (CLI ``analyze``, action ``analyze_file``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .analyzer import Floats, StreamAnalyzer
from .audio import read_audio
from .decider import Decider, DeciderConfig, DeciderEvent, Detection
from .decision import StreamDecision
from .frontend import SAMPLE_RATE
from .head import DetectionHead
from .tagger import Tagger

# A file is streamed as if the microphone had heard silence before and after it, so that a sound
# at the very start or end of a short clip gets the windows a live stream would give it.
LEAD_S = 0.5
TAIL_S = 1.0
CHUNK_S = 1.0


@dataclass(slots=True)
class FileResult:
    """The engine's verdict on one file."""

    file: str
    duration_s: float
    detections: list[Detection]
    media_s: float

    def as_json(self) -> dict[str, Any]:
        """Return the CLI contract's JSON object."""
        return {
            "file": self.file,
            "duration_s": round(self.duration_s, 3),
            "detections": [
                {
                    "sound": str(d.sound),
                    "start_s": d.start_s,
                    "end_s": d.end_s,
                    "confidence": d.confidence,
                    "suppressed": d.suppressed,
                    "reason": None if d.reason is None else str(d.reason),
                }
                for d in self.detections
            ],
            "media_s": round(self.media_s, 2),
        }


class DetectingStream:
    """Both sides of the seam in one thread: audio in, detections out (files, evaluation, tests).

    The evidence side (:class:`.analyzer.StreamAnalyzer`) and the decision side
    (:class:`.decision.StreamDecision`) meet exactly as they do across the worker thread or the
    remote engine's protocol, only without a thread or a connection between them.
    """

    def __init__(
        self, decider_config: DeciderConfig | None = None, head: DetectionHead | None = None
    ) -> None:
        """Start a stream with the decider's settings (and another detection head, if given)."""
        self.decision = StreamDecision(decider_config)
        self.analyzer = StreamAnalyzer(
            embeddings=self.decision.wants_embeddings,
            every_window=self.decision.wants_every_window,
            head=head,
        )

    @property
    def decider(self) -> Decider:
        """Return the stream's decider."""
        return self.decision.decider

    @property
    def time_s(self) -> float:
        """Return the stream time of the audio processed so far."""
        return self.analyzer.time_s

    def process(self, samples: Floats, tagger: Tagger) -> list[DeciderEvent]:
        """Analyze samples and decide on their evidence; return the detections' changes."""
        self.analyzer.embeddings = self.decision.wants_embeddings
        self.analyzer.every_window = self.decision.wants_every_window
        evidence = self.analyzer.process(samples, tagger)
        return self.decision.push(evidence, self.analyzer.time_s)

    def finish(self) -> list[DeciderEvent]:
        """End of stream: close open detections."""
        return self.decision.finish()


def collect(events: Iterable[DeciderEvent], into: dict[str, Detection]) -> None:
    """Keep the latest snapshot of every detection seen in events."""
    for event in events:
        into[event.detection.id] = event.detection


def with_silence(samples: np.ndarray) -> np.ndarray:
    """Return samples as a live stream hears them: LEAD_S of silence before, TAIL_S after."""
    return np.concatenate(
        [
            np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32),
            np.asarray(samples, np.float32),
            np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32),
        ]
    )


def analyze_samples(
    samples: np.ndarray,
    tagger: Tagger,
    *,
    decider_config: DeciderConfig | None = None,
    name: str = "<samples>",
) -> FileResult:
    """Stream 16 kHz mono samples through a fresh engine stream and return what it heard."""
    stream = DetectingStream(decider_config)
    padded = with_silence(samples)
    found: dict[str, Detection] = {}
    step = int(CHUNK_S * SAMPLE_RATE)
    for start in range(0, len(padded), step):
        collect(stream.process(padded[start : start + step], tagger), found)
    collect(stream.finish(), found)
    duration = len(samples) / SAMPLE_RATE
    detections = []
    for d in found.values():  # back to file time, inside the file
        d.start_s = round(min(max(d.start_s - LEAD_S, 0.0), duration), 3)
        d.end_s = round(min(max(d.end_s - LEAD_S, d.start_s), duration), 3)
        detections.append(d)
    detections.sort(key=lambda d: (d.start_s, d.sound))
    return FileResult(name, duration, detections, stream.decider.media_s)


def analyze_file(
    path: str | Path,
    tagger: Tagger,
    *,
    decider_config: DeciderConfig | None = None,
    max_seconds: float | None = None,
) -> FileResult:
    """Read and analyze one audio file; raises pcm.AudioFormatError if it can't be read.

    Files longer than max_seconds are refused before they are decoded in full.
    """
    audio = read_audio(path, max_seconds=max_seconds)
    return analyze_samples(audio.samples, tagger, decider_config=decider_config, name=str(path))
