"""The stock worker: queues changed positions for sync and publishes the stock book on MQTT, paced.

Every ``[stock] interval_s`` its thread (its own SQLite connection) runs
:meth:`edge_agent.store.stock_output.PositionQueue.queue`: the newest version of every position
changed since goes into the outbox in one short transaction, so a position scanned a thousand
times a second costs the sync one record per interval, not one per scan batch, and the ingest
thread does none of it. It wakes the sync when it queued something.

It also publishes, on ``…/gw/{gateway_id}/stock``, those positions and what ingest handed over
(:meth:`StockWorker.offer`, the on-stored listener: discrepancies and stock-out alerts of each
committed batch, filed, never published on the ingest thread), when ``publish`` is on: best effort
for local consumers at ``publish_qos``; the outbox carries everything to the cloud. At the stop it
queues and publishes once more.

It opens a connection only for a round in which ingest committed a position change (or at start,
and every ``RECHECK_S`` for changes another process made, e.g. a dead-letter replay) and closes it
after, so an agent without scans never touches the stock tables and holds no extra connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Final

from edge_agent.background import BackgroundWorker
from edge_agent.clock import now_ms
from edge_agent.config_stock import StockConfig
from edge_agent.ingest_batch import BatchResult
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.store.stock_output import PositionQueue, Publication

#: ``MqttLink.publish``: (topic, payload, qos=...) -> sent.
Publish = Callable[..., bool]
#: Look for position changes nobody signalled (another process's) this often.
RECHECK_S: Final = 60.0


class StockWorker(BackgroundWorker[None]):
    name = "stock"

    def __init__(
        self,
        config: StockConfig,
        store: Store,
        site: str,
        gateway_id: str,
        publish: Publish | None,
        wake_sync: Callable[[], None] = lambda: None,
        metrics: AgentMetrics | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(metrics)
        self._config = config
        self._store = store
        self._site = site
        self._gateway_id = gateway_id
        self._publish = publish if config.publish else None
        self._wake_sync = wake_sync
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._pending: dict[str, Publication] = {}
        self._dirty = True  # at start: whatever was committed before
        self._checked_at = 0.0
        self._queue = PositionQueue(site, gateway_id)
        self.queued = 0
        self.published = 0

    def offer(self, result: BatchResult) -> None:
        """File a committed batch's publications (``Ingest``'s on-stored listener; never blocks)."""
        if result.stock.positions:
            self._dirty = True
        if result.published and self._publish is not None:
            with self._lock:
                for pub in result.published:
                    self._pending[pub.key] = pub

    def run_once(self) -> int:
        """Queue the changed positions, wake the sync, publish; the positions queued."""
        positions: list[Publication] = []
        if self._dirty or time.monotonic() - self._checked_at >= RECHECK_S:
            self._dirty = False  # a change committed from here on is seen by this round or the next
            self._checked_at = time.monotonic()
            conn: sqlite3.Connection = self._store.connect(cache_kib=512)  # reads the small stock table only
            try:
                positions = self._queue.queue(conn, self._clock_ms())
            finally:
                conn.close()
        if positions:
            self.queued += len(positions)
            self._wake_sync()
        if self._publish is None:
            return len(positions)
        with self._lock:
            pending, self._pending = self._pending, {}
        for pub in positions:
            pending[pub.key] = pub
        for pub in pending.values():
            if self._publish(pub.topic, pub.payload, qos=self._config.publish_qos):
                self.published += 1
        return len(positions)

    def step(self, resource: None) -> None:
        if not self.sleep(self._config.interval_s):
            self.run_once()

    def finish(self, resource: None) -> None:
        self._dirty = True
        self.run_once()
