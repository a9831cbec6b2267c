"""Streaming, causal anomaly scorer for the gateway (edge-safe: numpy + LiteRT only).

For each reading of a stream, several "surprises" are measured, each against the stream's own
history of that surprise (models.surprise: a decayed histogram with a fitted exponential tail):
1. forecast error: the int8 network predicted this reading from earlier ones (mean and spread in
   std units of the running normalisation); surprise = log(|x - mean| / spread), tested for the
   reading alone and averaged over the trailing `windows`;
2. level: log |x - running mean| / running std (values outside the usual range);
3. day over day (and week over week): log |mean of (x - x one period earlier)| over the last
   `day_fraction` of a day, once the daily lag is known from the timestamps.
Calibration: the smallest tail probability P of the m tests made is corrected for their number
(Bonferroni: m P) and for the stream's reading rate (x `calibration_s` / its mean interval: a rate
per minute of stream time, not per reading), and score = -log10(P') / `log_scale`, clipped to
[0, 1]. So a score has one meaning on every stream: 0.4 with the defaults is a reading that normal
behaviour of that stream produces about once per 10^4 minutes (a week); one shipped threshold
serves every series. A tail probability is never smaller than the observed frequency of values
that large (models.surprise), and no score is above 0 before `warmup` readings and, where the
daily lag is known, `warmup_days` of readings.

Re-learning a new normal (no alarm floods): a score of `alarm_from` (or a drift alarm) is an
alarm. Its score may keep rising for up to `alarm_rise` readings (trailing means gather evidence);
from its peak on, for `refractory` readings, the stream's scores are capped at `refractory_cap`, while
every surprise histogram keeps learning (so a persisting surprise stops being one), the drift
CUSUM restarts from a re-based baseline (models.stream_rules), and `relearn_after` readings after
the alarm their mean and spread are compared with the stream's normal: a lasting change of level
(or a wider spread) becomes the new running mean (and variance), and references from before the
change (a day or a week back) are corrected by it. Below an alarm (`once_per_level`), a score
above `refractory_cap` is reported only if it exceeds every score reported in the previous
`refractory` readings: an excursion that never alarms is reported once at each level it reaches.
See models/README.md for the bound.

Two detectors that the network's short windows cannot provide (models.stream_rules): slow drift
(`DriftCusum`, score `threshold * statistic / drift_limit`, reaching the threshold exactly at the
limit) and the on-duration rule of 0/1 state streams (`StateRule`; the network never scores
them). `AnomalyResult` says which detector and test set the score, what that test expected, and
the window of readings its evidence covers. Only the reading and earlier ones are used; no labels;
per-stream state is bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from models.anomaly_config import AnomalyScorerConfig
from models.features import SensorFeatureConfig, SensorFeatureState
from models.runtime import LoadedModel, ModelLoadError, default_model_path, load_model
from models.stream_rules import DriftCusum, StateRule
from models.surprise import DecayedTail, PeriodTest, TrailingMeans

__all__ = ["AnomalyResult", "AnomalyScorer", "AnomalyScorerConfig", "Detector", "Test"]

Detector = Literal["model", "drift", "state"]
#: The test that set a score: the forecast error of the reading ("forecast") or its trailing mean
#: ("forecast_mean"), the distance from the running mean ("level"), the change against a day /
#: a week earlier ("day" / "week"), the drift CUSUM, the state rule, or none (score 0).
Test = Literal["forecast", "forecast_mean", "level", "day", "week", "drift", "state", "none"]
_PERIOD_TEST: dict[int, Test] = {1: "day", 7: "week"}


class AnomalyResult(NamedTuple):
    """The score of one reading and what explains it (for the alert: expected vs observed and
    the window of readings behind the deciding test). A named tuple: immutable, and made once
    per reading at a third of a frozen dataclass's cost."""

    score: float
    #: What the deciding test expected: the network's forecast (forecast tests, and when no test
    #: decided), the running mean (level), the value one period earlier corrected for re-learnt
    #: level changes (day / week), the drift baseline (drift); None for state streams.
    expected: float | None
    observed: float
    alert: bool
    #: Which detector set the score: the network's surprise tests, the slow-drift CUSUM, or the
    #: on-duration rule of a 0/1 state stream (never scored by the network).
    detector: Detector = "model"
    test: Test = "none"
    #: The calibrated tail probability behind the score (score = -log10(p) / log_scale).
    p_value: float = 1.0
    #: Device time of the oldest reading in the deciding test's evidence (None: this reading only).
    window_start_ts: int | None = None
    #: Readings in that evidence window (1: this reading alone).
    window_readings: int = 1
    #: The stream is in a refractory period after an alarm (its score capped at refractory_cap).
    refractory: bool = False
    #: The network's forecast of this reading (None before the stream's first full window).
    forecast: float | None = None


@dataclass(slots=True)
class _Alarm:
    """The readings after an alarm, compared with the stream's normal `relearn_after` later."""

    since: int  # reading number (features.count) of the first reading after the alarm
    mean0: float
    var0: float
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)


@dataclass(slots=True)
class _Stream:
    features: SensorFeatureState
    trail: TrailingMeans  # the forecast error's trailing means
    #: One histogram row per trailing mean of the forecast error, then the level test's.
    tails: DecayedTail
    pending: tuple[float, float, float, float] | None = None  # (mu, sigma, last, std)
    periods: list[PeriodTest] = field(default_factory=list)
    quiet_until: int = 0
    seen: int = 0
    rise: int = 0  # readings of an alarm whose score is still rising (0: none)
    rise_peak: float = 0.0
    level_peak: float = 0.0  # once_per_level: the last score reported above the cap below an alarm ...
    level_until: int = 0  # ... and the last reading number it holds for
    drift: DriftCusum = field(default_factory=DriftCusum)
    drift_lag: int = 0  # the daily lag drift_span was computed for
    drift_span: int = 0  # the drift baseline's horizon in readings (drift_days of them)
    state: StateRule | None = field(default_factory=StateRule)  # None once a value is not 0/1
    alarm: _Alarm | None = None
    recent_ts: deque[int] = field(default_factory=deque)
    warm: bool = False  # past warmup readings and warmup_days of its daily cycle
    interval_ms: float = 0.0


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
        self._ts_keep = max(config.windows)
        most = len(config.windows) + 1 + len(config.period_days)  # tests one reading can make
        self._log10 = [0.0] + [math.log10(m) for m in range(1, most + 1)]  # looked up, not computed, per reading

    @classmethod
    def default(cls, config: AnomalyScorerConfig | None = None) -> AnomalyScorer:
        return cls(load_model(default_model_path("anomaly")), config)

    def _new_stream(self, key: str) -> _Stream:
        """State for a stream seen for the first time (the least recently used one dropped if full)."""
        cfg = self.config
        rows = len(cfg.windows) + (1 if cfg.level_test else 0)
        st = _Stream(SensorFeatureState(self.features), TrailingMeans(cfg.windows), DecayedTail(rows))
        st.periods = [PeriodTest(days) for days in cfg.period_days]
        st.recent_ts = deque(maxlen=self._ts_keep)
        self._streams[key] = st
        if len(self._streams) > cfg.max_streams:
            self._streams.popitem(last=False)
        return st

    def forget(self, stream_key: str) -> None:
        self._streams.pop(stream_key, None)

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def is_warm(self, stream_key: str) -> bool:
        """Whether the stream is past its warm-up (its scores can rise above 0); a 0/1 state stream
        once its duration rule has seen the on-runs it learns from (quality gates count only warm
        readings: a gate must not pass on readings no model could have alerted on)."""
        st = self._streams.get(stream_key)
        if st is None:
            return False
        return st.state.warm if st.state is not None else st.warm

    def score(self, stream_key: str, ts_ms: int, value: float) -> AnomalyResult:
        cfg = self.config
        st = self._streams.get(stream_key)
        if st is None:
            st = self._new_stream(stream_key)
        else:
            self._streams.move_to_end(stream_key)  # least recently used first
        value = float(value)
        ts_ms = int(ts_ms)
        if not math.isfinite(value):
            raise ValueError(f"non-finite reading for {stream_key}: {value}")
        if st.state is not None:
            if cfg.state_min_on_s > 0.0 and (value == 0.0 or value == 1.0):
                s = st.state.score(ts_ms, value == 1.0, cfg)
                start = st.state.run_start if s > 0.0 else None
                return AnomalyResult(
                    s, None, value, s >= cfg.threshold, "state", "state" if s > 0.0 else "none",
                    10.0 ** (-s * cfg.log_scale), start,
                )
            st.state = None  # a value other than 0/1: a continuous stream from now on
        if st.recent_ts:
            gap = ts_ms - st.recent_ts[-1]
            if gap > 0:  # a gap in the data moves the typical interval by at most 15 % a reading
                st.interval_ms = (
                    gap if st.interval_ms <= 0.0 else 0.95 * st.interval_ms + 0.05 * gap
                )
        st.recent_ts.append(ts_ms)
        features = st.features
        # the tests made on this reading: (-log10 tail probability, test, readings, expected)
        best, best_test, best_window, best_expected = 0.0, "none", 1, None
        tests = 0
        std_now = features.std  # the stream's spread before this reading
        level = math.log(abs((value - features.mean) / std_now) + 1e-3)
        expected: float | None = None
        q: float | None = None
        horizon = cfg.long_horizon
        if st.pending is not None:
            mu, sigma, last, std = st.pending
            expected = best_expected = last + mu * std
            z = abs(value - expected) / (std * sigma)
            cap = cfg.max_surprise
            surprise = math.log((z if z < cap else cap) + 1e-3)  # conditionals: a third of min()'s cost
            tails = st.tails
            if not st.warm and tails.n >= cfg.warmup:
                st.warm = features.count >= cfg.warmup_days * (features.seasonal_lag or 0)
            q = cfg.tail_quantile if st.warm else None
            xs = st.trail.push(surprise)
            if cfg.level_test:
                xs.append(level)
            found = tails.observe(xs, horizon, q)
            if q is not None:
                tests += len(found)
                for w, t in zip(cfg.windows, found):  # the level's row, the last, has no window
                    if t > best:
                        best, best_test, best_window = t, "forecast" if w == 1 else "forecast_mean", w
                if cfg.level_test and found[-1] > best:
                    best, best_test, best_window, best_expected = found[-1], "level", 1, features.mean
        # every reading goes into the period tests' trailing windows, also before the first forecast
        pending = st.pending is not None
        dropped = False
        for period in st.periods if cfg.day_fraction > 0.0 else ():
            x = period.surprise(features, value, cfg.day_fraction, std_now)
            if x is None:
                dropped = dropped or period.usable is False
                continue
            if not pending:
                continue
            tested = q is not None and period.tail.n >= cfg.warmup
            t = period.tail.observe_one(x, horizon, q if tested else None)
            if tested:
                tests += 1
                if t > best:
                    best, best_test = t, _PERIOD_TEST.get(period.days, "week")
                    best_window = period.filled if period.filled else 1
                    best_expected = value - (period.total / best_window) * std_now
        if dropped:  # a test this stream can never make (its history does not hold the period)
            st.periods = [p for p in st.periods if p.usable is not False]
        log10_p = best - self._log10[tests] if tests > 1 else best  # Bonferroni over the m tests
        if cfg.calibration_s > 0.0 and st.interval_ms > 0.0 and tests:
            # per unit of stream time: a stream read every 5 minutes makes a fifth as many tests a minute
            log10_p -= math.log10(1000.0 * cfg.calibration_s / st.interval_ms)
        score = log10_p / cfg.log_scale
        score = 0.0 if score < 0.0 else 1.0 if score > 1.0 else score
        alarm_now = score >= cfg.alarm_from
        detector: Detector = "model"
        drift_alarm = False
        if cfg.drift_limit > 0.0:
            drift_mean = st.drift.mean
            lag = features.seasonal_lag or 0
            if lag != st.drift_lag:  # the lag is learnt once; round() a reading costs more than this test
                st.drift_lag, st.drift_span = lag, round(cfg.drift_days * lag)
            horizon = st.drift_span
            stat, run = st.drift.step(value, cfg, horizon), st.drift.run
            drift_alarm = stat >= cfg.drift_limit
            if drift_alarm:
                st.drift.seen_before(features.days_ago_mean(1, max(1, cfg.drift_delay)), cfg)
            drift = cfg.threshold * stat / cfg.drift_limit
            drift = 1.0 if drift > 1.0 else drift
            if drift > score:
                score, detector, best_test, best_expected = drift, "drift", "drift", drift_mean
                best_window = run if run > 1 else 1
                log10_p = score * cfg.log_scale
        st.seen += 1
        quiet = st.seen <= st.quiet_until
        if not quiet and st.rise:  # an alarm's evidence may grow for up to alarm_rise readings
            if (alarm_now or drift_alarm) and score >= st.rise_peak and st.rise < cfg.alarm_rise:
                st.rise += 1
                st.rise_peak = score
            else:  # past the alarm's peak: the refractory period starts with this reading
                st.rise = 0
                st.quiet_until = st.seen - 1 + cfg.refractory
                quiet = True
        elif not quiet and (alarm_now or drift_alarm) and cfg.refractory:
            st.rise, st.rise_peak = 1, score
            st.alarm = _Alarm(features.count + 1, features.mean, features.var)
        if quiet:
            cap = cfg.refractory_cap
            score = cap if score > cap else score
        elif cfg.once_per_level and score > cfg.refractory_cap and not (alarm_now or drift_alarm):
            if st.seen <= st.level_until and score <= st.level_peak:
                score = cfg.refractory_cap  # this excursion was reported at this level already
            else:
                st.level_peak, st.level_until = score, st.seen + cfg.refractory
        step = features.push(ts_ms, value)
        alarm = st.alarm
        if alarm is not None and features.count > alarm.since:
            alarm.add(value)
            if alarm.n >= cfg.relearn_after:
                self._check_new_normal(st)
        if step.ready:
            mu, log_spread = self.model.predict_one(step.features).tolist()
            sigma = math.exp(-4.0 if log_spread < -4.0 else 4.0 if log_spread > 4.0 else log_spread)
            st.pending = (mu, sigma, step.last_value, step.std)
        window_start = None
        if best_window > 1:
            recent = st.recent_ts
            window_start = (
                recent[-best_window]
                if best_window <= len(recent)
                else int(ts_ms - (best_window - 1) * st.interval_ms)
            )
        return AnomalyResult(
            score,
            best_expected if best_test != "none" else expected,
            value,
            score >= cfg.threshold,
            detector,
            best_test,  # type: ignore[arg-type]
            10.0 ** -(log10_p if log10_p > 0.0 else 0.0),
            window_start,
            best_window,
            quiet,
            expected,
        )

    def _check_new_normal(self, st: _Stream) -> None:
        """`relearn_after` readings after an alarm: adopt their level (and a wider spread) as the
        stream's new normal where they differ lastingly from the old one; either way the check is
        done (a spike leaves the normal as it was)."""
        cfg, alarm = self.config, st.alarm
        st.alarm = None
        if alarm is None or alarm.n < 2:
            return
        std0 = math.sqrt(alarm.var0) if alarm.var0 > 1e-12 else 0.0
        var = alarm.m2 / (alarm.n - 1)
        shifted = abs(alarm.mean - alarm.mean0) > cfg.relearn_level * max(std0, 1e-9 * (abs(alarm.mean0) + 1.0))
        wider = var > (cfg.relearn_spread * std0) ** 2
        if not (shifted or wider):
            return
        st.features.relearn(
            alarm.mean if shifted else st.features.mean,
            var if wider else alarm.var0,
            alarm.since - 1,  # the alarm's own reading is of the new normal
            cfg.relearn_after,
        )
        if shifted:
            st.drift.rebase(
                alarm.mean, max(cfg.drift_horizon, round(cfg.drift_days * (st.features.seasonal_lag or 0)))
            )
            st.drift.seen_before(st.features.days_ago_mean(1, alarm.n), cfg)
            for period in st.periods:
                period.restart()
