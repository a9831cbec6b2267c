"""Demand data loading, reference baselines and M5-style metrics (numpy only, edge-safe).

Metric definitions follow /work/shared/data/demand/BASELINES.md: RMSSE and MASE scale by the
in-sample one-step differences from the first non-zero sale; WAPE pools all SKUs and days.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np


@dataclass(frozen=True, slots=True)
class DemandPanel:
    dates: tuple[date, ...]  # one per row (store-open days)
    skus: tuple[str, ...]
    qty: np.ndarray  # [rows, skus] float64
    promo: np.ndarray  # [rows, skus] float64 (0/1)


def read_panel(path: Path) -> DemandPanel:
    """Wide CSV: DATE, QTY_<sku>..., PROMO_<sku>... (the pasta layout)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().strip('"') for h in next(reader)]
        rows = [r for r in reader if r]
    qty_cols = [i for i, h in enumerate(header) if h.startswith("QTY_")]
    skus = tuple(header[i][4:] for i in qty_cols)
    promo_index = {h[6:]: i for i, h in enumerate(header) if h.startswith("PROMO_")}
    missing = [s for s in skus if s not in promo_index]
    if missing:
        raise ValueError(f"{path}: no PROMO_ column for {missing[:5]}")
    promo_cols = [promo_index[s] for s in skus]
    dates = tuple(date.fromisoformat(r[0].strip()) for r in rows)
    qty = np.array([[float(r[i]) for i in qty_cols] for r in rows])
    promo = np.array([[float(r[i]) for i in promo_cols] for r in rows])
    return DemandPanel(dates=dates, skus=skus, qty=qty, promo=promo)


def active_history(history: np.ndarray) -> np.ndarray:
    """History from the first non-zero sale (the whole series if it never sold)."""
    nz = np.flatnonzero(history > 0)
    return history[nz[0] :] if nz.size else history


def ma_forecast(history: np.ndarray, horizon: int, window: int = 28) -> np.ndarray:
    return np.full(horizon, float(np.mean(history[-window:])))


SES_ALPHAS = np.arange(0.02, 0.5001, 0.02)


def ses_level(history: np.ndarray) -> float:
    """Simple exponential smoothing level from the first non-zero sale, alpha from 0.02..0.50 by
    in-sample one-step SSE (every alpha in one pass; the last value if the history is empty)."""
    y = active_history(np.asarray(history, dtype=np.float64))
    if y.size == 0:
        return 0.0
    level = np.full(SES_ALPHAS.shape, float(y[0]))
    sse = np.zeros(SES_ALPHAS.shape)
    for v in y[1:]:
        err = v - level
        sse += err * err
        level += SES_ALPHAS * err
    return float(level[int(np.argmin(sse))])


def ses_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """Simple exponential smoothing, alpha from 0.02..0.50 by in-sample one-step SSE."""
    return np.full(horizon, ses_level(history))


def promo_ses_forecast(
    history: np.ndarray,
    history_promo: np.ndarray,
    future_promo: np.ndarray,
    lookback: int = 364,
    mix_window: int = 28,
) -> np.ndarray:
    """SES with a promotion multiplier: the SKU's mean on and off promotion over the last `lookback`
    days (relative to its overall mean there) scale a base level, which is the SES level divided by
    the promo mix of the last `mix_window` days. Plain SES without promotions on both sides."""
    hist = np.asarray(history, dtype=np.float64)
    level = ses_level(hist)
    fut = np.asarray(future_promo, dtype=np.float64) > 0.5
    h, p = hist[-lookback:], np.asarray(history_promo, dtype=np.float64)[-lookback:] > 0.5
    mean = float(np.mean(h)) if h.size else 0.0
    if mean <= 0.0 or p.all() or not p.any():
        return np.full(fut.shape, level)
    on, off = float(np.mean(h[p])) / mean, float(np.mean(h[~p])) / mean
    share = float(np.mean(p[-mix_window:]))
    mix = share * on + (1.0 - share) * off
    if mix <= 0.0:  # the recent days were all of a kind that never sold: keep the level
        return np.full(fut.shape, level)
    return (level / mix) * np.where(fut, on, off)


def rmsse(history: np.ndarray, actual: np.ndarray, forecast: np.ndarray) -> float:
    y = active_history(history)
    denom = float(np.mean(np.diff(y) ** 2)) if y.size > 1 else 0.0
    if denom <= 0.0:
        denom = 1.0
    return float(np.sqrt(np.mean((actual - forecast) ** 2) / denom))


def mase(history: np.ndarray, actual: np.ndarray, forecast: np.ndarray) -> float:
    y = active_history(history)
    denom = float(np.mean(np.abs(np.diff(y)))) if y.size > 1 else 0.0
    if denom <= 0.0:
        denom = 1.0
    return float(np.mean(np.abs(actual - forecast)) / denom)


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    total = float(np.sum(np.abs(actual)))
    return float(np.sum(np.abs(actual - forecast)) / total) if total > 0 else 0.0
