"""Retrain the gateway models on real synced data (the cloud's retraining jobs call these).

* anomaly: the forecaster network on real reading series mixed with a share of synthetic series
  (models.synthetic) so that it stays general, warm-started from the parent's ``.keras`` when one
  exists, with the parent's feature config and (unless recalibrated on labelled synthetic series)
  its alert threshold;
* demand: the global quantile forecaster on a daily panel (models.training.demand_train).

Callers pass only the training part of their data: held-back data never reaches these functions.
Both write an int8 ``.tflite`` + manifest via models.training.export.write_model. TensorFlow is
imported lazily; evaluation of a candidate against the deployed model lives in
models.training.evaluate (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.demand_eval import DemandPanel
from models.features import DemandFeatureConfig, SensorFeatureConfig
from models.manifest import AnomalyScorerDefaults, ModelManifest, manifest_path_for, read_manifest
from models.synthetic import sensor_corpus
from models.training.anomaly_train import (
    FitParams,
    Progress,
    SeriesLike,
    export_int8,
    fit_forecaster,
    gauss_nll,
    pick_threshold,
    representative_rows,
    series_pairs,
)
from models.training.demand_train import DemandTrainConfig, train_demand_on_panel
from models.training.evaluate import Gate, evaluate_anomaly, evaluate_demand, quality_gate
from models.training.export import write_model
from models.training.tfutil import import_tf

__all__ = [
    "AnomalyRetrainConfig",
    "DemandRetrainConfig",
    "Gate",
    "evaluate_anomaly",
    "evaluate_demand",
    "quality_gate",
    "retrain_anomaly",
    "retrain_demand",
]


class AnomalyRetrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    epochs: int = Field(default=10, ge=1)
    hidden: int = Field(default=32, ge=4, description="used only without a parent .keras to start from")
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)
    warm_start_learning_rate: float = Field(
        default=5e-4, gt=0, description="fine-tuning from the parent's weights"
    )
    warm_start: bool = Field(
        default=True, description="start from the parent's weights when its .keras exists"
    )
    synthetic_share: float = Field(
        default=0.3, ge=0.0, lt=1.0, description="share of training rows from synthetic series"
    )
    synthetic_length: int = Field(default=1000, ge=200)
    max_synthetic_series: int = Field(default=200, ge=1)
    max_train_rows: int = Field(default=400_000, ge=100)
    representative_rows: int = Field(default=1000, ge=10)
    recalibrate_threshold: bool = Field(
        default=False,
        description="pick the threshold anew on labelled synthetic series (else keep the parent's)",
    )
    threshold_series: int = Field(default=60, ge=1)
    threshold_length: int = Field(default=3000, ge=200)
    mixed_precision: bool | None = Field(
        default=None, description="None: mixed_float16 when TensorFlow sees a GPU"
    )
    version: int = Field(default=1, ge=1)


class DemandRetrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    epochs: int = Field(default=10, ge=1)
    members: int = Field(default=3, ge=1)
    hidden: int = Field(default=64, ge=8)
    min_history: int = Field(default=28, ge=7)
    stride: int = Field(default=1, ge=1)
    representative_rows: int = Field(default=1000, ge=10)
    mixed_precision: bool | None = None
    version: int = Field(default=1, ge=1)
    features: DemandFeatureConfig = Field(
        default_factory=DemandFeatureConfig,
        description="keep the deployed model's, so the gateways' inputs match",
    )


def _parent_manifest(parent_path: Path) -> ModelManifest:
    return read_manifest(manifest_path_for(parent_path))


def _parent_weights(
    tf: Any, keras_path: Path | None, n_inputs: int
) -> tuple[list[np.ndarray] | None, int | None]:
    """(weights, hidden units) of the parent's Keras model, or (None, None) when it is absent or unusable."""
    if keras_path is None or not keras_path.is_file():
        return None, None
    try:
        parent = tf.keras.models.load_model(keras_path, compile=False)
        hidden = int(parent.get_layer("h1").units)
        if int(parent.inputs[0].shape[-1]) != n_inputs:
            return None, None
    except (ValueError, OSError, KeyError):
        return None, None
    return [np.asarray(w, np.float32) for w in parent.get_weights()], hidden


def _synthetic_rows(
    cfg: AnomalyRetrainConfig, fc: SensorFeatureConfig, real_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    if cfg.synthetic_share <= 0.0 or real_rows == 0:
        return np.zeros((0, fc.n_inputs), np.float32), np.zeros((0,), np.float32)
    target = real_rows * cfg.synthetic_share / (1.0 - cfg.synthetic_share)
    per_series = max(1, cfg.synthetic_length - fc.window)
    n = min(cfg.max_synthetic_series, max(1, math.ceil(target / per_series)))
    x, y = series_pairs(sensor_corpus(cfg.seed + 1000, n, cfg.synthetic_length), fc)
    keep = min(x.shape[0], max(1, round(target)))
    return x[:keep], y[:keep]


def retrain_anomaly(
    cfg: AnomalyRetrainConfig,
    series: Sequence[SeriesLike],
    parent_path: Path,
    out_dir: Path,
    progress: Progress,
    *,
    parent_keras: Path | None = None,
    source: str = "synced readings",
    training_window: tuple[str, str] | None = None,
) -> dict[str, float]:
    """Train an anomaly candidate on ``series`` (training part only) and write ``anomaly.tflite`` +
    ``anomaly.json`` (+ ``anomaly.keras``) under ``out_dir``; returns training metrics."""
    parent = _parent_manifest(parent_path)
    fc = parent.sensor_features or SensorFeatureConfig()
    tf, device = import_tf(cfg.seed)
    mixed = device.startswith("GPU") if cfg.mixed_precision is None else cfg.mixed_precision
    progress(f"building windows from {len(series)} real series on {device}", 0.02)
    x_real, y_real = series_pairs(series, fc)
    if x_real.shape[0] == 0:
        raise ValueError("no feature windows in the training series (each needs more than the window length)")
    x_syn, y_syn = _synthetic_rows(cfg, fc, x_real.shape[0])
    x, y = np.concatenate([x_real, x_syn]), np.concatenate([y_real, y_syn])
    rng = np.random.default_rng(cfg.seed)
    if x.shape[0] > cfg.max_train_rows:
        keep = rng.choice(x.shape[0], cfg.max_train_rows, replace=False)
        x, y = x[keep], y[keep]
    weights, hidden = _parent_weights(tf, parent_keras, fc.n_inputs) if cfg.warm_start else (None, None)
    params = FitParams(
        hidden=hidden or cfg.hidden,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate if weights is None else cfg.warm_start_learning_rate,
    )
    progress(
        f"training on {x.shape[0]} windows ({x_real.shape[0]} real, {x_syn.shape[0]} synthetic)"
        + (", warm start" if weights is not None else "")
        + (", mixed_float16" if mixed else ""),
        0.1,
    )
    model = fit_forecaster(tf, x, y, params, progress, mixed_precision=mixed, initial_weights=weights)
    progress("converting to int8 tflite", 0.72)
    export_model, int8_bytes = export_int8(
        tf, model, representative_rows(x, cfg.representative_rows, rng), params.hidden
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    export_model.save(out_dir / "anomaly.keras")
    sub = rng.choice(x_real.shape[0], min(5000, x_real.shape[0]), replace=False)
    metrics: dict[str, float] = {
        "train_nll_keras": gauss_nll(
            np.asarray(model.predict(x_real[sub], batch_size=4096, verbose=0), np.float64), y_real[sub]
        ),
        "train_rows": float(x.shape[0]),
        "train_rows_real": float(x_real.shape[0]),
        "train_rows_synthetic": float(x_syn.shape[0]),
        "train_series_real": float(len(series)),
        "warm_started": float(weights is not None),
        "mixed_precision": float(mixed),
        "gpu": float(device.startswith("GPU")),
    }
    fields: dict[str, Any] = {
        "name": "anomaly",
        "task": "anomaly",
        "version": cfg.version,
        "quantization": "int8-full-integer",
        "training_data": (
            f"{source}: {len(series)} real series ({x_real.shape[0]} windows) + {x_syn.shape[0]} windows of "
            f"synthetic series (models.synthetic, seed {cfg.seed + 1000}); parent {parent.name} v{parent.version}"
        ),
        "training_window": training_window,
        "seed": cfg.seed,
        "sensor_features": fc,
        "recreate_command": 'POST /api/v1/models/train {"task": "anomaly", ...} (cloud retraining job)',
    }
    defaults = parent.anomaly_defaults
    if defaults is None or cfg.recalibrate_threshold:
        write_model(out_dir, "anomaly", int8_bytes, {**fields, "metrics": metrics})
        progress("choosing the alert threshold on synthetic labelled series", 0.8)
        thr_series = sensor_corpus(
            cfg.seed + 2, cfg.threshold_series, cfg.threshold_length, with_anomaly=True
        )
        threshold, synth_score = pick_threshold(out_dir / "anomaly.tflite", thr_series)
        metrics["synthetic_nab_standard_int8"] = synth_score
        defaults = AnomalyScorerDefaults(
            threshold=threshold,
            threshold_source=(
                f"NAB-optimal (standard) on {cfg.threshold_series} synthetic labelled series, seed {cfg.seed + 2}"
            ),
        )
    metrics["threshold"] = defaults.threshold
    write_model(out_dir, "anomaly", int8_bytes, {**fields, "metrics": metrics, "anomaly_defaults": defaults})
    progress("candidate written", 0.9)
    return metrics


def retrain_demand(
    cfg: DemandRetrainConfig,
    train_panel: DemandPanel,
    out_dir: Path,
    progress: Progress,
    *,
    source: str = "synced scans",
) -> dict[str, float]:
    """Train a demand candidate on every row of ``train_panel`` (the caller cut the hold-out off) and
    write ``demand.tflite`` + ``demand.json`` under ``out_dir``; returns training metrics."""
    train_cfg = DemandTrainConfig(
        seed=cfg.seed,
        holdout_rows=0,
        min_history=cfg.min_history,
        stride=cfg.stride,
        hidden=cfg.hidden,
        epochs=cfg.epochs,
        members=cfg.members,
        representative_rows=cfg.representative_rows,
        version=cfg.version,
        features=cfg.features,
    )
    return train_demand_on_panel(
        train_cfg,
        train_panel,
        out_dir,
        lambda message, fraction: progress(message, min(fraction, 0.9)),
        source=source,
        recreate_command='POST /api/v1/models/train {"task": "demand", ...} (cloud retraining job)',
        float_twin=False,
        mixed_precision=cfg.mixed_precision,
    )
