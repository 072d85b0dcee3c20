"""The decision side of one stream: the engine's evidence in, detections out.

One :class:`StreamDecision` per satellite (per analyzed file), used from one thread only — in
Home Assistant the event loop, whichever engine (in-process or remote) produced the evidence.
It holds the stream's :class:`.decider.Decider` (its settings, "not a threat" marks and custom
sounds) and what the satellite shows of its stream (windows, level). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .decider import Decider, DeciderConfig, DeciderEvent
from .evidence import Embedding, Evidence, WindowEvidence
from .learning import EMBEDDING_SIZE

Floats = npt.NDArray[np.float32]


class StreamDecision:
    """A stream's decider and counters, fed the stream's evidence in order."""

    def __init__(self, config: DeciderConfig | None = None) -> None:
        """Start with no evidence."""
        self.decider = Decider(config)
        self.windows = 0  # regular windows heard
        self.gated_windows = 0  # ... of which too quiet for the tagger
        self.skipped_windows = 0  # ... or not tagged after a calm one
        self.time_s = 0.0  # stream time of the latest evidence
        self._peak_level_db: float | None = None  # loudest window since take_peak_level
        self._recorders = 0  # teaching recordings that want every window's embedding

    @property
    def wants_embeddings(self) -> bool:
        """Return True when learning needs the windows' embeddings in the evidence."""
        return self._recorders > 0 or self.decider.config.wants_embeddings

    @property
    def wants_every_window(self) -> bool:
        """Return True when learning matches every window (custom sounds, a recording)."""
        return self._recorders > 0 or bool(self.decider.config.custom)

    def push(self, evidence: Iterable[Evidence], time_s: float) -> list[DeciderEvent]:
        """Take evidence the engine produced up to stream time time_s; return detection changes."""
        items = list(evidence)
        for item in items:
            if isinstance(item, WindowEvidence) and not item.aligned:
                self.windows += 1
                self.gated_windows += item.gated and not item.skipped
                self.skipped_windows += item.skipped
                if self._peak_level_db is None or item.level_db > self._peak_level_db:
                    self._peak_level_db = item.level_db
        self.time_s = max(self.time_s, time_s)
        return self.decider.push(items)

    def configure(self, **changes: Any) -> list[DeciderEvent]:
        """Change the decider's settings (DeciderConfig fields) from the next window on.

        Return the detections this ends: those of sounds no longer enabled (none when the
        enabled sounds did not change: the configs are not compared, their learned marks are
        numpy arrays).
        """
        self.decider.config = replace(self.decider.config, **changes)
        return self.decider.end_disabled()

    @property
    def config(self) -> DeciderConfig:
        """Return the decider's settings."""
        return self.decider.config

    def set_media_player_playing(self, playing: bool) -> None:
        """Tell the decider whether a media player near this microphone is playing."""
        self.decider.media_player_playing = playing

    def record(self, listener: Callable[[WindowEvidence], None]) -> Callable[[], None]:
        """Give every regular window, with its embedding, to listener (teaching); unsubscribe."""
        unsubscribe = self.decider.add_window_listener(listener)
        self._recorders += 1

        def stop() -> None:
            unsubscribe()
            self._recorders -= 1

        return stop

    def take_peak_level(self) -> float | None:
        """Return the loudest window level (dBFS) since the last call, None if no window."""
        level, self._peak_level_db = self._peak_level_db, None
        return level

    def detection_embeddings(self) -> dict[str, Embedding]:
        """Return the recent detections' window embeddings (for "not a threat")."""
        return dict(self.decider.detection_embeddings)

    def background_embeddings(self) -> Floats:
        """Return recent background windows' embeddings (for teaching custom sounds)."""
        background = list(self.decider.background)
        if not background:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        return np.stack(background).astype(np.float32)

    def finish(self) -> list[DeciderEvent]:
        """End of stream: close open detections."""
        return self.decider.finish()

    def status(self) -> dict[str, Any]:
        """Return what diagnostics show of the decision side."""
        decider = self.decider
        return {
            "windows": self.windows,
            "windows_below_gate": self.gated_windows,
            "windows_skipped_calm": self.skipped_windows,
            "media_s": round(decider.media_s, 1),
            "media_player_playing": decider.media_player_playing,
            "enabled_sounds": sorted(decider.config.enabled),
        }
