"""Settings of the streaming anomaly scorer (models.anomaly; re-exported there)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AnomalyScorerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="alert when score >= threshold (AnomalyScorer(model) uses the manifest's)",
    )
    windows: tuple[int, ...] = Field(
        default=(1, 12), min_length=1, description="trailing windows (readings) whose mean surprise is tested"
    )
    long_horizon: int = Field(
        default=2000, ge=10, description="readings the surprise distribution averages over"
    )
    warmup: int = Field(default=150, ge=1, description="scored readings before any score above 0")
    warmup_days: float = Field(
        default=1.0,
        ge=0.0,
        description="and, where the stream's daily lag is known (readings 1 min to 12 h apart), this "
        "many days of readings before any score above 0 (the drift test keeps its own warm-up): a "
        "stream sees its daily cycle (shift starts, defrosts) once before the network tests alert",
    )
    max_surprise: float = Field(default=25.0, gt=0.0, description="|z| is capped here")
    log_scale: float = Field(
        default=10.0, gt=0.0, description="score = -log10(tests x smallest tail probability) / log_scale"
    )
    calibration_s: float = Field(
        default=60.0,
        ge=0.0,
        description="tail probabilities are per this much stream time, not per reading: p x (this / "
        "the stream's typical interval), so a score means the same rate of normal readings that "
        "surprising on a stream read every minute and one read every hour (0 = per reading)",
    )
    tail_quantile: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="above this upper quantile an exponential tail is fitted"
    )
    day_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="share of a day whose mean change vs the same time yesterday is tested (0 = off)",
    )
    period_days: tuple[int, ...] = Field(
        default=(1, 7), description="day-over-day and week-over-week tests (each where the history fits)"
    )
    level_test: bool = Field(default=True, description="also test how far the value is from its running mean")
    alarm_from: float = Field(
        default=0.40,
        ge=0.0,
        le=1.0,
        description="a score this high (or a drift alarm) is an alarm: the refractory period starts and "
        "the stream checks for a new normal (independent of the alert threshold, so the score of a "
        "reading does not depend on the alerting policy)",
    )
    alarm_rise: int = Field(
        default=12,
        ge=1,
        description="readings after an alarm's first one during which its score may keep rising "
        "(trailing means gather evidence); the refractory period starts once the score falls or "
        "this many readings have passed, so any threshold up to the event's peak sees it",
    )
    refractory: int = Field(
        default=150,
        ge=0,
        description="readings after an alarm whose scores are capped at refractory_cap (one alarm per "
        "event); the surprise histograms keep learning meanwhile (the saturation guard)",
    )
    refractory_cap: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="the highest score during a refractory period (keep it below the agent's clear level)",
    )
    once_per_level: bool = Field(
        default=True,
        description="below an alarm, a score above refractory_cap is reported only if it exceeds every "
        "score reported in the previous `refractory` readings (else capped at refractory_cap): an "
        "excursion that never alarms is reported once at each level it reaches, so a threshold below "
        "alarm_from sees it once instead of on every reading (scores from alarm_from on are unchanged)",
    )
    relearn_after: int = Field(
        default=30,
        ge=2,
        description="readings after an alarm compared with the stream's normal: a lasting change of "
        "level or spread becomes the new normal (running mean/variance re-learnt)",
    )
    relearn_level: float = Field(
        default=3.0, gt=0.0, description="a mean this many std units from the old one is a new level"
    )
    relearn_spread: float = Field(
        default=2.0, gt=1.0, description="a std this many times the old one is a new spread"
    )
    drift_limit: float = Field(
        default=100.0,
        ge=0.0,
        description="CUSUM alarm level of the slow-drift test, in std-unit readings (0 = off)",
    )
    drift_slack: float = Field(
        default=2.0, ge=0.0, description="std units of deviation the drift CUSUM ignores (its k)"
    )
    drift_both_ways: bool = Field(
        default=False,
        description="also accumulate downward drifts (off: upward only; machines switching off for "
        "the night or the weekend are the usual downward level changes)",
    )
    drift_horizon: int = Field(
        default=2000, ge=10, description="readings the drift test's baseline mean/std average over"
    )
    drift_days: float = Field(
        default=7.0,
        ge=0.0,
        description="where the daily lag is known, the drift baseline averages over at least this many "
        "days of readings (a week: a weekend off is part of the normal, not a drift)",
    )
    drift_warmup: int = Field(
        default=300, ge=1, description="readings the drift baseline learns before the test accumulates"
    )
    drift_delay: int = Field(
        default=120, ge=0, description="the drift baseline learns each reading this many readings late"
    )
    state_min_on_s: float = Field(
        default=600.0,
        ge=0.0,
        description="0/1 state streams (doors) alert once on this long and (see state_run_factor) "
        "longer than usual; 0 = score them like any stream",
    )
    state_run_factor: float = Field(
        default=3.0,
        ge=1.0,
        description="an on-run alerts past this many times the longest earlier run that did not alert",
    )
    max_streams: int = Field(default=10_000, ge=1, description="least recently used streams are dropped")
