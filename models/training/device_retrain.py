"""Retrain the device (multichannel) forecaster on real synced device runs (the cloud's retraining job).

A *run* is one device's messages in time order as a (T x C) matrix of its channels (the readings
of one message are one row). Each run is normalised by its own first ``warmup`` rows, as the
gateway's scorer normalises a device on its warm-up (:func:`models.device_features.robust_location_scale`);
a share of synthetic machines (:func:`models.training.device_train.synthetic_device`) keeps the
network general. Warm-started from the parent's ``.keras`` when one exists (same layout), else
trained from scratch; the parent's alert threshold and its source are kept. Callers pass only the
training part of each run: held-back rows never reach this module (evaluation:
:func:`models.training.evaluate.evaluate_device`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.device_features import MAX_CHANNELS, N_FEATURES, robust_location_scale
from models.manifest import manifest_path_for, read_manifest
from models.training.device_train import FitSettings, Progress, device_runs, fit_export, stack_pairs
from models.training.tfutil import import_tf


class DeviceRetrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    epochs: int = Field(default=5, ge=1)
    hidden: int = Field(default=32, ge=4, description="used only without a parent .keras to start from")
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)
    warm_start_learning_rate: float = Field(default=5e-4, gt=0, description="fine-tuning from the parent")
    warmup: int = Field(default=400, ge=20, description="rows that normalise each run (as on the gateway)")
    synthetic_share: float = Field(default=0.3, ge=0.0, lt=1.0, description="share of synthetic training rows")
    synthetic_length: int = Field(default=1200, ge=600)
    max_synthetic_devices: int = Field(default=60, ge=1)
    val_fraction: float = Field(default=0.15, gt=0.0, lt=0.5, description="rows of each run for validation")
    version: int = Field(default=2, ge=1)


def normalise(run: np.ndarray, warmup: int) -> np.ndarray:
    """``run`` (T x C raw values) in units of its first ``warmup`` rows' median and robust spread."""
    loc, scale = robust_location_scale(run[: max(2, min(warmup, len(run)))])
    return (run - loc) / scale


def _parent_weights(tf: Any, keras_path: Path | None) -> tuple[list[np.ndarray] | None, int | None]:
    if keras_path is None or not keras_path.is_file():
        return None, None
    try:
        parent = tf.keras.models.load_model(keras_path, compile=False)
        if int(parent.inputs[0].shape[-1]) != MAX_CHANNELS * N_FEATURES:
            return None, None
        hidden = int(parent.get_layer("h1").units)
    except (ValueError, OSError, KeyError):
        return None, None
    return [np.asarray(w, np.float32) for w in parent.get_weights()], hidden


def retrain_device(
    cfg: DeviceRetrainConfig,
    runs: Sequence[np.ndarray],
    parent_path: Path,
    out_dir: Path,
    progress: Progress,
    *,
    parent_keras: Path | None = None,
    source: str = "synced device runs",
    training_window: tuple[str, str] | None = None,
) -> dict[str, float]:
    """Train a candidate on the training parts ``runs`` (raw T x C each, 2..MAX_CHANNELS channels)."""
    if not runs:
        raise ValueError("no device runs to train on")
    parent = read_manifest(manifest_path_for(parent_path))
    tf, device = import_tf(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    progress(f"{len(runs)} device runs ({device})", 0.02)
    train_runs, val_runs = [], []
    for run in runs:
        z = normalise(np.asarray(run, np.float64), cfg.warmup)
        cut = max(1, int(len(z) * (1.0 - cfg.val_fraction)))
        train_runs.append(z[:cut])
        val_runs.append(z[cut:])
    real_x, real_y = stack_pairs(train_runs)
    val = stack_pairs([v for v in val_runs if len(v) > 8] or train_runs[-1:])
    synth_rows = 0
    x, y = real_x, real_y
    if cfg.synthetic_share > 0:
        target = len(real_x) * cfg.synthetic_share / (1.0 - cfg.synthetic_share)
        n = min(cfg.max_synthetic_devices, max(1, math.ceil(target / cfg.synthetic_length)))
        sx, sy = stack_pairs(device_runs(rng, n, cfg.synthetic_length, min(cfg.warmup, cfg.synthetic_length // 2)))
        keep = rng.choice(len(sx), min(len(sx), max(1, round(target))), replace=False)
        synth_rows = len(keep)
        x, y = np.concatenate([real_x, sx[keep]]), np.concatenate([real_y, sy[keep]])
    weights, hidden = _parent_weights(tf, parent_keras)
    fit = FitSettings(
        seed=cfg.seed, hidden=hidden or cfg.hidden, epochs=cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.warm_start_learning_rate if weights is not None else cfg.learning_rate,
    )
    fields = {
        "name": "device_anomaly",
        "task": "device_anomaly",
        "version": cfg.version,
        "quantization": "int8-full-integer",
        "training_data": (
            f"{source}: {len(runs)} device runs, {len(real_x)} rows, plus {synth_rows} rows of synthetic "
            f"machines (models.training.device_retrain, seed {cfg.seed})"
        ),
        "training_window": training_window,
        "seed": cfg.seed,
        "anomaly_defaults": parent.anomaly_defaults,
        "recreate_command": "edgehouse-cloud models train device_anomaly (a cloud retraining job)",
    }
    metrics = fit_export(tf, fit, (x, y), val, out_dir, fields, progress, initial_weights=weights, rng=rng)
    metrics |= {
        "train_rows_real": float(len(real_x)),
        "train_rows_synthetic": float(synth_rows),
        "warm_started": float(weights is not None),
    }
    progress("done", 1.0)
    return metrics
