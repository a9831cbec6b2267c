"""Composition root: builds the components, wires them together, owns the start and stop order.

Start: store (migrations) -> WAL checkpointer -> housekeeping -> alert budget (an open flood
restored) -> models (anomaly scoring, forecasts; the installed update first) -> model updater ->
http (+ runtime file) -> ingest -> sync -> commands -> mqtt (subscriptions last, so nothing
arrives before it can be stored or dispatched).
Stop: close MQTT intake -> commands -> model updater (an interrupted download resumes at the next
start) -> drain, commit and ack the queue -> score what was committed, stop the forecasts -> the
alert budget's thread -> one last sync round (bounded) -> offline status + clean MQTT disconnect
-> housekeeping -> checkpointer -> http (+ runtime file). Each component opens and closes its own
database connection. Everything the agent produces itself leaves through one
:class:`GatewayOutput`, past the site's :class:`AlertBudget`."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from edge_agent.alert_budget import AlertBudget, AlertBudgetWorker
from edge_agent.background import BackgroundWorker
from edge_agent.clock import now_ms
from edge_agent.commands import CommandHandler
from edge_agent.config import AgentConfig
from edge_agent.forecasting import ForecastWorker
from edge_agent.housekeeping import Housekeeper
from edge_agent.http import StatusServer
from edge_agent.inbound import Inbound
from edge_agent.ingest import Ingest
from edge_agent.metrics import AgentMetrics
from edge_agent.mqtt import MqttLink
from edge_agent.output import GatewayOutput
from edge_agent.scoring.device_worker import DeviceScoringWorker
from edge_agent.scoring.worker import InferenceWorker
from edge_agent.status import AgentStatus, StatusProbe
from edge_agent.stock_worker import StockWorker
from edge_agent.store import Checkpointer, Store
from edge_agent.store import outbox as ob
from edge_agent.sync import SyncWorker
from edge_agent.updates import InstallState, StateFile, slot_start
from edge_agent.updates.updater import ModelUpdater
from protocols import GatewayHealth, GatewayTopicKind, gateway_topic

log = logging.getLogger(__name__)


class Component(Protocol):
    """What the agent starts and stops; the :class:`BackgroundWorker` ones are also checked by
    ``/healthz`` (a thread not running is a fault while it ``should_run``)."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> object: ...


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
        # The site's alert budget (ISA-18.2): every alert passes it on its way out.
        self.budget = AlertBudget(config.alerts, config.site, config.gateway_id, self.metrics)
        self.output = GatewayOutput(
            self.store, config.site, config.gateway_id, self.mqtt.publish, budget=self.budget
        )
        self.budget_worker = AlertBudgetWorker(
            config.alerts.check_interval_s, self.output.check_budget, self.output.restore_budget, self.metrics
        )
        self.sync: SyncWorker | None = None
        if config.cloud.enabled:
            self.sync = SyncWorker(
                config.cloud, config.gateway_id, self.store, self.metrics, raise_alert=self.output.emit
            )
            self.output.wake_sync_with(self.sync.notify)
        # Models installed by updates (only while updates are on; else the configured/shipped ones).
        state_file = StateFile(config.updates_dir)
        install_state = state_file.load() if config.updates_enabled else InstallState()
        # Anomaly scoring of committed telemetry on its own thread (never on MQTT's or ingest's).
        self.inference = InferenceWorker(
            config.models,
            config.gateway_id,
            self.store,
            self.metrics,
            self.output.emit,
            installed=slot_start(install_state, "anomaly"),
        )
        # Joint scoring per multichannel device (several channels in one message), its own thread.
        self.device_scoring = DeviceScoringWorker(
            config.models,
            config.gateway_id,
            self.store,
            self.metrics,
            self.output.emit,
            installed=slot_start(install_state, "device_anomaly"),
        )
        self.forecaster = ForecastWorker(
            config.models,
            config.gateway_id,
            config.site,
            self.store,
            self.metrics,
            self.output.emit,
            installed=slot_start(install_state, "demand"),
        )
        self.updater = ModelUpdater(
            config,
            {"anomaly": self.inference, "demand": self.forecaster, "device_anomaly": self.device_scoring},
            self.metrics,
            state_file,
            install_state,
            health=self._health,
        )
        # Commands on our own cmd topic: routed past ingest, dispatched on their own thread.
        handlers: dict[str, Callable[[], object]] = {"check_models": self.updater.check_now}
        if self.sync is not None:
            handlers["sync_now"] = self.sync.notify
        self.commands = CommandHandler(handlers, self.mqtt.ack, self.metrics)
        self.command_topic = gateway_topic(config.site, config.gateway_id, GatewayTopicKind.CMD)
        self.mqtt.route(self.command_topic, self.commands.submit)
        # The stock book's changed positions queued for sync and published, paced, off the ingest thread.
        self.stock = StockWorker(config.stock, self.store, config.site, config.gateway_id, self.mqtt.publish,
                                 self.output.outbox_changed, self.metrics)
        self.ingest = Ingest(
            config.ingest,
            config.site,
            self.store,
            self._inbox,
            self.mqtt.ack,
            self.metrics,
            self.intake_paused,
            on_stored=(self.inference.on_stored, self.device_scoring.on_stored, self.output.on_stored,
                       self.stock.offer),
            gateway_id=config.gateway_id,
        )
        self.housekeeper = Housekeeper(
            config.store, config.gateway_id, self.store, self.metrics, self.intake_paused, self.output.emit
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
            alerts=lambda: self.budget.status(now_ms()),
            live_window_s=config.cloud.live_window_s,
            sync=self.sync.wire_status if self.sync is not None else lambda lanes, depth: None,
        )
        self.metrics.bind_budget(
            in_window=lambda: self.budget.in_window(now_ms()), last_24h=lambda: self.budget.last_24h(now_ms())
        )
        self.metrics.bind_live(
            outbox_depth=self.probe.outbox_depth,
            oldest_unsynced_age=lambda: self.probe.oldest_unsynced_age_s() or 0.0,
            uptime=self.probe.uptime_s,
            ingest_queue_depth=self._inbox.qsize,
        )
        if self.sync is not None:
            self._bind_sync_metrics(self.sync)
        self.http: StatusServer | None = None
        if config.http.enabled:
            self.http = StatusServer(
                config.http.host,
                config.http.port,
                self.metrics,
                self.probe,
                runtime_path=config.runtime_path,
                gateway_id=config.gateway_id,
            )
        http = [self.http] if self.http is not None else []
        sync = [self.sync] if self.sync is not None else []
        #: Started in this order; the threads among them are checked by ``/healthz``.
        self.components: list[Component] = [
            self.checkpointer,
            self.housekeeper,
            self.budget_worker,  # restores an open alert flood before any alert is scored
            self.inference,  # a model that does not load is logged; the agent runs without it
            self.device_scoring,
            self.forecaster,
            self.updater,  # its own thread: the first check runs there, never delays start-up
            *http,
            self.ingest,
            self.stock,
            *sync,
            self.commands,
            self.mqtt,
        ]
        #: Stopped in this order (after MQTT intake is closed): the updater before the workers (an
        #: install in progress needs their threads), ingest drains before scoring scores what it
        #: committed, whose alerts join the last sync round, before the offline status.
        self._stop_order: list[Component] = [
            self.commands,
            self.updater,
            self.ingest,
            self.inference,
            self.device_scoring,
            self.forecaster,
            self.budget_worker,
            self.stock,  # queues the last changes ingest committed, before the last sync round
            *sync,
            self.mqtt,
            self.housekeeper,
            self.checkpointer,
            *http,
        ]
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
        if self.sync is None:
            log.warning("cloud.url not set: sync disabled, the outbox only grows")
        # Subscribed when the link connects (it starts last); kept in the broker's session.
        for topic_filter in (*self.config.topic_filters, self.command_topic):
            self._cleanups.append(self.mqtt.subscribe(topic_filter))
        for component in self.components:
            component.start()
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
        for component in self._stop_order:
            component.stop()
        log.info("agent %s stopped", self.config.gateway_id)

    def run_until(self, stop: threading.Event) -> None:
        """Start, wait for ``stop``, stop (the CLI maps SIGTERM/SIGINT to ``stop``)."""
        self.start()
        try:
            while not stop.wait(0.5):  # short waits: see edge_agent.daemon (signals reach the main thread late)
                pass
        finally:
            self.stop()

    def status(self) -> AgentStatus:
        return self.probe.snapshot()

    def _health(self) -> GatewayHealth:
        """What the model report tells the cloud about this agent (the console's fleet view)."""
        return self.probe.gateway_health()

    def _bind_sync_metrics(self, sync: SyncWorker) -> None:
        lanes = self.probe.lanes
        self.metrics.bind_sync(
            cap=lambda: float(sync.wire.bucket.cap() or 0),
            expected_drain=lambda: sync.wire.expected_drain_s(int(self.probe.outbox_depth())) or 0.0,
            lane_depth=lambda lane: float(lanes()[lane].depth),
            lane_oldest_age=lambda lane: lanes()[lane].oldest_age_s or 0.0,
            lanes=ob.LANES,
        )

    def _stopped_components(self) -> list[str]:
        """Components that should be running but are not (for ``/healthz``)."""
        if not self._started:
            return []
        return [
            c.name
            for c in self.components
            if isinstance(c, BackgroundWorker) and c.should_run and not c.running
        ]
