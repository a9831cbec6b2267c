"""The WAL checkpointer: copies committed WAL pages into the database on its own thread.

Left to SQLite, the commit that crosses ``wal_autocheckpoint`` pays for the checkpoint and its
fsyncs on the committing thread; measured here that cost the ingest thread about a third of
its throughput. The ingest connection therefore sets a high threshold (a safety net only)
and this thread runs a ``PASSIVE`` checkpoint, which never blocks writers, every interval.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.store import Store

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, store: Store, interval_s: float = 1.0) -> None:
        self._store = store
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("checkpointer already started")
        self._thread = threading.Thread(target=self._run, name="edge-checkpoint", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        conn = self._store.connect(cache_kib=64)  # checkpoints read no pages through the cache
        try:
            while not self._stop.wait(self._interval_s):
                self.checkpoint(conn)
            self.checkpoint(conn)  # leave a short WAL behind
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
