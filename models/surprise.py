"""Per-stream tail probabilities of a surprise (edge-safe: numpy only), used by models.anomaly.

A surprise is a log-scaled statistic of one reading (forecast error, distance from the running
mean, change against the same time a day earlier). Each is compared with the stream's own decayed
histogram of that surprise: the tail probability P(L >= l) is empirical in the bulk and, above the
`tail_quantile` upper quantile, an exponential tail fitted to the mean excess (peaks over
threshold), so values far beyond anything seen get far smaller probabilities; but never smaller
than the observed frequency of values at least that large (a rare event that recurs, such as a
daily shift start, is as likely as it is frequent).

Saturation guard: every histogram keeps learning, also while its stream is in an alarm's
refractory period, so a surprise that persists (a new normal) fills the histogram's top: after
`r` readings at or above a level `l` out of an effective memory of `horizon` readings,
P(L >= l) >= r / (horizon + r), whatever happened before.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.features import SensorFeatureState

_BINS = 96
_LOG_MIN, _LOG_MAX = -8.0, 4.0  # natural-log range of the binned surprise
_WIDTH = (_LOG_MAX - _LOG_MIN) / _BINS
_CENTERS = _LOG_MIN + (np.arange(_BINS) + 0.5) * _WIDTH
#: _OFFSETS[u]: each bin's centre above bin u's (the excesses of a peaks-over-threshold fit at u)
_OFFSETS = [_CENTERS[u:] - _CENTERS[u] for u in range(_BINS)]
_REFRESH = 8  # readings between two refreshes of the tail summary
_LN10 = math.log(10.0)


class DecayedTail:
    """Decayed histograms of `rows` log-surprises with exponential (peaks-over-threshold) upper
    tails, fed together (one value per row and reading): the rows share one forgetting clock, so
    the surprises of a reading are tested and folded in by one call; row r's histogram is exactly
    the one it would be alone.

    The tail summaries are refreshed every `_REFRESH` readings (they only ever use past readings)."""

    __slots__ = ("_above", "_beta", "_grid", "_log10_pu", "_total", "_u", "counts", "n", "total", "weight")

    def __init__(self, rows: int = 1) -> None:
        self._grid = np.zeros((rows, _BINS))  # every row's histogram, for one cumsum per refresh
        self.counts = list(self._grid)  # row views, each updated by one item assignment a reading
        self.weight = 1.0
        self.total = 0.0
        self.n = 0
        self._total = 0.0
        #: per row, at the last refresh: weight in bins >= b (raw doubles: a quarter of a list's memory)
        self._above: list[array[float]] = []
        self._u = [_BINS - 1] * rows  # per row: the bin the fitted tail starts from
        self._beta = [_WIDTH] * rows  # per row: the tail's mean excess (log units)
        self._log10_pu = [0.0] * rows  # per row: log10 of the weight share in bins >= u

    def _refresh(self, tail_quantile: float) -> None:
        total = self.total
        # above[r][b] = weight of row r in bins >= b (row by row the same sums as a 1-D cumsum)
        aboves = [array("d", row.tobytes()) for row in self._grid[:, ::-1].cumsum(axis=1)[:, ::-1]]
        for r, counts in enumerate(self.counts):
            above = aboves[r]
            # u: the first bin whose tail holds at most tail_quantile of the weight (the tail
            # only shrinks with b, so a bisection); the last bin if none does
            lo, hi = 0, _BINS - 1
            if above[hi] / total <= tail_quantile:
                while lo < hi:
                    mid = (lo + hi) // 2
                    if above[mid] / total <= tail_quantile:
                        hi = mid
                    else:
                        lo = mid + 1
            self._u[r] = hi
            if above[hi] > 0.0:
                excess = float(counts[hi:] @ _OFFSETS[hi]) / above[hi]
                self._beta[r] = excess if excess > _WIDTH else _WIDTH
                self._log10_pu[r] = math.log10(above[hi] / total)
        self._above = aboves
        self._total = total

    def observe_one(self, x: float, horizon: int, tail_quantile: float | None = None) -> float:
        """`observe((x,), ...)[0]` of a one-row histogram, without the lists (the period tests
        make one or two such calls per reading)."""
        weight = self.weight
        t = 0.0
        b = int((x - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * _BINS)
        b = 0 if b < 0 else _BINS - 1 if b >= _BINS else b
        if tail_quantile is not None and self.total > 0.0:
            if not self._above or self.n % _REFRESH == 0:
                self._refresh(tail_quantile)
            denom = self._total + weight
            if b <= self._u[0]:  # the bulk, inline
                t = -math.log10((self._above[0][b] + weight) / denom)
            else:
                t = self._test(0, b, x, weight, denom)
        self.counts[0][b] += weight
        self._advance(weight, horizon)
        return t

    def _test(self, r: int, b: int, x: float, weight: float, denom: float) -> float:
        """-log10 of row r's tail probability of a value x (bin b) at the last refresh."""
        row, u = self._above[r], self._u[r]
        above = row[b]
        if b <= u or row[u] <= 0.0:
            return -math.log10((above + weight) / denom)
        t = -(self._log10_pu[r] - (x - _CENTERS[u]) / self._beta[r] / _LN10)
        if above > 0.0:  # never rarer than the values this large already seen (a recurring rare event is normal)
            seen = -math.log10((above + weight) / denom)
            return seen if seen < t else t
        return t  # beyond every value seen, the fitted tail alone

    def _advance(self, weight: float, horizon: int) -> None:
        """The clock after a reading of weight `weight` was folded into every row."""
        self.n += 1
        self.total += weight
        self.weight = weight = weight * (1.0 + 1.0 / horizon)  # newer readings weigh more: exponential forgetting
        if weight > 1e6:
            self._grid /= weight  # in place: the row views see it
            self.total /= weight
            self._above = [array("d", [a / weight for a in row]) for row in self._above]
            self._total /= weight
            self.weight = 1.0

    def observe(self, xs: Sequence[float], horizon: int, tail_quantile: float | None = None) -> list[float]:
        """Fold in one surprise per row (exponential forgetting over `horizon` readings); with a
        `tail_quantile`, first return each row's -log10 probability of a value at least this
        large against the history before it (else zeros)."""
        weight = self.weight
        testing = tail_quantile is not None and self.total > 0.0
        denom = 0.0
        if testing:
            if not self._above or self.n % _REFRESH == 0:
                self._refresh(tail_quantile)  # type: ignore[arg-type]
            aboves, us = self._above, self._u
            denom = self._total + weight
        out = []
        for r, x in enumerate(xs):
            b = int((x - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * _BINS)
            b = 0 if b < 0 else _BINS - 1 if b >= _BINS else b
            t = 0.0
            if testing:
                u = us[r]
                if b <= u:  # the bulk, the common case, inline
                    t = -math.log10((aboves[r][b] + weight) / denom)
                else:
                    t = self._test(r, b, x, weight, denom)
            out.append(t)
            self.counts[r][b] += weight
        self._advance(weight, horizon)
        return out


class TrailingMeans:
    """Means of a surprise over several trailing windows (1 = the reading itself, for point
    anomalies; longer ones for sustained anomalies)."""

    __slots__ = ("_recent", "_sums", "_windows")

    def __init__(self, windows: tuple[int, ...]) -> None:
        self._windows = windows
        self._recent: deque[float] = deque(maxlen=max(windows))
        self._sums = [0.0] * len(windows)

    def push(self, surprise: float) -> list[float]:
        """Fold in a reading's surprise; return the mean of each trailing window (over the
        readings there are while fewer than the window)."""
        recent = self._recent
        sums = self._sums
        n = len(recent)  # readings before this one
        out = []
        for i, w in enumerate(self._windows):
            s = sums[i] + surprise
            if n >= w:
                s -= recent[-w]
            sums[i] = s
            out.append(s / (w if w <= n else n + 1))
        recent.append(surprise)
        return out


@dataclass(slots=True)
class PeriodTest:
    """Mean change against the same time `days` days earlier over a trailing window, in std
    units. The references come from :meth:`SensorFeatureState.days_ago`, which corrects readings
    from before a re-learnt level change by that change, so a new level is not a changed pattern."""

    days: int
    tail: DecayedTail = field(default_factory=DecayedTail)  # one row
    #: The trailing window's changes, a ring of raw doubles (8 bytes each, not a float object
    #: and a pointer apiece: a 1-minute stream keeps 720 of them); created once the stream's
    #: daily lag is known.
    diffs: array[float] | None = None
    filled: int = 0  # changes in the window (up to len(diffs))
    pos: int = 0  # the ring's next write position (the oldest change once it is full)
    total: float = 0.0
    #: Whether the test can be made on this stream (a daily lag, and the days kept); None: lag not known yet.
    usable: bool | None = None

    def surprise(
        self, features: SensorFeatureState, value: float, day_fraction: float, std: float
    ) -> float | None:
        """Fold in the change of `value` (in `std` units: the stream's, before this reading) against
        the reading `days` days earlier; return log |mean change| over the window (None: no test)."""
        usable = self.usable
        if usable is None:  # decided once the stream's daily lag is known (it never changes after)
            lag = features.seasonal_lag
            if lag is None:
                return None
            usable = self.usable = bool(lag) and features.keeps_days(self.days)
        if not usable:
            return None
        before = features.days_ago(self.days)
        if before is None:
            return None
        diffs = self.diffs
        if diffs is None:
            diffs = self.diffs = array("d", bytes(8 * max(1, round(day_fraction * (features.seasonal_lag or 0)))))
        diff = (value - before) / std
        n, pos, size = self.filled, self.pos, len(diffs)
        if n == size:
            self.total -= diffs[pos]  # the oldest change leaves the window
        else:
            n = self.filled = n + 1
        diffs[pos] = diff
        self.pos = pos + 1 if pos + 1 < size else 0
        self.total += diff
        return math.log(abs(self.total / n) + 1e-3)

    def restart(self) -> None:
        """Forget the trailing window (its differences predate a re-learnt new normal)."""
        self.filled = self.pos = 0
        self.total = 0.0
