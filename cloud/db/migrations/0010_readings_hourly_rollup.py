"""The hourly rollup of the readings (``readings_hourly``: min, max, sum, count per gateway, device, metric and
UTC hour), filled from the readings already stored; kept at ingest from then on (issue 13.2).

The readings API answers requests of hour-or-coarser buckets from it (``cloud.services.timeseries``).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import BigInteger, Column, Connection, Float, MetaData, String, Table, text

_readings_hourly: Final = Table(
    "readings_hourly",
    MetaData(),
    Column("device_id", String(64), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("hour_ts", BigInteger, primary_key=True),
    Column("gateway_id", String(64), primary_key=True),
    Column("min_value", Float, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("sum_value", Float, nullable=False),
    Column("n", BigInteger, nullable=False),
)


def upgrade(conn: Connection) -> None:
    _readings_hourly.create(conn)
    conn.execute(text(
        "INSERT INTO readings_hourly (device_id, metric, hour_ts, gateway_id, min_value, max_value, sum_value, n) "
        "SELECT device_id, metric, ts - ts % 3600000, gateway_id, min(value), max(value), sum(value), count(*) "
        "FROM readings GROUP BY device_id, metric, ts - ts % 3600000, gateway_id"))
