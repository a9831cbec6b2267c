"""The hourly rollup of the readings (``readings_hourly``: min, max, sum, count per gateway, device, metric and
UTC hour), filled from the readings already stored; kept at ingest from then on (issue 13.2).

Ingest appends partial rows (``compacted`` false) that the upkeep merges; the readings API answers
requests of hour-or-coarser buckets from it (``cloud.db.rollups``, ``cloud.services.timeseries``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    MetaData,
    String,
    Table,
    false,
    text,
)

_readings_hourly: Final = Table(
    "readings_hourly",
    MetaData(),
    Column("device_id", String(64), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("hour_ts", BigInteger, nullable=False),
    Column("gateway_id", String(64), nullable=False),
    Column("min_value", Float, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("sum_value", Float, nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("compacted", Boolean, nullable=False, server_default=false()),
    Index("ix_readings_hourly_series", "device_id", "metric", "hour_ts",
          postgresql_include=["gateway_id", "min_value", "max_value", "sum_value", "n"]),
    Index("ix_readings_hourly_partial", "hour_ts", postgresql_where=text("NOT compacted"),
          sqlite_where=text("NOT compacted")),
)


def upgrade(conn: Connection) -> None:
    _readings_hourly.create(conn)
    conn.execute(text(
        "INSERT INTO readings_hourly (device_id, metric, hour_ts, gateway_id, min_value, max_value, sum_value, n, "
        "compacted) SELECT device_id, metric, ts - ts % 3600000, gateway_id, min(value), max(value), sum(value), "
        "count(*), true FROM readings GROUP BY device_id, metric, ts - ts % 3600000, gateway_id"))
