"""The WAL checkpointer: copies committed WAL pages into the database on its own thread.

Left to SQLite, the commit that crosses ``wal_autocheckpoint`` pays for the checkpoint and its
fsyncs on the committing thread; measured here that cost the ingest thread about a third of
its throughput. The ingest connection therefore sets a high threshold (a safety net only)
and this thread runs a ``PASSIVE`` checkpoint, which never blocks writers, every interval.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING

from edge_agent.background import BackgroundWorker

if TYPE_CHECKING:
    from edge_agent.metrics import AgentMetrics
    from edge_agent.store import Store

log = logging.getLogger(__name__)


class Checkpointer(BackgroundWorker[sqlite3.Connection]):
    name = "checkpoint"

    def __init__(self, store: Store, metrics: AgentMetrics | None = None, interval_s: float = 1.0) -> None:
        super().__init__(metrics)
        self._store = store
        self._interval_s = interval_s
        self.checkpoints = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        conn = self._store.connect(cache_kib=64)  # checkpoints read no pages through the cache
        try:
            yield conn
        finally:
            conn.close()

    def step(self, conn: sqlite3.Connection) -> None:
        if not self.sleep(self._interval_s):
            self.checkpoint(conn)

    def finish(self, conn: sqlite3.Connection) -> None:
        self.checkpoint(conn)  # leave a short WAL behind

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
