"""The shapes of the feature vectors, stored in model manifests.

Kept apart from :mod:`models.features` (numpy) so that reading or checking a manifest loads no
numpy: an agent with its models switched off never imports it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SensorFeatureConfig(BaseModel):
    """Shape of the sensor feature vector; stored in the anomaly manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=24, ge=4, le=256, description="recent readings in the window")
    seasonal_half_width: int = Field(default=3, ge=0, le=16, description="readings each side of t+1-day")
    norm_horizon: int = Field(default=2000, ge=10, description="readings the running mean/var average over")
    max_seasonal_lag: int = Field(default=1500, ge=1, description="longest daily lag kept in memory")
    interval_probe: int = Field(default=16, ge=2, description="readings used to estimate the sample interval")
    clip: float = Field(default=8.0, gt=0.0, description="features are clipped to +-clip std units")
    history_keep: int = Field(
        default=2100, ge=1, description="readings kept per stream (a week of 5-minute readings)"
    )

    @property
    def n_inputs(self) -> int:
        return (self.window - 1) + (2 * self.seasonal_half_width + 1) + 1


class DemandFeatureConfig(BaseModel):
    """Shape of the demand feature vector; stored in the demand manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    history: int = Field(default=56, ge=7, description="days of history fed to the model")
    horizon: int = Field(default=28, ge=1)
    scale_window: int = Field(default=56, ge=7, description="days whose mean is the series scale")
    min_scale: float = Field(default=0.05, gt=0.0)
    clip: float = Field(default=12.0, gt=0.0, description="scaled counts are clipped to [0, clip]")

    summary_windows: tuple[int, ...] = (7, 28, 112, 364)
    smoothing_alphas: tuple[float, ...] = (0.03, 0.1, 0.3)
    smoothing_span: int = Field(default=364, ge=7, description="days the smoothed levels look back")
    year_lag: int = Field(default=364, ge=28, description="days back to the same period last year")
    seasonal: bool = Field(default=False, description="feed day-of-year and last year's level (else zeros)")

    @property
    def n_inputs(self) -> int:
        # scaled history, history promo, future promo, future weekday one-hot, future
        # day-of-year sin/cos, summaries (promo response on/off/share, window means, smoothed
        # levels, last year + flag), log scale
        summaries = len(self.summary_windows) + len(self.smoothing_alphas) + 2 + 3
        return 2 * self.history + self.horizon + 7 * self.horizon + 2 * self.horizon + summaries + 1

    @property
    def max_lookback(self) -> int:
        """Days of history that can influence the features."""
        return max(self.history, self.scale_window, self.smoothing_span, self.year_lag, *self.summary_windows)
