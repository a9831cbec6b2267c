"""The agent's SQLite store: one file, WAL mode, named migrations, one connection per thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.store.checkpoint import Checkpointer
from edge_agent.store.db import (
    DEFAULT_AUTOCHECKPOINT_PAGES,
    DEFAULT_CACHE_KIB,
    Synchronous,
    connect,
    transaction,
    used_bytes,
)
from edge_agent.store.gateway_output import enqueue
from edge_agent.store.migrations import MIGRATIONS, migrate
from edge_agent.store.outbox import OutboxRow
from edge_agent.store.retention import Retention, RetentionResult


class Store:
    """Knows where the database is and how to open it; holds no connection of its own."""

    def __init__(self, path: Path, synchronous: Synchronous = "NORMAL") -> None:
        self.path = path
        self.synchronous: Synchronous = synchronous

    def open(self) -> list[str]:
        """Create the directory and database if needed and apply migrations; return those applied."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self.connect()
        try:
            return migrate(conn)
        finally:
            conn.close()

    def connect(
        self, autocheckpoint_pages: int = DEFAULT_AUTOCHECKPOINT_PAGES, cache_kib: int = DEFAULT_CACHE_KIB
    ) -> sqlite3.Connection:
        """A new connection for the calling thread (close it on the same thread)."""
        return connect(self.path, self.synchronous, autocheckpoint_pages, cache_kib)

    def check_writable(self, timeout_s: float = 1.0) -> str | None:
        """None when a write transaction can be taken, else the reason it cannot."""
        try:
            conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            return f"database cannot be opened: {exc}"
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return None
        except sqlite3.Error as exc:
            return f"database not writable: {exc}"
        finally:
            conn.close()


__all__ = [
    "MIGRATIONS",
    "Checkpointer",
    "OutboxRow",
    "Retention",
    "RetentionResult",
    "Store",
    "connect",
    "enqueue",
    "migrate",
    "transaction",
    "used_bytes",
]
