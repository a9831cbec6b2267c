"""Hourly rollup of the readings: min, max, sum and count per gateway, device, metric and UTC hour.

The readings API answers a coarse request (buckets of an hour or more, e.g. a year in 1,000 points) from
this table instead of every reading: a year of one metric at one reading a minute is 525,600 readings but
8,760 rollup rows. Its answers are exact at every moment; the rollup is made off the ingest path:

* **A watermark** (``rollup_watermark``, one row): ``hour_ts``, every reading before it is counted in the
  rollup and none after it; readers take the rollup's hours before it and the readings from it on
  (``cloud.services.timeseries``), so a reading is seen the moment its batch commits. ``ingest_ts`` (at
  or after ``hour_ts``): the readings before it are *late*, counted at ingest (below).
* **Closed hours are rolled up in bulk** (``cloud.services.partition_upkeep``, every minute), in two steps
  that never hold ingest up for longer than a batch: :func:`close_hours` moves ``ingest_ts`` to the hour
  :data:`GRACE_MS` before now under the rollup lock (:func:`lock_for_advance`: on PostgreSQL an exclusive
  advisory lock that every batch holds shared, :func:`lock_for_ingest`, so it waits for the batches in
  flight and is released at once); then :func:`advance` recomputes the hours from ``hour_ts`` to
  ``ingest_ts`` from the readings and moves ``hour_ts`` past them, in one statement and one snapshot
  (PostgreSQL: ``DELETE`` and ``INSERT … SELECT`` in one ``WITH``), without that lock: the readings it
  sees are counted by it (their partial rows, if any, are deleted with the rest), those committed after
  its snapshot by their own partial rows. So every reading is counted exactly once whatever stops a
  pass half-way (a rerun starts again from the watermark); replicas take turns (the compaction lock).
* **Late readings** (a gateway back after hours offline: readings before ``ingest_ts``) are counted at
  ingest: ``cloud.db.bulk_store`` aggregates them (:func:`aggregate`) and appends partial rows
  (``compacted`` false) in the batch's transaction, so a retried batch adds nothing twice and appends
  never conflict. Readers sum whatever rows an hour has (min of mins, ... sums of counts); compaction
  (:func:`compact`, every minute too) merges them. On PostgreSQL one statement deletes those rows and
  inserts their merge (``DELETE … RETURNING`` feeding the ``INSERT``), so rows a concurrent batch appends
  meanwhile are left for the next pass; on SQLite the write lock holds everything still. (Appending partial
  rows for every batch cost more than storing its readings: measured in cloud/README.md.)

:func:`rebuild` recomputes a time range from the readings (migration 0010 and the readings benchmark);
:func:`trim` follows retention (on PostgreSQL in one statement, one snapshot, as :func:`advance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, Boolean, Column, Connection, Float, Index, String, Table, false, text

from cloud.db.tables import metadata

HOUR_MS: Final = 3_600_000
#: An hour is rolled up once it ended this long ago: readings synced later than that (an outbox emptied
#: after hours offline) are the late ones counted at ingest.
GRACE_MS: Final = 6 * HOUR_MS
#: Hours rolled up by one :func:`advance` transaction (a pass repeats it until nothing is due).
ADVANCE_HOURS: Final = 24
#: PostgreSQL advisory lock key of the rollup (shared by every batch, exclusive for :func:`close_hours`).
LOCK_KEY: Final = 7263512301
WATERMARK: Final = "readings_hourly"
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
    # the hour-range deletes of advance, rebuild and trim (migration 0012)
    Index("ix_readings_hourly_hour", "hour_ts"),
)

#: Every reading before ``hour_ts`` (an hour's start) is counted in ``readings_hourly``, none after it; the
#: readings before ``ingest_ts`` (at or after ``hour_ts``) are counted at ingest.
rollup_watermark: Final = Table(
    "rollup_watermark",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("hour_ts", BigInteger, nullable=False),
    Column("ingest_ts", BigInteger, nullable=False),
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


def start_watermark(conn: Connection, now_ms: int) -> None:
    """Set the watermark :data:`GRACE_MS` before the hour of ``now_ms`` (what migration 0012 does; for a
    database emptied by hand, as the tests do): right when the rollup counts every reading stored."""
    conn.execute(text("DELETE FROM rollup_watermark"))
    conn.execute(text("INSERT INTO rollup_watermark (name, hour_ts, ingest_ts) VALUES (:n, :h, :h)"),
                 {"n": WATERMARK, "h": hour_of(now_ms) - GRACE_MS})


def lock_for_ingest(cur: Any) -> None:
    """PostgreSQL (a psycopg cursor): hold the rollup lock shared until the batch's transaction ends."""
    cur.execute(f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY})")


def late_before(cur: Any) -> int:
    """``ingest_ts``, read with a DB-API cursor (PostgreSQL: after :func:`lock_for_ingest`)."""
    cur.execute(f"SELECT ingest_ts FROM rollup_watermark WHERE name = '{WATERMARK}'")
    return int(cur.fetchone()[0])


def watermark(conn: Connection) -> int:
    """The watermark: the readings before it are in the rollup, those from it on are not."""
    return int(conn.execute(text("SELECT hour_ts FROM rollup_watermark WHERE name = :n"),
                            {"n": WATERMARK}).scalar_one())


def late(reading_rows: Sequence[Sequence[Any]], before_ts: int) -> Sequence[Sequence[Any]]:
    """The readings ``(gateway_id, record_id, metric, device_id, ts, value)`` before ``before_ts``."""
    return [r for r in reading_rows if r[4] < before_ts]


def lock_for_advance(conn: Connection) -> None:
    """PostgreSQL: the rollup lock, exclusive, once every batch in flight has committed (SQLite: the
    transaction already holds the write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def close_hours(conn: Connection, now_ms: int) -> bool:
    """Move ``ingest_ts`` to the hour :data:`GRACE_MS` before ``now_ms`` (after :func:`lock_for_advance`): the
    batches from then on count the readings before it themselves; whether it moved."""
    moved = conn.execute(text("UPDATE rollup_watermark SET ingest_ts = :e WHERE name = :n AND ingest_ts < :e"),
                         {"e": hour_of(now_ms - GRACE_MS), "n": WATERMARK})
    return bool(moved.rowcount)


_PG_ADVANCE: Final = (
    "WITH gone AS (DELETE FROM readings_hourly WHERE hour_ts >= :lo AND hour_ts < :hi), "
    f"added AS ({_REBUILD}) "
    "UPDATE rollup_watermark SET hour_ts = :hi WHERE name = :n")


def advance(conn: Connection) -> int:
    """Roll up up to :data:`ADVANCE_HOURS` hours from ``hour_ts`` towards ``ingest_ts`` and move ``hour_ts`` past
    them (the caller's transaction; PostgreSQL: under the compaction lock); the hours rolled up, 0 when none."""
    start, closed = conn.execute(text("SELECT hour_ts, ingest_ts FROM rollup_watermark WHERE name = :n"),
                                 {"n": WATERMARK}).one()
    end = min(int(closed), int(start) + ADVANCE_HOURS * HOUR_MS)
    if end <= start:
        return 0
    params = {"lo": int(start), "hi": end, "n": WATERMARK}
    if conn.dialect.name == "postgresql":  # one statement, one snapshot: see the module doc
        conn.execute(text(_PG_ADVANCE), params)
    else:  # the write lock holds ingest still
        rebuild(conn, int(start), end)
        conn.execute(text("UPDATE rollup_watermark SET hour_ts = :hi WHERE name = :n"), params)
    return (end - int(start)) // HOUR_MS


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


#: :func:`trim`: the rows of the hours before ``:hi``: those that ended by the boundary and the one it cuts
#: (``[:lo, :hi)``, empty when the boundary is on an hour), recomputed by :data:`_REBUILD`; on PostgreSQL both
#: in one statement and one snapshot, as :data:`_PG_ADVANCE`.
_TRIM_DELETE: Final = "DELETE FROM readings_hourly WHERE hour_ts < :hi"
_PG_TRIM: Final = f"WITH gone AS ({_TRIM_DELETE}) {_REBUILD}"


def trim(conn: Connection, boundary_ts: int) -> None:
    """Follow a retention pass that removed the readings before ``boundary_ts``: drop the hours that
    ended by then, recompute the one it cuts. Exact while batches come: on PostgreSQL one statement (a late
    batch's readings and partial rows are both in its snapshot or both out of it; the caller holds the
    compaction lock), on SQLite under the write lock the retention's ``DELETE`` took."""
    lo = hour_of(boundary_ts)
    hi = lo + HOUR_MS if boundary_ts % HOUR_MS else lo
    if conn.dialect.name == "postgresql":
        conn.execute(text(_PG_TRIM), {"lo": lo, "hi": hi})
        return
    conn.execute(text(_TRIM_DELETE), {"hi": hi})
    if hi > lo:
        conn.execute(text(_REBUILD), {"lo": lo, "hi": hi})
