"""Shared feature code: causal sensor windows and scale-free demand vectors (no TensorFlow)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from models.features import (
    DemandFeatureConfig,
    SensorFeatureConfig,
    SensorFeatureState,
    _Ring,
    demand_features,
    sensor_training_pairs,
)
from models.surprise import PeriodTest

CFG = SensorFeatureConfig(window=8, seasonal_half_width=1, norm_horizon=50, max_seasonal_lag=400)


def _series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 300_000  # 5-minute readings
    rng = np.random.default_rng(seed)
    values = 20 + 5 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 0.3, n)
    return ts, values


def test_features_are_causal() -> None:
    ts, values = _series(400)
    a, b = SensorFeatureState(CFG), SensorFeatureState(CFG)
    steps_a = [a.push(int(t), float(v)) for t, v in zip(ts[:350], values[:350], strict=True)]
    altered = values.copy()
    altered[350:] += 1000.0  # the future must not change earlier features
    steps_b = [b.push(int(t), float(v)) for t, v in zip(ts, altered, strict=True)]
    for sa, sb in zip(steps_a, steps_b[:350], strict=True):
        np.testing.assert_array_equal(sa.features, sb.features)


def test_daily_lag_from_timestamps_and_seasonal_inputs() -> None:
    ts, values = _series(400)
    state = SensorFeatureState(CFG)
    steps = [state.push(int(t), float(v)) for t, v in zip(ts, values, strict=True)]
    assert state.seasonal_lag == 288
    assert steps[100].features[-1] == 0.0  # less than a day seen: no seasonal inputs
    assert steps[-1].features[-1] == 1.0
    assert steps[-1].features.shape == (CFG.n_inputs,)
    assert np.all(np.abs(steps[-1].features) <= CFG.clip)
    # the seasonal slot for t+1-day holds the reading a day before the next one, relative to x[t]
    t = 399
    expected = (values[t + 1 - 288] - values[t]) / steps[-1].std
    assert steps[-1].features[CFG.window - 1 + CFG.seasonal_half_width] == pytest.approx(expected, rel=1e-5)


def test_irregular_or_fast_streams_have_no_seasonal_lag() -> None:
    state = SensorFeatureState(CFG)
    for i in range(40):
        state.push(i * 1000, float(i))  # 1 s readings: a day is 86,400 readings, over the cap
    assert state.seasonal_lag == 0


def test_training_pairs_use_the_streaming_code() -> None:
    ts, values = _series(300, seed=1)
    x, y = sensor_training_pairs(ts, values, CFG)
    state = SensorFeatureState(CFG)
    steps = [state.push(int(t), float(v)) for t, v in zip(ts, values, strict=True)]
    ready = [i for i, s in enumerate(steps[:-1]) if s.ready]
    assert x.shape == (len(ready), CFG.n_inputs)
    i = ready[10]
    np.testing.assert_array_equal(x[10], steps[i].features)
    assert y[10] == pytest.approx((values[i + 1] - values[i]) / steps[i].std, rel=1e-5)


def test_demand_features_shape_scale_and_padding() -> None:
    cfg = DemandFeatureConfig()
    start = date(2018, 12, 1)
    dates = [start + timedelta(days=i) for i in range(cfg.horizon)]
    hist = np.array([2.0, 0.0, 4.0] * 30)
    x, scale = demand_features(hist, np.zeros(hist.size), dates, np.ones(cfg.horizon), cfg)
    assert x.shape == (cfg.n_inputs,)
    assert scale == pytest.approx(np.mean(hist[-cfg.scale_window :]))
    # scale-free: ten times the volume gives the same vector except the log-scale input
    x10, scale10 = demand_features(hist * 10, np.zeros(hist.size), dates, np.ones(cfg.horizon), cfg)
    assert scale10 == pytest.approx(10 * scale)
    np.testing.assert_allclose(x10[:-1], x[:-1], rtol=1e-5)
    # weekday one-hot of the first future day (a Saturday)
    base = 2 * cfg.history + cfg.horizon
    assert x[base + start.weekday()] == 1.0
    # a short, all-zero history is padded and floored, not divided by zero
    x0, s0 = demand_features(np.zeros(3), np.zeros(3), dates, np.zeros(cfg.horizon), cfg)
    assert s0 == cfg.min_scale
    assert np.all(np.isfinite(x0))


def test_demand_features_reject_wrong_horizon() -> None:
    cfg = DemandFeatureConfig()
    with pytest.raises(ValueError):
        demand_features(np.ones(60), np.zeros(60), [date(2018, 1, 1)], np.zeros(1), cfg)


def test_history_lookups_days_back() -> None:
    cfg = SensorFeatureConfig(window=8, seasonal_half_width=1, max_seasonal_lag=400, history_keep=2100)
    ts, values = _series(2100)
    state = SensorFeatureState(cfg)
    for t, v in zip(ts[:2050], values[:2050], strict=True):
        state.push(int(t), float(v))
    # the reading about to be pushed is index 2050: one day back is 2050-288, a week back 2050-2016
    assert state.days_ago(1) == pytest.approx(values[2050 - 288])
    assert state.days_ago(7) == pytest.approx(values[2050 - 2016])
    assert state.keeps_days(7) and not state.keeps_days(8)
    assert state.days_ago(8) is None


def test_history_ring_copies_runs_across_its_wrap() -> None:
    ring = _Ring(5)
    kept: list[float] = []
    for v in range(13):  # wraps round the buffer twice and a half
        ring.append(float(v))
        kept = [float(x) for x in range(v + 1)][-5:]
        assert len(ring) == len(kept)
        assert [ring.at(i) for i in range(len(ring))] == kept
        for start in range(len(kept)):
            for n in range(1, len(kept) - start + 1):
                out = np.full(n, -1.0)
                ring.copy_to(out, start)
                assert out.tolist() == kept[start : start + n], (v, start, n)


def test_features_and_day_lookups_are_the_same_once_the_history_wraps() -> None:
    """A stream far past its kept history: every network input and day-back lookup equals the one
    computed from the plain series (the ring's wrap is invisible)."""
    cfg = SensorFeatureConfig(window=8, seasonal_half_width=1, norm_horizon=50, max_seasonal_lag=300, history_keep=300)
    ts, values = _series(1500)
    state = SensorFeatureState(cfg)
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        if i >= 288:
            assert state.days_ago(1) == values[i - 288]
        step = state.push(int(t), float(v))
        if i >= 300:
            recent = (values[i - 7 : i] - values[i]) / step.std
            np.testing.assert_allclose(step.features[:7], np.clip(recent, -cfg.clip, cfg.clip).astype(np.float32))
            ref = (values[i + 1 - 288 - 1 : i + 1 - 288 + 2] - values[i]) / step.std
            np.testing.assert_allclose(step.features[7:10], np.clip(ref, -cfg.clip, cfg.clip).astype(np.float32))


def test_period_test_means_the_changes_of_its_trailing_window() -> None:
    """The day-over-day test's window (a ring of raw doubles) holds the last `day_fraction` of a
    day's changes against the day before; restart empties it."""
    cfg = SensorFeatureConfig(window=8, seasonal_half_width=1, norm_horizon=50, max_seasonal_lag=400)
    ts, values = _series(1200)
    state = SensorFeatureState(cfg)
    period = PeriodTest(1)
    changes: list[float] = []
    for i, (t, v) in enumerate(zip(ts, values, strict=True)):
        x = period.surprise(state, float(v), 0.25, 2.0)  # window: a quarter of 288 readings = 72
        assert (x is None) == (i < 288)  # no change to test before a day has passed
        if x is not None:
            changes.append((float(v) - values[i - 288]) / 2.0)
            window = changes[-72:]
            assert period.filled == len(window)
            assert math.exp(x) - 1e-3 == pytest.approx(abs(sum(window) / len(window)), rel=1e-9, abs=1e-12)
        state.push(int(t), float(v))
        if i == 1000:
            period.restart()
            changes.clear()
    assert period.filled == 72 and len(changes) == 199
