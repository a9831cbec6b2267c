"""Daily per-SKU demand forecasts from the stored scans, on their own thread.

Once per UTC day (at start, then whenever the date changes) the thread sums each SKU's scanned
units of ``models.demand_direction`` per UTC day, up to yesterday, and forecasts the next 28 days
from today with :class:`models.demand.DemandForecaster` (int8 LiteRT). Each forecast is a
:class:`~protocols.ForecastPayload` (P50, P90) handed to ``emit`` (``Agent.enqueue_forecast``:
store + outbox, then MQTT publish). Its id is ``demand:{sku}:{origin}``, so a restart on the same
day stores nothing twice. A SKU is forecast once it has ``forecast_min_history_days`` days since
its first scan. A model that does not load leaves the agent running without forecasts (logged,
``edgehouse_agent_model_loaded{task="demand"} 0``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from prometheus_client import Counter, Gauge

from edge_agent.clock import now_ms
from edge_agent.config import ModelsConfig
from edge_agent.metrics import PREFIX, AgentMetrics
from edge_agent.store import Store
from models.demand import DemandForecaster
from models.runtime import ModelLoadError, default_model_path, load_model
from protocols import ForecastPayload

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


class ForecastWorker:
    """Owns the demand forecaster and its thread; :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        site: str,
        store: Store,
        metrics: AgentMetrics,
        model_loaded: Gauge,
        emit: Callable[[ForecastPayload], bool],
        today: Callable[[], date] = utc_today,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._config = config
        self._gateway_id = gateway_id
        self._site = site
        self._store = store
        self._emit = emit
        self._today = today
        self._clock_ms = clock_ms
        self._model_path = Path(config.demand_model) if config.demand_model else default_model_path("demand")
        r = metrics.registry
        self._loaded = model_loaded
        self._forecasts = Counter(f"{PREFIX}_forecasts", "Demand forecasts stored (new)", registry=r)
        self._errors = Counter(f"{PREFIX}_forecast_errors", "SKUs or runs whose forecast failed", registry=r)
        self._last_run = Gauge(
            f"{PREFIX}_forecast_last_run_timestamp_seconds", "End of the last forecast run", registry=r
        )
        self._loaded.labels("demand").set(0)
        self._forecaster: DemandForecaster | None = None
        self._done: date | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def enabled(self) -> bool:
        return self._config.enabled and self._config.forecast_enabled

    def start(self) -> None:
        """Load the model and start the daily runs; a model that fails to load is logged, not raised."""
        if self._thread is not None:
            raise RuntimeError("forecasting already started")
        if not self.enabled:
            return
        try:
            self._forecaster = DemandForecaster(load_model(self._model_path))
        except (ModelLoadError, OSError, ValueError) as exc:
            self.error = str(exc)
            log.error("demand model %s not loaded, forecasting is off: %s", self._model_path, exc)
            return
        self.error = None
        self._loaded.labels("demand").set(1)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-forecast", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("forecast thread did not stop within %.1fs", timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def should_run(self) -> bool:
        return self.enabled and self._forecaster is not None

    def _run(self) -> None:
        while not self._stop.is_set():
            origin = self._today()
            wait = _CHECK_S
            if self._done != origin:
                try:
                    self.run_once(origin)
                    self._done = origin
                except sqlite3.Error as exc:
                    self._errors.inc()
                    log.warning("forecast run for %s failed (%s); retrying in %.0fs", origin, exc, _RETRY_S)
                    wait = _RETRY_S
            self._stop.wait(wait)

    def run_once(self, origin: date) -> int:
        """Forecast every SKU with enough history from ``origin``; return the forecasts stored."""
        forecaster = self._forecaster
        if forecaster is None:
            return 0
        cfg = self._config
        lookback = max(forecaster.features.year_lag, forecaster.features.smoothing_span) + 28
        conn = self._store.connect()
        try:
            per_sku = daily_units(conn, cfg.demand_direction, origin, lookback)
        finally:
            conn.close()
        version = forecaster.model.manifest.version
        stored = 0
        for sku in sorted(per_sku):
            if self._stop.is_set():
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
                    self._forecasts.inc()
            except Exception as exc:  # noqa: BLE001 (one SKU must not stop the others)
                self._errors.inc()
                log.warning("demand forecast of %s from %s failed: %s", sku, origin, exc)
        self._last_run.set(time.time())
        log.info("demand forecasts from %s: %d stored (%d SKUs scanned)", origin, stored, len(per_sku))
        return stored
