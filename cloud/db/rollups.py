"""Hourly rollup of the readings: min, max, sum and count per gateway, device, metric and UTC hour.

The readings API answers a coarse request (buckets of an hour or more, e.g. a year in 1,000 points) from
this table instead of every reading: a year of one metric at one reading a minute is 525,600 readings but
8,760 rollup rows. It is kept exact at ingest: ``cloud.db.bulk_store`` adds the readings of exactly the
telemetry records it stored now (:func:`aggregate`, then :func:`add`: one upsert that merges min, max,
sum and count), in the batch's transaction, so a retried batch adds nothing twice. Rows are keyed by
gateway (the key of every record), so concurrent batches of different gateways never touch the same row
and batches of one gateway take turns on its lock. :func:`rebuild` recomputes a time range from the
readings (migration 0010 and the readings benchmark); retention deletes what the readings lose
(``cloud.services.partition_upkeep``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import BigInteger, Column, Connection, Float, String, Table, text

from cloud.db.tables import metadata

HOUR_MS: Final = 3_600_000

readings_hourly: Final = Table(
    "readings_hourly",
    metadata,
    # Key order serves the API: one device metric over a time range, optionally of one gateway.
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("hour_ts", BigInteger, primary_key=True),  # start of the UTC hour, ms since the epoch
    Column("gateway_id", String(64), primary_key=True),
    Column("min_value", Float, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("sum_value", Float, nullable=False),
    Column("n", BigInteger, nullable=False),
)

_COLUMNS: Final = "device_id, metric, hour_ts, gateway_id, min_value, max_value, sum_value, n"
_MERGE: Final = ("ON CONFLICT (device_id, metric, hour_ts, gateway_id) DO UPDATE SET "
                 "min_value = {least}(readings_hourly.min_value, excluded.min_value), "
                 "max_value = {greatest}(readings_hourly.max_value, excluded.max_value), "
                 "sum_value = readings_hourly.sum_value + excluded.sum_value, "
                 "n = readings_hourly.n + excluded.n")
_PG_ADD: Final = (f"INSERT INTO readings_hourly ({_COLUMNS}) SELECT * FROM unnest("
                  "%s::text[], %s::text[], %s::int8[], %s::text[], %s::float8[], %s::float8[], %s::float8[], "
                  "%s::int8[]) " + _MERGE.format(least="LEAST", greatest="GREATEST"))
_SQLITE_ADD: Final = (f"INSERT INTO readings_hourly ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                      + _MERGE.format(least="min", greatest="max"))
#: Rollup rows for the readings of ``[:lo, :hi)`` (hour-aligned bounds).
_REBUILD: Final = (f"INSERT INTO readings_hourly ({_COLUMNS}) "
                   "SELECT device_id, metric, ts - ts % 3600000, gateway_id, min(value), max(value), sum(value), "
                   "count(*) FROM readings WHERE ts >= :lo AND ts < :hi "
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
    return [(*key, lo, hi, total, n) for key, (lo, hi, total, n) in sorted(acc.items())]


def add(conn: Connection, rows: Sequence[Rollup]) -> None:
    """Merge ``rows`` into the rollup (inside the caller's transaction)."""
    if not rows:
        return
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur:  # type: ignore[union-attr]
            cur.execute(_PG_ADD, [list(col) for col in zip(*rows, strict=True)])
    else:
        cur = raw.cursor()  # type: ignore[union-attr]
        try:
            cur.executemany(_SQLITE_ADD, rows)
        finally:
            cur.close()


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
