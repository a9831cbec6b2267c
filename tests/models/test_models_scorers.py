"""Edge scorers on the shipped int8 models: streaming anomaly scores and demand quantiles."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from models.anomaly import AnomalyScorer, AnomalyScorerConfig
from models.demand import DemandForecaster
from models.demand_eval import (
    active_history,
    ma_forecast,
    mase,
    promo_ses_forecast,
    rmsse,
    ses_forecast,
    ses_level,
    wape,
)
from models.runtime import default_model_path, load_model


@pytest.fixture(scope="module")
def anomaly_model():  # type: ignore[no-untyped-def]
    return load_model(default_model_path("anomaly"))


def _sine(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 600_000  # 10-minute readings
    return ts, 50 + 10 * np.sin(2 * np.pi * np.arange(n) / 144) + rng.normal(0, 0.5, n)


def test_scores_are_bounded_and_a_spike_stands_out(anomaly_model) -> None:  # type: ignore[no-untyped-def]
    scorer = AnomalyScorer(anomaly_model, AnomalyScorerConfig(threshold=0.9))
    ts, values = _sine(900)
    values[800] += 25.0
    results = [scorer.score("dock-3/temp", int(t), float(v)) for t, v in zip(ts, values, strict=True)]
    scores = np.array([r.score for r in results])
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert results[0].expected is None and results[-1].expected is not None
    assert results[-1].observed == pytest.approx(values[-1])
    assert scores[800] == scores[300:].max()
    assert scores[800] > np.quantile(scores[300:800], 0.99)
    # the forecaster tracks the normal pattern
    err = np.mean([abs(r.forecast - r.observed) for r in results[300:800] if r.forecast is not None])
    assert err < 2.0


def test_scores_are_causal_and_streams_independent(anomaly_model) -> None:  # type: ignore[no-untyped-def]
    ts, values = _sine(400, seed=1)
    a = AnomalyScorer(anomaly_model)
    b = AnomalyScorer(anomaly_model)
    first = [a.score("s", int(t), float(v)).score for t, v in zip(ts[:300], values[:300], strict=True)]
    # b interleaves another stream and sees a different future; the prefix must score the same
    other = values[::-1] * 3
    second = []
    for t, v, o in zip(ts, values + np.where(np.arange(400) >= 300, 500.0, 0.0), other, strict=True):
        second.append(b.score("s", int(t), float(v)).score)
        b.score("other", int(t), float(o))
    assert first == second[:300]
    assert b.stream_count == 2


def test_stream_state_is_bounded(anomaly_model) -> None:  # type: ignore[no-untyped-def]
    scorer = AnomalyScorer(anomaly_model, AnomalyScorerConfig(max_streams=3))
    for k in range(10):
        scorer.score(f"s{k}", 0, 1.0)
    assert scorer.stream_count == 3
    with pytest.raises(ValueError):
        scorer.score("s9", 1, float("nan"))


def test_shipped_threshold_comes_from_the_manifest(anomaly_model) -> None:  # type: ignore[no-untyped-def]
    scorer = AnomalyScorer(anomaly_model)
    defaults = anomaly_model.manifest.anomaly_defaults
    assert defaults is not None
    assert scorer.config.threshold == defaults.threshold


def test_demand_forecast_quantiles() -> None:
    fc = DemandForecaster.default()
    rng = np.random.default_rng(3)
    history = rng.poisson(6.0, 400).astype(float)
    promo = np.zeros(28)
    promo[5:9] = 1
    out = fc.forecast(history, date(2024, 3, 1), promo)
    assert len(out.mean) == len(out.p50) == len(out.p90) == 28
    assert out.dates[0] == date(2024, 3, 1) and out.dates[-1] == date(2024, 3, 1) + timedelta(days=27)
    assert all(p90 >= p50 >= 0.0 for p50, p90 in zip(out.p50, out.p90, strict=True))
    assert 2.0 < float(np.mean(out.mean)) < 15.0
    # scale-free: a slow mover gets a forecast on its own scale
    slow = fc.forecast(rng.poisson(0.3, 400).astype(float), date(2024, 3, 1), np.zeros(28))
    assert float(np.mean(slow.mean)) < 2.0
    with pytest.raises(ValueError):
        fc.forecast(history, date(2024, 3, 1), np.zeros(5))
    with pytest.raises(ValueError):
        fc.forecast([-1.0, 2.0], date(2024, 3, 1))


def test_demand_postprocess_combines_with_ses_and_scales_p90(tmp_path: Path) -> None:
    shipped = DemandForecaster.default()
    post = shipped.postprocess
    assert post is not None and 0.0 < post.ses_weight < 1.0 and post.p90_factor > 0.0
    raw = DemandForecaster(shipped.model, postprocess=False)
    rng = np.random.default_rng(5)
    hist_promo = (rng.random(300) < 0.3).astype(float)
    history = rng.poisson(4.0 * (1.0 + hist_promo)).astype(float)
    promo = np.zeros(28)
    promo[3:10] = 1.0
    a = shipped.forecast(history, date(2024, 3, 1), promo, hist_promo)
    b = raw.forecast(history, date(2024, 3, 1), promo, hist_promo)
    w = post.ses_weight
    expected_mean = (1.0 - w) * np.asarray(b.mean) + w * promo_ses_forecast(history, hist_promo, promo)
    np.testing.assert_allclose(a.mean, expected_mean, rtol=1e-6)
    assert a.p50 == b.p50
    np.testing.assert_allclose(a.p90, np.maximum(post.p90_factor * np.asarray(b.p90), b.p50), rtol=1e-6)
    # a manifest written before demand_postprocess existed loads and gives the network's own output
    data = json.loads(default_model_path("demand").with_suffix(".json").read_text())
    del data["demand_postprocess"]
    (tmp_path / "demand.json").write_text(json.dumps(data))
    shutil.copy(default_model_path("demand"), tmp_path / "demand.tflite")
    legacy = DemandForecaster(load_model(tmp_path / "demand.tflite"))
    assert legacy.postprocess is None
    assert legacy.forecast(history, date(2024, 3, 1), promo, hist_promo) == b


def test_ses_level_matches_the_per_alpha_definition() -> None:
    rng = np.random.default_rng(11)
    for hist in (rng.poisson(3.0, 120).astype(float), np.array([0.0, 0.0, 1.0]), np.array([2.0])):
        y = active_history(hist)
        best = (np.inf, 0.0)
        for alpha in np.arange(0.02, 0.5001, 0.02):
            level, sse = float(y[0]), 0.0
            for v in y[1:]:
                sse += (v - level) ** 2
                level += alpha * (v - level)
            best = min(best, (sse, level), key=lambda t: t[0])
        assert ses_level(hist) == best[1]
    assert ses_level(np.zeros(0)) == 0.0


def test_promo_ses_forecast_scales_promotion_days() -> None:
    hist_promo = np.tile([0.0, 0.0, 0.0, 1.0], 100)
    history = np.where(hist_promo > 0, 9.0, 3.0)  # promo days sell 3x
    fut = np.zeros(28)
    fut[:7] = 1.0
    f = promo_ses_forecast(history, hist_promo, fut)
    assert f[:7] == pytest.approx(np.full(7, 3.0 * f[10]))
    assert f[10] == pytest.approx(3.0, rel=0.1)
    # without promotions on either side it is plain SES
    assert promo_ses_forecast(history, np.zeros(400), fut).tolist() == [ses_level(history)] * 28
    assert promo_ses_forecast(np.zeros(5), np.zeros(5), fut).tolist() == [0.0] * 28
    # promo days never sold and the last 28 days were all on promotion: finite, the SES level
    never = promo_ses_forecast(np.r_[np.full(100, 2.0), np.zeros(28)], np.r_[np.zeros(100), np.ones(28)], fut)
    assert np.all(np.isfinite(never))


def test_baselines_and_metrics() -> None:
    hist = np.array([0.0, 0.0, 2.0, 4.0, 2.0, 4.0])
    assert ma_forecast(hist, 3, window=2).tolist() == [3.0, 3.0, 3.0]
    ses = ses_forecast(hist, 2)
    assert 2.0 <= ses[0] <= 4.0 and ses[0] == ses[1]
    actual, fc = np.array([3.0, 5.0]), np.array([3.0, 3.0])
    # active history starts at the first sale: diffs 2, -2, 2 -> mean square 4, mean abs 2
    assert rmsse(hist, actual, fc) == pytest.approx(np.sqrt(2.0 / 4.0))
    assert mase(hist, actual, fc) == pytest.approx(1.0 / 2.0)
    assert wape(actual, fc) == pytest.approx(2.0 / 8.0)
