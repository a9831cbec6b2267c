"""Global per-SKU demand forecaster for the gateway (edge-safe: numpy + LiteRT only).

One int8 model for every SKU: it sees the last `history` days in units of the SKU's own recent
mean (scale-free), history and future promotion flags, weekday and day-of-year of each future day,
and returns the mean, P50 and P90 of each of the next `horizon` days in those units.

Post-processing shipped in the manifest (`demand_postprocess`, fitted on the validation month
before the hold-out): the point forecast combines the network's mean with a promotion-adjusted SES
forecast of the same history, and P90 is scaled to calibrate its coverage. Manifests without it
use the network as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.demand_eval import promo_ses_forecast
from models.features import DemandFeatureConfig, demand_features
from models.manifest import DemandPostprocess
from models.runtime import LoadedModel, ModelLoadError, default_model_path, load_model

OUTPUT_HEADS = ("mean", "p50", "p90")


class DemandForecast(BaseModel):
    model_config = ConfigDict(frozen=True)

    dates: tuple[date, ...]
    mean: tuple[float, ...] = Field(description="expected units per day (use for point forecasts)")
    p50: tuple[float, ...]
    p90: tuple[float, ...]
    scale: float = Field(description="the series unit the model worked in (recent mean units/day)")


class DemandForecaster:
    """`postprocess=False` returns the network's own output (used to fit the post-processing)."""

    def __init__(self, model: LoadedModel, *, postprocess: bool = True) -> None:
        man = model.manifest
        if man.task != "demand" or man.demand_features is None:
            raise ModelLoadError(f"{model.path} is not a demand model")
        if int(np.prod(man.inputs[0].shape)) != man.demand_features.n_inputs:
            raise ModelLoadError(f"{model.path}: input size differs from its feature config")
        if int(np.prod(man.outputs[0].shape)) != len(OUTPUT_HEADS) * man.demand_features.horizon:
            raise ModelLoadError(f"{model.path}: output size differs from mean/P50/P90 x horizon")
        self.model = model
        self.features: DemandFeatureConfig = man.demand_features
        self.postprocess: DemandPostprocess | None = man.demand_postprocess if postprocess else None

    @classmethod
    def default(cls) -> DemandForecaster:
        return cls(load_model(default_model_path("demand")))

    @property
    def horizon(self) -> int:
        return self.features.horizon

    def forecast(
        self,
        history: Sequence[float],
        start_date: date,
        promo: Sequence[float] | None = None,
        history_promo: Sequence[float] | None = None,
        dates: Sequence[date] | None = None,
    ) -> DemandForecast:
        """`history`: daily unit counts ending the day before `start_date` (oldest first).
        `promo`: known-in-advance promotion flags for the `horizon` forecast days (default none).
        `dates`: the forecast days if not consecutive calendar days (e.g. store-open days only)."""
        h = self.horizon
        hist = np.asarray(history, dtype=np.float64)
        if hist.ndim != 1 or np.any(~np.isfinite(hist)) or np.any(hist < 0):
            raise ValueError("history must be a 1-D list of non-negative finite counts")
        future_dates = (
            tuple(dates) if dates is not None else tuple(start_date + timedelta(days=i) for i in range(h))
        )
        if len(future_dates) != h:
            raise ValueError(f"need {h} forecast dates, got {len(future_dates)}")
        fut_promo = np.zeros(h) if promo is None else np.asarray(promo, dtype=np.float64)
        if fut_promo.shape != (h,):
            raise ValueError(f"promo must have {h} flags")
        hist_promo = (
            np.zeros(hist.size) if history_promo is None else np.asarray(history_promo, dtype=np.float64)
        )
        x, scale = demand_features(hist, hist_promo, future_dates, fut_promo, self.features)
        out = self.model.predict_one(x).reshape(len(OUTPUT_HEADS), h)
        out = np.maximum(out, 0.0) * scale
        mean, p50, p90 = out[0], out[1], out[2]
        post = self.postprocess
        if post is not None:
            if post.ses_weight > 0.0:
                stat = promo_ses_forecast(hist, hist_promo, fut_promo)
                mean = (1.0 - post.ses_weight) * mean + post.ses_weight * stat
            p90 = post.p90_factor * p90
        p90 = np.maximum(p90, p50)
        return DemandForecast(
            dates=future_dates,
            mean=tuple(mean.tolist()),
            p50=tuple(p50.tolist()),
            p90=tuple(p90.tolist()),
            scale=scale,
        )
