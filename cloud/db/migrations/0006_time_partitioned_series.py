"""Telemetry, readings and scans partitioned by week on PostgreSQL; keys fit partitions (issue 13.2).

PostgreSQL: each of the three tables becomes ``PARTITION BY RANGE (ts)`` with a DEFAULT partition and
one partition per week holding rows (``cloud.db.partitions``); every row is copied over. A partitioned
table's unique keys must hold ``ts``, so telemetry and scans are keyed by ``(gateway_id, id, ts)``;
readings lose their key and their foreign key to telemetry (they are inserted only with their new
telemetry record) and their index ``(device_id, metric, ts)`` includes ``value``, so the readings API
reads one series from the index alone. SQLite gets the same keys (its tables are copied into the new
shape); it has no partitions.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import BigInteger, Column, Connection, Float, Index, Integer, MetaData, String, Table, text

from cloud.db import partitions
from cloud.db.migration_ops import foreign_key_names, primary_key_name, rebuild_sqlite_table

_new: Final = MetaData()
_PARTITION_BY: Final = "RANGE (ts)"
#: Weeks with rows further back than this (or ahead) stay in the default partition.
_WEEKS_BACK: Final = 160
_WEEKS_AHEAD: Final = 5


def _message_columns() -> list[Column[Any]]:
    return [
        Column("gateway_id", String(64), primary_key=True),
        Column("id", String(200), primary_key=True),
        Column("device_id", String(64), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("msg_id", String(64), nullable=False),
        Column("ts", BigInteger, primary_key=True, nullable=False),
        Column("received_ts", BigInteger, nullable=False),
        Column("stored_ts", BigInteger, nullable=False),
    ]


_telemetry: Final = Table("telemetry", _new, *_message_columns(), Column("n_readings", Integer, nullable=False),
                          Index("ix_telemetry_device_ts", "device_id", "ts"), postgresql_partition_by=_PARTITION_BY)
_readings: Final = Table(
    "readings", _new,
    Column("gateway_id", String(64), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_readings_device_metric_ts", "device_id", "metric", "ts", postgresql_include=["value"]),
    postgresql_partition_by=_PARTITION_BY,
)
_scans: Final = Table(
    "scans", _new, *_message_columns(),
    Column("code_type", String(16), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("reader_id", String(64), nullable=False),
    Column("tag_id", String(128), nullable=True),
    Index("ix_scans_sku_ts", "sku", "ts"),
    postgresql_partition_by=_PARTITION_BY,
)
_TABLES: Final = (_telemetry, _readings, _scans)


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for table in _TABLES:
            columns = ", ".join(c.name for c in table.columns)
            rebuild_sqlite_table(conn, table, f"SELECT {columns} FROM {table.name}")
    else:
        _upgrade_postgresql(conn)


def _upgrade_postgresql(conn: Connection) -> None:
    for fk in foreign_key_names(conn, "readings", "telemetry"):
        conn.execute(text(f'ALTER TABLE readings DROP CONSTRAINT "{fk}"'))
    now = int(time.time() * 1000)
    lo, hi = now - _WEEKS_BACK * partitions.WEEK_MS, now + _WEEKS_AHEAD * partitions.WEEK_MS
    for table in _TABLES:
        old = f"{table.name}__unpartitioned"
        conn.execute(text(f"ALTER TABLE {table.name} RENAME TO {old}"))
        conn.execute(text(f'ALTER TABLE {old} DROP CONSTRAINT "{primary_key_name(conn, old)}"'))
        for index in table.indexes:
            conn.execute(text(f'DROP INDEX IF EXISTS "{index.name}"'))
        table.create(conn)
        partitions.ensure_default(conn, table.name)
        # one partition per week holding rows (within the window), the rest waits in the default partition
        starts = conn.execute(text(
            f"SELECT DISTINCT ts - ((ts - {4 * partitions.DAY_MS}) % {partitions.WEEK_MS}) FROM {old} "
            "WHERE ts >= :lo AND ts < :hi"), {"lo": lo, "hi": hi}).scalars().all()
        for start in sorted(int(s) for s in starts):
            partitions.ensure_weeks(conn, table.name, start, start + 1)
        columns = ", ".join(c.name for c in table.columns)
        conn.execute(text(f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {old}"))
        conn.execute(text(f"DROP TABLE {old}"))
