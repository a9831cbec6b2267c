"""Hourly rollup of the readings: min, max, sum and count per gateway, device, metric and UTC hour.

The readings API answers a coarse request (buckets of an hour or more, e.g. a year in 1,000 points) from
this table instead of every reading: a year of one metric at one reading a minute is 525,600 readings but
8,760 rollup rows. It is exact at every moment, and cheap to keep at ingest:

* **Ingest appends partial rows.** ``cloud.db.bulk_store`` aggregates the readings of exactly the
  telemetry records it stored now (:func:`aggregate`) and appends those rows (binary ``COPY`` on
  PostgreSQL), ``compacted`` false, in the batch's transaction: a retried batch adds nothing twice, and
  appends never conflict, so concurrent batches neither wait on nor deadlock with each other. (An
  ``INSERT … ON CONFLICT DO UPDATE`` per row was measured at 70 ms for a 1,000-record batch of 200
  devices, more than storing the batch itself.)
* **Readers sum whatever rows an hour has**: partial or compacted, min of mins, max of maxes, sums of
  sums and counts, so the answer does not depend on compaction.
* **Compaction merges them** (:func:`compact`, run by ``cloud.services.partition_upkeep`` every minute):
  the rows of every key with a partial row are replaced by one compacted row. On PostgreSQL one
  statement deletes those rows and inserts their merge (``DELETE … RETURNING`` feeding the ``INSERT``),
  so rows a concurrent batch appends meanwhile are left for the next pass; on SQLite the write lock holds
  everything still.

:func:`rebuild` recomputes a time range from the readings (migration 0010 and the readings benchmark);
:func:`trim` follows retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, Boolean, Column, Connection, Float, Index, String, Table, false, text

from cloud.db.tables import metadata

HOUR_MS: Final = 3_600_000
#: Keys merged by one compaction statement (a pass repeats it until none is left).
COMPACT_KEYS: Final = 20_000

readings_hourly: Final = Table(
    "readings_hourly",
    metadata,
    Column("device_id", String(64), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("hour_ts", BigInteger, nullable=False),  # start of the UTC hour, ms since the epoch
    Column("gateway_id", String(64), nullable=False),
    Column("min_value", Float, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("sum_value", Float, nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("compacted", Boolean, nullable=False, server_default=false()),
    # The API's question: one device metric over a time range (PostgreSQL: from the index alone).
    Index("ix_readings_hourly_series", "device_id", "metric", "hour_ts",
          postgresql_include=["gateway_id", "min_value", "max_value", "sum_value", "n"]),
    Index("ix_readings_hourly_partial", "hour_ts", postgresql_where=text("NOT compacted"),
          sqlite_where=text("NOT compacted")),
)

#: Columns of the partial rows ingest appends, in :func:`aggregate`'s order.
COLUMNS: Final = ("device_id", "metric", "hour_ts", "gateway_id", "min_value", "max_value", "sum_value", "n")
COPY_TYPES: Final = ("text", "text", "int8", "text", "float8", "float8", "float8", "int8")
_KEY: Final = "device_id, metric, hour_ts, gateway_id"
_MERGED: Final = "min(min_value), max(max_value), sum(sum_value), sum(n)"
_PG_COMPACT: Final = (
    f"WITH pending AS (SELECT DISTINCT {_KEY} FROM readings_hourly WHERE NOT compacted LIMIT {COMPACT_KEYS}), "
    "moved AS (DELETE FROM readings_hourly r USING pending p WHERE r.device_id = p.device_id "
    "AND r.metric = p.metric AND r.hour_ts = p.hour_ts AND r.gateway_id = p.gateway_id "
    f"RETURNING r.device_id, r.metric, r.hour_ts, r.gateway_id, r.min_value, r.max_value, r.sum_value, r.n), "
    f"merged AS (INSERT INTO readings_hourly ({', '.join(COLUMNS)}, compacted) "
    f"SELECT {_KEY}, {_MERGED}, true FROM moved GROUP BY {_KEY} RETURNING 1) "
    "SELECT count(*) FROM merged")
_SQLITE_PENDING: Final = (f"SELECT DISTINCT {_KEY} FROM readings_hourly WHERE NOT compacted "
                          f"LIMIT {COMPACT_KEYS}")
_SQLITE_KEYS: Final = f"({_KEY}) IN (SELECT {_KEY} FROM temp.rollup_pending)"
#: Rollup rows for the readings of ``[:lo, :hi)`` (hour-aligned bounds).
_REBUILD: Final = (f"INSERT INTO readings_hourly ({', '.join(COLUMNS)}, compacted) "
                   "SELECT device_id, metric, ts - ts % 3600000, gateway_id, min(value), max(value), sum(value), "
                   "count(*), true FROM readings WHERE ts >= :lo AND ts < :hi "
                   "GROUP BY device_id, metric, ts - ts % 3600000, gateway_id")

Rollup = tuple[str, str, int, str, float, float, float, int]


def hour_of(ts: int) -> int:
    return ts - ts % HOUR_MS


def aggregate(reading_rows: Iterable[Sequence[Any]]) -> list[Rollup]:
    """Rollup rows of readings ``(gateway_id, record_id, metric, device_id, ts, value)`` (bulk_store's rows)."""
    acc: dict[tuple[str, str, int, str], list[Any]] = {}
    for gw, _rid, metric, device, ts, value in reading_rows:
        key = (device, metric, ts - ts % HOUR_MS, gw)
        cur = acc.get(key)
        if cur is None:
            acc[key] = [value, value, value, 1]
        else:
            cur[0] = min(cur[0], value)
            cur[1] = max(cur[1], value)
            cur[2] += value
            cur[3] += 1
    return [(*key, lo, hi, total, n) for key, (lo, hi, total, n) in acc.items()]


def append_sqlite(cur: Any, rows: Sequence[Rollup]) -> None:
    """Append partial rows with a sqlite3 cursor (inside the caller's transaction)."""
    if rows:
        cur.executemany(f"INSERT INTO readings_hourly ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def compact(conn: Connection) -> int:
    """Merge the rows of up to :data:`COMPACT_KEYS` keys that have partial rows; the keys merged."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(_PG_COMPACT)).scalar_one())
    conn.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS rollup_pending AS SELECT {_KEY} FROM readings_hourly LIMIT 0"))
    conn.execute(text("DELETE FROM temp.rollup_pending"))
    conn.execute(text(f"INSERT INTO temp.rollup_pending {_SQLITE_PENDING}"))
    merged = conn.execute(text(f"SELECT {_KEY}, {_MERGED} FROM readings_hourly WHERE {_SQLITE_KEYS} "
                               f"GROUP BY {_KEY}")).all()
    conn.execute(text(f"DELETE FROM readings_hourly WHERE {_SQLITE_KEYS}"))
    if merged:
        conn.execute(text(f"INSERT INTO readings_hourly ({', '.join(COLUMNS)}, compacted) VALUES "
                          "(:d, :m, :h, :g, :lo, :hi, :s, :n, 1)"),
                     [dict(zip(("d", "m", "h", "g", "lo", "hi", "s", "n"), r, strict=True)) for r in merged])
    return len(merged)


def rebuild(conn: Connection, from_ts: int | None = None, to_ts: int | None = None) -> None:
    """Recompute the rollup of the hours of ``[from_ts, to_ts)`` (None: unbounded) from the readings."""
    lo = -(2**62) if from_ts is None else hour_of(from_ts)
    hi = 2**62 if to_ts is None else hour_of(to_ts + HOUR_MS - 1)
    conn.execute(text("DELETE FROM readings_hourly WHERE hour_ts >= :lo AND hour_ts < :hi"), {"lo": lo, "hi": hi})
    conn.execute(text(_REBUILD), {"lo": lo, "hi": hi})


def trim(conn: Connection, boundary_ts: int) -> None:
    """Follow a retention pass that removed the readings before ``boundary_ts``: drop the hours that
    ended by then, recompute the one it cuts."""
    conn.execute(text("DELETE FROM readings_hourly WHERE hour_ts + 3600000 <= :b"), {"b": boundary_ts})
    if boundary_ts % HOUR_MS:
        rebuild(conn, hour_of(boundary_ts), hour_of(boundary_ts) + HOUR_MS)
