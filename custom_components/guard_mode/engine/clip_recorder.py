"""Evidence clips: the last few seconds of a stream kept in memory, and clips cut from them.

Used only when the user turned evidence clips on. The recorder keeps ``pre_s`` seconds of
16 kHz audio in a preallocated ring; a clip started now gets that pre-roll plus the next
``post_s`` seconds. Nothing here touches the disk: finished clips are handed to the caller.
One thread uses a recorder (in Home Assistant: the event loop, where the audio arrives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE, Pcm16

MAX_OPEN_CLIPS = 8  # a burst of detections can't pile up recordings


@dataclass(slots=True)
class _Open:
    clip_id: str
    parts: list[Pcm16]
    remaining: int  # samples still to record


class ClipRecorder:
    """A pre-roll ring buffer and the clips being recorded from it."""

    def __init__(self, pre_s: float = 5.0, post_s: float = 5.0) -> None:
        """Keep pre_s seconds of audio; clips last pre_s + post_s seconds."""
        self.pre = int(pre_s * SAMPLE_RATE)
        self.post = int(post_s * SAMPLE_RATE)
        self._ring = np.zeros(max(self.pre, 1), np.int16)
        self._write = 0  # next ring position
        self._filled = 0
        self._open: list[_Open] = []

    def start(self, clip_id: str) -> bool:
        """Start a clip now; False if too many clips are being recorded."""
        if len(self._open) >= MAX_OPEN_CLIPS:
            return False
        self._open.append(_Open(clip_id, [self._pre_roll()], self.post))
        return True

    def push(self, pcm: Pcm16) -> list[tuple[str, Pcm16]]:
        """Add 16 kHz mono audio; return the clips that are complete now."""
        done = []
        for clip in self._open:
            take = pcm[: clip.remaining]
            clip.parts.append(take.copy())
            clip.remaining -= len(take)
            if clip.remaining <= 0:
                done.append(clip)
        for clip in done:
            self._open.remove(clip)
        self._remember(pcm)
        return [(clip.clip_id, np.concatenate(clip.parts)) for clip in done]

    def flush(self) -> list[tuple[str, Pcm16]]:
        """End every open clip with what it has (the stream is closing)."""
        done, self._open = self._open, []
        return [(clip.clip_id, np.concatenate(clip.parts)) for clip in done]

    def _remember(self, pcm: Pcm16) -> None:
        size = len(self._ring)
        if len(pcm) >= size:
            self._ring[:] = pcm[-size:]
            self._write = 0
            self._filled = size
            return
        end = self._write + len(pcm)
        if end <= size:
            self._ring[self._write : end] = pcm
        else:
            split = size - self._write
            self._ring[self._write :] = pcm[:split]
            self._ring[: end - size] = pcm[split:]
        self._write = end % size
        self._filled = min(size, self._filled + len(pcm))

    def _pre_roll(self) -> Pcm16:
        if self._filled < len(self._ring):
            return self._ring[: self._filled].copy()
        return np.concatenate([self._ring[self._write :], self._ring[: self._write]])
