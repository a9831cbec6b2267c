"""Prometheus metrics of one agent, on its own registry (never the process-global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from protocols import DEVICE_RECORD_KINDS

PREFIX = "edgehouse_agent"
MODEL_TASK_LABELS = ("anomaly", "demand")


class AgentMetrics:
    """Every metric the agent exports. Components get this object, never a global."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter(f"{PREFIX}_messages_in", "MQTT messages taken from the broker", registry=r)
        self.stored = Counter(f"{PREFIX}_stored", "Device messages stored (new)", ["kind"], registry=r)
        for kind in DEVICE_RECORD_KINDS:
            self.stored.labels(kind)
        self.duplicates = Counter(
            f"{PREFIX}_duplicates", "Messages dropped as duplicates of (device_id, boot_id, seq)", registry=r
        )
        self.rfid_burst_dropped = Counter(
            f"{PREFIX}_rfid_burst_dropped", "RFID reads dropped inside the burst window", registry=r
        )
        self.dead_letters = Counter(f"{PREFIX}_dead_letters", "Messages dead-lettered", registry=r)
        self.queue_overflow = Counter(
            f"{PREFIX}_queue_overflow", "QoS 0 messages dropped because the ingest queue was full", registry=r
        )
        self.ingest_batch_seconds = Histogram(
            f"{PREFIX}_ingest_batch_seconds",
            "Time to decode, store and commit one ingest batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.ingest_errors = Counter(f"{PREFIX}_ingest_errors", "Failed ingest transactions", registry=r)
        self.mqtt_connected = Gauge(f"{PREFIX}_mqtt_connected", "1 while connected to the broker", registry=r)
        self.mqtt_connects = Counter(f"{PREFIX}_mqtt_connects", "Successful broker connections", registry=r)
        self.mqtt_connect_failures = Counter(
            f"{PREFIX}_mqtt_connect_failures", "Failed broker connection attempts", registry=r
        )
        self.synced = Counter(f"{PREFIX}_synced_records", "Outbox records settled by the cloud", registry=r)
        self.sync_rejected = Counter(
            f"{PREFIX}_sync_rejected_records", "Outbox records the cloud refused for good", registry=r
        )
        self.sync_failures = Counter(
            f"{PREFIX}_sync_failures", "Failed sync requests", ["reason"], registry=r
        )
        self.last_sync_success = Gauge(
            f"{PREFIX}_last_sync_success_timestamp_seconds", "Time of the last successful sync", registry=r
        )
        self.sync_lag = Gauge(
            f"{PREFIX}_sync_lag_seconds",
            "At the last successful sync: age of the oldest record it settled",
            registry=r,
        )
        self.quota_exceeded = Gauge(
            f"{PREFIX}_quota_exceeded",
            "1 while unsynced data alone exceeds the disk quota (intake paused)",
            registry=r,
        )
        self.db_used_bytes = Gauge(f"{PREFIX}_db_used_bytes", "Live bytes of the database", registry=r)
        self.retention_deleted = Counter(
            f"{PREFIX}_retention_deleted_rows", "Rows dropped by retention", ["table"], registry=r
        )
        self.outbox_depth = Gauge(f"{PREFIX}_outbox_depth", "Records waiting in the outbox", registry=r)
        self.oldest_unsynced_age = Gauge(
            f"{PREFIX}_oldest_unsynced_age_seconds", "Age of the oldest record in the outbox", registry=r
        )
        self.uptime = Gauge(f"{PREFIX}_uptime_seconds", "Seconds since the agent started", registry=r)
        self.ingest_queue_depth = Gauge(
            f"{PREFIX}_ingest_queue_depth", "Messages received, waiting for the ingest thread", registry=r
        )
        # model updates (edge_agent/updates/, the workers' swaps)
        self.model_version = Gauge(
            f"{PREFIX}_model_version", "Version of the model running per task (0: none)", ["task"], registry=r
        )
        self.model_swaps = Counter(
            f"{PREFIX}_model_swaps",
            "Models activated or promoted from shadow while running",
            ["task"],
            registry=r,
        )
        self.model_swap_max_pause = Gauge(
            f"{PREFIX}_model_swap_max_pause_seconds",
            "Longest time the scoring thread spent on one swap between two rows (catch-up included)",
            ["task"],
            registry=r,
        )
        self.model_load_failures = Counter(
            f"{PREFIX}_model_load_failures",
            "Installed or shipped models that failed to load (at start: the next candidate is tried)",
            ["task"],
            registry=r,
        )
        self.model_update_rejected = Counter(
            f"{PREFIX}_model_update_rejected",
            "Model releases (task anomaly|demand) and key rotations (task keys) refused, by code",
            ["task", "code"],
            registry=r,
        )
        self.model_update_last_check = Gauge(
            f"{PREFIX}_model_update_last_check_timestamp_seconds",
            "Time the desired models were last fetched (200 or 304)",
            registry=r,
        )
        self.model_update_failures = Counter(
            f"{PREFIX}_model_update_failures",
            "Failed desired-state fetches and report posts",
            ["op"],
            registry=r,
        )
        self.commands = Counter(
            f"{PREFIX}_commands", "Gateway commands received on the cmd topic", ["cmd"], registry=r
        )
        self.thread_errors = Counter(
            f"{PREFIX}_thread_errors",
            "Unexpected errors caught by a component thread's loop guard (the loop went on after a backoff)",
            ["thread"],
            registry=r,
        )
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded", "1 when the model is loaded and its task runs", ["task"], registry=r
        )
        # anomaly scoring (edge_agent/scoring/)
        self.inference_scored = Counter(f"{PREFIX}_inference_scored_readings", "Readings scored", registry=r)
        self.inference_warmup = Counter(
            f"{PREFIX}_inference_warmup_readings",
            "Stored readings scored at start to warm the streams up (never alerted on)",
            registry=r,
        )
        self.inference_dropped = Counter(
            f"{PREFIX}_inference_dropped_messages",
            "Committed telemetry messages not scored because scoring was more than queue_size behind",
            registry=r,
        )
        self.inference_alerts = Counter(
            f"{PREFIX}_inference_alerts", "Anomaly alerts emitted", ["state"], registry=r
        )
        for state in ("raised", "cleared"):
            self.inference_alerts.labels(state)
        self.inference_suppressed = Counter(
            f"{PREFIX}_inference_alerts_suppressed",
            "Raises suppressed by the per-stream cool-down",
            registry=r,
        )
        self.inference_errors = Counter(
            f"{PREFIX}_inference_errors", "Readings or passes that failed", registry=r
        )
        self.inference_backlog = Gauge(
            f"{PREFIX}_inference_backlog_messages", "Committed telemetry messages not yet scored", registry=r
        )
        self.inference_score_seconds = Histogram(
            f"{PREFIX}_inference_score_seconds",
            "Time to score one reading (features + LiteRT + tails)",
            buckets=(0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005),
            registry=r,
        )
        # the alert budget (edge_agent/alert_budget.py)
        self.alert_budget_window_alerts = Gauge(
            f"{PREFIX}_alert_budget_window_alerts",
            "Anomaly alerts raised within the flood window (withheld ones included)",
            registry=r,
        )
        self.alert_flood_active = Gauge(
            f"{PREFIX}_alert_flood_active", "1 while an alert_flood alert is raised", registry=r
        )
        self.alert_floods = Counter(f"{PREFIX}_alert_floods", "alert_flood alerts raised", registry=r)
        self.alerts_withheld = Counter(
            f"{PREFIX}_alerts_withheld",
            "Anomaly alerts withheld by the alert budget during a flood (raises and their clears)",
            ["state"],
            registry=r,
        )
        for state in ("raised", "cleared"):
            self.alerts_withheld.labels(state)
        self.alerts_last_24h = Gauge(
            f"{PREFIX}_alerts_last_24h", "Raised alerts that went out in the last 24 hours", registry=r
        )
        # demand forecasts (edge_agent/forecasting.py)
        self.forecasts = Counter(f"{PREFIX}_forecasts", "Demand forecasts stored (new)", registry=r)
        self.forecast_errors = Counter(
            f"{PREFIX}_forecast_errors", "SKUs or runs whose forecast failed", registry=r
        )
        self.forecast_last_run = Gauge(
            f"{PREFIX}_forecast_last_run_timestamp_seconds", "End of the last forecast run", registry=r
        )
        # sync over thin links (edge_agent/sync_wire.py, bandwidth.py, the outbox lanes)
        self.sync_bytes_sent = Counter(
            f"{PREFIX}_sync_bytes_sent",
            "Bytes the sync sent to the cloud (request lines, headers, bodies; retries included)",
            registry=r,
        )
        self.sync_bytes_received = Counter(
            f"{PREFIX}_sync_bytes_received", "Bytes of the cloud's sync answers", registry=r
        )
        self.sync_cap = Gauge(
            f"{PREFIX}_sync_cap_bytes_per_second", "Upload cap in force (0: none)", registry=r
        )
        self.sync_expected_drain = Gauge(
            f"{PREFIX}_sync_expected_drain_seconds",
            "Time to send the whole outbox at the cap (or the measured rate) and the learnt bytes per record",
            registry=r,
        )
        self.outbox_lane_depth = Gauge(
            f"{PREFIX}_outbox_lane_depth", "Records waiting per outbox lane (urgent, live, backlog)", ["lane"],
            registry=r,
        )
        self.outbox_lane_oldest_age = Gauge(
            f"{PREFIX}_outbox_lane_oldest_age_seconds", "Age of the oldest record per outbox lane", ["lane"],
            registry=r,
        )
        for task in MODEL_TASK_LABELS:
            self.model_loaded.labels(task).set(0)
            self.model_version.labels(task)
            self.model_swaps.labels(task)
            self.model_swap_max_pause.labels(task)
            self.model_load_failures.labels(task)

    def bind_live(
        self,
        outbox_depth: Callable[[], float],
        oldest_unsynced_age: Callable[[], float],
        uptime: Callable[[], float],
        ingest_queue_depth: Callable[[], float],
    ) -> None:
        """Compute these gauges when scraped instead of pushing them."""
        self.ingest_queue_depth.set_function(ingest_queue_depth)
        self.outbox_depth.set_function(outbox_depth)
        self.oldest_unsynced_age.set_function(oldest_unsynced_age)
        self.uptime.set_function(uptime)

    def bind_sync(
        self,
        cap: Callable[[], float],
        expected_drain: Callable[[], float],
        lane_depth: Callable[[str], float],
        lane_oldest_age: Callable[[str], float],
        lanes: tuple[str, ...],
    ) -> None:
        """The sync's gauges (cap, drain time, per-lane depth and oldest age), computed when scraped."""
        self.sync_cap.set_function(cap)
        self.sync_expected_drain.set_function(expected_drain)
        for lane in lanes:
            self.outbox_lane_depth.labels(lane).set_function(lambda lane=lane: lane_depth(lane))
            self.outbox_lane_oldest_age.labels(lane).set_function(lambda lane=lane: lane_oldest_age(lane))

    def bind_budget(self, in_window: Callable[[], float], last_24h: Callable[[], float]) -> None:
        """The alert budget's gauges, computed when scraped."""
        self.alert_budget_window_alerts.set_function(in_window)
        self.alerts_last_24h.set_function(last_24h)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of a sample (``name`` without the prefix), 0 when absent."""
        sample = self.registry.get_sample_value(f"{PREFIX}_{name}", labels or {})
        return 0.0 if sample is None else float(sample)
