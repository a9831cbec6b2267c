"""Retraining on real-like data, candidate vs deployed evaluation on the same hold-out, and the quality gate.

The evaluation and gate tests need no TensorFlow; the two retrain tests are tiny (skipped without it).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from models.anomaly import AnomalyScorer
from models.demand import DemandForecaster
from models.demand_eval import DemandPanel
from models.runtime import default_model_path, load_model
from models.synthetic import SyntheticSeries, sensor_corpus
from models.training.evaluate import evaluate_anomaly, evaluate_demand, quality_gate

ANOMALY = default_model_path("anomaly")
ANOMALY_FLOAT = default_model_path("anomaly", "_float")
DEMAND = default_model_path("demand")


def _split(s: SyntheticSeries, at: int) -> tuple[SyntheticSeries, SyntheticSeries]:
    return (SyntheticSeries(s.ts_ms[:at], s.values[:at], None, s.kind),
            SyntheticSeries(s.ts_ms[at:], s.values[at:], None, s.kind))


def _panel(rows: int = 150, skus: int = 3, seed: int = 0) -> DemandPanel:
    rng = np.random.default_rng(seed)
    start = date(2026, 1, 5)
    dates = tuple(start + timedelta(days=i) for i in range(rows))
    weekly = np.array([1.0, 1.1, 1.0, 1.2, 1.4, 0.6, 0.4])
    lam = np.outer([weekly[d.weekday()] for d in dates], [2.0, 6.0, 15.0][:skus])
    qty = rng.poisson(lam).astype(float)
    return DemandPanel(dates=dates, skus=tuple(f"s/{k}" for k in range(skus)), qty=qty, promo=np.zeros_like(qty))


def test_evaluate_anomaly_scores_both_models_on_the_same_holdout() -> None:
    series = sensor_corpus(5, 3, 700)
    parts = [_split(s, 500) for s in series]
    same = evaluate_anomaly(ANOMALY, ANOMALY, [h for _, h in parts], context=[c for c, _ in parts])
    assert same["candidate"] == same["deployed"]  # the same model on the same data: the same numbers
    assert same["candidate"]["holdout_windows"] == 3 * 200  # every held-back reading, primed by its context
    both = evaluate_anomaly(ANOMALY_FLOAT, ANOMALY, [h for _, h in parts], context=[c for c, _ in parts])
    assert both["candidate"]["holdout_windows"] == both["deployed"]["holdout_windows"]
    assert both["candidate"]["holdout_nll"] != both["deployed"]["holdout_nll"]
    assert abs(both["candidate"]["holdout_nll"] - both["deployed"]["holdout_nll"]) < 0.2  # int8 ~ float32
    for metrics in both.values():
        assert math.isfinite(metrics["holdout_nll"]) and metrics["holdout_alerts_per_1k"] >= 0.0
    cold = evaluate_anomaly(ANOMALY, ANOMALY, [h for _, h in parts])  # no context: the state starts empty
    assert cold["candidate"]["holdout_windows"] < 3 * 200
    with pytest.raises(ValueError, match="context"):
        evaluate_anomaly(ANOMALY, ANOMALY, [h for _, h in parts], context=[None])


def test_evaluate_demand_forecasts_from_the_origin_for_both_models() -> None:
    panel = _panel()
    scores = evaluate_demand(DEMAND, DEMAND, panel, 122)
    assert scores["candidate"] == scores["deployed"]
    m = scores["candidate"]
    assert 0.0 < m["holdout_rmsse"] < 5.0 and 0.0 < m["holdout_wape"] < 2.0 and 0.0 <= m["holdout_p90_coverage"] <= 1
    with pytest.raises(ValueError, match="origin"):
        evaluate_demand(DEMAND, DEMAND, panel, 140)


def test_quality_gate() -> None:
    assert quality_gate("demand", {"holdout_rmsse": 0.81}, {"holdout_rmsse": 0.80}).passed  # within 2 %
    failed = quality_gate("demand", {"holdout_rmsse": 0.83}, {"holdout_rmsse": 0.80})
    assert not failed.passed and "0.8300 > deployed 0.8000" in failed.reason
    assert quality_gate("demand", {"holdout_rmsse": 0.83}, {"holdout_rmsse": 0.80}, tolerance=0.05).passed
    # NLL can be negative: the tolerance is of the deployed value's magnitude
    assert quality_gate("anomaly", {"holdout_nll": -0.99}, {"holdout_nll": -1.0}).passed
    assert not quality_gate("anomaly", {"holdout_nll": -0.97}, {"holdout_nll": -1.0}).passed
    assert not quality_gate("anomaly", {"holdout_nll": math.nan}, {"holdout_nll": 1.0}).passed
    assert quality_gate("anomaly", {"holdout_nll": 1.0}, {"holdout_nll": math.nan}).passed


def test_retrain_anomaly_mixed_precision_warm_start_exports_int8(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from models.training.retrain import AnomalyRetrainConfig, retrain_anomaly

    train = [_split(s, 400)[0] for s in sensor_corpus(11, 2, 500)]
    cfg = AnomalyRetrainConfig(epochs=1, mixed_precision=True, synthetic_share=0.5, synthetic_length=300,
                               recalibrate_threshold=True, threshold_series=2, threshold_length=400,
                               representative_rows=50, version=4)
    seen: list[float] = []
    metrics = retrain_anomaly(cfg, train, ANOMALY, tmp_path, lambda _m, f: seen.append(f),
                              parent_keras=ANOMALY.with_suffix(".keras"), training_window=("2026-03-01", "2026-03-02"))
    assert metrics["warm_started"] == 1.0 and metrics["mixed_precision"] == 1.0
    assert metrics["train_rows_synthetic"] == pytest.approx(metrics["train_rows_real"], abs=1)
    assert seen == sorted(seen)
    model = load_model(tmp_path / "anomaly.tflite")
    man = model.manifest
    assert man.quantization == "int8-full-integer" and man.version == 4 and man.task == "anomaly"
    assert man.training_window == ("2026-03-01", "2026-03-02")
    assert man.sensor_features == load_model(ANOMALY).manifest.sensor_features
    assert man.anomaly_defaults is not None and man.anomaly_defaults.threshold == metrics["threshold"]
    assert "synthetic labelled series" in man.anomaly_defaults.threshold_source  # recalibrated
    scorer = AnomalyScorer(model)
    assert 0.0 <= scorer.score("s", 0, 1.0).score <= 1.0
    assert (tmp_path / "anomaly.keras").is_file()


def test_retrain_demand_on_a_panel_mixed_precision_exports_int8(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from models.training.demand_train import training_samples  # noqa: F401  (the shared sample builder)
    from models.training.retrain import DemandRetrainConfig, retrain_demand

    panel = _panel(rows=150)
    origin = 150 - 28
    train = DemandPanel(panel.dates[:origin], panel.skus, panel.qty[:origin], panel.promo[:origin])
    cfg = DemandRetrainConfig(epochs=1, members=1, hidden=8, stride=7, representative_rows=20, mixed_precision=True,
                              features=load_model(DEMAND).manifest.demand_features)  # type: ignore[arg-type]
    metrics = retrain_demand(cfg, train, tmp_path, lambda _m, _f: None)
    assert math.isfinite(metrics["val_rmsse_int8"])
    man = load_model(tmp_path / "demand.tflite").manifest
    assert man.quantization == "int8-full-integer" and not (tmp_path / "demand_float.tflite").exists()
    assert man.training_window == (panel.dates[0].isoformat(), panel.dates[origin - 1].isoformat())
    assert len(DemandForecaster(load_model(tmp_path / "demand.tflite")).forecast([3.0] * 60, date(2026, 6, 1)).p90) == 28
    scores = evaluate_demand(tmp_path / "demand.tflite", DEMAND, panel, origin)
    assert math.isfinite(scores["candidate"]["holdout_rmsse"]) and math.isfinite(scores["deployed"]["holdout_rmsse"])
