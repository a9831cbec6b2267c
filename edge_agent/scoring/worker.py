"""Anomaly scoring of committed telemetry on its own thread, with hysteresis and a cool-down.

The ingest thread only wakes this thread after a batch commits (:meth:`InferenceWorker.notify`);
it never waits for the model. The scoring thread reads the telemetry committed since its last
pass (by ``rowid``, on its own read connection: :mod:`edge_agent.store.telemetry`), scores every
reading per ``(device_id, metric)`` stream with :class:`models.anomaly.AnomalyScorer` (int8
LiteRT) and turns the scores into raised / cleared :class:`~protocols.AlertPayload` objects with
:class:`~edge_agent.scoring.hysteresis.AlertHysteresis`. Each alert goes through ``emit``
(:meth:`edge_agent.output.GatewayOutput.emit`: store + outbox in one transaction, MQTT publish,
wake the sync; offline, the outbox syncs later).

Scoring may fall behind by at most ``queue_size`` committed messages; beyond that the oldest
are skipped and counted, so a slow gateway loses scores, never ingest throughput. A model that
does not load leaves the agent running without scoring: the error is logged, kept in
``error`` and shown as ``edgehouse_agent_model_loaded{task="anomaly"} 0``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.scoring.hysteresis import AlertHysteresis, HysteresisConfig
from edge_agent.scoring.reader import TelemetryReader
from edge_agent.scoring.replay import CHUNK_ROWS, RowScorer, stream_rows
from edge_agent.store.telemetry import (
    Reading,
    max_rowid,
    readings_of,
    rows_after,
)
from edge_agent.updates.slot import ModelInfo, Shadow, load_slot_model
from edge_agent.updates.stats import StatsCounter

if TYPE_CHECKING:
    from models.anomaly import AnomalyScorer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Scoring:
    """A loaded scorer with what its alerts need."""

    scorer: AnomalyScorer
    threshold: float
    info: ModelInfo
    #: Prepared on the updater's thread: warmed up on the stored rows up to here.
    warmed_to: int = 0


@dataclass(slots=True)
class _Shadow(Shadow[_Scoring]):
    """A candidate scored next to the running model; its alerts are counted, never emitted."""

    alerts: AlertHysteresis


class InferenceWorker(TelemetryReader[_Scoring, _Shadow]):
    """Owns the anomaly scorer and its thread. :meth:`start` / :meth:`stop`; :meth:`notify` after commits.

    Also the anomaly :class:`~edge_agent.updates.slot.ModelSlot`: a new model is loaded and warmed
    up on the updater's thread (:meth:`prepare`), then swapped in by the scoring thread between
    two telemetry rows (:meth:`install`): every stored reading is scored by exactly one active
    model, none is skipped or waits for a model load.
    """

    name = "inference"
    task = "anomaly"
    work = "anomaly scoring"
    reading = "inference read"
    model_option = "anomaly_model"
    _alerts: AlertHysteresis | None = None

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    @property
    def threshold(self) -> float | None:
        """The alert threshold of the running model (None: none runs)."""
        alerts = self._alerts
        return alerts.config.threshold if alerts is not None else None

    # ----------------------------------------------------------------- models

    def _load(self, source: ModelInfo | Path) -> _Scoring:
        from models.anomaly import AnomalyScorer, AnomalyScorerConfig  # numpy: with the first model

        model, info = load_slot_model("anomaly", source)
        threshold = self._config.threshold
        if threshold is None:
            defaults = model.manifest.anomaly_defaults
            threshold = defaults.threshold if defaults is not None else AnomalyScorerConfig().threshold
        scorer = AnomalyScorer(model, AnomalyScorerConfig(threshold=threshold))
        return _Scoring(scorer, threshold, info)

    def _hysteresis_config(self, scoring: _Scoring) -> HysteresisConfig:
        return HysteresisConfig(
            threshold=scoring.threshold,
            clear_ratio=self._config.clear_ratio,
            cooldown_ms=int(self._config.cooldown_s * 1000),
            window=scoring.scorer.features.window,
            max_streams=scoring.scorer.config.max_streams,
        )

    def _activated(self, model: _Scoring) -> None:
        if self._alerts is None:
            self._alerts = AlertHysteresis(
                self._gateway_id, self._hysteresis_config(model), model.info.version
            )
        else:  # raised alerts stay raised; the new model clears them
            self._alerts.retarget(self._hysteresis_config(model), model.info.version)

    def _loaded_note(self, model: _Scoring) -> str:
        clear_below = self._alerts.config.clear_below if self._alerts else 0.0
        return f" (threshold {model.threshold:.3f}, clear below {clear_below:.3f})"

    def _shadow_of(self, model: _Scoring, stats: StatsCounter, baseline: StatsCounter) -> _Shadow:
        alerts = AlertHysteresis(self._gateway_id, self._hysteresis_config(model), model.info.version)
        return _Shadow(model, stats, baseline, alerts)

    # ----------------------------------------------------------------- the model slot (updater thread)

    def rows_of(self, model: _Scoring) -> RowScorer:
        return stream_rows(model.scorer)

    # ----------------------------------------------------------------- the thread

    def read_failed(self) -> None:
        self._metrics.inference_errors.inc()

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        m = self._metrics
        if self._pending is not None:
            self._apply_pending(conn)
        if self._active is None or self._alerts is None:
            return False
        newest = max_rowid(conn)
        m.inference_dropped.inc(self._skip_behind(conn, newest))
        rows = rows_after(conn, self._cursor, CHUNK_ROWS)
        for rowid, device_id, ts, readings_json in rows:
            if self._pending is not None:  # a model swap: here, between two rows
                self._apply_pending(conn)
            self._cursor = rowid
            try:
                readings = readings_of(device_id, ts, readings_json)
            except (ValueError, TypeError, AttributeError) as exc:
                m.inference_errors.inc()
                log.warning("telemetry row %d unreadable for scoring: %s", rowid, exc)
                continue
            mute = rowid <= self._live_from
            for reading in readings:
                self._score(reading, mute)
            # Hand the GIL over after every message: the ingest thread, back from SQLite, must not
            # wait out a whole switch interval (5 ms) behind pure-Python scoring.
            time.sleep(0)
        m.inference_backlog.set(max(0, newest - self._cursor))
        return len(rows) == CHUNK_ROWS

    def _score(self, reading: Reading, mute: bool) -> None:
        active, alerts, shadow, m = self._active, self._alerts, self._shadow, self._metrics
        assert active is not None and alerts is not None
        key = f"{reading.device_id}/{reading.metric}"
        started = time.perf_counter()
        try:
            result = active.scorer.score(key, reading.ts, reading.value)
        except Exception as exc:  # noqa: BLE001 (one bad reading must not stop scoring)
            m.inference_errors.inc()
            if self._stats is not None:
                self._stats.errors += 1
            log.warning("scoring %s/%s at %d failed: %s", reading.device_id, reading.metric, reading.ts, exc)
            return
        m.inference_score_seconds.observe(time.perf_counter() - started)
        (m.inference_warmup if mute else m.inference_scored).inc()
        suppressed = alerts.suppressed
        alert = alerts.observe(reading, result)
        if alerts.suppressed != suppressed:
            m.inference_suppressed.inc()
        raised = alert is not None and alert.state == "raised"
        if shadow is not None:
            # Compared like for like: only readings both models score past their warm-up.
            both_warm = active.scorer.is_warm(key)
            self._score_shadow(
                shadow, reading, key, mute or not both_warm, raised, result.score >= alerts.config.threshold
            )
        if mute:
            return
        stats = self._stats
        if stats is not None:
            stats.readings += 1
            stats.alerts_raised += raised
            stats.alert_readings += int(result.score >= alerts.config.threshold)
        if alert is None:
            return
        try:
            new = self._emit(alert)
        except Exception as exc:  # noqa: BLE001 (storage trouble: logged, scoring goes on)
            m.inference_errors.inc()
            log.error("anomaly alert %s not stored: %s", alert.alert_id, exc)
            return
        if new:
            m.inference_alerts.labels(alert.state).inc()
            log.info("anomaly alert %s: %s", alert.state, alert.message)

    def _score_shadow(
        self,
        shadow: _Shadow,
        reading: Reading,
        key: str,
        mute: bool,
        active_raised: bool,
        active_alerting: bool,
    ) -> None:
        try:
            result = shadow.model.scorer.score(key, reading.ts, reading.value)
        except Exception as exc:  # noqa: BLE001 (the shadow must never disturb the running model)
            self._metrics.inference_errors.inc()
            log.debug("shadow scoring of %s failed: %s", key, exc)
            return
        alert = shadow.alerts.observe(reading, result)
        if mute or not shadow.model.scorer.is_warm(key):
            return
        shadow.stats.readings += 1
        shadow.stats.alerts_raised += int(alert is not None and alert.state == "raised")
        shadow.stats.alert_readings += int(result.score >= shadow.alerts.config.threshold)
        shadow.baseline.readings += 1
        shadow.baseline.alerts_raised += active_raised
        shadow.baseline.alert_readings += int(active_alerting)
