"""Composition root: builds the components and owns the start and stop order.

Start: store (+ WAL checkpointer) -> housekeeping -> models (anomaly scoring, forecasts; the
installed update first) -> model updater -> http -> ingest -> sync -> commands -> mqtt
(subscriptions last, so nothing arrives before it can be stored or dispatched).
Stop: close MQTT intake -> commands -> model updater (an interrupted download resumes at the next
start) -> drain, commit and ack the queue -> score what was committed, stop the forecasts -> one
last sync round (bounded) -> offline status + clean MQTT disconnect -> housekeeping ->
checkpointer -> http -> runtime file. Each component opens and closes its own database connection.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from edge_agent import runtime
from edge_agent.clock import now_ms
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.forecasting import ForecastWorker
from edge_agent.housekeeping import Housekeeper
from edge_agent.http import StatusServer
from edge_agent.inbound import Inbound
from edge_agent.ingest import Ingest
from edge_agent.ingest_batch import BatchResult
from edge_agent.metrics import AgentMetrics
from edge_agent.mqtt import MqttLink
from edge_agent.scoring.worker import InferenceWorker
from edge_agent.status import AgentStatus, StatusProbe
from edge_agent.store import Checkpointer, Store, gateway_output
from edge_agent.sync import SyncWorker
from edge_agent.updates import InstallState, StateFile, saved_stats, startup_models
from edge_agent.updates.updater import ModelUpdater
from protocols import AlertPayload, ForecastPayload, GatewayTopicKind, encode, gateway_topic

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig, metrics: AgentMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.store = Store(config.db_path, config.store.synchronous)
        self.checkpointer = Checkpointer(self.store, self.metrics)
        self.intake_paused = threading.Event()
        # Twice the Receive Maximum: redeliveries after a reconnect can join messages still queued.
        self._inbox: queue.Queue[Inbound] = queue.Queue(maxsize=2 * config.receive_maximum)
        self.mqtt = MqttLink(config, self._inbox, self.metrics)
        self.sync: SyncWorker | None = (
            SyncWorker(
                config.cloud, config.gateway_id, self.store, self.metrics, raise_alert=self.enqueue_alert
            )
            if config.cloud.enabled
            else None
        )
        # Models installed by updates (only while updates are on; else the configured/shipped ones).
        state_file = StateFile(config.updates_dir)
        install_state = state_file.load() if config.updates_enabled else InstallState()
        anomaly_installed, anomaly_shadow = startup_models(install_state, "anomaly")
        demand_installed, demand_shadow = startup_models(install_state, "demand")
        # Anomaly scoring of committed telemetry on its own thread (never on MQTT's or ingest's).
        self.inference = InferenceWorker(
            config.models,
            config.gateway_id,
            self.store,
            self.metrics,
            self.enqueue_alert,
            installed=anomaly_installed,
            installed_shadow=anomaly_shadow,
            saved_stats=saved_stats(install_state, "anomaly"),
        )
        self.forecaster = ForecastWorker(
            config.models,
            config.gateway_id,
            config.site,
            self.store,
            self.metrics,
            self.enqueue_forecast,
            installed=demand_installed,
            installed_shadow=demand_shadow,
            saved_stats=saved_stats(install_state, "demand"),
        )
        self.updater = ModelUpdater(
            config,
            {"anomaly": self.inference, "demand": self.forecaster},
            self.metrics,
            state_file,
            install_state,
        )
        # Commands on our own cmd topic: routed past ingest, dispatched on their own thread.
        self.commands = CommandHandler(
            {"check_models": self.updater.check_now, "sync_now": self._sync_now}, self.mqtt.ack, self.metrics
        )
        self.command_topic = gateway_topic(config.site, config.gateway_id, GatewayTopicKind.CMD)
        self.mqtt.route(self.command_topic, self.commands.submit)
        self.ingest = Ingest(
            config.ingest,
            config.site,
            self.store,
            self._inbox,
            self.mqtt.ack,
            self.metrics,
            self.intake_paused,
            on_stored=self._on_stored,
        )
        self.housekeeper = Housekeeper(
            config.store, config.gateway_id, self.store, self.metrics, self.intake_paused, self.enqueue_alert
        )
        self.probe = StatusProbe(
            config.gateway_id,
            self.store,
            self.metrics,
            mqtt_connected=lambda: self.mqtt.connected,
            mqtt_last_error=lambda: self.mqtt.last_error,
            intake_paused=self.intake_paused.is_set,
            stopped_components=self._stopped_components,
            models=self.updater.status,
        )
        self.metrics.bind_live(
            outbox_depth=self.probe.outbox_depth,
            oldest_unsynced_age=lambda: self.probe.oldest_unsynced_age_s() or 0.0,
            uptime=self.probe.uptime_s,
            ingest_queue_depth=self._inbox.qsize,
        )
        self.http: StatusServer | None = (
            StatusServer(config.http.host, config.http.port, self.metrics, self.probe)
            if config.http.enabled
            else None
        )
        self._cleanups: list[Callable[[], None]] = []
        self._started = False
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("agent already started")
            self._started = True
        try:
            self._start_components()
        except BaseException:
            log.error("agent start failed; stopping what was started")
            self.stop()
            raise

    def _start_components(self) -> None:
        applied = self.store.open()
        if applied:
            log.info("database %s: applied migrations %s", self.store.path, ", ".join(applied))
        self.checkpointer.start()
        self.housekeeper.start()
        self.inference.start()  # a model that does not load is logged; the agent runs without it
        self.forecaster.start()
        self.updater.start()  # its own thread: the first check runs there, never delays start-up
        if self.http is not None:
            self.http.start()
            runtime.write(
                self.config.runtime_path,
                runtime.RuntimeInfo(
                    pid=os.getpid(),
                    http_port=self.http.port,
                    http_host=self.http.host,
                    gateway_id=self.config.gateway_id,
                    started_ts=time.time(),
                ),
            )
        self.ingest.start()
        if self.sync is not None:
            self.sync.start()
        else:
            log.warning("cloud.url not set: sync disabled, the outbox only grows")
        self.commands.start()
        for topic_filter in self.config.topic_filters:
            self._cleanups.append(self.mqtt.subscribe(topic_filter))
        self._cleanups.append(self.mqtt.subscribe(self.command_topic))
        self.mqtt.start()
        log.info("agent %s started (site %s)", self.config.gateway_id, self.config.site)

    def stop(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
        log.info("agent %s stopping", self.config.gateway_id)
        self.mqtt.close_intake()
        for cleanup in self._cleanups:
            cleanup()
        self._cleanups.clear()
        self.commands.stop()
        self.updater.stop()  # before the workers: an install in progress needs their threads
        self.ingest.stop()
        self.inference.stop()  # scores what ingest committed; its alerts join the last sync round
        self.forecaster.stop()
        if self.sync is not None:
            self.sync.stop(flush=True)
        self.mqtt.stop()
        self.housekeeper.stop()
        self.checkpointer.stop()
        if self.http is not None:
            self.http.stop()
            runtime.remove(self.config.runtime_path, os.getpid())
        log.info("agent %s stopped", self.config.gateway_id)

    def run_until(self, stop: threading.Event) -> None:
        """Start, wait for ``stop``, stop (the CLI maps SIGTERM/SIGINT to ``stop``)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    # ----------------------------------------------------------------- output and state

    def status(self) -> AgentStatus:
        return self.probe.snapshot()

    def enqueue_alert(self, alert: AlertPayload) -> bool:
        """Store + outbox ``alert`` in one transaction, then publish it on the gateway alert topic."""
        conn = self.store.connect()
        try:
            new = gateway_output.enqueue_alert(conn, alert, now_ms())
        finally:
            conn.close()
        if new:
            topic = gateway_topic(self.config.site, self.config.gateway_id, GatewayTopicKind.ALERT)
            self.mqtt.publish(topic, encode(alert), qos=1)
            self._on_outbox()
        return new

    def enqueue_forecast(self, forecast: ForecastPayload) -> bool:
        """Store + outbox ``forecast``, then publish it on the gateway forecast topic."""
        conn = self.store.connect()
        try:
            new = gateway_output.enqueue_forecast(conn, forecast, now_ms())
        finally:
            conn.close()
        if new:
            topic = gateway_topic(self.config.site, self.config.gateway_id, GatewayTopicKind.FORECAST)
            self.mqtt.publish(topic, encode(forecast), qos=1)
            self._on_outbox()
        return new

    def _stopped_components(self) -> list[str]:
        """Components that should be running but are not (for ``/healthz``)."""
        if not self._started:
            return []
        stopped = []
        if not self.ingest.running:
            stopped.append("ingest")
        if self.sync is not None and not self.sync.running:
            stopped.append("sync")
        if not self.housekeeper.running:
            stopped.append("housekeeping")
        if not self.checkpointer.running:
            stopped.append("checkpoint")
        if self.inference.should_run and not self.inference.running:
            stopped.append("inference")
        if self.forecaster.should_run and not self.forecaster.running:
            stopped.append("forecast")
        if self.updater.enabled and not self.updater.running:
            stopped.append("model-updates")
        if not self.commands.running:
            stopped.append("commands")
        return stopped

    def _sync_now(self) -> None:
        if self.sync is None:
            log.info("sync_now: sync is disabled (no cloud.url)")
            return
        self.sync.notify()

    def _on_stored(self, result: BatchResult) -> None:
        if result.stored["telemetry"]:
            self.inference.notify()
        self._on_outbox()

    def _on_outbox(self) -> None:
        if self.sync is not None:
            self.sync.notify()
