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

It is the ``device_anomaly`` :class:`~edge_agent.updates.slot.ModelSlot` of the model updater, a
:class:`~edge_agent.scoring.reader.TelemetryReader` like the stream scorer: at start the installed
model, the installed previous one, then the configured or shipped model; a signed release is
loaded on the updater's thread and warmed up there on the stored messages the running model has
seen (each device calibrated on its last ``DeviceScorerConfig.warmup`` of them), then swapped in (or
run in shadow) by the scoring thread between two messages; a raised device alert stays raised until
the new model clears it. Its statistics (messages, device alerts,
devices and device-days, errors) go into the model report for the rollout gates.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.scoring.device_alerts import DeviceAlertConfig, DeviceAlerts
from edge_agent.scoring.reader import TelemetryReader
from edge_agent.scoring.replay import CHUNK_ROWS, RowScorer
from edge_agent.store.telemetry import max_rowid, rows_after
from edge_agent.updates.slot import ModelInfo, Shadow, load_slot_model
from edge_agent.updates.stats import StatsCounter
from protocols import AlertPayload

if TYPE_CHECKING:
    from models.device_anomaly import DeviceScorer

log = logging.getLogger(__name__)

TASK = "device_anomaly"


@dataclass(slots=True)
class _DeviceModel:
    scorer: DeviceScorer
    info: ModelInfo
    #: Prepared on the updater's thread: warmed up on the stored rows up to here.
    warmed_to: int = 0


@dataclass(slots=True)
class _DeviceShadow(Shadow[_DeviceModel]):
    """A candidate scored next to the running model; its alerts are counted, never emitted."""

    alerts: DeviceAlerts


class DeviceScoringWorker(TelemetryReader[_DeviceModel, _DeviceShadow]):
    """Owns the device scorer and its thread: :meth:`start` / :meth:`stop`; :meth:`notify` after commits."""

    name = "device-scoring"
    task = TASK
    work = "device scoring"
    reading = "device scoring read"

    model_option = "device_model"
    _alerts: DeviceAlerts | None = None
    #: Messages scored jointly (for tests and status).
    scored = 0

    @property
    def enabled(self) -> bool:
        return self._config.enabled and self._config.device_enabled

    @property
    def alerts(self) -> DeviceAlerts | None:
        return self._alerts

    # ----------------------------------------------------------------- models

    def _load(self, source: ModelInfo | Path) -> _DeviceModel:
        from models.device_anomaly import DeviceScorer  # numpy: with the model

        model, info = load_slot_model(TASK, source)
        scorer = DeviceScorer(model)
        if self._config.device_threshold is not None:
            scorer = DeviceScorer(model, scorer.config.model_copy(update={"threshold": self._config.device_threshold}))
        return _DeviceModel(scorer, info)

    def _alert_config(self, model: _DeviceModel) -> DeviceAlertConfig:
        return DeviceAlertConfig(
            threshold=model.scorer.config.threshold,
            clear_ratio=self._config.clear_ratio,
            cooldown_ms=int(self._config.cooldown_s * 1000),
            max_devices=model.scorer.config.max_devices,
            confirm=self._config.device_confirm_messages,
        )

    def _activated(self, model: _DeviceModel) -> None:
        if self._alerts is None:
            self._alerts = DeviceAlerts(self._gateway_id, self._alert_config(model), model.info.version)
        else:  # raised device alerts stay raised; the new model clears them
            self._alerts.retarget(self._alert_config(model), model.info.version)

    def _loaded_note(self, model: _DeviceModel) -> str:
        return f" (threshold {model.scorer.config.threshold:.3f})"

    def _shadow_of(self, model: _DeviceModel, stats: StatsCounter, baseline: StatsCounter) -> _DeviceShadow:
        alerts = DeviceAlerts(self._gateway_id, self._alert_config(model), model.info.version)
        return _DeviceShadow(model, stats, baseline, alerts)

    def rows_of(self, model: _DeviceModel) -> RowScorer:
        """A stored message of two or more channels scored by ``model`` (warm-up: the result unused)."""
        scorer = model.scorer

        def score_row(device_id: str, ts: int, readings_json: str) -> int:
            try:
                values = {str(k): float(v) for k, v in json.loads(readings_json).items()}
                return int(len(values) >= 2 and scorer.score(device_id, values) is not None)
            except Exception:  # noqa: BLE001 (a warm-up never stops on one bad message)
                return 0

        return score_row

    def read_failed(self) -> None:
        self._metrics.device_errors.inc()

    # ----------------------------------------------------------------- scoring

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        if self._pending is not None:
            self._apply_pending(conn)
        if self._active is None or self._alerts is None:
            return False
        newest = max_rowid(conn)
        self._metrics.device_dropped.inc(self._skip_behind(conn, newest))
        rows = rows_after(conn, self._cursor, CHUNK_ROWS)
        for rowid, device_id, ts, readings_json in rows:
            if self._pending is not None:  # a model swap: here, between two messages
                self._apply_pending(conn)
            self._cursor = rowid
            self.score_row(device_id, int(ts), readings_json, mute=rowid <= self._live_from)
            time.sleep(0)  # hand the GIL over to ingest after every message
        return len(rows) == CHUNK_ROWS

    def score_row(self, device_id: str, ts: int, readings_json: str, mute: bool = False) -> AlertPayload | None:
        """Score one stored message (``readings_json``: its ``readings`` column); the alert it emitted."""
        active, alerts, m = self._active, self._alerts, self._metrics
        assert active is not None and alerts is not None
        scorer = active.scorer
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
            if self._stats is not None and not mute:
                self._stats.errors += 1
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
        raised = alert is not None and alert.state == "raised"
        warm = scorer.is_warm(device_id)
        if self._shadow is not None:
            self._score_shadow(self._shadow, device_id, ts, values, mute or not warm, raised, result.alert)
        if mute:
            return None
        stats = self._stats
        if stats is not None and warm:
            stats.observe_device(device_id, ts)
            stats.readings += 1
            stats.alerts_raised += raised
            stats.alert_readings += int(result.alert)
        if alert is None:
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

    def _score_shadow(
        self,
        shadow: _DeviceShadow,
        device_id: str,
        ts: int,
        values: dict[str, float],
        mute: bool,
        active_raised: bool,
        active_alerting: bool,
    ) -> None:
        try:
            result = shadow.model.scorer.score(device_id, values)
        except Exception as exc:  # noqa: BLE001 (the shadow must never disturb the running model)
            self._metrics.device_errors.inc()
            log.debug("shadow device scoring of %s failed: %s", device_id, exc)
            return
        if result is None:
            return
        alert = shadow.alerts.observe(device_id, ts, result)
        if mute or not shadow.model.scorer.is_warm(device_id):
            return
        shadow.stats.observe_device(device_id, ts)
        shadow.baseline.observe_device(device_id, ts)
        shadow.stats.readings += 1
        shadow.stats.alerts_raised += int(alert is not None and alert.state == "raised")
        shadow.stats.alert_readings += int(result.alert)
        shadow.baseline.readings += 1
        shadow.baseline.alerts_raised += active_raised
        shadow.baseline.alert_readings += int(active_alerting)
