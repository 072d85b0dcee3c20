"""Streaming detector of smoke (T3) and CO (T4) alarm patterns on the frontend's FFT frames.

Smoke and CO alarms are narrow-band horns switched on and off in a fixed rhythm. T3 (smoke; ANSI
S3.41, ISO 8201): three 0.5 s pulses 1 s apart, then a pause; a 4 s cycle. T4 (CO): four 0.1 s
pulses 0.2 s apart, then a 5 s pause; a 5.8 s cycle. Carriers: a piezo horn at 2.8-3.6 kHz, or a
520 Hz square wave (NFPA 72 low-frequency sounder; odd harmonics at 1560, 2600 Hz, ...).

It reuses the magnitude frames of :mod:`.frontend` (25 ms Hann window, 10 ms hop, 31.25 Hz bins):
no FFT of its own, a fixed handful of vectorised steps per call, and frames too quiet to hold an
alarm (:data:`QUIET_DB`) are not analysed at all.

1. Per frame and candidate bin, ``level``: the power of the 3-bin main lobe (dB re a full-scale
   sine), and ``tonality``: that over the power 4-8 bins away on the quieter side, the adaptive
   spectral floor. A narrow peak counts, broadband energy does not, at any input level.
2. A pulse onset is a spectral peak in a carrier band whose level rose by
   :data:`ONSET_RISE_DB` over the same bins 20-30 ms before (relative to the sound just before:
   from far away to clipping, with reverberation partly filling the gaps), and is tonal.

Only onsets (a few per second at most) reach Python code. When an onset is 80 ms old its pulse
is measured (peak level, tonality, exact frequency, share of all sound, and for 520 Hz its even
and odd harmonics) and matched with the earlier onsets on the same carrier (within one bin): a T3
cycle is onsets 1, 1 and 2 s apart, up to the next cycle's first pulse; a T4 cycle a group of 4
onsets 0.2 s apart and the next group 5.8 s after its first. Every interval may be off by 25 %.
Reverberation or a burst of speech can hide an onset: one of a T3 cycle's middle pulses, or up to
two of a T4 group's last three, may then be found on the level track instead. A candidate cycle
must have pulses of similar level and of one steady frequency that holds a good share of all the
sound (not a voice's or a note's harmonic), no even harmonics at 520 Hz, long pulses and quiet
gaps for T3, a short burst for T4, and a pause that is quiet on the carrier.

So an alarm is confirmed on the first pulse of its second cycle (about 4.1 s after a T3 starts,
5.9 s after a T4), then once per further cycle while it goes on: one :class:`AlarmHit` each.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt

from .frontend import FRAME_HOP, FRAME_LENGTH, SAMPLE_RATE, SPECTRUM_BINS, stft_magnitude

__all__ = ["CYCLE_S", "AlarmHit", "AlarmPatternDetector", "detect_alarms", "next_cycle"]

Floats = npt.NDArray[np.float32]
Pattern = Literal["T3", "T4"]

BIN_HZ = SAMPLE_RATE / 512  # 31.25 Hz
FRAME_S = FRAME_HOP / SAMPLE_RATE  # 10 ms

#: Spectral-peak bins that may carry an alarm (inclusive): piezo horns, 2812-3594 Hz ...
HI_BINS = (90, 115)
#: ... and 520 Hz +-10 % low-frequency sounders, 469-563 Hz.
LF_BINS = (15, 18)

#: A peak's main lobe must exceed the power 4-8 bins away, on the quieter side, by this (dB;
#: white noise scores 0 dB in the median).
TONAL_DB = 14.0
#: ... and the pulses of a cycle must be this tonal (median over their first frames, dB).
PULSE_TONAL_DB = 13.0
#: An onset is a rise of at least this much over the same bins 20-30 ms earlier (dB).
ONSET_RISE_DB = 4.5
#: Levels bottom out at this (dB re a full-scale sine): quantisation noise, silence.
FLOOR_DB = -90.0
#: A frame in which no carrier bin's main lobe can reach this (dB re a full-scale sine) holds no
#: alarm worth finding (25 dB below a -45 dBFS one): it is stored as silence, not analysed. A
#: quiet room's broadband noise may hold more than this in all, none of it in a carrier bin.
QUIET_DB = -70.0
#: Frames an onset needs behind it before it is measured (80 ms; a T4 pulse lasts 100 ms).
MATURE_FRAMES = 8
#: Another rise on the same carrier within this many frames belongs to the same onset.
REFRACTORY_FRAMES = 8
#: An alarm's carrier holds at least this share of all sound from 156 Hz to 3.9 kHz during its
#: pulses (dB): a note's or a voice's harmonic near 3 kHz or 520 Hz holds much less.
MIN_SHARE_DB = -6.0
#: An alarm's carrier frequency is steady: spread between pulses, and median deviation within a
#: pulse (31.25 Hz bins). A voice's harmonic glides.
MAX_SPREAD_BINS = 0.5
MAX_WOBBLE_BINS = 0.25
#: A low-frequency alarm's 2nd and 4th harmonics stay this far below its fundamental (dB).
MAX_EVEN_DB = -10.0
#: ... and its 3rd and 5th harmonics, when they are at least this (dB re the fundamental), add
#: to the confidence: the square wave of an NFPA 72 low-frequency sounder.
MIN_ODD_DB = -16.0
#: The long pause of a cycle is this much below the pulses on the carrier (median, dB).
GAP_DEPTH_DB = 6.0
#: Frames of history kept (10.24 s: more than a T4 cycle at -25 % speed plus a block).
HISTORY_FRAMES = 1024
#: Large pushes are processed in blocks of at most this many frames.
BLOCK_FRAMES = 200

#: How long one cycle of each pattern lasts (s): T3 three pulses and a pause, T4 a group and one.
CYCLE_S: dict[Pattern, float] = {"T3": 4.0, "T4": 5.8}
_TOL = 0.25  # timing tolerance of every interval
_MARGIN_S = 0.03  # onset timing uncertainty
_T3_SHORT = (1.0 * (1 - _TOL) - _MARGIN_S, 1.0 * (1 + _TOL) + _MARGIN_S)
_T3_LONG = (2.0 * (1 - _TOL) - _MARGIN_S, 2.0 * (1 + _TOL) + _MARGIN_S)
_T4_STEP = (0.2 * (1 - _TOL) - _MARGIN_S, 0.2 * (1 + _TOL) + _MARGIN_S)
_T4_CYCLE = (CYCLE_S["T4"] * (1 - _TOL), CYCLE_S["T4"] * (1 + _TOL))
_T4_QUIET_FRAMES = 40  # no onset on the carrier in the 0.4 s before a T4 group
_T4_GROUP_FRAMES = 95  # a T4 group's last onset comes at most 0.95 s after its first
_MAX_CHAINS = 64
# An onset is measured once its pulse has MATURE_FRAMES and no later rise within the refractory
# time can replace it any more (rises are judged 2 frames late): the same for any chunking.
_SETTLE_FRAMES = max(MATURE_FRAMES, REFRACTORY_FRAMES + 2)
_ONSET_DELAY_S = 0.02  # an onset frame is flagged about when the tone fills its first half

# --- spectral layout ---------------------------------------------------------------------------
# Stored bins: the LF band and the HI band, each with one bin of margin (local maxima need both
# neighbours). Features come from magnitude columns _COL0.._COL1-1: floors reach 8 bins out.
_STORE = np.r_[LF_BINS[0] - 1 : LF_BINS[1] + 2, HI_BINS[0] - 1 : HI_BINS[1] + 2]
_N = len(_STORE)
_N_LF = LF_BINS[1] - LF_BINS[0] + 3
_COL0, _COL1 = 5, 125  # 156-3875 Hz
# History columns (dB): level and tonality of every stored bin; for the LF bins, the levels of the
# bands around their odd (3rd + 5th) and even (2nd + 4th) harmonics; the frame's total level.
_LEVEL, _TONAL, _ODD, _EVEN = 0, _N, 2 * _N, 2 * _N + _N_LF
_TOTAL = _EVEN + _N_LF
_WIDTH = _TOTAL + 1
_REF_DB = 10.0 * np.log10(1.7e4)  # 3-bin main lobe of a full-scale sine at a bin: 0 dB
# Median tonality of white noise (a 3-bin lobe over the lower of two 5-bin sums) -> 0 dB
_NOISE_TONALITY_DB = -0.86
_OFFSETS = np.zeros(_WIDTH, np.float32)
_OFFSETS[_LEVEL:_TONAL] = _REF_DB
_OFFSETS[_TONAL:_ODD] = _NOISE_TONALITY_DB
_OFFSETS[_ODD:] = _REF_DB
_PRE_FRAMES = 128  # silent history before the stream's first frame
# A frame is quiet when no stored bin's main lobe (3 bins) can reach QUIET_DB: every magnitude
# from one bin below the stored bins to one above is under the root of a third of that power.
_LF_LOBES = slice(_STORE[0] - 1, _STORE[_N_LF - 1] + 2)
_HI_LOBES = slice(_STORE[_N_LF] - 1, _STORE[-1] + 2)
_QUIET_PEAK = np.float32(np.sqrt(10.0 ** ((QUIET_DB + _REF_DB) / 10.0) / 3.0))
_FLOOR_POWER = np.float32(10.0 ** ((FLOOR_DB - 3.0 + _REF_DB) / 10.0))


def _column_index() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Return gather indices into the 3-bin sums and into the 5-bin sums (see _features)."""
    col = _STORE - _COL0  # power column of each stored bin
    lobes = col - 1  # 3-bin sum j is centred on power column j + 1
    lf = _STORE[:_N_LF]
    harmonics = [3 * lf - _COL0, 5 * lf - _COL0, 2 * lf - _COL0, 4 * lf - _COL0]
    fives = np.concatenate([col - 6, col + 6, *harmonics])  # floors 4-8 bins away; harmonics
    return lobes.astype(np.intp), (fives - 2).astype(np.intp)  # 5-bin sum j: centre j + 2


_LOBE_IDX, _FIVE_IDX = _column_index()


@dataclass(frozen=True, slots=True)
class AlarmHit:
    """One confirmed alarm cycle."""

    sound: Literal["smoke_alarm", "co_alarm"]  # T3 -> smoke_alarm, T4 -> co_alarm
    pattern: Pattern
    carrier_hz: float  # estimated carrier frequency (e.g. 3100 or 520)
    start_s: float  # stream time of the first pulse of the confirmed cycle
    end_s: float  # stream time at which it was confirmed
    confidence: float  # 0..1, from timing fit and tonality


def next_cycle(previous: AlarmHit, hit: AlarmHit) -> bool:
    """Return True when hit is the cycle after previous: one cycle later, on the same carrier.

    One cycle within the detector's timing tolerance (±25 %, and 0.1 s for where each cycle's
    first pulse was placed), the carrier within two bins.
    """
    cycle = CYCLE_S[hit.pattern]
    return (
        hit.pattern == previous.pattern
        and abs(hit.start_s - previous.start_s - cycle) <= _TOL * cycle + 0.1
        and abs(hit.carrier_hz - previous.carrier_hz) <= 2 * BIN_HZ
    )


@dataclass(slots=True, eq=False)
class _Onset:
    frame: int  # internal frame index (0 = the stream's first frame)
    bin: int  # spectrum bin of the peak
    level: float  # dB: at detection, then the pulse's peak over its first frames
    tonality: float = 0.0  # dB, median over its first frames
    freq: float = 0.0  # carrier frequency (bins), median over its first frames
    wobble: float = 0.0  # median deviation of the frequency within those frames (bins)
    share: float = 0.0  # median level over the total level (dB) in those frames
    odd: float = 0.0  # LF: 3rd + 5th harmonic bands over the level (dB), median
    even: float = 0.0  # LF: 2nd + 4th harmonic bands over the level (dB), median
    virtual: bool = False  # a pulse placed on the beat of the others (its onset was hidden)


class AlarmPatternDetector:
    """Finds T3/T4 alarm cycles in a stream of magnitude frames (see the module docstring)."""

    def __init__(self) -> None:
        """Start an empty stream."""
        self._buf = np.empty((_PRE_FRAMES + HISTORY_FRAMES + BLOCK_FRAMES, _WIDTH), np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push may start at any frame index."""
        self._buf[:] = _SILENT_ROW
        self._base = -_PRE_FRAMES  # internal frame index of buffer row 0
        self._frames = 0  # frames seen since the stream (re)started
        self._origin = 0  # stream frame index of internal frame 0
        self._next_frame: int | None = None  # expected first_frame of the next push
        self._quiet_run = _PRE_FRAMES  # quiet frames at the end of the history
        self._pending: list[_Onset] = []  # onsets not yet mature, oldest first
        self._recent: list[_Onset] = []  # the last few onsets (refractory)
        self._onsets: dict[str, list[_Onset]] = {"hi": [], "lf": []}  # mature, oldest first
        self._last_cycle: dict[str, int] = {"hi": -(10**9), "lf": -(10**9)}
        self._hits: list[AlarmHit] = []  # the last few hits (one report per cycle)

    def push(self, magnitude: Floats, first_frame: int) -> list[AlarmHit]:
        """Feed consecutive magnitude frames [n,257] (frame i at i*10 ms); n may be 0 or large.

        Return the cycles these frames confirmed. A gap or overlap in ``first_frame`` restarts
        the search (as :meth:`reset` does).
        """
        n = len(magnitude)
        if n == 0:
            return []
        if magnitude.ndim != 2 or magnitude.shape[1] != SPECTRUM_BINS:
            raise ValueError(f"expected [n, {SPECTRUM_BINS}] magnitude frames")
        if self._next_frame is not None and first_frame != self._next_frame:
            self.reset()
        if self._next_frame is None:
            self._origin = first_frame
        self._next_frame = first_frame + n
        hits: list[AlarmHit] = []
        for a in range(0, n, BLOCK_FRAMES):
            hits += self._push_block(magnitude[a : a + BLOCK_FRAMES])
        return hits

    # --- per block ----------------------------------------------------------------------------

    def _push_block(self, magnitude: Floats) -> list[AlarmHit]:
        n = len(magnitude)
        start = self._frames
        pos = start - self._base
        if pos + n > len(self._buf):  # drop the oldest rows, keep HISTORY_FRAMES
            keep = HISTORY_FRAMES
            self._buf[:keep] = self._buf[pos - keep : pos]
            self._base += pos - keep
            pos = keep
        rows = self._buf[pos : pos + n]
        peak = np.maximum(magnitude[:, _LF_LOBES].max(axis=1), magnitude[:, _HI_LOBES].max(axis=1))
        quiet = peak < _QUIET_PEAK
        n_quiet = int(np.count_nonzero(quiet))
        self._frames += n
        if n_quiet == n:  # nothing an alarm could be in: store silence, look at the last frames
            rows[:] = _SILENT_ROW
            if self._quiet_run < 2:
                self._find_onsets(start - 2, min(n, 2))
            self._quiet_run += n
        else:
            band = magnitude[:, _COL0:_COL1]
            _features(magnitude, np.einsum("ij,ij->i", band, band), rows)
            self._quiet_run = 0
            if n_quiet:
                rows[quiet] = _SILENT_ROW
                self._quiet_run = n - 1 - int(np.flatnonzero(~quiet)[-1])
            self._find_onsets(start - 2, n)

        hits: list[AlarmHit] = []
        while self._pending and self._pending[0].frame + _SETTLE_FRAMES <= self._frames:
            hits += self._mature(self._pending.pop(0))
        return hits

    def _find_onsets(self, first: int, n: int) -> None:
        """Find the onsets among frames [first, first + n), and queue them.

        A frame's onset is judged 2 frames late (a tone starting under a burst of noise may only
        look tonal a little after its rise): a spectral peak in a carrier band that rose over the
        same bins 20-30 ms before, and is tonal in this or one of the next two frames.
        """
        pos = first - self._base
        rows = self._buf[pos - 3 : pos + n + 2]
        level, tonal = rows[:, _LEVEL:_TONAL], rows[:, _TONAL + 1 : _ODD - 1]
        now = level[3:-2, 1:-1]
        wide = np.maximum(np.maximum(level[:-2, :-2], level[:-2, 1:-1]), level[:-2, 2:])
        cand = now - np.maximum(wide[:-3], wide[1:-2]) >= ONSET_RISE_DB
        cand &= np.maximum(np.maximum(tonal[3:-2], tonal[4:-1]), tonal[5:]) >= TONAL_DB
        if not np.count_nonzero(cand):
            return
        cand &= (now >= level[3:-2, :-2]) & (now > level[3:-2, 2:])  # a local maximum
        cand[:, _N_LF - 2 : _N_LF] = False  # the band-edge margin columns
        cand[: max(0, 3 - first)] = False  # no rise is known before the third frame
        totals = rows[3:-2, _TOTAL]
        for i in np.flatnonzero(cand):
            t, c = divmod(int(i), _N - 2)
            peak = float(now[t, c])
            if peak - float(totals[t]) >= MIN_SHARE_DB - 12.0:  # else far too weak to matter
                self._add_onset(first + t, int(_STORE[c + 1]), peak)

    def _add_onset(self, frame: int, bin_: int, level: float) -> None:
        near = [
            o
            for o in self._recent
            if frame - o.frame < REFRACTORY_FRAMES and abs(o.bin - bin_) <= 2
        ]
        if near:
            # the same onset: a much stronger peak right after the first rise is the real one
            # (an onset's first frame splatters over nearby bins)
            if level >= max(o.level for o in near) + 6.0 and all(o in self._pending for o in near):
                keep = near[0]
                keep.frame, keep.bin, keep.level = frame, bin_, level
                for o in near[1:]:
                    self._pending.remove(o)
                    self._recent.remove(o)
            return
        onset = _Onset(frame, bin_, level)
        self._recent = [*self._recent[-7:], onset]
        self._pending.append(onset)

    # --- matching -----------------------------------------------------------------------------

    def _mature(self, onset: _Onset) -> list[AlarmHit]:
        name = "lf" if onset.bin <= LF_BINS[1] else "hi"
        self._measure(onset)
        keep_from = onset.frame - (HISTORY_FRAMES - BLOCK_FRAMES)
        onsets = [o for o in self._onsets[name] if o.frame >= keep_from]
        onsets.append(onset)
        self._onsets[name] = onsets
        same = sorted(
            (
                o
                for o in onsets[:-1]
                if abs(o.bin - onset.bin) <= 1 and o.frame >= self._last_cycle[name]
            ),
            key=lambda o: o.frame,
        )
        hits: list[AlarmHit] = []
        for pattern in ("T3", "T4"):
            hit = self._match(same, onset, pattern, self._last_cycle[name] - REFRACTORY_FRAMES)
            if hit is not None and not any(
                h.pattern == hit.pattern and abs(h.start_s - hit.start_s) < 0.15 for h in self._hits
            ):
                self._last_cycle[name] = onset.frame
                self._hits = [*self._hits[-3:], hit]
                hits.append(hit)
        return hits

    def _measure(self, onset: _Onset) -> None:
        """Measure a pulse over its first frames: peak level, tonality, frequency, share."""
        col = int(np.searchsorted(_STORE, onset.bin))
        rows = self._rows(onset.frame, onset.frame + MATURE_FRAMES)
        level = rows[:, _LEVEL + col - 1 : _LEVEL + col + 2]
        best = np.argmax(level, axis=1)
        pick = np.arange(len(rows))
        strongest = level[pick, best]
        tonal = rows[:, _TONAL + col - 1 : _TONAL + col + 2][pick, best]
        freq = (_peak_position(level[1:]) + np.float32(onset.bin)).tolist()
        onset.level = float(strongest.max())
        onset.tonality = _median(tonal.tolist())
        onset.freq = _median(freq)
        onset.wobble = _median([abs(f - onset.freq) for f in freq])
        onset.share = _median((strongest[1:] - rows[1:, _TOTAL]).tolist())
        if col < _N_LF:
            onset.odd = _median((rows[1:, _ODD + col] - strongest[1:]).tolist())
            onset.even = _median((rows[1:, _EVEN + col] - strongest[1:]).tolist())

    def _match(
        self, same: list[_Onset], last: _Onset, pattern: Pattern, since: int
    ) -> AlarmHit | None:
        """Return the best verified cycle ending with ``last`` (the next cycle's first pulse)."""
        chains = _t3_chains(same, last) if pattern == "T3" else _t4_chains(same, last)
        chains = [c for c in chains if c[0].frame >= since]  # cycles don't overlap
        chains.sort(key=lambda c: (sum(o.virtual for o in c), _timing_error(c, pattern)))
        for chain in chains[:_MAX_CHAINS]:
            hit = self._verify(chain, pattern, same)
            if hit is not None:
                return hit
        return None

    def _verify(self, chain: list[_Onset], pattern: Pattern, same: list[_Onset]) -> AlarmHit | None:
        """Check a candidate cycle; return its hit if it passes.

        First on the pulses' own measurements (cheap), then on the carrier's level track.
        """
        real = [o for o in chain if not o.virtual]
        levels = [o.level for o in real]  # onset peaks: before reverberation builds up
        ref = _median(levels)
        tonality = _median([o.tonality for o in real])
        freqs = [o.freq for o in real]
        low = chain[0].bin <= LF_BINS[1]
        if (
            max(levels) - min(levels) > 9.0
            or tonality < PULSE_TONAL_DB
            or max(freqs) - min(freqs) > MAX_SPREAD_BINS
            or _median([o.wobble for o in real]) > MAX_WOBBLE_BINS
            or _median([o.share for o in real]) < MIN_SHARE_DB
            or (low and _median([o.even for o in real]) > MAX_EVEN_DB)
        ):
            return None

        pre = 100  # the track starts 1 s before the cycle
        first, end = chain[0].frame, chain[-1].frame + MATURE_FRAMES
        track, ton = self._track(round(_median([o.bin for o in real])), first - pre, end)
        rel = [o.frame - first + pre for o in chain]
        # the pause is quiet on the carrier, and holds no tonal pulse
        gap_from = rel[-2] + 80 if pattern == "T3" else rel[0] + 120
        gap = track[gap_from : rel[-1] - 3]
        depth = ref - float(np.median(gap)) if len(gap) >= 10 else 0.0
        if depth < GAP_DEPTH_DB or any(
            gap_from - pre + first <= o.frame < chain[-1].frame
            and o.level >= ref - 4.0
            and o.tonality >= TONAL_DB
            for o in same
        ):
            return None
        shape_ok = (
            _t3_shape(chain, rel, track, ton, ref)
            if pattern == "T3"
            else _t4_shape(chain, rel, track, ton, ref)
        )
        if not shape_ok:
            return None

        timing = max(0.0, 1.0 - _timing_error(chain, pattern) / 0.4) * len(real) / len(chain)
        tonal_fit = min(1.0, (tonality - TONAL_DB) / 24.0)
        if low and _median([o.odd for o in real]) >= MIN_ODD_DB:
            tonal_fit = min(1.0, tonal_fit + 0.5)  # a square wave's odd harmonics
        depth_fit = min(1.0, (depth - GAP_DEPTH_DB) / 24.0)
        confidence = 0.4 + 0.6 * (0.5 * timing + 0.25 * tonal_fit + 0.25 * depth_fit)
        return AlarmHit(
            sound="smoke_alarm" if pattern == "T3" else "co_alarm",
            pattern=pattern,
            carrier_hz=round(_median(freqs) * BIN_HZ, 1),
            start_s=round((self._origin + first) * FRAME_S + _ONSET_DELAY_S, 3),
            end_s=round(((self._origin + end - 1) * FRAME_HOP + FRAME_LENGTH) / SAMPLE_RATE, 3),
            confidence=round(confidence, 3),
        )

    # --- history ------------------------------------------------------------------------------

    def _rows(self, a: int, b: int) -> Floats:
        """Return the stored rows of frames [a, b)."""
        return self._buf[a - self._base : b - self._base]

    def _track(self, bin_: int, a: int, b: int) -> tuple[Floats, Floats]:
        """Return level and tonality of the strongest of bins bin_-1..bin_+1, frames [a, b)."""
        col = int(np.searchsorted(_STORE, bin_))
        rows = self._rows(a, b)
        level = rows[:, _LEVEL + col - 1 : _LEVEL + col + 2]
        best = np.argmax(level, axis=1)
        pick = np.arange(len(rows))
        return level[pick, best], rows[:, _TONAL + col - 1 : _TONAL + col + 2][pick, best]


def _median(values: list[float]) -> float:
    """Return the median of a short list (numpy's median is slow on a handful of values)."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else 0.5 * (ordered[half - 1] + ordered[half])


def _t3_shape(chain: list[_Onset], rel: list[int], track: Floats, ton: Floats, ref: float) -> bool:
    """Check a T3 cycle's shape on its carrier's track (``rel``: the pulses' rows in it)."""
    # a pulse whose onset was hidden shows on the track: tonal and near the pulse level
    for o, r in zip(chain, rel, strict=True):
        if o.virtual and not _is_pulse(track[r + 5 : r + 30], ton[r + 5 : r + 30], ref):
            return False
    # the pause is not just a skipped beat of even beeps (as a timer's): where a fourth pulse
    # would be, there is none
    skipped = rel[2] + (rel[2] - rel[0]) // 2
    if _is_pulse(track[skipped + 5 : skipped + 30], ton[skipped + 5 : skipped + 30], ref):
        return False
    # every gap is quiet in its late part; the pulses are long: in at least two of them the
    # carrier stays well above that for their first 0.3 s (not necessarily near the onset
    # level: reverberation can notch a pure tone's steady state deeply)
    long_pulses = 0
    for i in range(3):
        late = rel[i] + (80 if i == 2 else (rel[i + 1] - rel[i]) * 3 // 4)
        gap_level = float(np.median(track[late : rel[i + 1] - 3]))
        if gap_level > ref - GAP_DEPTH_DB:
            return False
        long_pulses += float(np.median(track[rel[i] + 5 : rel[i] + 30])) >= gap_level + 8.0
    return long_pulses >= 2


def _t4_shape(chain: list[_Onset], rel: list[int], track: Floats, ton: Floats, ref: float) -> bool:
    """Check a T4 cycle's shape on its carrier's track (``rel``: the pulses' rows in it)."""
    # the group follows a quiet time, and is a short burst: within 1.1 s the carrier has fallen
    # well below the pulse level
    carrier = (track >= ref - 6.0) & (ton >= PULSE_TONAL_DB)  # loud and tonal
    burst = np.flatnonzero(carrier[rel[0] : rel[0] + 120])
    if np.mean(carrier[rel[0] - 60 : rel[0] - 4]) > 0.2 or len(burst) == 0 or burst[-1] > 110:
        return False
    # with two pulses unseen, both show on the track: a tonal peak after a dip
    if sum(o.virtual for o in chain) < 2:
        return True
    for o, r in zip(chain, rel, strict=True):
        peak = float(track[r : r + MATURE_FRAMES].max())
        if o.virtual and (
            peak < ref - 6.0
            or float(track[r - 6 : r + 1].min()) > peak - 3.0
            or float(np.median(ton[r : r + MATURE_FRAMES])) < PULSE_TONAL_DB
        ):
            return False
    return True


def _is_pulse(level: Floats, tonality: Floats, ref: float) -> bool:
    """Return whether a stretch of a carrier's track holds a pulse: near ``ref`` and tonal."""
    return bool(
        float(np.median(level)) >= ref - GAP_DEPTH_DB
        and float(np.median(tonality)) >= PULSE_TONAL_DB
    )


def _peak_position(levels: Floats) -> Floats:
    """Return, per row of 3 levels (dB) around a bin, the peak's offset from it (bins)."""
    left, mid, right = levels[:, 0], levels[:, 1], levels[:, 2]
    curve = np.minimum(left - 2 * mid + right, np.float32(-1e-3))
    offset: Floats = np.clip(0.5 * (left - right) / curve, -1.0, 1.0)
    return offset


def _features(magnitude: Floats, total: Floats, out: Floats) -> None:
    """Write the history row of each frame (see the column layout above) into ``out``.

    ``total`` is each frame's power in the magnitude columns _COL0.._COL1-1.
    """
    power = np.square(magnitude[:, _COL0:_COL1])
    power += np.float32(1e-12)
    three = power[:, :-2] + power[:, 1:-1]
    three += power[:, 2:]  # 3-bin sums, centred on power columns 1..-2
    five = three[:, 1:-1] + power[:, :-4]
    five += power[:, 4:]  # 5-bin sums, centred on power columns 2..-3
    lin = out  # filled with powers first, then turned into dB in place
    lin[:, _LEVEL:_TONAL] = three[:, _LOBE_IDX]
    around = five[:, _FIVE_IDX]
    floor = np.minimum(around[:, :_N], around[:, _N : 2 * _N])
    np.divide(lin[:, _LEVEL:_TONAL], floor, out=lin[:, _TONAL:_ODD])
    harmonics = around[:, 2 * _N :]  # 5-bin sums around 3b, 5b, 2b and 4b of the LF bins
    np.add(harmonics[:, :_N_LF], harmonics[:, _N_LF : 2 * _N_LF], out=lin[:, _ODD:_EVEN])
    np.add(harmonics[:, 2 * _N_LF : 3 * _N_LF], harmonics[:, 3 * _N_LF :], out=lin[:, _EVEN:_TOTAL])
    lin[:, _LEVEL:_TONAL] += _FLOOR_POWER  # levels bottom out at FLOOR_DB
    np.add(total, np.float32(1e-12), out=lin[:, _TOTAL])
    np.log10(lin, out=out)
    out *= np.float32(10.0)
    out -= _OFFSETS


_SILENT_ROW = np.zeros(_WIDTH, np.float32)
_SILENT_ROW[_LEVEL:_TONAL] = FLOOR_DB - 3.0
_SILENT_ROW[_ODD:] = -200.0


def _between(same: list[_Onset], frames: list[int], lo: int, hi: int) -> list[_Onset]:
    """Return the onsets of ``same`` (sorted; ``frames`` are theirs) in frames [lo, hi]."""
    return same[bisect_left(frames, lo) : bisect_right(frames, hi)]


def _window(
    same: list[_Onset], frames: list[int], after: int, span: tuple[float, float]
) -> list[_Onset]:
    """Return the onsets of ``same`` that come ``span`` (seconds) before frame ``after``."""
    return _between(
        same, frames, after - round(span[1] / FRAME_S), after - round(span[0] / FRAME_S)
    )


def _t3_chains(same: list[_Onset], last: _Onset) -> list[list[_Onset]]:
    """Return onset chains o1, o2, o3, last about 1, 1 and 2 s apart.

    One of o1, o2, o3 may be virtual (its onset hidden): placed on the beat of the others.
    """
    frames = [o.frame for o in same]
    double = (2 * _T3_SHORT[0], 2 * _T3_SHORT[1])
    chains = []
    for o3 in _window(same, frames, last.frame, _T3_LONG):
        for o2 in _window(same, frames, o3.frame, _T3_SHORT):
            chains += [[o1, o2, o3, last] for o1 in _window(same, frames, o2.frame, _T3_SHORT)]
            # the first pulse is hidden
            start = _Onset(2 * o2.frame - o3.frame, o2.bin, o2.level, virtual=True)
            chains.append([start, o2, o3, last])
        for o1 in _window(same, frames, o3.frame, double):  # the second pulse is hidden
            middle = _Onset((o1.frame + o3.frame) // 2, o1.bin, o1.level, virtual=True)
            chains.append([o1, middle, o3, last])
    both = (_T3_SHORT[0] + _T3_LONG[0], _T3_SHORT[1] + _T3_LONG[1])
    for o2 in _window(same, frames, last.frame, both):  # the third pulse is hidden
        for o1 in _window(same, frames, o2.frame, _T3_SHORT):
            third = _Onset(2 * o2.frame - o1.frame, o2.bin, o2.level, virtual=True)
            if _T3_LONG[0] <= (last.frame - third.frame) * FRAME_S <= _T3_LONG[1]:
                chains.append([o1, o2, third, last])
    return chains


def _t4_chains(same: list[_Onset], last: _Onset) -> list[list[_Onset]]:
    """Return chains: a group of 4 pulses about 0.2 s apart, then ``last``.

    The group starts 5.8 s (+-25 %) before ``last``, after 0.4 s without onsets on the carrier.
    Up to two of its later pulses may be virtual (their onsets hidden by reverberation or
    background sound): placed on the beat of the detected ones.
    """
    frames = [o.frame for o in same]
    chains: list[list[_Onset]] = []
    for g0 in _window(same, frames, last.frame, _T4_CYCLE):
        if _between(same, frames, g0.frame - _T4_QUIET_FRAMES, g0.frame - 1):
            continue  # not the first pulse of a group
        groups: list[list[tuple[int, _Onset]]] = [[(0, g0)]]  # (beat, onset)
        for o in _between(same, frames, g0.frame + 1, g0.frame + _T4_GROUP_FRAMES):
            for group in list(groups):  # extend every group that o can follow
                beat, prev = group[-1]
                step = (o.frame - prev.frame) * FRAME_S
                beats = round(step / 0.2) if _T4_STEP[0] <= step <= 2 * _T4_STEP[1] else 0
                if beats and beat + beats <= 3:
                    groups.append([*group, (beat + beats, o)])
        most = max(len(group) for group in groups)
        for group in groups[1:]:
            if len(group) < most:
                continue  # a group that skips a detected pulse
            found = dict(group)
            period = (group[-1][1].frame - g0.frame) / group[-1][0]
            pulses = [
                found.get(k) or _Onset(round(g0.frame + k * period), g0.bin, g0.level, virtual=True)
                for k in range(4)
            ]
            chains.append([*pulses, last])
    return chains


def _timing_error(chain: list[_Onset], pattern: Pattern) -> float:
    """Return the worst relative deviation of a chain's intervals from the nominal ones."""
    steps = [(b.frame - a.frame) * FRAME_S for a, b in pairwise(chain)]
    if pattern == "T3":
        return max(abs(d / n - 1) for d, n in zip(steps, (1.0, 1.0, 2.0), strict=True))
    group = [abs(d / (0.2 * max(1, round(d / 0.2))) - 1) for d in steps[:-1]]
    return max([*group, abs(sum(steps) / 5.8 - 1)])


def detect_alarms(samples: Floats) -> list[AlarmHit]:
    """Run the detector once over 16 kHz float samples; return every confirmed cycle."""
    return AlarmPatternDetector().push(stft_magnitude(samples), 0)
