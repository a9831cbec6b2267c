"""Joint (multichannel) anomaly scoring of committed telemetry per device, on its own thread.

Next to :class:`~edge_agent.scoring.worker.InferenceWorker` (one score per stream), this worker
scores every stored telemetry message that carries two or more channels as one vector per device
with :class:`models.device_anomaly.DeviceScorer` (int8 LiteRT), and turns the scores into device
alerts with :class:`~edge_agent.scoring.device_alerts.DeviceAlerts` (each channel's contribution,
expected vs observed, the window). Alerts go through ``emit``
(:meth:`edge_agent.output.GatewayOutput.emit`: past the site's alert budget, stored with their
outbox record, published, synced).

Same reading rules as the stream scorer: rows are read by ``rowid`` after their commit on the
thread's own connection; at start the last ``warmup_messages`` stored messages are scored without
alerting (each device needs ``DeviceScorerConfig.warmup`` messages before its first score); more
than ``queue_size`` messages behind, the oldest are skipped and counted. A model that does not
load leaves the agent running without device scoring (``edgehouse_agent_model_loaded{task=
"device_anomaly"} 0``, the reason in ``error``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.background import BackgroundWorker
from edge_agent.config import ModelsConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.scoring.device_alerts import DeviceAlertConfig, DeviceAlerts
from edge_agent.scoring.replay import CHUNK_ROWS
from edge_agent.store import Store
from edge_agent.store.db import READER_CACHE_KIB
from edge_agent.store.telemetry import count_between, max_rowid, rows_after, warmup_start
from protocols import AlertPayload

if TYPE_CHECKING:
    from edge_agent.ingest_batch import BatchResult
    from models.device_anomaly import DeviceScorer

log = logging.getLogger(__name__)

_IDLE_POLL_S = 1.0
_ERROR_PAUSE_S = 1.0
TASK = "device_anomaly"


class DeviceScoringWorker(BackgroundWorker[None]):
    """Owns the device scorer and its thread: :meth:`start` / :meth:`stop`; :meth:`notify` after commits."""

    name = "device-scoring"

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        emit: Callable[[AlertPayload], bool],
    ) -> None:
        super().__init__(metrics, nice=config.nice)
        self._config = config
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._emit = emit
        self._scorer: DeviceScorer | None = None
        self._alerts: DeviceAlerts | None = None
        self._conn: sqlite3.Connection | None = None
        self._cursor = 0
        self._live_from = 0
        #: Why no model runs (None while one does).
        self.error: str | None = None
        self.scored = 0
        metrics.model_loaded.labels(TASK).set(0)

    @property
    def enabled(self) -> bool:
        return self._config.enabled and self._config.device_enabled

    @property
    def should_run(self) -> bool:
        return self.enabled and self._scorer is not None

    @property
    def alerts(self) -> DeviceAlerts | None:
        return self._alerts

    def on_stored(self, result: BatchResult) -> None:
        """An ingest batch committed (ingest thread): wake up when it stored telemetry."""
        if result.stored["telemetry"]:
            self.notify()

    # ----------------------------------------------------------------- lifecycle

    def _load(self) -> None:
        from models.device_anomaly import DeviceScorer, DeviceScorerConfig  # numpy: with the model
        from models.runtime import ModelLoadError, default_model_path, load_model

        path = Path(self._config.device_model) if self._config.device_model else default_model_path(TASK)
        try:
            model = load_model(path)
            scorer = DeviceScorer(model)
        except (ModelLoadError, OSError, ValueError) as exc:
            self.error = str(exc)
            log.error("device anomaly model not loaded (%s); running without device scoring", exc)
            return
        if self._config.device_threshold is not None:
            scorer = DeviceScorer(
                model, scorer.config.model_copy(update={"threshold": self._config.device_threshold})
            )
        assert isinstance(scorer.config, DeviceScorerConfig)
        self._scorer = scorer
        self._alerts = DeviceAlerts(
            self._gateway_id,
            DeviceAlertConfig(
                threshold=scorer.config.threshold,
                clear_ratio=self._config.clear_ratio,
                cooldown_ms=int(self._config.cooldown_s * 1000),
                max_devices=scorer.config.max_devices,
            ),
            model.manifest.version,
        )
        self.error = None
        self._metrics.model_loaded.labels(TASK).set(1)
        log.info(
            "device anomaly model v%d loaded (threshold %.3f)", model.manifest.version, scorer.config.threshold
        )

    def start(self) -> None:
        if not self.enabled:
            return
        if self._scorer is None:
            self._load()
        if self._scorer is None:
            return
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            self._live_from = max_rowid(conn)
            self._cursor = warmup_start(conn, self._config.warmup_messages)
        finally:
            conn.close()
        self._launch()

    def step(self, resource: None) -> None:
        self.wait_for_wake(_IDLE_POLL_S)
        self._passes(final=False)

    def finish(self, resource: None) -> None:
        self._passes(final=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _passes(self, final: bool) -> None:
        try:
            if self._conn is None:
                self._conn = self._store.connect(cache_kib=READER_CACHE_KIB)
            while self.run_pass(self._conn) and (final or not self.stopping):
                pass
        except sqlite3.Error as exc:
            self._metrics.device_errors.inc()
            log.warning("device scoring read failed (%s); retrying", exc)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if not final:
                self.sleep(_ERROR_PAUSE_S)

    # ----------------------------------------------------------------- scoring

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        if self._scorer is None:
            return False
        newest = max_rowid(conn)
        if self._cursor >= self._live_from and newest - self._cursor > self._config.queue_size:
            skip_to = newest - self._config.queue_size
            skipped = count_between(conn, self._cursor, skip_to)
            self._metrics.device_dropped.inc(skipped)
            log.warning("device scoring %d messages behind: skipped the oldest %d", newest - self._cursor, skipped)
            self._cursor = skip_to
        rows = rows_after(conn, self._cursor, CHUNK_ROWS)
        for rowid, device_id, ts, readings_json in rows:
            self._cursor = rowid
            self.score_row(device_id, int(ts), readings_json, mute=rowid <= self._live_from)
            time.sleep(0)  # hand the GIL over to ingest after every message
        return len(rows) == CHUNK_ROWS

    def score_row(self, device_id: str, ts: int, readings_json: str, mute: bool = False) -> AlertPayload | None:
        """Score one stored message (``readings_json``: its ``readings`` column); the alert it emitted."""
        import json

        scorer, alerts, m = self._scorer, self._alerts, self._metrics
        assert scorer is not None and alerts is not None
        try:
            values = {str(k): float(v) for k, v in json.loads(readings_json).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            m.device_errors.inc()
            log.warning("telemetry of %s at %d unreadable for device scoring: %s", device_id, ts, exc)
            return None
        if len(values) < 2:
            return None
        try:
            result = scorer.score(device_id, values)
        except Exception as exc:  # noqa: BLE001 (one bad message must not stop scoring)
            m.device_errors.inc()
            log.warning("device scoring of %s at %d failed: %s", device_id, ts, exc)
            return None
        if result is None:
            return None
        m.device_scored.inc()
        self.scored += 1
        suppressed = alerts.suppressed
        alert = alerts.observe(device_id, ts, result)
        if alerts.suppressed != suppressed:
            m.device_suppressed.inc()
        if alert is None or mute:
            return None
        try:
            new = self._emit(alert)
        except Exception as exc:  # noqa: BLE001 (storage trouble: logged, scoring goes on)
            m.device_errors.inc()
            log.error("device alert %s not stored: %s", alert.alert_id, exc)
            return None
        if new:
            m.device_alerts.labels(alert.state).inc()
            log.info("device alert %s: %s", alert.state, alert.message)
        return alert
