"""Train the global demand forecaster (mean + P50 + P90, 28 days) and export it as int8.

Only rows before the hold-out are used for training samples, scaling and the int8
representative dataset: with the default 56-row hold-out nothing from either benchmark test
window (BASELINES.md origins A and B) reaches the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.demand import OUTPUT_HEADS, DemandForecaster
from models.demand_eval import (
    DemandPanel,
    active_history,
    promo_ses_forecast,
    read_panel,
    rmsse,
    ses_forecast,
)
from models.features import DemandFeatureConfig, demand_features
from models.manifest import DemandPostprocess
from models.runtime import load_model
from models.training.evaluate import demand_metrics
from models.training.export import assert_builtin_int8, convert, write_model
from models.training.tfutil import import_tf, precision_policy

Progress = Callable[[str, float], None]
QUANTILES = (0.5, 0.9)
#: grids the gateway post-processing is chosen on (validation month only; fixed before any test look)
SES_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(21))
P90_FACTORS = tuple(round(0.05 * k, 2) for k in range(10, 41))
P90_TARGET = 0.9


class DemandTrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    holdout_rows: int = Field(default=56, ge=0)
    min_history: int = Field(default=28, ge=7)
    stride: int = Field(default=1, ge=1)
    hidden: int = Field(default=64, ge=8)
    epochs: int = Field(default=10, ge=1)
    recency_half_life: int | None = Field(
        default=365, ge=1, description="rows after which a training window's weight halves (None = equal)"
    )
    members: int = Field(default=5, ge=1, description="independently seeded MLPs averaged in one graph")
    batch_size: int = Field(default=256, ge=8)
    learning_rate: float = Field(default=1e-3, gt=0)
    representative_rows: int = Field(default=1000, ge=10)
    version: int = Field(default=1, ge=1)
    features: DemandFeatureConfig = DemandFeatureConfig()


def training_samples(
    panel: DemandPanel, end_row: int, cfg: DemandTrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, Y scaled, RMSSE sample weight) for every SKU and origin o with o + horizon <= end_row."""
    fc = cfg.features
    xs, ys, scales = [], [], []
    for s in range(panel.qty.shape[1]):
        qty, promo = panel.qty[:, s], panel.promo[:, s]
        for o in range(cfg.min_history, end_row - fc.horizon + 1, cfg.stride):
            lo = max(0, o - fc.max_lookback)
            x, scale = demand_features(
                qty[lo:o], promo[lo:o], panel.dates[o : o + fc.horizon], promo[o : o + fc.horizon], fc
            )
            xs.append(x)
            ys.append(qty[o : o + fc.horizon] / scale)
            # weight so that squared error in scaled units matches RMSSE's per-series scaling
            active = active_history(qty[:o])
            denom = float(np.mean(np.diff(active) ** 2)) if active.size > 1 else 0.0
            weight = scale * scale / denom if denom > 0 else 1.0
            if cfg.recency_half_life:  # recent behaviour (e.g. promo response) weighs more
                weight *= 0.5 ** ((end_row - o) / cfg.recency_half_life)
            scales.append(weight)
    return np.stack(xs), np.stack(ys).astype(np.float32), np.asarray(scales, np.float32)


def _member(keras: Any, inp: Any, horizon: int, hidden: int, prefix: str) -> Any:
    h = keras.layers.Dense(hidden, activation="relu", name=f"{prefix}h1")(inp)
    h = keras.layers.Dropout(0.2, name=f"{prefix}drop")(h)
    h = keras.layers.Dense(hidden, activation="relu", name=f"{prefix}h2")(h)
    return keras.layers.Dense(len(OUTPUT_HEADS) * horizon, name=f"{prefix}out", dtype="float32")(h)


def build_model(
    tf: Any, n_inputs: int, horizon: int, hidden: int, batch_size: int | None, members: int = 1
) -> Any:
    """One MLP, or the average of `members` independently trained MLPs in one graph."""
    keras = tf.keras
    inp = keras.Input(shape=(n_inputs,), batch_size=batch_size, name="features")
    outs = [_member(keras, inp, horizon, hidden, f"m{k}_") for k in range(members)]
    out = outs[0] if members == 1 else keras.layers.Average(name="mean_p50_p90")(outs)
    return keras.Model(inp, out, name="demand_forecaster")


def _loss(tf: Any, horizon: int) -> Callable[[Any, Any], Any]:
    def loss(y_true: Any, y_pred: Any) -> Any:
        mean = y_pred[:, :horizon]
        total = tf.reduce_mean(tf.square(y_true - mean), axis=-1)
        for k, q in enumerate(QUANTILES, start=1):
            err = y_true - y_pred[:, k * horizon : (k + 1) * horizon]
            total += tf.reduce_mean(tf.maximum(q * err, (q - 1.0) * err), axis=-1)
        return total  # per sample, so sample weights apply

    return loss


def validate(model_path: Path, panel: DemandPanel, origin: int) -> tuple[float, float]:
    """Mean RMSSE and P90 coverage of a tflite model at one origin (inside the training rows)."""
    metrics = demand_metrics(load_model(model_path), panel, origin)
    return metrics["holdout_rmsse"], metrics["holdout_p90_coverage"]


def fit_postprocess(
    model_path: Path, panel: DemandPanel, origin: int
) -> tuple[DemandPostprocess, dict[str, float]]:
    """Choose the gateway post-processing on the month from ``origin`` (inside the training rows, after
    every training window): the weight of promotion-adjusted SES in the point forecast with the lowest mean RMSSE and the
    P90 factor whose coverage is closest to 0.90 (grids :data:`SES_WEIGHTS`, :data:`P90_FACTORS`)."""
    fc = DemandForecaster(load_model(model_path), postprocess=False)
    h = fc.horizon
    hists, actuals, means, p50s, p90s, stats = [], [], [], [], [], []
    for s in range(panel.qty.shape[1]):
        hist = panel.qty[:origin, s]
        f = fc.forecast(
            hist,
            panel.dates[origin],
            panel.promo[origin : origin + h, s],
            panel.promo[:origin, s],
            panel.dates[origin : origin + h],
        )
        hists.append(hist)
        actuals.append(panel.qty[origin : origin + h, s])
        means.append(np.asarray(f.mean))
        p50s.append(np.asarray(f.p50))
        p90s.append(np.asarray(f.p90))
        stats.append(promo_ses_forecast(hist, panel.promo[:origin, s], panel.promo[origin : origin + h, s]))

    def score(w: float) -> float:
        return float(
            np.mean(
                [rmsse(hi, a, (1.0 - w) * m + w * st) for hi, a, m, st in zip(hists, actuals, means, stats)]
            )
        )

    def coverage(k: float) -> float:
        return float(np.mean([np.mean(a <= np.maximum(k * p, q)) for a, p, q in zip(actuals, p90s, p50s)]))

    scores = [score(w) for w in SES_WEIGHTS]
    covers = [coverage(k) for k in P90_FACTORS]
    best_w = int(np.argmin(scores))
    best_k = int(np.argmin([abs(c - P90_TARGET) for c in covers]))
    post = DemandPostprocess(
        ses_weight=SES_WEIGHTS[best_w],
        p90_factor=P90_FACTORS[best_k],
        fitted_on=(
            f"rows {origin}..{origin + h - 1} ({panel.dates[origin]}..{panel.dates[origin + h - 1]}), "
            f"the validation month after every training window; {model_path.name} outputs"
        ),
    )
    return post, {
        "val_rmsse_int8_combined": scores[best_w],
        "val_p90_coverage_int8_calibrated": covers[best_k],
    }


def fit_members(
    tf: Any,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    cfg: DemandTrainConfig,
    progress: Progress,
    mixed_precision: bool = False,
) -> list[Any]:
    """Train ``cfg.members`` independently seeded MLPs (float16 compute under ``mixed_precision``)."""
    fc = cfg.features
    trained = []
    for k in range(cfg.members):
        tf.keras.utils.set_random_seed(cfg.seed + k)
        with precision_policy(tf, "mixed_float16" if mixed_precision else "float32"):
            model = build_model(tf, fc.n_inputs, fc.horizon, cfg.hidden, None)
            model.compile(optimizer=tf.keras.optimizers.Adam(cfg.learning_rate), loss=_loss(tf, fc.horizon))

            class _Cb(tf.keras.callbacks.Callback):  # type: ignore[misc,name-defined]
                def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None, k: int = k) -> None:
                    loss = (logs or {}).get("loss", float("nan"))
                    done = (k * cfg.epochs + epoch + 1) / (cfg.members * cfg.epochs)
                    progress(
                        f"member {k + 1}/{cfg.members} epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f}",
                        0.1 + 0.6 * done,
                    )

            model.fit(
                x,
                y,
                sample_weight=weights,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=[_Cb()],
            )
        trained.append(model)
    return trained


def export_members(tf: Any, trained: list[Any], cfg: DemandTrainConfig, representative: np.ndarray) -> Any:
    """One float32 batch-1 graph averaging the trained members (ready for :func:`convert`)."""
    fc = cfg.features
    export_model = build_model(tf, fc.n_inputs, fc.horizon, cfg.hidden, 1, members=len(trained))
    for k, model in enumerate(trained):
        for layer in model.layers:
            if layer.weights:
                export_model.get_layer(f"m{k}_{layer.name[3:]}").set_weights(
                    [np.asarray(w, np.float32) for w in layer.get_weights()]
                )
    return export_model


def train_demand_on_panel(
    cfg: DemandTrainConfig,
    panel: DemandPanel,
    out_dir: Path,
    progress: Progress,
    *,
    source: str,
    recreate_command: str,
    float_twin: bool = True,
    mixed_precision: bool | None = None,
) -> dict[str, float]:
    """Train on the rows of ``panel`` before its last ``cfg.holdout_rows``, export int8 (+ float32 twin).

    The last 28 training rows validate only (reported); ``source`` describes the data in the manifest;
    ``mixed_precision`` None trains in mixed_float16 exactly when TensorFlow sees a GPU."""
    tf, device = import_tf(cfg.seed)
    fc = cfg.features
    end_row = panel.qty.shape[0] - cfg.holdout_rows
    if end_row < cfg.min_history + 2 * fc.horizon:
        raise ValueError(
            f"not enough rows before the hold-out: {end_row} < min_history {cfg.min_history} + 2 x {fc.horizon}"
        )
    # the last 28 training rows validate (reported only); the model trains on rows before them
    val_origin = end_row - fc.horizon
    progress(f"building samples from rows < {end_row} on {device}", 0.0)
    x, y, weights = training_samples(panel, val_origin, cfg)
    weights = np.minimum(weights / float(np.mean(weights)), 5.0)
    progress(f"training on {x.shape[0]} windows x {panel.qty.shape[1]} SKUs", 0.1)
    mixed = device.startswith("GPU") if mixed_precision is None else mixed_precision
    trained = fit_members(tf, x, y, weights, cfg, progress, mixed_precision=mixed)
    rng = np.random.default_rng(cfg.seed)
    rep = x[rng.choice(x.shape[0], min(cfg.representative_rows, x.shape[0]), replace=False)]
    export_model = export_members(tf, trained, cfg, rep)
    progress("converting to int8" + (" and float32" if float_twin else "") + " tflite", 0.75)
    int8_bytes = convert(tf, export_model, rep, "float32")
    assert_builtin_int8(int8_bytes)
    variants = [("demand", "int8-full-integer", int8_bytes)]
    if float_twin:
        variants.append(("demand_float", "float32", convert(tf, export_model, None)))
    out_dir.mkdir(parents=True, exist_ok=True)
    window = (panel.dates[0].isoformat(), panel.dates[end_row - 1].isoformat())
    fields: dict[str, Any] = {
        "task": "demand",
        "version": cfg.version,
        "training_data": (
            f"{source}: {panel.qty.shape[1]} SKUs, rows 0..{end_row - 1} ({window[0]}..{window[1]}); "
            f"rows {val_origin}..{end_row - 1} validate only; the last {cfg.holdout_rows} rows are never used"
        ),
        "training_window": window,
        "seed": cfg.seed,
        "demand_features": fc,
        "quantiles": QUANTILES,
        "recreate_command": recreate_command,
    }
    metrics: dict[str, float] = {"train_windows": float(x.shape[0])}

    def write_all() -> None:
        for name, q, data_bytes in variants:
            write_model(
                out_dir, name, data_bytes, {**fields, "name": name, "quantization": q, "metrics": metrics}
            )

    write_all()
    progress("validating int8" + (" vs float32" if float_twin else "") + " on the last training month", 0.85)
    r_q, c_q = validate(out_dir / "demand.tflite", panel, val_origin)
    val_ses = float(
        np.mean(
            [
                rmsse(
                    panel.qty[:val_origin, s],
                    panel.qty[val_origin : val_origin + fc.horizon, s],
                    ses_forecast(panel.qty[:val_origin, s], fc.horizon),
                )
                for s in range(panel.qty.shape[1])
            ]
        )
    )
    metrics |= {"val_rmsse_int8": r_q, "val_rmsse_ses": val_ses, "val_p90_coverage_int8": c_q}
    if float_twin:
        r_f, c_f = validate(out_dir / "demand_float.tflite", panel, val_origin)
        metrics |= {
            "val_rmsse_float32": r_f,
            "val_int8_vs_float_rel": r_q / r_f - 1.0,
            "val_p90_coverage_float32": c_f,
        }
    progress("fitting the gateway post-processing (SES weight, P90 factor) on the validation month", 0.95)
    post, post_metrics = fit_postprocess(out_dir / "demand.tflite", panel, val_origin)
    fields["demand_postprocess"] = post
    metrics |= post_metrics
    write_all()
    progress("done", 1.0)
    return metrics


def train_demand(cfg: DemandTrainConfig, data: Path, out_dir: Path, progress: Progress) -> dict[str, float]:
    return train_demand_on_panel(
        cfg,
        read_panel(data),
        out_dir,
        progress,
        source=(
            f"{data.name} (Pasta sales: Mancuso, Piccialli & Sudoso, doi:10.17632/njdkntcpc9.1, CC BY 4.0)"
        ),
        recreate_command=(
            f"edgehouse train demand --seed {cfg.seed} --holdout-rows {cfg.holdout_rows} --out models/default"
        ),
    )
