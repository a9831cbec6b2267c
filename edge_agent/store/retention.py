"""Disk quota and retention: drop what is already safe in the cloud, never unsynced data.

Order of sacrifice, oldest first each time: synced local history (telemetry, scans, status
history, alerts, forecasts whose records are no longer in the outbox), then dead letters.
The outbox and ``sync_rejected`` are never touched here: when they alone exceed the quota,
:meth:`Retention.enforce` reports it and the caller applies backpressure and alerts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge_agent.store.db import release_free_pages, transaction, used_bytes
from protocols import own_record_id, record_id

CHUNK_ROWS: Final = 2000


def id_sql(make_id: Callable[..., str], kind: str, *columns: str) -> str:
    """The SQL expression over row ``t``'s ``columns`` equal to ``make_id(kind, *their values)``.

    protocols owns the record id format: ``make_id`` is rendered once with a marker per column,
    and the text between the markers becomes SQL string literals joined to the columns by ``||``.
    """
    parts = make_id(kind, *(f"\x00{i}\x00" for i in range(len(columns)))).split("\x00")
    sql = [f"t.{columns[int(p)]}" if i % 2 else "'" + p.replace("'", "''") + "'" for i, p in enumerate(parts)]
    return " || ".join(s for s in sql if s != "''")


_KEY: Final = ("device_id", "boot_id", "seq")

# History table -> (SQL expression of its outbox record id, its gateway-clock timestamp column).
HISTORY: Final[dict[str, tuple[str, str]]] = {
    "telemetry": (id_sql(record_id, "telemetry", *_KEY), "received_ts"),
    "scans": (id_sql(record_id, "scan", *_KEY), "received_ts"),
    "device_status_history": (id_sql(record_id, "device_status", *_KEY), "received_ts"),
    "alerts": (id_sql(own_record_id, "alert", "alert_id"), "ts"),
    "forecasts": (id_sql(own_record_id, "forecast", "forecast_id"), "created_ts"),
    # local only (never in the outbox): droppable like synced history
    "rfid_burst_repeats": (id_sql(record_id, "rfid_burst", *_KEY), "received_ts"),
}


@dataclass(slots=True)
class RetentionResult:
    used_bytes: int
    quota_bytes: int
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def over_quota(self) -> bool:
        """True when nothing droppable is left and the database is still over its quota."""
        return self.used_bytes > self.quota_bytes


class Retention:
    """Applies age limits and the disk quota on one connection (the caller's thread)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        quota_bytes: int,
        history_max_age_ms: int | None = None,
        dead_letter_max_age_ms: int | None = None,
    ) -> None:
        self._conn = conn
        self._quota = quota_bytes
        self._history_max_age_ms = history_max_age_ms
        self._dead_letter_max_age_ms = dead_letter_max_age_ms

    def enforce(self, now_ms: int, target_bytes: int | None = None) -> RetentionResult:
        """Apply the age limits, then drop droppable rows until under ``target_bytes`` (the quota)."""
        target = self._quota if target_bytes is None else min(target_bytes, self._quota)
        result = RetentionResult(used_bytes=0, quota_bytes=self._quota)
        if self._history_max_age_ms is not None:
            cutoff = now_ms - self._history_max_age_ms
            for table in HISTORY:
                while n := self._delete_synced(table, CHUNK_ROWS, older_than=cutoff):
                    result.deleted[table] = result.deleted.get(table, 0) + n
        if self._dead_letter_max_age_ms is not None:
            cutoff = now_ms - self._dead_letter_max_age_ms
            while n := self._delete_dead_letters(CHUNK_ROWS, older_than=cutoff):
                result.deleted["dead_letters"] = result.deleted.get("dead_letters", 0) + n
        if result.deleted:
            release_free_pages(self._conn)
        result.used_bytes = used_bytes(self._conn)
        while result.used_bytes > target:
            table, n = self._drop_oldest_synced()
            if not n:
                n = self._delete_dead_letters(CHUNK_ROWS, older_than=None)
                table = "dead_letters"
            if not n:
                break
            result.deleted[table] = result.deleted.get(table, 0) + n
            release_free_pages(self._conn)
            result.used_bytes = used_bytes(self._conn)
        return result

    def _oldest_synced_ts(self, table: str) -> int | None:
        rid, ts_col = HISTORY[table]
        row = self._conn.execute(
            f"SELECT t.{ts_col} FROM {table} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = {rid}) ORDER BY t.rowid LIMIT 1"
        ).fetchone()
        return None if row is None else int(row[0])

    def _drop_oldest_synced(self) -> tuple[str, int]:
        """Delete a chunk from the history table whose oldest synced row is the oldest."""
        candidates = [(ts, table) for table in HISTORY if (ts := self._oldest_synced_ts(table)) is not None]
        if not candidates:
            return ("", 0)
        _, table = min(candidates)
        return (table, self._delete_synced(table, CHUNK_ROWS, older_than=None))

    def _delete_synced(self, table: str, limit: int, older_than: int | None) -> int:
        rid, ts_col = HISTORY[table]
        age = f"AND t.{ts_col} < ?" if older_than is not None else ""
        params: tuple[int, ...] = (older_than, limit) if older_than is not None else (limit,)
        with transaction(self._conn):
            return self._conn.execute(
                f"DELETE FROM {table} WHERE rowid IN ("
                f"SELECT t.rowid FROM {table} t "
                f"WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = {rid}) {age} "
                f"ORDER BY t.rowid LIMIT ?)",
                params,
            ).rowcount

    def _delete_dead_letters(self, limit: int, older_than: int | None) -> int:
        age = "WHERE received_ts < ?" if older_than is not None else ""
        params: tuple[int, ...] = (older_than, limit) if older_than is not None else (limit,)
        with transaction(self._conn):
            return self._conn.execute(
                f"DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters {age} ORDER BY id LIMIT ?)",
                params,
            ).rowcount
