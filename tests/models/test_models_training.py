"""Training + int8 export end to end on tiny data (needs TensorFlow; skipped without it)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from models.anomaly import AnomalyScorer
from models.demand import DemandForecaster
from models.runtime import load_model

tf = pytest.importorskip("tensorflow")


def _check_int8_manifest(path: Path, task: str) -> None:
    model = load_model(path)
    man = model.manifest
    assert man.task == task and man.quantization == "int8-full-integer"
    assert man.io_dtype == "float32" and man.inputs[0].inner_quantization is not None
    assert man.size_bytes == path.stat().st_size
    assert load_model(path.with_name(path.stem + "_float.tflite")).manifest.quantization == "float32"


def test_train_and_export_anomaly(tmp_path: Path) -> None:
    from models.training.anomaly_train import AnomalyTrainConfig, train_anomaly

    cfg = AnomalyTrainConfig(
        n_series=4, length=400, val_series=2, threshold_series=3, epochs=1, hidden=8, representative_rows=50
    )
    seen: list[float] = []
    metrics = train_anomaly(cfg, tmp_path, lambda _msg, frac: seen.append(frac))
    assert seen[-1] == 1.0
    assert 0.0 <= metrics["threshold"] <= 1.0
    assert np.isfinite(metrics["val_nll_int8"])
    _check_int8_manifest(tmp_path / "anomaly.tflite", "anomaly")
    assert (tmp_path / "anomaly.keras").is_file()
    scorer = AnomalyScorer(load_model(tmp_path / "anomaly.tflite"))
    assert scorer.config.threshold == pytest.approx(metrics["threshold"])
    assert 0.0 <= scorer.score("s", 0, 1.0).score <= 1.0


def test_train_and_export_demand(tmp_path: Path) -> None:
    from models.training.demand_train import DemandTrainConfig, train_demand

    rng = np.random.default_rng(0)
    rows, skus = 200, ["A_1", "A_2", "B_1"]
    start = date(2017, 1, 2)
    lines = ['"DATE",' + ",".join(f'"QTY_{s}"' for s in skus) + "," + ",".join(f'"PROMO_{s}"' for s in skus)]
    for i in range(rows):
        promo = rng.random(len(skus)) < 0.2
        qty = rng.poisson([1.0, 5.0, 20.0] * (1 + promo))
        day = (start + timedelta(days=i)).isoformat()
        lines.append(
            day + "," + ",".join(str(int(q)) for q in qty) + "," + ",".join(str(int(p)) for p in promo)
        )
    data = tmp_path / "panel.csv"
    data.write_text("\n".join(lines) + "\n")
    cfg = DemandTrainConfig(holdout_rows=28, epochs=1, members=2, hidden=8, stride=7, representative_rows=20)
    metrics = train_demand(cfg, data, tmp_path / "out", lambda _msg, _frac: None)
    assert np.isfinite(metrics["val_rmsse_int8"]) and np.isfinite(metrics["val_rmsse_float32"])
    _check_int8_manifest(tmp_path / "out" / "demand.tflite", "demand")
    man = load_model(tmp_path / "out" / "demand.tflite").manifest
    assert man.training_window == (start.isoformat(), (start + timedelta(days=rows - 29)).isoformat())
    post = man.demand_postprocess  # chosen on the validation month, shipped to the gateway
    assert post is not None and 0.0 <= post.ses_weight <= 1.0 and 0.5 <= post.p90_factor <= 2.0
    assert post.fitted_on.startswith(f"rows {rows - 56}..{rows - 29} ")
    assert np.isfinite(metrics["val_rmsse_int8_combined"])
    assert metrics["val_rmsse_int8_combined"] <= metrics["val_rmsse_int8"] + 1e-12  # weight 0 is on the grid
    fc = DemandForecaster(load_model(tmp_path / "out" / "demand.tflite"))
    out = fc.forecast([5.0] * 60, date(2018, 1, 1))
    assert len(out.p90) == 28


def test_int8_io_variant_matches_float_io(tmp_path: Path) -> None:
    """Python-side quantize/dequantize (int8 tensors) gives what the in-graph version gives."""
    from models.training.anomaly_train import build_model
    from models.training.export import convert, write_model

    keras_model = build_model(tf, 31, 8, 1)
    rep = np.random.default_rng(0).normal(0, 1, (200, 31)).astype(np.float32)
    base = {
        "task": "anomaly",
        "version": 1,
        "training_data": "random weights (test)",
        "seed": 0,
        "metrics": {},
        "recreate_command": "test",
        "quantization": "int8-full-integer",
    }
    write_model(tmp_path, "f", convert(tf, keras_model, rep, "float32"), {**base, "name": "f"})
    write_model(tmp_path, "q", convert(tf, keras_model, rep, "int8"), {**base, "name": "q"})
    float_io, int8_io = load_model(tmp_path / "f.tflite"), load_model(tmp_path / "q.tflite")
    spec = int8_io.manifest.inputs[0]
    assert spec.dtype == "int8" and spec.quantization is not None
    assert int8_io.manifest.io_dtype == "int8"
    out_q = int8_io.manifest.outputs[0].quantization
    assert out_q is not None
    for row in rep[:20]:
        np.testing.assert_allclose(
            int8_io.predict_one(row), float_io.predict_one(row), atol=out_q.scale * 1.01
        )
