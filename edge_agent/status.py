"""The agent's state as one JSON-able snapshot (``GET /status``) and its health (``/healthz``)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from edge_agent import __version__
from edge_agent.alert_budget import AlertBudgetStatus
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.updates.report import ModelTaskStatus
from protocols import DEVICE_RECORD_KINDS, GatewayHealth

#: Page cache of the short-lived connection that counts the outbox lanes for /status and /metrics.
STATUS_CACHE_KIB = 64


class StoredCounts(BaseModel):
    """Device messages stored since start, per record kind (``protocols.DEVICE_RECORD_KINDS``)."""

    model_config = ConfigDict(extra="forbid")
    telemetry: int
    scan: int
    device_status: int


class AgentStatus(BaseModel):
    """``GET /status``. Counters count since this agent process started."""

    model_config = ConfigDict(extra="forbid")
    gateway_id: str
    agent_version: str
    mqtt_connected: bool
    #: Why the broker connection is down (TLS, refused, dropped); None while connected.
    mqtt_last_error: str | None = None
    intake_paused: bool
    messages_in: int
    stored: StoredCounts
    duplicates: int
    rfid_burst_dropped: int
    dead_letters: int
    outbox_depth: int
    synced: int
    sync_rejected: int
    oldest_unsynced_age_s: float | None
    sync_lag_s: float | None
    last_sync_ts: float | None
    uptime_s: float
    #: Per task (anomaly, demand): running version, sha256 prefix, state, pending/shadow version,
    #: last refusal; ``keys`` when a key rotation was refused.
    models: dict[str, ModelTaskStatus] = {}
    #: The site's alert budget (ISA-18.2): alerts in the window, an open flood, withheld alerts.
    alerts: AlertBudgetStatus | None = None
    #: The sync on the link (None when sync is disabled).
    sync: SyncWireStatus | None = None


class LaneStatus(BaseModel):
    """One outbox lane (``urgent``: alerts and device status; ``live``; ``backlog``)."""

    model_config = ConfigDict(extra="forbid")
    depth: int
    oldest_age_s: float | None


class SyncWireStatus(BaseModel):
    """How the sync uses the link: cap, encoding, bytes, lanes and the time to drain the outbox."""

    model_config = ConfigDict(extra="forbid")
    cap_bytes_per_s: int | None
    encoding: str
    bytes_sent: int
    bytes_per_record: float
    #: Seconds to send the whole outbox at the cap (or the measured rate); None: nothing measured yet.
    expected_drain_s: float | None
    lanes: dict[str, LaneStatus]
    #: Why sync is stuck (several failed rounds in a row); None while it works.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class _DbStats:
    outbox_depth: int
    oldest_created_ts: int | None
    at: float
    lanes: dict[str, ob.LaneStats]


class StatusProbe:
    """Reads counters from the metrics and outbox figures from the database (cached ~1 s)."""

    def __init__(
        self,
        gateway_id: str,
        store: Store,
        metrics: AgentMetrics,
        mqtt_connected: Callable[[], bool],
        intake_paused: Callable[[], bool],
        mqtt_last_error: Callable[[], str | None] = lambda: None,
        stopped_components: Callable[[], list[str]] = list,
        cache_s: float = 1.0,
        models: Callable[[], dict[str, ModelTaskStatus]] = dict,
        alerts: Callable[[], AlertBudgetStatus | None] = lambda: None,
        live_window_s: float = 300.0,
        sync: Callable[[dict[str, LaneStatus], int], SyncWireStatus | None] = lambda lanes, depth: None,
    ) -> None:
        self._live_window_s = live_window_s
        self._sync = sync
        self._models = models
        self._alerts = alerts
        self._gateway_id = gateway_id
        self._store = store
        self._metrics = metrics
        self._mqtt_connected = mqtt_connected
        self._mqtt_last_error = mqtt_last_error
        self._intake_paused = intake_paused
        self._stopped_components = stopped_components
        self._cache_s = cache_s
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._db: _DbStats | None = None

    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def _db_stats(self) -> _DbStats:
        with self._lock:
            now = time.monotonic()
            if self._db is None or now - self._db.at > self._cache_s:
                conn = sqlite3.connect(str(self._store.path), timeout=5.0)
                try:
                    # The lane counts stream once through the outbox indexes (MBs on a gateway that
                    # is offline) and the connection closes: SQLite's default 2 MiB cache would only
                    # raise the peak resident memory.
                    conn.execute(f"PRAGMA cache_size=-{STATUS_CACHE_KIB}")
                    live_since = int((time.time() - self._live_window_s) * 1000)
                    lanes = ob.lane_stats(conn, live_since)
                    self._db = _DbStats(sum(lane.depth for lane in lanes.values()), ob.oldest_created_ts(conn),
                                        now, lanes)
                finally:
                    conn.close()
            return self._db

    def outbox_depth(self) -> float:
        return float(self._db_stats().outbox_depth)

    def oldest_unsynced_age_s(self) -> float | None:
        oldest = self._db_stats().oldest_created_ts
        return None if oldest is None else max(0.0, time.time() - oldest / 1000.0)

    def lanes(self) -> dict[str, LaneStatus]:
        wall = time.time()
        return {
            name: LaneStatus(depth=lane.depth, oldest_age_s=None if lane.oldest_created_ts is None
                             else round(max(0.0, wall - lane.oldest_created_ts / 1000.0), 3))
            for name, lane in self._db_stats().lanes.items()
        }

    def sync_status(self) -> SyncWireStatus | None:
        return self._sync(self.lanes(), self._db_stats().outbox_depth)

    def gateway_health(self) -> GatewayHealth:
        """Outbox depth, its oldest record's time and the broker link, as the model report carries them."""
        stats = self._db_stats()
        return GatewayHealth(outbox_depth=stats.outbox_depth, oldest_unsynced_ts=stats.oldest_created_ts,
                             mqtt_connected=self._mqtt_connected())

    def snapshot(self) -> AgentStatus:
        m = self._metrics
        last_sync = m.value("last_sync_success_timestamp_seconds") or None
        return AgentStatus(
            gateway_id=self._gateway_id,
            agent_version=__version__,
            mqtt_connected=self._mqtt_connected(),
            mqtt_last_error=None if self._mqtt_connected() else self._mqtt_last_error(),
            intake_paused=self._intake_paused(),
            messages_in=int(m.value("messages_in_total")),
            stored=StoredCounts(
                **{kind: int(m.value("stored_total", {"kind": kind})) for kind in DEVICE_RECORD_KINDS}
            ),
            duplicates=int(m.value("duplicates_total")),
            rfid_burst_dropped=int(m.value("rfid_burst_dropped_total")),
            dead_letters=int(m.value("dead_letters_total")),
            outbox_depth=int(self.outbox_depth()),
            synced=int(m.value("synced_records_total")),
            sync_rejected=int(m.value("sync_rejected_records_total")),
            oldest_unsynced_age_s=self.oldest_unsynced_age_s(),
            sync_lag_s=m.value("sync_lag_seconds") if last_sync is not None else None,
            last_sync_ts=last_sync,
            uptime_s=round(self.uptime_s(), 3),
            models=self._models(),
            alerts=self._alerts(),
            sync=self.sync_status(),
        )

    def health(self) -> list[str]:
        """Reasons the agent is unhealthy; empty when healthy."""
        reasons = []
        if not self._mqtt_connected():
            why = self._mqtt_last_error()
            reasons.append(f"mqtt not connected: {why}" if why else "mqtt not connected")
        db_problem = self._store.check_writable()
        if db_problem is not None:
            reasons.append(db_problem)
        reasons.extend(f"{name} thread not running" for name in self._stopped_components())
        sync = self.sync_status()
        if sync is not None and sync.problem is not None:
            reasons.append(sync.problem)
        return reasons
