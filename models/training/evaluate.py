"""Candidate vs deployed model on the same held-back data, and the quality gate between them.

numpy + LiteRT only (no TensorFlow): both models are the int8 ``.tflite`` files the gateways run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from models.anomaly import AnomalyScorer
from models.demand import DemandForecaster
from models.demand_eval import DemandPanel, rmsse, wape
from models.features import SensorFeatureConfig, sensor_training_pairs
from models.runtime import LoadedModel, load_model
from models.training.anomaly_train import SeriesLike, gauss_nll

DEFAULT_TOLERANCE: Final = 0.02
#: Primary metric of each task (lower is better) used by the gate.
PRIMARY_METRIC: Final = {"anomaly": "holdout_nll", "demand": "holdout_rmsse", "device_anomaly": "holdout_mse"}


class Gate(BaseModel):
    model_config = ConfigDict(frozen=True)

    passed: bool
    reason: str


def quality_gate(
    task: Literal["anomaly", "demand", "device_anomaly"],
    candidate: dict[str, float],
    deployed: dict[str, float],
    tolerance: float = DEFAULT_TOLERANCE,
) -> Gate:
    """The candidate passes when its primary metric (lower is better) is no worse than the deployed
    model's by more than ``tolerance`` of the deployed value's magnitude (NLL may be negative)."""
    name = PRIMARY_METRIC[task]
    cand, dep = candidate.get(name, math.nan), deployed.get(name, math.nan)
    if not math.isfinite(cand):
        return Gate(passed=False, reason=f"candidate {name} is not finite ({cand})")
    if not math.isfinite(dep):
        return Gate(passed=True, reason=f"deployed {name} is not finite ({dep}); candidate {name} {cand:.4f}")
    allowed = dep + tolerance * abs(dep)
    verdict = "<=" if cand <= allowed else ">"
    return Gate(
        passed=cand <= allowed,
        reason=(
            f"candidate {name} {cand:.4f} {verdict} deployed {dep:.4f} + {tolerance:.0%} tolerance ({allowed:.4f})"
        ),
    )


# ---------------------------------------------------------------------------------------------
# Anomaly
# ---------------------------------------------------------------------------------------------


def _holdout_pairs(
    context: SeriesLike | None, holdout: SeriesLike, cfg: SensorFeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Feature/target pairs whose target reading lies in ``holdout``; ``context`` (earlier readings
    of the same stream) only primes the causal feature state."""
    if context is None or len(context.ts_ms) == 0:
        return sensor_training_pairs(holdout.ts_ms, holdout.values, cfg)
    ts = np.concatenate([context.ts_ms, holdout.ts_ms])
    values = np.concatenate([context.values, holdout.values])
    x, y = sensor_training_pairs(ts, values, cfg)
    keep = min(x.shape[0], len(holdout.ts_ms))
    return x[x.shape[0] - keep :], y[y.shape[0] - keep :]


def _anomaly_metrics(
    model: LoadedModel, holdout: Sequence[SeriesLike], context: Sequence[SeriesLike | None]
) -> dict[str, float]:
    cfg = model.manifest.sensor_features
    assert cfg is not None
    preds, targets = [], []
    scorer = AnomalyScorer(model)
    alerts = scored = 0
    for i, (ctx, series) in enumerate(zip(context, holdout, strict=True)):
        x, y = _holdout_pairs(ctx, series, cfg)
        if x.shape[0]:
            preds.append(np.stack([model.predict_one(row) for row in x]))
            targets.append(y)
        key = f"s{i}"
        if ctx is not None:
            for t, v in zip(ctx.ts_ms, ctx.values, strict=True):
                scorer.score(key, int(t), float(v))
        for t, v in zip(series.ts_ms, series.values, strict=True):
            alerts += scorer.score(key, int(t), float(v)).alert
            scored += 1
        scorer.forget(key)
    nll = gauss_nll(np.concatenate(preds), np.concatenate(targets)) if preds else math.nan
    return {
        "holdout_nll": nll,
        "holdout_alerts_per_1k": 1000.0 * alerts / scored if scored else math.nan,
        "holdout_windows": float(sum(t.shape[0] for t in targets)),
        "threshold": scorer.config.threshold,
    }


def evaluate_anomaly(
    candidate_path: Path,
    deployed_path: Path,
    holdout_series: Sequence[SeriesLike],
    context: Sequence[SeriesLike | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Both int8 models on the same held-back series: mean Gaussian NLL of their predictions over the
    feature windows, and alerts per 1,000 readings at each model's own threshold (AnomalyScorer).

    ``context[i]``, when given, holds readings just before ``holdout_series[i]``: they warm the causal
    state (normalisation, windows, surprise histograms) and are never counted."""
    ctx: Sequence[SeriesLike | None] = context if context is not None else [None] * len(holdout_series)
    if len(ctx) != len(holdout_series):
        raise ValueError("context must have one entry per holdout series")
    return {
        "candidate": _anomaly_metrics(load_model(candidate_path), holdout_series, ctx),
        "deployed": _anomaly_metrics(load_model(deployed_path), holdout_series, ctx),
    }


# ---------------------------------------------------------------------------------------------
# Device (multichannel)
# ---------------------------------------------------------------------------------------------


def _device_metrics(
    model: LoadedModel, holdout: Sequence[np.ndarray], context: Sequence[np.ndarray], warmup: int
) -> dict[str, float]:
    from models.device_anomaly import DeviceScorer, DeviceScorerConfig
    from models.device_features import MAX_CHANNELS, WINDOW, robust_location_scale, training_pairs

    err = base = weight = 0.0
    alerts = scored = 0
    defaults = model.manifest.anomaly_defaults
    for i, (ctx, run) in enumerate(zip(context, holdout, strict=True)):
        loc, scale = robust_location_scale(ctx[: max(2, min(warmup, len(ctx)))])
        z = (np.concatenate([ctx[-WINDOW:], run]) - loc) / scale
        x, y, mask = training_pairs(z)
        if len(x):
            pred = np.stack([model.predict_one(row.reshape(-1)) for row in x])[:, :MAX_CHANNELS]
            err += float(np.sum(mask * (pred - y) ** 2))
            base += float(np.sum(mask * y**2))
            weight += float(mask.sum())
        cfg = DeviceScorerConfig(threshold=defaults.threshold if defaults else 0.5,
                                 warmup=max(40, min(warmup, len(ctx))))
        scorer = DeviceScorer(model, cfg)
        names = [f"c{j}" for j in range(run.shape[1])]
        for row in ctx[-cfg.warmup:]:
            scorer.score(f"d{i}", dict(zip(names, map(float, row), strict=True)))
        for row in run:
            result = scorer.score(f"d{i}", dict(zip(names, map(float, row), strict=True)))
            if result is not None:
                alerts += int(result.alert)
                scored += 1
    return {
        "holdout_mse": err / weight if weight else math.nan,
        "holdout_mse_persistence": base / weight if weight else math.nan,
        "holdout_alerts_per_1k": 1000.0 * alerts / scored if scored else math.nan,
        "holdout_rows": float(sum(len(r) for r in holdout)),
        "threshold": defaults.threshold if defaults else 0.5,
    }


def evaluate_device(
    candidate_path: Path,
    deployed_path: Path,
    holdout_runs: Sequence[np.ndarray],
    context: Sequence[np.ndarray],
    warmup: int = 400,
) -> dict[str, dict[str, float]]:
    """Both int8 device models on the same held-back rows of each run (T x C raw values): masked MSE
    of their next-change forecasts (normalised by the run's training part, as on the gateway) and
    device alerts per 1,000 held-back messages at the model's threshold (:class:`DeviceScorer`
    calibrated on the last ``warmup`` training rows of the run, never counted)."""
    if len(context) != len(holdout_runs):
        raise ValueError("context must have one entry per holdout run")
    return {
        "candidate": _device_metrics(load_model(candidate_path), holdout_runs, context, warmup),
        "deployed": _device_metrics(load_model(deployed_path), holdout_runs, context, warmup),
    }


# ---------------------------------------------------------------------------------------------
# Demand
# ---------------------------------------------------------------------------------------------


def demand_metrics(model: LoadedModel, panel: DemandPanel, origin: int) -> dict[str, float]:
    """Mean RMSSE, pooled WAPE and P90 coverage of ``model`` forecasting every series from ``origin``."""
    fc = DemandForecaster(model)
    h = fc.horizon
    scores, covered, actuals, means = [], [], [], []
    for s in range(panel.qty.shape[1]):
        hist, actual = panel.qty[:origin, s], panel.qty[origin : origin + h, s]
        f = fc.forecast(
            hist,
            panel.dates[origin],
            panel.promo[origin : origin + h, s],
            panel.promo[:origin, s],
            panel.dates[origin : origin + h],
        )
        mean = np.asarray(f.mean)
        scores.append(rmsse(hist, actual, mean))
        covered.append(float(np.mean(actual <= np.asarray(f.p90))))
        actuals.append(actual)
        means.append(mean)
    return {
        "holdout_rmsse": float(np.mean(scores)),
        "holdout_wape": wape(np.concatenate(actuals), np.concatenate(means)),
        "holdout_p90_coverage": float(np.mean(covered)),
    }


def evaluate_demand(
    candidate_path: Path, deployed_path: Path, panel: DemandPanel, origin: int
) -> dict[str, dict[str, float]]:
    """Both int8 models forecast every series of ``panel`` from ``origin`` (history = rows before it)
    over their horizon: mean RMSSE, pooled WAPE and P90 coverage of the actual rows."""
    horizon = DemandForecaster(load_model(candidate_path)).horizon
    if not 0 < origin <= panel.qty.shape[0] - horizon:
        raise ValueError(f"origin {origin} leaves fewer than {horizon} rows to evaluate")
    return {
        "candidate": demand_metrics(load_model(candidate_path), panel, origin),
        "deployed": demand_metrics(load_model(deployed_path), panel, origin),
    }
