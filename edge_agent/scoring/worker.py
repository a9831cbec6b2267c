"""Anomaly scoring of committed telemetry on its own thread, with hysteresis and a cool-down.

The ingest thread only sets an event after a batch commits (:meth:`InferenceWorker.notify`); it
never waits for the model. The inference thread reads the telemetry committed since its last
pass (by ``rowid``, on its own read connection), scores every reading per ``(device_id,
metric)`` stream with :class:`models.anomaly.AnomalyScorer` (int8 LiteRT) and turns the scores
into raised / cleared :class:`~protocols.AlertPayload` objects with :class:`AlertHysteresis`.
Each alert goes through ``emit`` (``Agent.enqueue_alert``: store + outbox in one transaction,
then MQTT publish; offline, the outbox syncs later).

Scoring may fall behind by at most ``queue_size`` committed messages; beyond that the oldest
are skipped and counted, so a slow gateway loses scores, never ingest throughput. A model that
does not load leaves the agent running without scoring: the error is logged, kept in
``error`` and shown as ``edgehouse_agent_model_loaded{task="anomaly"} 0``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge_agent.clock import now_ms
from edge_agent.config import ModelsConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.priority import lower_thread_priority
from edge_agent.scoring.hysteresis import AlertHysteresis, HysteresisConfig
from edge_agent.scoring.replay import CHUNK_ROWS, replay, warm_up
from edge_agent.store import Store
from edge_agent.store.db import READER_CACHE_KIB
from edge_agent.store.telemetry import (
    Reading,
    count_between,
    max_rowid,
    readings_of,
    rows_after,
    warmup_start,
)
from edge_agent.updates.slot import (
    InstallMode,
    ModelInfo,
    SlotStats,
    StatsCounter,
    load_slot_model,
    resumed_pair,
)
from models.manifest import ModelLoadError, default_model_path
from protocols import AlertPayload, ModelStats

if TYPE_CHECKING:
    from models.anomaly import AnomalyScorer

log = logging.getLogger(__name__)

#: Poll interval when no commit notified us (the notification is the fast path).
_IDLE_POLL_S = 1.0
_ERROR_PAUSE_S = 1.0


@dataclass(slots=True)
class _Scoring:
    """A loaded scorer with what its alerts need."""

    scorer: AnomalyScorer
    threshold: float
    info: ModelInfo


@dataclass(slots=True)
class _Shadow:
    """A candidate scored next to the running model; its alerts are counted, never emitted."""

    scoring: _Scoring
    alerts: AlertHysteresis
    stats: StatsCounter
    #: The running model over exactly the readings the shadow scored.
    baseline: StatsCounter


@dataclass(slots=True)
class _Prepared:
    """A model loaded and warmed up (on the updater's thread) on the stored rows up to ``warmed_to``."""

    scoring: _Scoring
    warmed_to: int


@dataclass(slots=True)
class _Pending:
    """A swap for the inference thread to make at its next row boundary."""

    kind: Literal["active", "shadow", "promote", "drop_shadow"]
    prepared: _Prepared | None = None
    info: ModelInfo | None = None
    done: threading.Event = field(default_factory=threading.Event)


class InferenceWorker:
    """Owns the anomaly scorer and its thread. :meth:`start` / :meth:`stop`; :meth:`notify` after commits.

    Also the anomaly :class:`~edge_agent.updates.slot.ModelSlot`: a new model is loaded and warmed
    up on the updater's thread (:meth:`prepare`), then swapped in by the inference thread between
    two telemetry rows (:meth:`install`): every stored reading is scored by exactly one active
    model, none is skipped or waits for a model load.
    """

    task = "anomaly"

    def __init__(
        self,
        config: ModelsConfig,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        emit: Callable[[AlertPayload], bool],
        installed: Sequence[ModelInfo] = (),
        installed_shadow: ModelInfo | None = None,
        clock_ms: Callable[[], int] = now_ms,
        saved_stats: SlotStats | None = None,
    ) -> None:
        self._config = config
        #: Statistics saved before the last stop: resumed by the models loaded at start.
        self._saved = saved_stats
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._emit = emit
        self._clock_ms = clock_ms
        self._model_path = (
            Path(config.anomaly_model) if config.anomaly_model else default_model_path("anomaly")
        )
        self._installed = list(installed)
        self._installed_shadow = installed_shadow
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._active: _Scoring | None = None
        self._alerts: AlertHysteresis | None = None
        self._shadow: _Shadow | None = None
        self._pending: _Pending | None = None
        self._swap_lock = threading.Lock()
        #: Longest swap the scoring thread made between two rows (seconds).
        self.max_swap_pause_s = 0.0
        self._stats: StatsCounter | None = None
        self._previous_stats: ModelStats | None = None
        self._cursor = 0
        #: Rows up to here were stored before start: scored to warm the streams up, never alerted on.
        self._live_from = 0
        self.error: str | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Load the model and start scoring; a model that fails to load is logged, not raised.

        Tried in order: the installed current model, the installed previous one, then
        ``models.anomaly_model`` (or the shipped one); each failure is logged and counted
        (``edgehouse_agent_model_load_failures_total{task="anomaly"}``).
        """
        if self._thread is not None:
            raise RuntimeError("inference already started")
        if not self._config.enabled:
            log.info("models disabled: no anomaly scoring")
            return
        if not self._load():
            return
        if self._installed_shadow is not None:
            try:
                scoring = self._scoring(self._installed_shadow)
                self._shadow = self._new_shadow(scoring)
            except (ModelLoadError, OSError, ValueError) as exc:
                self._metrics.model_load_failures.labels("anomaly").inc()
                log.error("anomaly shadow model %s not loaded: %s", self._installed_shadow.path, exc)
        self._saved = None  # models installed from now on count from zero
        self._start_thread()

    def _start_thread(self) -> None:
        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
        try:
            self._live_from = max_rowid(conn)
            self._cursor = warmup_start(conn, self._config.warmup_messages)
        finally:
            conn.close()
        if self._cursor < self._live_from:
            log.info("anomaly scoring: warming up on %d stored messages", self._live_from - self._cursor)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edge-inference", daemon=True)
        self._thread.start()

    def _candidates(self) -> list[ModelInfo | Path]:
        return [*self._installed, self._model_path]

    def _load(self) -> bool:
        errors = []
        for candidate in self._candidates():
            try:
                scoring = self._scoring(candidate)
            except (ModelLoadError, OSError, ValueError) as exc:
                path = candidate.path if isinstance(candidate, ModelInfo) else candidate
                errors.append(str(exc))
                self._metrics.model_load_failures.labels("anomaly").inc()
                log.error("anomaly model %s not loaded: %s", path, exc)
                continue
            self._activate(scoring)
            self.error = None
            log.info(
                "anomaly model %s v%d loaded (threshold %.3f, clear below %.3f)",
                scoring.info.path,
                scoring.info.version,
                scoring.threshold,
                self._alerts.config.clear_below if self._alerts else 0.0,
            )
            return True
        self.error = "; ".join(errors)
        log.error("no anomaly model loaded, anomaly scoring is off")
        return False

    def _scoring(self, source: ModelInfo | Path) -> _Scoring:
        """Load a model and build its scorer (any thread)."""
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

    def _activate(self, scoring: _Scoring) -> None:
        """Make ``scoring`` the active model (on the inference thread once it runs)."""
        if self._stats is not None:
            self._previous_stats = self._stats.snapshot()
        self._active = scoring
        if self._alerts is None:
            self._alerts = AlertHysteresis(
                self._gateway_id, self._hysteresis_config(scoring), scoring.info.version
            )
        else:  # raised alerts stay raised; the new model clears them
            self._alerts.retarget(self._hysteresis_config(scoring), scoring.info.version)
        saved = self._saved
        self._stats = StatsCounter.resume(
            scoring.info.version, self._clock_ms(), saved.active if saved is not None else None
        )
        if saved is not None and self._previous_stats is None:
            self._previous_stats = saved.previous
        self._metrics.model_loaded.labels("anomaly").set(1)
        self._metrics.model_version.labels("anomaly").set(scoring.info.version)

    def _new_shadow(self, scoring: _Scoring) -> _Shadow:
        active = self._active
        assert active is not None
        shadow, baseline = resumed_pair(
            self._saved, scoring.info.version, active.info.version, self._clock_ms()
        )
        return _Shadow(
            scoring,
            AlertHysteresis(self._gateway_id, self._hysteresis_config(scoring), scoring.info.version),
            shadow,
            baseline,
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Score what was committed before the call (bounded by ``timeout_s``), then end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("inference thread did not stop within %.1fs", timeout_s)
            self._thread = None

    def notify(self) -> None:
        """Telemetry was committed (called on the ingest thread: sets an event, nothing more)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def should_run(self) -> bool:
        """Enabled and loaded: a stopped thread then is a fault (for ``/healthz``)."""
        return self._config.enabled and self._active is not None

    @property
    def threshold(self) -> float | None:
        """The alert threshold of the running model (None: none runs)."""
        alerts = self._alerts
        return alerts.config.threshold if alerts is not None else None

    # ----------------------------------------------------------------- the model slot (updater thread)

    @property
    def accepts_models(self) -> bool:
        return self._config.enabled

    def running_model(self) -> ModelInfo | None:
        active = self._active
        return active.info if active is not None else None

    def shadow_model(self) -> ModelInfo | None:
        shadow = self._shadow
        pending = self._pending
        if pending is not None and pending.kind == "shadow" and pending.prepared is not None:
            return pending.prepared.scoring.info
        return shadow.scoring.info if shadow is not None else None

    def prepare(self, info: ModelInfo) -> _Prepared:
        """Load ``info`` and warm its streams up on the stored rows the running model has seen."""
        scoring = self._scoring(info)
        warmed_to = self._cursor
        if self._config.warmup_messages > 0 and warmed_to > 0:
            conn = self._store.connect(cache_kib=READER_CACHE_KIB)
            try:
                n, warmed_to = warm_up(
                    conn, scoring.scorer, self._config.warmup_messages, lambda: self._cursor
                )
            finally:
                conn.close()
            log.info("anomaly model v%d warmed up on %d stored readings", info.version, n)
        return _Prepared(scoring, warmed_to)

    def install(self, prepared: object, mode: InstallMode, timeout_s: float = 30.0) -> bool:
        assert isinstance(prepared, _Prepared)
        if not self.running:
            if mode == "shadow":
                raise ModelLoadError("anomaly scoring is not running: nothing to compare a shadow with")
            # Nothing scores yet (no model loaded at start): this model starts the thread.
            self._activate(prepared.scoring)
            self._shadow = None
            self.error = None
            self._metrics.model_swaps.labels("anomaly").inc()
            self._start_thread()
            return True
        return self._hand_over(_Pending(mode, prepared=prepared), timeout_s)

    def promote_shadow(self, info: ModelInfo, timeout_s: float = 30.0) -> bool:
        return self._hand_over(_Pending("promote", info=info), timeout_s)

    def drop_shadow(self) -> None:
        if self.running:
            self._hand_over(_Pending("drop_shadow"), 10.0)
        else:
            self._shadow = None

    def relabel(self, info: ModelInfo) -> None:
        active = self._active
        if active is not None and active.info.sha256 == info.sha256:
            active.info = info

    def model_stats(self) -> SlotStats:
        stats, shadow = self._stats, self._shadow
        return SlotStats(
            active=stats.snapshot() if stats is not None else None,
            shadow=shadow.stats.snapshot() if shadow is not None else None,
            baseline=shadow.baseline.snapshot() if shadow is not None else None,
            previous=self._previous_stats,
        )

    def _hand_over(self, pending: _Pending, timeout_s: float) -> bool:
        with self._swap_lock:
            self._pending = pending
        self._wake.set()
        return pending.done.wait(timeout_s)

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        lower_thread_priority(self._config.nice)  # ingest and MQTT first on a shared core
        conn: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.is_set()
                if not stopping:
                    self._wake.wait(_IDLE_POLL_S)
                    self._wake.clear()
                try:
                    if conn is None:
                        conn = self._store.connect(cache_kib=READER_CACHE_KIB)
                    # While stopping: a final drain, bounded by queue_size (run_pass skips the rest).
                    while self.run_pass(conn) and (stopping or not self._stop.is_set()):
                        pass
                except sqlite3.Error as exc:
                    self._metrics.inference_errors.inc()
                    log.warning("inference read failed (%s); retrying", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    if stopping or self._stop.wait(_ERROR_PAUSE_S):
                        return
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _apply_pending(self, conn: sqlite3.Connection) -> None:
        """Make the requested swap (inference thread, between two rows)."""
        with self._swap_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        started = time.perf_counter()
        try:
            prepared = pending.prepared
            if prepared is not None and prepared.warmed_to < self._cursor:
                # Rows the running model scored while the new one was warming up.
                replay(conn, prepared.scoring.scorer, prepared.warmed_to, self._cursor)
            if pending.kind == "active" and prepared is not None:
                self._activate(prepared.scoring)
                self._shadow = None
                self._metrics.model_swaps.labels("anomaly").inc()
            elif pending.kind == "shadow" and prepared is not None:
                self._shadow = self._new_shadow(prepared.scoring)
            elif pending.kind == "promote" and self._shadow is not None:
                scoring = self._shadow.scoring
                if pending.info is not None:
                    scoring.info = pending.info
                self._shadow = None
                self._activate(scoring)
                self._metrics.model_swaps.labels("anomaly").inc()
            elif pending.kind == "drop_shadow":
                self._shadow = None
        finally:
            pending.done.set()
            self.max_swap_pause_s = max(self.max_swap_pause_s, time.perf_counter() - started)
            self._metrics.model_swap_max_pause.labels("anomaly").set(self.max_swap_pause_s)

    def run_pass(self, conn: sqlite3.Connection) -> bool:
        """Score up to one chunk of newly committed telemetry; True when more is waiting."""
        m = self._metrics
        if self._pending is not None:
            self._apply_pending(conn)
        if self._active is None or self._alerts is None:
            return False
        newest = max_rowid(conn)
        warming = self._cursor < self._live_from
        if not warming and newest - self._cursor > self._config.queue_size:
            skip_to = newest - self._config.queue_size
            skipped = count_between(conn, self._cursor, skip_to)
            if skipped:
                m.inference_dropped.inc(skipped)
                log.warning(
                    "anomaly scoring %d messages behind: skipped the oldest %d",
                    newest - self._cursor,
                    skipped,
                )
            self._cursor = skip_to
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
            stats.alert_readings += result.score >= alerts.config.threshold
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
            result = shadow.scoring.scorer.score(key, reading.ts, reading.value)
        except Exception as exc:  # noqa: BLE001 (the shadow must never disturb the running model)
            self._metrics.inference_errors.inc()
            log.debug("shadow scoring of %s failed: %s", key, exc)
            return
        alert = shadow.alerts.observe(reading, result)
        if mute or not shadow.scoring.scorer.is_warm(key):
            return
        shadow.stats.readings += 1
        shadow.stats.alerts_raised += alert is not None and alert.state == "raised"
        shadow.stats.alert_readings += result.score >= shadow.alerts.config.threshold
        shadow.baseline.readings += 1
        shadow.baseline.alerts_raised += active_raised
        shadow.baseline.alert_readings += active_alerting
