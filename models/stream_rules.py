"""The anomaly scorer's two non-network detectors (edge-safe, plain floats), used by models.anomaly:

* `DriftCusum`: slow drift (a compressor failing over hours, a bearing wearing over days), an
  upward (or two-sided) CUSUM of the reading in std units of a slow, late-learning baseline;
* `StateRule`: the on-duration rule of 0/1 state streams (a door left open).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol


class DriftSettings(Protocol):
    """The scorer-config fields the drift test reads (`AnomalyScorerConfig` has them)."""

    @property
    def drift_limit(self) -> float: ...
    @property
    def drift_slack(self) -> float: ...
    @property
    def drift_both_ways(self) -> bool: ...
    @property
    def drift_horizon(self) -> int: ...
    @property
    def drift_warmup(self) -> int: ...
    @property
    def drift_delay(self) -> int: ...


class StateSettings(Protocol):
    @property
    def state_min_on_s(self) -> float: ...
    @property
    def state_run_factor(self) -> float: ...


_DRIFT_Z_CAP = 10.0
#: After an alarm the baseline restarts its averaging as if it had seen this many readings.
_DRIFT_RELEARN = 100
#: Consecutive readings back within the slack of the baseline from before an alarm that end the
#: excursion (the old baseline is restored).
_DRIFT_RETURN = 30


@dataclass(slots=True)
class DriftCusum:
    """CUSUM of the reading in std units of a slow baseline (mean/std averaged over `drift_horizon`
    readings, exactly at first). The baseline learns each reading `drift_delay` readings late,
    so a short excursion (a defrost) is learned once it is over, while a drift that outlasts the
    delay accumulates.

    Saturation guard: when the statistic reaches `drift_limit` (an alarm) it restarts at 0 and
    the baseline's mean jumps to the mean of the last `drift_delay` readings (the level that
    raised the alarm), its averaging restarting at `_DRIFT_RELEARN` readings: a new level raises
    one alarm and is then the norm; a drift that goes on rising raises another only after it has
    risen by as much again (at least `drift_limit / (z cap - drift_slack)` readings later). The
    statistic is capped at twice the limit.

    An excursion that ends is not a new normal: the baseline from before the first re-basing is
    kept for `drift_horizon` readings, and once `_DRIFT_RETURN` consecutive readings are back
    within the slack of it, it is restored (and the excursion's readings still waiting in the
    delay line are dropped), so a recurring excursion (a humidity excursion, a defrost gone
    wrong) meets the baseline the first one met, not one whose spread the first one inflated."""

    recent: deque[float] = field(default_factory=deque)
    recent_sum: float = 0.0
    n: int = 0
    mean: float = 0.0
    var: float = 0.0
    hi: float = 0.0
    lo: float = 0.0
    #: Readings since the statistic last left 0 (the window of its evidence).
    run: int = 0
    #: The baseline (mean, var, n) before the first re-basing of an excursion, while it may end.
    prior: tuple[float, float, int] | None = None
    prior_left: int = 0
    back: int = 0

    def step(self, value: float, cfg: DriftSettings, horizon: int = 0) -> float:
        """Fold in one reading; return the CUSUM statistic after it (0 during the warm-up). A
        value at or above the limit is an alarm, after which the test has restarted."""
        stat = 0.0
        if self.n >= cfg.drift_warmup:
            # conditional expressions instead of min()/max(): this runs on every reading
            std = math.sqrt(self.var)
            floor = 1e-6 * (abs(self.mean) + 1.0)
            std = floor if floor > std else std
            z = (value - self.mean) / std
            z = -_DRIFT_Z_CAP if z < -_DRIFT_Z_CAP else _DRIFT_Z_CAP if z > _DRIFT_Z_CAP else z
            cap = 2.0 * cfg.drift_limit
            hi = self.hi + z - cfg.drift_slack
            self.hi = hi = 0.0 if hi < 0.0 else cap if hi > cap else hi
            if cfg.drift_both_ways:
                lo = self.lo - z - cfg.drift_slack
                self.lo = 0.0 if lo < 0.0 else cap if lo > cap else lo
            stat = self.lo if self.lo > hi else hi
            self.run = self.run + 1 if stat > 0.0 else 0
        if self.prior is not None:
            self._check_return(value, cfg)
        recent = self.recent
        recent.append(value)
        self.recent_sum += value
        if len(recent) > cfg.drift_delay:
            old = recent.popleft()
            self.recent_sum -= old
            self.n += 1
            span = horizon if horizon > cfg.drift_horizon else cfg.drift_horizon
            alpha = 1.0 / (self.n if self.n < span else span)
            delta = old - self.mean
            self.mean += alpha * delta
            self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        if cfg.drift_limit > 0.0 and stat >= cfg.drift_limit:
            self.rebase(None, max(cfg.drift_horizon, horizon))
        return stat

    def seen_before(self, before: float | None, cfg: DriftSettings) -> None:
        """After an alarm: `before` is the mean of the readings that raised it, one day earlier
        (None: unknown, the stream's first day). Only an excursion that positively did not happen
        a day earlier may end in a restore; one that did (beyond the slack of the baseline from
        before it: a daily delivery, a cleaning cycle) or whose day before is unknown stays the
        baseline's to learn, as before."""
        if self.prior is None:
            return
        if before is None:
            self.prior = None
            return
        mean, var, _ = self.prior
        std = max(math.sqrt(var), 1e-6 * (abs(mean) + 1.0))
        z = (before - mean) / std
        if z > cfg.drift_slack or (cfg.drift_both_ways and z < -cfg.drift_slack):
            self.prior = None

    def _check_return(self, value: float, cfg: DriftSettings) -> None:
        prior = self.prior
        assert prior is not None
        mean, var, n = prior
        std = max(math.sqrt(var), 1e-6 * (abs(mean) + 1.0))
        self.back = self.back + 1 if abs(value - mean) <= cfg.drift_slack * std else 0
        self.prior_left -= 1
        if self.back >= _DRIFT_RETURN:  # the excursion is over: the old baseline was the normal
            self.mean, self.var, self.n = mean, var, n
            self.hi = self.lo = 0.0
            self.run = 0
            self.recent.clear()
            self.recent_sum = 0.0
            self.prior = None
        elif self.prior_left <= 0:  # the new level lasted: it is the normal now
            self.prior = None

    def rebase(self, level: float | None = None, horizon: int = 0) -> None:
        """A new normal: restart the statistic and move the baseline to `level` (default: the
        mean of the last `drift_delay` readings); the baseline before it is kept for `horizon`
        readings in case the excursion ends (see the class docstring)."""
        if self.prior is None and horizon > 0 and self.n > 0:
            self.prior = (self.mean, self.var, self.n)
        if self.prior is not None:
            self.prior_left = horizon
            self.back = 0
        self.hi = self.lo = 0.0
        self.run = 0
        if level is not None:
            self.mean = level
        elif self.recent:
            self.mean = self.recent_sum / len(self.recent)
        self.n = min(self.n, _DRIFT_RELEARN)


_STATE_MIN_RUNS = 3  # on-runs a state stream must have shown before its rule may alert


@dataclass(slots=True)
class StateRule:
    """On-duration rule for a 0/1 state stream (a door): once `_STATE_MIN_RUNS` on-runs have been
    seen, alert while the current on-run has lasted `state_min_on_s` and `state_run_factor` times
    the longest earlier run that did not alert (so a door left open never becomes the norm, while a
    flag that is normally on for hours learns that from its first runs)."""

    run_start: int | None = None
    run_alerted: bool = False
    longest_ms: int = 0
    runs: int = 0

    @property
    def warm(self) -> bool:
        """Whether the rule may alert: it has seen its `_STATE_MIN_RUNS` learning runs."""
        return self.runs >= _STATE_MIN_RUNS

    def score(self, ts_ms: int, on: bool, cfg: StateSettings) -> float:
        if not on:
            if self.run_start is not None:
                self.runs += 1
                if not self.run_alerted:
                    self.longest_ms = max(self.longest_ms, ts_ms - self.run_start)
            self.run_start = None
            self.run_alerted = False
            return 0.0
        if self.run_start is None:
            self.run_start = ts_ms
        limit = max(cfg.state_min_on_s * 1000.0, cfg.state_run_factor * self.longest_ms)
        if self.warm and ts_ms - self.run_start >= limit:
            self.run_alerted = True
            return 1.0
        return 0.0
