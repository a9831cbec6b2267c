"""Streaming, causal anomaly scorer for the gateway (edge-safe: numpy + LiteRT only).

For each reading of a stream, four "surprises" are measured, each against the stream's own
history of that surprise (a decayed histogram: empirical tail probability in the bulk, an
exponential tail fitted by peaks-over-threshold beyond the `tail_quantile`):
1. forecast error: the int8 network predicted this reading from earlier ones (mean and spread in
   std units of the running normalisation); surprise = log(|x - mean| / spread), tested for the
   reading alone and averaged over the trailing `windows`;
2. level: log |x - running mean| / running std (values outside the usual range);
3. day over day: log |mean of (x - x one day earlier)| over the last `day_fraction` of a day
   (changes of a daily pattern), once the daily lag is known from the timestamps.
The smallest tail probability P wins: score = -log10(P) / `log_scale`, clipped to [0, 1]
(0.5 = P of 1e-5 with the defaults). After a score of `refractory_from` the stream's network
scores are damped for `refractory` readings (one alert per event); no network score above 0 for
the first `warmup` readings.

Two detectors that the network's short windows cannot provide:
* slow drift: an upward CUSUM of the reading in std units of a slow, late-learning baseline
  (`_Drift`; a compressor failing over hours, a bearing wearing over days). Its score is
  `threshold * statistic / drift_limit`: it reaches the alert threshold exactly when the CUSUM
  reaches its limit, and the score is the larger of the two.
* 0/1 state streams (door contacts): while every value of a stream is 0 or 1 the network never
  scores it (a binary series has no forecast error worth the name); `_StateRule` alerts when an
  on-run lasts longer than `state_min_on_s` and `state_run_factor` times the longest normal run.
`AnomalyResult.detector` says which one set the score.
Only the reading and earlier ones are used; no labels; per-stream state is bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.features import SensorFeatureConfig, SensorFeatureState
from models.runtime import LoadedModel, ModelLoadError, default_model_path, load_model


class AnomalyScorerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="alert when score >= threshold (AnomalyScorer(model) uses the manifest's)",
    )
    windows: tuple[int, ...] = Field(
        default=(1, 12), min_length=1, description="trailing windows (readings) whose mean surprise is tested"
    )
    long_horizon: int = Field(
        default=2000, ge=10, description="readings the surprise distribution averages over"
    )
    warmup: int = Field(default=150, ge=1, description="scored readings before any score above 0")
    max_surprise: float = Field(default=25.0, gt=0.0, description="|z| is capped here")
    log_scale: float = Field(default=10.0, gt=0.0, description="score = -log10(Q) / log_scale")
    tail_quantile: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="above this upper quantile an exponential tail is fitted"
    )
    day_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="share of a day whose mean change vs the same time yesterday is tested (0 = off)",
    )
    period_days: tuple[int, ...] = Field(
        default=(1, 7), description="day-over-day and week-over-week tests (each where the history fits)"
    )
    level_test: bool = Field(default=True, description="also test how far the value is from its running mean")
    refractory: int = Field(default=150, ge=0, description="readings damped after an alert")
    drift_limit: float = Field(
        default=100.0,
        ge=0.0,
        description="CUSUM alarm level of the slow-drift test, in std-unit readings (0 = off)",
    )
    drift_slack: float = Field(
        default=2.0, ge=0.0, description="std units of deviation the drift CUSUM ignores (its k)"
    )
    drift_both_ways: bool = Field(
        default=False,
        description="also accumulate downward drifts (off: upward only; machines switching off for "
        "the night or the weekend are the usual downward level changes)",
    )
    drift_horizon: int = Field(
        default=2000, ge=10, description="readings the drift test's baseline mean/std average over"
    )
    drift_warmup: int = Field(
        default=300, ge=1, description="readings the drift baseline learns before the test accumulates"
    )
    drift_delay: int = Field(
        default=120, ge=0, description="the drift baseline learns each reading this many readings late"
    )
    state_min_on_s: float = Field(
        default=600.0,
        ge=0.0,
        description="0/1 state streams (doors) alert once on this long and (see state_run_factor) "
        "longer than usual; 0 = score them like any stream",
    )
    state_run_factor: float = Field(
        default=3.0,
        ge=1.0,
        description="an on-run alerts past this many times the longest earlier run that did not alert",
    )
    refractory_factor: float = Field(default=0.5, ge=0.0, le=1.0)
    refractory_from: float = Field(
        default=0.30,
        ge=0.0,
        le=1.0,
        description="a score this high starts the refractory damping (independent of the alert "
        "threshold, so the score of a reading does not depend on the alerting policy)",
    )
    max_streams: int = Field(default=10_000, ge=1, description="least recently used streams are dropped")


Detector = Literal["model", "drift", "state"]


class AnomalyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0.0, le=1.0)
    expected: float | None = Field(description="the forecaster's prediction for this reading, if it had one")
    observed: float
    alert: bool
    detector: Detector = Field(
        default="model",
        description="which test set the score: the network's surprise tests, the slow-drift CUSUM, or "
        "the on-duration rule of a 0/1 state stream (never scored by the network)",
    )


_BINS = 96
_LOG_MIN, _LOG_MAX = -8.0, 4.0  # natural-log range of the binned surprise


def _bin(x: float) -> int:
    b = int((x - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * _BINS)
    return 0 if b < 0 else _BINS - 1 if b >= _BINS else b


_WIDTH = (_LOG_MAX - _LOG_MIN) / _BINS
_CENTERS = _LOG_MIN + (np.arange(_BINS) + 0.5) * _WIDTH
_REFRESH = 8


@dataclass(slots=True)
class _Tail:
    """Decayed histogram of a log-surprise. Below the `tail_quantile` upper quantile the tail
    probability P(L >= l) is empirical; above it an exponential tail fitted to the mean excess
    (peaks over threshold), so values far beyond anything seen get far smaller probabilities.
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
        above = np.cumsum(self.counts[::-1])[::-1]  # above[b] = weight in bins >= b
        frac = above / self.total
        u = int(np.argmax(frac <= tail_quantile)) if frac[-1] <= tail_quantile else _BINS - 1
        self._above = above.tolist()
        self._total = self.total
        self._u = u
        if above[u] > 0.0:
            excess = float(self.counts[u:] @ (_CENTERS[u:] - _CENTERS[u])) / float(above[u])
            self._beta = max(excess, _WIDTH)
            self._log10_pu = math.log10(float(above[u]) / self.total)

    def log10_tail(self, x: float, tail_quantile: float) -> float:
        """-log10 of the probability of a value at least this large."""
        if self.total <= 0.0:
            return 0.0
        if not self._above or self.n % _REFRESH == 0:
            self._refresh(tail_quantile)
        b = _bin(x)
        u = self._u
        if b <= u or self._above[u] <= 0.0:
            return -math.log10((self._above[b] + self.weight) / (self._total + self.weight))
        return -(self._log10_pu - (x - _CENTERS[u]) / self._beta / math.log(10.0))

    def update(self, x: float, horizon: int) -> None:
        self.n += 1
        self.counts[_bin(x)] += self.weight
        self.total += self.weight
        self.weight *= 1.0 + 1.0 / horizon  # newer readings weigh more: exponential forgetting
        if self.weight > 1e6:
            self.counts /= self.weight
            self.total /= self.weight
            self._above = [a / self.weight for a in self._above]
            self._total /= self.weight
            self.weight = 1.0


class _Likelihood:
    """Empirical tails of the log-surprise averaged over several trailing windows (1 = the reading
    itself, for point anomalies; longer ones for sustained anomalies), each against the stream's
    own history of that average; the most surprising one counts."""

    __slots__ = ("_recent", "_sums", "_tails", "_windows")

    def __init__(self, windows: tuple[int, ...]) -> None:
        self._windows = windows
        self._recent: deque[float] = deque(maxlen=max(windows))
        self._sums = [0.0] * len(windows)
        self._tails = [_Tail() for _ in windows]

    @property
    def n(self) -> int:
        return self._tails[0].n

    def push(self, surprise: float) -> list[float]:
        """Fold in a reading's surprise; return the trailing means (before any tail update)."""
        recent = self._recent
        for i, w in enumerate(self._windows):
            self._sums[i] += surprise
            if len(recent) >= w:
                self._sums[i] -= recent[-w]
        recent.append(surprise)
        return [self._sums[i] / min(w, len(recent)) for i, w in enumerate(self._windows)]

    def log_tail(self, means: list[float], tail_quantile: float) -> float:
        return max(t.log10_tail(m, tail_quantile) for t, m in zip(self._tails, means, strict=True))

    def update(self, means: list[float], horizon: int) -> None:
        for t, m in zip(self._tails, means, strict=True):
            t.update(m, horizon)


@dataclass(slots=True)
class _PeriodTest:
    """Mean change against the same time `days` days earlier over a trailing window."""

    days: int
    tail: _Tail = field(default_factory=_Tail)
    diffs: deque[float] | None = None  # created once the stream's daily lag is known
    total: float = 0.0

    def surprise(self, features: SensorFeatureState, value: float, day_fraction: float) -> float | None:
        lag = features.seasonal_lag
        if not lag or not features.keeps_days(self.days):
            return None
        before = features.days_ago(self.days)
        if before is None:
            return None
        if self.diffs is None:
            self.diffs = deque(maxlen=max(1, round(day_fraction * lag)))
        diffs = self.diffs
        diff = (value - before) / features.std
        if len(diffs) == diffs.maxlen:
            self.total -= diffs[0]
        diffs.append(diff)
        self.total += diff
        return math.log(abs(self.total / len(diffs)) + 1e-3)


@dataclass(slots=True)
class _Drift:
    """CUSUM (upward, or both ways) of the reading in std units of a slow baseline (mean/std
    averaged over `drift_horizon` readings, exactly at first). The baseline learns each reading
    `drift_delay` readings late, and only while the CUSUM is below its limit (no alarm): a
    short excursion (a defrost) is learned once it is over, a drift that outlasts the delay is not
    (after `drift_horizon` frozen readings the baseline learns again, so a lasting new level does
    become normal). The statistic is capped at twice the limit so it falls back below the limit
    soon after a drift ends."""

    recent: deque[float] = field(default_factory=deque)
    n: int = 0
    mean: float = 0.0
    var: float = 0.0
    hi: float = 0.0
    lo: float = 0.0
    frozen: int = 0
    fired: bool = False

    def step(self, value: float, cfg: AnomalyScorerConfig) -> float:
        """Fold in one reading; return the CUSUM statistic after it (0 during the warm-up). Once it
        has reached the limit it reports at least the limit until the CUSUM is back at 0: one
        alarm per drift, however long the statistic hovers around its limit."""
        stat = self._step(value, cfg)
        if stat >= cfg.drift_limit:
            self.fired = True
        elif stat <= 0.0:
            self.fired = False
        return max(stat, cfg.drift_limit) if self.fired else stat

    def _step(self, value: float, cfg: AnomalyScorerConfig) -> float:
        stat = 0.0
        if self.n >= cfg.drift_warmup:
            std = max(math.sqrt(self.var), 1e-6 * (abs(self.mean) + 1.0))
            z = min(max((value - self.mean) / std, -_DRIFT_Z_CAP), _DRIFT_Z_CAP)
            cap = 2.0 * cfg.drift_limit
            self.hi = min(cap, max(0.0, self.hi + z - cfg.drift_slack))
            if cfg.drift_both_ways:
                self.lo = min(cap, max(0.0, self.lo - z - cfg.drift_slack))
            stat = max(self.hi, self.lo)
        recent = self.recent
        recent.append(value)
        if len(recent) <= cfg.drift_delay:
            return stat
        old = recent.popleft()
        if stat >= _DRIFT_FREEZE * cfg.drift_limit and self.frozen < cfg.drift_horizon:
            self.frozen += 1
            return stat
        self.frozen = 0
        self.n += 1
        alpha = 1.0 / min(self.n, cfg.drift_horizon)
        delta = old - self.mean
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        return stat


_DRIFT_Z_CAP = 10.0
_DRIFT_FREEZE = 1.0  # the baseline stops learning while the CUSUM is at this share of its limit


@dataclass(slots=True)
class _StateRule:
    """On-duration rule for a 0/1 state stream (a door): once `_STATE_MIN_RUNS` on-runs have been
    seen, alert while the current on-run has lasted `state_min_on_s` and `state_run_factor` times
    the longest earlier run that did not alert (so a door left open never becomes the norm, while a
    flag that is normally on for hours learns that from its first runs)."""

    run_start: int | None = None
    run_alerted: bool = False
    longest_ms: int = 0
    runs: int = 0

    def score(self, ts_ms: int, on: bool, cfg: AnomalyScorerConfig) -> float:
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
        if self.runs >= _STATE_MIN_RUNS and ts_ms - self.run_start >= limit:
            self.run_alerted = True
            return 1.0
        return 0.0


_STATE_MIN_RUNS = 3  # on-runs a state stream must have shown before its rule may alert


@dataclass(slots=True)
class _Stream:
    features: SensorFeatureState
    likelihood: _Likelihood
    pending: tuple[float, float, float, float] | None = None  # (mu, sigma, last, std)
    level: _Tail = field(default_factory=_Tail)
    periods: list[_PeriodTest] = field(default_factory=list)
    quiet_until: int = 0
    seen: int = 0
    drift: _Drift = field(default_factory=_Drift)
    state: _StateRule | None = field(default_factory=_StateRule)  # None once a value is not 0/1


class AnomalyScorer:
    """Keeps per-stream causal state; `score()` is called once per reading, in arrival order."""

    def __init__(self, model: LoadedModel, config: AnomalyScorerConfig | None = None) -> None:
        man = model.manifest
        if man.task != "anomaly" or man.sensor_features is None:
            raise ModelLoadError(f"{model.path} is not an anomaly model")
        if (
            int(np.prod(man.inputs[0].shape)) != man.sensor_features.n_inputs
            or int(np.prod(man.outputs[0].shape)) != 2
        ):
            raise ModelLoadError(f"{model.path}: tensor sizes differ from its feature config")
        if config is None:
            defaults = man.anomaly_defaults
            config = AnomalyScorerConfig(threshold=defaults.threshold) if defaults else AnomalyScorerConfig()
        self.model = model
        self.config = config
        self.features: SensorFeatureConfig = man.sensor_features
        self._streams: OrderedDict[str, _Stream] = OrderedDict()

    @classmethod
    def default(cls, config: AnomalyScorerConfig | None = None) -> AnomalyScorer:
        return cls(load_model(default_model_path("anomaly")), config)

    def _stream(self, key: str) -> _Stream:
        st = self._streams.get(key)
        if st is None:
            st = _Stream(SensorFeatureState(self.features), _Likelihood(self.config.windows))
            st.periods = [_PeriodTest(days) for days in self.config.period_days]
            self._streams[key] = st
            if len(self._streams) > self.config.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(key)
        return st

    def forget(self, stream_key: str) -> None:
        self._streams.pop(stream_key, None)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def is_warm(self, stream_key: str) -> bool:
        """Whether the stream is past its warm-up (its scores can rise above 0); 0/1 state streams
        count as warm (their rule learns from the runs it sees)."""
        st = self._streams.get(stream_key)
        if st is None:
            return False
        return st.state is not None or st.likelihood.n >= self.config.warmup

    def score(self, stream_key: str, ts_ms: int, value: float) -> AnomalyResult:
        cfg = self.config
        st = self._stream(stream_key)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"non-finite reading for {stream_key}: {value}")
        if st.state is not None:
            if cfg.state_min_on_s > 0.0 and (value == 0.0 or value == 1.0):
                s = st.state.score(int(ts_ms), value == 1.0, cfg)
                return AnomalyResult(
                    score=s, expected=None, observed=value, alert=s >= cfg.threshold, detector="state"
                )
            st.state = None  # a value other than 0/1: a continuous stream from now on
        expected: float | None = None
        score = 0.0
        level = math.log(abs(st.features.normalise(value)) + 1e-3)
        periodic = (
            [(p, p.surprise(st.features, value, cfg.day_fraction)) for p in st.periods]
            if cfg.day_fraction > 0.0
            else []
        )
        if st.pending is not None:
            mu, sigma, last, std = st.pending
            expected = last + mu * std
            surprise = math.log(min(abs(value - expected) / (std * sigma), cfg.max_surprise) + 1e-3)
            lk = st.likelihood
            means = lk.push(surprise)
            if lk.n >= cfg.warmup:
                tail = lk.log_tail(means, cfg.tail_quantile)
                if cfg.level_test:
                    tail = max(tail, st.level.log10_tail(level, cfg.tail_quantile))
                for period, x in periodic:
                    if x is not None and period.tail.n >= cfg.warmup:
                        tail = max(tail, period.tail.log10_tail(x, cfg.tail_quantile))
                score = min(1.0, max(0.0, tail / cfg.log_scale))
            lk.update(means, cfg.long_horizon)
            if cfg.level_test:
                st.level.update(level, cfg.long_horizon)
            for period, x in periodic:
                if x is not None:
                    period.tail.update(x, cfg.long_horizon)
        st.seen += 1
        if st.seen <= st.quiet_until:
            score *= cfg.refractory_factor
        if score >= cfg.refractory_from and cfg.refractory:
            st.quiet_until = st.seen + cfg.refractory
        detector: Detector = "model"
        if cfg.drift_limit > 0.0:
            drift = min(1.0, cfg.threshold * st.drift.step(value, cfg) / cfg.drift_limit)
            if drift > score:
                score, detector = drift, "drift"
        step = st.features.push(int(ts_ms), value)
        if step.ready:
            out = self.model.predict_one(step.features)
            sigma = math.exp(min(max(float(out[1]), -4.0), 4.0))
            st.pending = (float(out[0]), sigma, step.last_value, step.std)
        return AnomalyResult(
            score=score, expected=expected, observed=value, alert=score >= cfg.threshold, detector=detector
        )
