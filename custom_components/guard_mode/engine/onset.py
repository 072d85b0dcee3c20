"""Transient onsets and what follows them: the event-level evidence of impulsive sounds.

A short sound (a shot, a pane breaking, a bark) scores very differently depending on where it
falls in the tagger's 0.96 s windows. So the stream finds where such sounds start and tags
windows aligned to them, and the decider judges the event by what followed its onset.

Per 10 ms frame (the frontend's): an *onset* is a frame whose level rises at least
:data:`RISE_DB` over the quietest of the frames 30-80 ms before it and stands at least
:data:`OVER_DB` over the background (the median level of the 1.5 s before; digital silence
counts as a quiet room at :data:`QUIET_ROOM_DB`). Onsets closer than :data:`REFRACTORY_FRAMES`
are one, unless the later rise comes after the first one's attack (:data:`ATTACK_FRAMES`) and is
:data:`LOUDER_DB` louder than every frame since it: then the first was a precursor (a street's
roar that starts just before a shot) and the louder sound is an onset of its own, measured from
its own peak. Once :data:`MATURE_FRAMES` frames have followed, an onset is measured:

* ``peak_db``: its loudest frame in the first 0.2 s;
* ``decay_db``: the peak over the median level 0.3-0.55 s after the onset: a shot or a crash dies
  away, an engine or rain that merely started does not;
* ``shower``: the high-frequency transients 0.1-0.55 s after the impact — frames whose 2-8 kHz
  energy jumps :data:`SHOWER_JUMP_DB` over its neighbourhood, the falling shards of a breaking
  pane. A knock on glass, a slammed door or a hammer blow rings or thuds but showers nothing.

Hand-written (no library): a few vectorised steps per chunk on levels the frontend already has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]

RISE_DB = 12.0  # an onset rises this much over the quietest frame 30-80 ms before ...
OVER_DB = 15.0  # ... and stands this far over the background level
QUIET_ROOM_DB = -75.0  # the background is never taken as quieter than a quiet room's floor
BACKGROUND_FRAMES = 150  # the background is the median of the 1.5 s before an onset
REFRACTORY_FRAMES = 25  # a rise within 0.25 s of an onset belongs to it ...
LOUDER_DB = 9.0  # ... unless this much louder than it ...
ATTACK_FRAMES = 12  # ... and at least 0.12 s after it (the first one's attack)
MATURE_FRAMES = 60  # frames an onset needs behind it before it is measured (0.6 s)
SHOWER_JUMP_DB = 3.0  # a shard: 2-8 kHz energy this far over the median of +-50 ms
_LOOKBACK = 8  # rise reference: frames i-8 .. i-3
_HISTORY = BACKGROUND_FRAMES + MATURE_FRAMES + _LOOKBACK + 5


@dataclass(frozen=True, slots=True)
class Onset:
    """A measured onset."""

    frame: int  # stream frame index (frame i covers samples 160 i .. 160 i + 400)
    rise_db: float
    peak_db: float
    decay_db: float
    shower: int  # high-frequency transients 0.1-0.55 s after the onset
    background_db: float = QUIET_ROOM_DB  # the level it rose from (median of the 1.5 s before)


class OnsetTracker:
    """Finds onsets in a stream of frame levels and measures them once they are mature."""

    def __init__(self) -> None:
        """Start an empty stream."""
        self._level = np.full(_HISTORY, -120.0, np.float32)  # dB per frame, oldest first
        self._hf = np.full(_HISTORY, -120.0, np.float32)  # 2-8 kHz dB per frame
        self._frames = 0  # frames pushed so far (stream index of the next frame)
        self._pending: list[tuple[int, float, float]] = []  # (frame, rise, background) to measure
        self._last = -(10**9)

    def push(self, level_db: Floats, hf_db: Floats) -> tuple[list[int], list[Onset]]:
        """Add consecutive frames' levels; return new onset frames and the onsets now mature."""
        n = len(level_db)
        if n == 0:
            return [], []
        self._level = np.concatenate([self._level, level_db])[-(_HISTORY + n) :]
        self._hf = np.concatenate([self._hf, hf_db])[-(_HISTORY + n) :]
        first = self._frames
        self._frames += n
        base = self._frames - len(self._level)  # stream index of row 0
        new = self._find(first, n, base)
        mature = []
        while self._pending and self._pending[0][0] + MATURE_FRAMES <= self._frames:
            mature.append(self._measure(*self._pending.pop(0), base))
        return new, mature

    def _find(self, first: int, n: int, base: int) -> list[int]:
        level = self._level
        # A rise is judged against frames of this stream only: its start is no onset.
        start, stop = max(first, _LOOKBACK) - base, first - base + n
        if start >= stop:
            return []
        lookback = [level[start - k : stop - k] for k in range(3, _LOOKBACK + 1)]
        reference = np.minimum.reduce(lookback)
        rises = level[start:stop] - reference
        found = []
        for i in np.flatnonzero(rises >= RISE_DB):
            row = start + int(i)
            frame = base + row
            if frame - self._last < REFRACTORY_FRAMES and not self._louder(row, base):
                continue
            before = level[max(0, row - BACKGROUND_FRAMES) : row - 2]
            background = max(float(np.median(before)), QUIET_ROOM_DB) if len(before) else -120.0
            if level[row] - background < OVER_DB:
                continue
            self._last = frame
            rise = float(rises[i])
            self._pending.append((frame, rise, background))
            found.append(frame)
        return found

    def _louder(self, row: int, base: int) -> bool:
        """Return True when row is LOUDER_DB over every frame since the last onset began."""
        last = self._last - base  # >= 0: within REFRACTORY_FRAMES, well inside the history
        if row - last < ATTACK_FRAMES:
            return False
        since = self._level[last : row - 2]  # up to the rise's own reference frames
        return bool(self._level[row] >= since.max() + LOUDER_DB)

    def _measure(self, frame: int, rise: float, background: float, base: int) -> Onset:
        row = frame - base
        level, hf = self._level, self._hf
        peak = float(level[row : row + 20].max())
        decay = peak - float(np.median(level[row + 30 : row + 55]))
        # Frames 10..54 (0.1-0.55 s), each against the median of its +-5 neighbours.
        window = hf[row + 5 : row + MATURE_FRAMES]
        neighbourhood = np.median(np.lib.stride_tricks.sliding_window_view(window, 11), axis=1)
        jumps = window[5:-5] - neighbourhood >= SHOWER_JUMP_DB
        shower = int(np.count_nonzero(jumps))
        return Onset(
            frame, round(rise, 1), round(peak, 1), round(decay, 1), shower, round(background, 1)
        )
