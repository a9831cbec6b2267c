"""Weekly time partitions of the PostgreSQL time series (``telemetry``, ``readings``, ``scans``).

Each table is partitioned by ``RANGE (ts)`` (ms since the epoch). Its partitions cover one week each,
Monday 00:00 UTC to the next Monday, and are named ``<table>_w<YYYYMMDD>`` after their first day;
``<table>_default`` (the DEFAULT partition) takes every row no week partition covers yet (a device
whose clock is years off, a backlog older than the oldest partition), so an insert never fails for
want of a partition. A week created later takes its rows out of the default partition.

Retention drops whole weeks (``DROP TABLE``: no ``DELETE``, no vacuum debt) and deletes the default
partition's rows older than the cutoff. Every function runs inside the caller's transaction and does
nothing on SQLite (one table per series there). Used by migration 0006 (partitions for the rows it
moves) and by ``cloud.services.partition_upkeep`` (weeks ahead of time, retention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Connection, text

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
#: 1970-01-05, the first Monday after the epoch: weeks start on Mondays.
_MONDAY_MS: Final = 4 * DAY_MS
_BOUND: Final = re.compile(r"FOR VALUES FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_TABLE: Final = re.compile(r"^[a-z_]{1,40}$")
_TIMEOUT: Final = re.compile(r"^\d{1,6}(ms|s)$")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start_ts: int  # inclusive
    end_ts: int  # exclusive


def week_start(ts: int) -> int:
    """The start (ms) of the Monday-to-Monday UTC week holding ``ts``."""
    return (ts - _MONDAY_MS) // WEEK_MS * WEEK_MS + _MONDAY_MS


def partition_name(table: str, start_ts: int) -> str:
    return f"{table}_w{datetime.fromtimestamp(start_ts / 1000, UTC):%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return conn.execute(text("SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                             "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"),
                        {"t": _checked(table)}).first() is not None


def weeks(conn: Connection, table: str) -> list[Partition]:
    """The week partitions of ``table``, oldest first (the default partition is not listed)."""
    rows = conn.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t AND p.relnamespace = current_schema()::regnamespace"), {"t": _checked(table)})
    out = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            out.append(Partition(str(name), int(match.group(1)), int(match.group(2))))
    return sorted(out, key=lambda p: p.start_ts)


def ensure_default(conn: Connection, table: str) -> None:
    conn.execute(text(f'CREATE TABLE IF NOT EXISTS "{default_name(_checked(table))}" PARTITION OF "{table}" DEFAULT'))


def ensure_weeks(conn: Connection, table: str, from_ts: int, to_ts: int) -> list[str]:
    """Create the default partition and every week partition of ``[from_ts, to_ts)`` missing; the names created."""
    if not is_partitioned(conn, table):
        return []
    ensure_default(conn, table)
    have = {p.start_ts for p in weeks(conn, table)}
    created = []
    start = week_start(max(0, from_ts))
    while start < to_ts:
        if start not in have:
            _create_week(conn, table, start)
            created.append(partition_name(table, start))
        start += WEEK_MS
    return created


def _create_week(conn: Connection, table: str, start: int) -> None:
    name, end, default = partition_name(table, start), start + WEEK_MS, default_name(table)
    bounds = f"FOR VALUES FROM ({start}) TO ({end})"
    in_default = conn.execute(text(f'SELECT 1 FROM "{default}" WHERE ts >= :a AND ts < :b LIMIT 1'),
                              {"a": start, "b": end}).first()
    if in_default is None:
        conn.execute(text(f'CREATE TABLE "{name}" PARTITION OF "{table}" {bounds}'))
        return
    # Rows of that week wait in the default partition: move them into a table of their own, then attach it.
    columns = ", ".join(f'"{c}"' for c in _columns(conn, table))
    conn.execute(text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
    conn.execute(text(f'INSERT INTO "{name}" ({columns}) SELECT {columns} FROM "{default}" '
                      "WHERE ts >= :a AND ts < :b"), {"a": start, "b": end})
    conn.execute(text(f'DELETE FROM "{default}" WHERE ts >= :a AND ts < :b'), {"a": start, "b": end})
    conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" {bounds}'))


def drop_before(conn: Connection, table: str, cutoff_ts: int) -> tuple[list[str], int]:
    """Drop the weeks of ``table`` ending at or before ``cutoff_ts`` and delete older rows of its default
    partition; the partitions dropped and the rows deleted."""
    if not is_partitioned(conn, table):
        return [], 0
    dropped = []
    for p in weeks(conn, table):
        if p.end_ts <= cutoff_ts:
            conn.execute(text(f'DROP TABLE "{p.name}"'))
            dropped.append(p.name)
    deleted = conn.execute(text(f'DELETE FROM "{default_name(table)}" WHERE ts < :c'), {"c": cutoff_ts}).rowcount
    return dropped, int(deleted or 0)


def delete_before(conn: Connection, table: str, cutoff_ts: int) -> int:
    """Delete the rows of ``table`` older than ``cutoff_ts`` (SQLite, where nothing is partitioned); how many."""
    deleted = conn.execute(text(f'DELETE FROM "{_checked(table)}" WHERE ts < :c'), {"c": cutoff_ts}).rowcount
    return int(deleted or 0)


def try_upkeep_lock(conn: Connection, key: int) -> bool:
    """PostgreSQL: take the advisory lock ``key`` for this transaction unless another one holds it; whether taken."""
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())


def upkeep_lock(conn: Connection, key: int) -> None:
    """PostgreSQL: take the advisory lock ``key`` for this transaction, waiting for whoever holds it."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def set_lock_timeout(conn: Connection, timeout: str) -> None:
    """PostgreSQL: wait at most ``timeout`` (``"5s"``, ``"500ms"``) for any lock in this transaction."""
    if not _TIMEOUT.match(timeout):
        raise ValueError(f"not a lock timeout: {timeout!r}")
    conn.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))


def _columns(conn: Connection, table: str) -> list[str]:
    rows = conn.execute(text("SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
                             "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"), {"t": table})
    return [str(r[0]) for r in rows]


def _checked(table: str) -> str:
    if not _TABLE.match(table):
        raise ValueError(f"not a table name: {table!r}")
    return table
