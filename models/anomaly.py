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
(0.5 = P of 1e-5 with the defaults). After an alert the stream's scores are damped for
`refractory` readings (one alert per event); no score above 0 for the first `warmup` readings.
Only the reading and earlier ones are used; no labels; per-stream state is bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

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
    refractory_factor: float = Field(default=0.5, ge=0.0, le=1.0)
    max_streams: int = Field(default=10_000, ge=1, description="least recently used streams are dropped")


class AnomalyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float = Field(ge=0.0, le=1.0)
    expected: float | None = Field(description="the forecaster's prediction for this reading, if it had one")
    observed: float
    alert: bool


_BINS = 96
_LOG_MIN, _LOG_MAX = -8.0, 4.0  # natural-log range of the binned surprise


def _bin(x: float) -> int:
    b = int((x - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * _BINS)
    return min(max(b, 0), _BINS - 1)


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
class _Stream:
    features: SensorFeatureState
    likelihood: _Likelihood
    pending: tuple[float, float, float, float] | None = None  # (mu, sigma, last, std)
    level: _Tail = field(default_factory=_Tail)
    periods: list[_PeriodTest] = field(default_factory=list)
    quiet_until: int = 0
    seen: int = 0


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

    def score(self, stream_key: str, ts_ms: int, value: float) -> AnomalyResult:
        cfg = self.config
        st = self._stream(stream_key)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"non-finite reading for {stream_key}: {value}")
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
        alert = score >= cfg.threshold
        if alert and cfg.refractory:
            st.quiet_until = st.seen + cfg.refractory
        step = st.features.push(int(ts_ms), value)
        if step.ready:
            out = self.model.predict_one(step.features)
            sigma = math.exp(min(max(float(out[1]), -4.0), 4.0))
            st.pending = (float(out[0]), sigma, step.last_value, step.std)
        return AnomalyResult(score=score, expected=expected, observed=value, alert=alert)
