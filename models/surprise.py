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
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from models.features import SensorFeatureState

_BINS = 96
_LOG_MIN, _LOG_MAX = -8.0, 4.0  # natural-log range of the binned surprise
_WIDTH = (_LOG_MAX - _LOG_MIN) / _BINS
_CENTERS = _LOG_MIN + (np.arange(_BINS) + 0.5) * _WIDTH
_REFRESH = 8  # readings between two refreshes of the tail summary
_LN10 = math.log(10.0)


@dataclass(slots=True)
class DecayedTail:
    """Decayed histogram of a log-surprise with an exponential (peaks-over-threshold) upper tail.

    The tail summary is refreshed every `_REFRESH` readings (it only ever uses past readings)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BINS))
    weight: float = 1.0
    total: float = 0.0
    n: int = 0
    _above: list[float] = field(default_factory=list)
    _total: float = 0.0
    _u: int = _BINS - 1
    _beta: float = _WIDTH
    _log10_pu: float = 0.0

    def _refresh(self, tail_quantile: float) -> None:
        above = self.counts[::-1].cumsum()[::-1]  # above[b] = weight in bins >= b
        frac = above / self.total
        u = int((frac <= tail_quantile).argmax()) if frac[-1] <= tail_quantile else _BINS - 1
        self._above = above.tolist()
        self._total = self.total
        self._u = u
        if above[u] > 0.0:
            excess = float(self.counts[u:] @ (_CENTERS[u:] - _CENTERS[u])) / float(above[u])
            self._beta = max(excess, _WIDTH)
            self._log10_pu = math.log10(float(above[u]) / self.total)

    def observe(self, x: float, horizon: int, tail_quantile: float | None = None) -> float:
        """Fold in one surprise (exponential forgetting over `horizon` readings); with a
        `tail_quantile`, first return -log10 of the probability of a value at least this large
        against the history before it (else 0)."""
        b = int((x - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * _BINS)
        b = 0 if b < 0 else _BINS - 1 if b >= _BINS else b
        t = 0.0
        if tail_quantile is not None and self.total > 0.0:
            if not self._above or self.n % _REFRESH == 0:
                self._refresh(tail_quantile)
            u = self._u
            above = self._above[b]
            if b <= u or self._above[u] <= 0.0:
                t = -math.log10((above + self.weight) / (self._total + self.weight))
            else:
                t = -(self._log10_pu - (x - _CENTERS[u]) / self._beta / _LN10)
                if above > 0.0:  # never rarer than the values this large already seen (a recurring rare event is normal)
                    t = min(t, -math.log10((above + self.weight) / (self._total + self.weight)))
                # else: beyond every value seen, the fitted tail alone
        self.n += 1
        self.counts[b] += self.weight
        self.total += self.weight
        self.weight *= 1.0 + 1.0 / horizon  # newer readings weigh more: exponential forgetting
        if self.weight > 1e6:
            self.counts /= self.weight
            self.total /= self.weight
            self._above = [a / self.weight for a in self._above]
            self._total /= self.weight
            self.weight = 1.0
        return t


class WindowedTails:
    """Tails of the log-surprise averaged over several trailing windows (1 = the reading itself,
    for point anomalies; longer ones for sustained anomalies), each against the stream's own
    history of that average; the most surprising one counts."""

    __slots__ = ("_recent", "_sums", "_tails", "_windows")

    def __init__(self, windows: tuple[int, ...]) -> None:
        self._windows = windows
        self._recent: deque[float] = deque(maxlen=max(windows))
        self._sums = [0.0] * len(windows)
        self._tails = [DecayedTail() for _ in windows]

    @property
    def n(self) -> int:
        return self._tails[0].n

    def observe(self, surprise: float, horizon: int, tail_quantile: float | None = None) -> list[float]:
        """Fold in a reading's surprise; with a `tail_quantile`, return each trailing mean's
        -log10 tail probability against its history before this reading (else zeros)."""
        recent = self._recent
        sums = self._sums
        n = len(recent)
        out = []
        for i, w in enumerate(self._windows):
            sums[i] += surprise
            if n >= w:
                sums[i] -= recent[-w]
        recent.append(surprise)
        n += 1
        for i, w in enumerate(self._windows):
            out.append(self._tails[i].observe(sums[i] / min(w, n), horizon, tail_quantile))
        return out


@dataclass(slots=True)
class PeriodTest:
    """Mean change against the same time `days` days earlier over a trailing window, in std
    units. The references come from :meth:`SensorFeatureState.days_ago`, which corrects readings
    from before a re-learnt level change by that change, so a new level is not a changed pattern."""

    days: int
    tail: DecayedTail = field(default_factory=DecayedTail)
    diffs: deque[float] | None = None  # created once the stream's daily lag is known
    total: float = 0.0
    #: Whether the test can be made on this stream (a daily lag, and the days kept); None: lag not known yet.
    usable: bool | None = None

    def surprise(self, features: SensorFeatureState, value: float, day_fraction: float) -> float | None:
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
        if self.diffs is None:
            self.diffs = deque(maxlen=max(1, round(day_fraction * (features.seasonal_lag or 0))))
        diffs = self.diffs
        diff = (value - before) / features.std
        if len(diffs) == diffs.maxlen:
            self.total -= diffs[0]
        diffs.append(diff)
        self.total += diff
        return math.log(abs(self.total / len(diffs)) + 1e-3)

    def restart(self) -> None:
        """Forget the trailing window (its differences predate a re-learnt new normal)."""
        if self.diffs is not None:
            self.diffs.clear()
        self.total = 0.0
