"""Daily per-SKU demand forecasts from the stored scans, on their own thread.

Once per UTC day (at start, then whenever the date changes) the thread sums each SKU's scanned
units of ``models.demand_direction`` per UTC day, up to yesterday, and forecasts the next 28 days
from today with :class:`models.demand.DemandForecaster` (int8 LiteRT). Each forecast is a
:class:`~protocols.ForecastPayload` (P50, P90) handed to ``emit``
(:meth:`edge_agent.output.GatewayOutput.emit`: store + outbox, MQTT publish, wake the sync). Its
id is ``demand:{sku}:{origin}``, so a restart on the same day stores nothing twice. A SKU is
forecast once it has ``forecast_min_history_days`` days since its first scan. A model that does
not load leaves the agent running without forecasts (logged,
``edgehouse_agent_model_loaded{task="demand"} 0``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.clock import now_ms
from edge_agent.config import ModelsConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.store.db import READER_CACHE_KIB
from edge_agent.updates.slot import ModelInfo, ModelWorker, Shadow, SlotStart, load_slot_model
from edge_agent.updates.stats import SlotStats, StatsCounter
from protocols import ForecastPayload, ModelStats

if TYPE_CHECKING:
    from models.demand import DemandForecaster

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: How often the thread checks whether the (UTC) date changed.
_CHECK_S = 60.0
_RETRY_S = 300.0


def utc_today() -> date:
    return datetime.now(UTC).date()


def daily_units(
    conn: sqlite3.Connection, direction: str, origin: date, days: int
) -> dict[str, dict[int, float]]:
    """Units per SKU per UTC day number (days since 1970-01-01) in the ``days`` before ``origin``."""
    end_day = (origin - date(1970, 1, 1)).days
    rows = conn.execute(
        "SELECT sku, ts / ? AS day, sum(qty) FROM scans WHERE direction = ? AND ts >= ? AND ts < ? "
        "GROUP BY sku, day",
        (DAY_MS, direction, (end_day - days) * DAY_MS, end_day * DAY_MS),
    )
    out: dict[str, dict[int, float]] = {}
    for sku, day, units in rows:
        out.setdefault(sku, {})[int(day)] = float(units)
    return out


def history_of(per_day: dict[int, float], origin: date) -> list[float]:
    """Daily units from the SKU's first scanned day to the day before ``origin`` (missing days: 0)."""
    end_day = (origin - date(1970, 1, 1)).days
    first = min(per_day)
    return [per_day.get(day, 0.0) for day in range(first, end_day)]


def forecast_accuracy(
    conn: sqlite3.Connection,
    direction: str,
    forecasts: Iterable[tuple[str, date, Sequence[float]]],
    today: date,
) -> tuple[float, float]:
    """Sum of |P50 - actual| and of actual daily units over the forecast days before ``today``.

    ``forecasts``: (sku, origin, P50 per day). A day without scans counts as 0 units. WAPE is
    the first over the second.
    """
    items = [(sku, (origin - date(1970, 1, 1)).days, p50) for sku, origin, p50 in forecasts]
    today_day = (today - date(1970, 1, 1)).days
    items = [it for it in items if it[1] < today_day]
    if not items:
        return 0.0, 0.0
    first = min(day for _, day, _ in items)
    units = daily_units(conn, direction, today, today_day - first)
    abs_error = actual = 0.0
    for sku, origin_day, p50 in items:
        per_day = units.get(sku, {})
        for i, p in enumerate(p50):
            day = origin_day + i
            if day >= today_day:
                break
            a = per_day.get(day, 0.0)
            abs_error += abs(float(p) - a)
            actual += a
    return abs_error, actual


@dataclass(slots=True)
class _Forecasting:
    forecaster: DemandForecaster
    info: ModelInfo


@dataclass(slots=True)
class _ShadowForecasts(Shadow[_Forecasting]):
    """A candidate forecasting next to the running model; its forecasts stay in memory."""

    #: (sku, origin) -> P50 of the shadow, and of the running model for the same SKU and day.
    p50: dict[tuple[str, date], tuple[float, ...]] = field(default_factory=dict)
    baseline_p50: dict[tuple[str, date], tuple[float, ...]] = field(default_factory=dict)


class ForecastWorker(ModelWorker[None, _Forecasting, _ShadowForecasts]):
    """Owns the demand forecaster and its thread; :meth:`start` / :meth:`stop`.

    Also the demand :class:`~edge_agent.updates.slot.ModelSlot`: a daily run reads the forecaster
    reference once, so a swap takes effect at the next run (a forecast for a day already made is
    kept: its id is per SKU and day).
    """

    name = "forecast"
    task = "demand"
    work = "forecasting"

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        site: str,
        store: Store,
        metrics: AgentMetrics,
        emit: Callable[[ForecastPayload], bool],
        today: Callable[[], date] = utc_today,
        clock_ms: Callable[[], int] = now_ms,
        installed: SlotStart | None = None,
    ) -> None:
        super().__init__(config, gateway_id, store, metrics, emit, config.demand_model, installed, clock_ms)
        self._site = site
        self._today = today
        self._done: date | None = None

    @property
    def enabled(self) -> bool:
        return self._config.enabled and self._config.forecast_enabled

    def _load(self, source: ModelInfo | Path) -> _Forecasting:
        from models.demand import DemandForecaster  # numpy: with the first model

        model, info = load_slot_model("demand", source)
        return _Forecasting(DemandForecaster(model), info)

    def _shadow_of(
        self, model: _Forecasting, stats: StatsCounter, baseline: StatsCounter
    ) -> _ShadowForecasts:
        return _ShadowForecasts(model, stats, baseline)

    def model_stats(self) -> SlotStats:
        """Counts, plus P50 error against the daily units scanned since (days before today)."""
        with self._lock:
            stats, shadow, previous = self._stats, self._shadow, self._previous_stats
        if stats is None:
            return SlotStats(previous=previous)
        today = self._today()
        direction = self._config.demand_direction
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            active = _with_error(stats, forecast_accuracy(conn, direction, self._stored(conn, stats), today))
            if shadow is None:
                return SlotStats(active=active, previous=previous)
            shadow_fc = [(sku, origin, p50) for (sku, origin), p50 in list(shadow.p50.items())]
            base_fc = [(sku, origin, p50) for (sku, origin), p50 in list(shadow.baseline_p50.items())]
            return SlotStats(
                active=active,
                shadow=_with_error(shadow.stats, forecast_accuracy(conn, direction, shadow_fc, today)),
                baseline=_with_error(shadow.baseline, forecast_accuracy(conn, direction, base_fc, today)),
                previous=previous,
            )
        finally:
            conn.close()

    @staticmethod
    def _stored(conn: sqlite3.Connection, stats: StatsCounter) -> list[tuple[str, date, tuple[float, ...]]]:
        """The stored forecasts of ``stats.model_version`` made since ``stats.since_ts``."""
        out = []
        for (payload,) in conn.execute(
            "SELECT payload FROM forecasts WHERE created_ts >= ?", (stats.since_ts,)
        ):
            fc = ForecastPayload.model_validate_json(payload)
            if fc.model_version == stats.model_version:
                out.append((fc.sku, date.fromisoformat(fc.origin), fc.p50))
        return out

    # ----------------------------------------------------------------- the thread

    def step(self, resource: None) -> None:
        """Forecast once per UTC day: at start, then whenever the date changed."""
        origin = self._today()
        wait = _CHECK_S
        if self._done != origin:
            try:
                self.run_once(origin)
                self._done = origin
            except sqlite3.Error as exc:
                self._metrics.forecast_errors.inc()
                log.warning("forecast run for %s failed (%s); retrying in %.0fs", origin, exc, _RETRY_S)
                wait = _RETRY_S
        self.sleep(wait)

    def run_once(self, origin: date) -> int:
        """Forecast every SKU with enough history from ``origin``; return the forecasts stored."""
        active, shadow, stats = self._active, self._shadow, self._stats
        if active is None:
            return 0
        forecaster = active.forecaster
        cfg = self._config
        lookback = max(forecaster.features.year_lag, forecaster.features.smoothing_span) + 28
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            per_sku = daily_units(conn, cfg.demand_direction, origin, lookback)
        finally:
            conn.close()
        version = active.info.version
        stored = 0
        for sku in sorted(per_sku):
            if self.stopping:
                break
            history = history_of(per_sku[sku], origin)
            if len(history) < cfg.forecast_min_history_days:
                continue
            try:
                fc = forecaster.forecast(history, origin)
                p50 = tuple(round(max(0.0, v), 3) for v in fc.p50)
                payload = ForecastPayload(
                    forecast_id=f"demand:{sku}:{origin.isoformat()}",
                    gateway_id=self._gateway_id,
                    site=self._site,
                    sku=sku,
                    origin=origin.isoformat(),
                    created_ts=self._clock_ms(),
                    p50=p50,
                    p90=tuple(max(lo, round(v, 3)) for lo, v in zip(p50, fc.p90, strict=True)),
                    model_version=version,
                )
                if self._emit(payload):
                    stored += 1
                    self._metrics.forecasts.inc()
                    if stats is not None:
                        stats.forecasts += 1
                if shadow is not None:
                    self._forecast_shadow(shadow, sku, history, origin, p50)
            except Exception as exc:  # noqa: BLE001 (one SKU must not stop the others)
                self._metrics.forecast_errors.inc()
                log.warning("demand forecast of %s from %s failed: %s", sku, origin, exc)
        self._metrics.forecast_last_run.set(time.time())
        log.info("demand forecasts from %s: %d stored (%d SKUs scanned)", origin, stored, len(per_sku))
        return stored

    @staticmethod
    def _forecast_shadow(
        shadow: _ShadowForecasts, sku: str, history: list[float], origin: date, active_p50: tuple[float, ...]
    ) -> None:
        key = (sku, origin)
        if key in shadow.p50:
            return
        try:
            fc = shadow.model.forecaster.forecast(history, origin)
        except Exception as exc:  # noqa: BLE001 (the shadow must never disturb the running model)
            log.debug("shadow demand forecast of %s failed: %s", sku, exc)
            return
        shadow.p50[key] = tuple(round(max(0.0, v), 3) for v in fc.p50)
        shadow.baseline_p50[key] = active_p50
        shadow.stats.forecasts += 1
        shadow.baseline.forecasts += 1


def _with_error(stats: StatsCounter, accuracy: tuple[float, float]) -> ModelStats:
    return stats.snapshot().model_copy(
        update={"forecast_abs_error": round(accuracy[0], 6), "forecast_actual_units": round(accuracy[1], 6)}
    )
