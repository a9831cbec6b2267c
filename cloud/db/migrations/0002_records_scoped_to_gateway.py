"""Sync records keyed by (gateway_id, id); readings carry their gateway (issue 10).

Until now a record was keyed by its id alone, so one gateway could pre-empt another's records.
The primary keys of telemetry, scans, device_status, alerts and forecasts become
``(gateway_id, id)``; readings get a ``gateway_id`` (taken from their telemetry message) and the
key ``(gateway_id, record_id, metric)``; the listing indexes page by (ts, gateway_id, id).
PostgreSQL alters the keys in place; SQLite, which cannot, copies each table into its new shape.
Every stored row is kept.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)

from cloud.db.migration_ops import foreign_key_names, primary_key_name, rebuild_sqlite_table

_new: Final = MetaData()


def _message_columns() -> list[Column[Any]]:
    return [
        Column("gateway_id", String(64), primary_key=True),
        Column("id", String(200), primary_key=True),
        Column("device_id", String(64), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("msg_id", String(64), nullable=False),
        Column("ts", BigInteger, nullable=False),
        Column("received_ts", BigInteger, nullable=False),
        Column("stored_ts", BigInteger, nullable=False),
    ]


_telemetry: Final = Table("telemetry", _new, *_message_columns(), Column("n_readings", Integer, nullable=False),
                          Index("ix_telemetry_device_ts", "device_id", "ts"))
_readings: Final = Table(
    "readings", _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("record_id", String(200), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_readings_device_metric_ts", "device_id", "metric", "ts"),
    ForeignKeyConstraint(["gateway_id", "record_id"], ["telemetry.gateway_id", "telemetry.id"]),
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
)
_device_status: Final = Table(
    "device_status", _new, *_message_columns(),
    Column("state", String(16), nullable=False),
    Column("fw_version", String(32), nullable=False),
    Column("uptime_s", Float, nullable=False),
    Column("reason", String(200), nullable=True),
    Index("ix_device_status_device_ts", "device_id", "ts"),
)
_alerts: Final = Table(
    "alerts", _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("alert_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("device_id", String(64), nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_alerts_ts_gw_id", "ts", "gateway_id", "id"),
)
_forecasts: Final = Table(
    "forecasts", _new,
    Column("gateway_id", String(64), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("forecast_id", String(128), nullable=False),
    Column("site", String(64), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("origin", String(10), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_forecasts_created_gw_id", "created_ts", "gateway_id", "id"),
)

#: Tables whose key becomes (gateway_id, id); their gateway_id column exists already.
_KEYED_BY_ID: Final = (_telemetry, _scans, _device_status, _alerts, _forecasts)
#: Listing indexes renamed with the new paging order: old name -> new index.
_LISTING_INDEXES: Final = {"ix_alerts_ts_id": _alerts, "ix_forecasts_created_id": _forecasts}


def upgrade(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        _upgrade_sqlite(conn)
    else:
        _upgrade_postgresql(conn)


def _upgrade_sqlite(conn: Connection) -> None:
    columns = {t.name: ", ".join(c.name for c in t.columns) for t in _KEYED_BY_ID}
    for table in _KEYED_BY_ID:
        rebuild_sqlite_table(conn, table, f"SELECT {columns[table.name]} FROM {table.name}")
    # LEFT JOIN: a reading without its message would fail the NOT NULL gateway_id instead of vanishing
    rebuild_sqlite_table(conn, _readings, "SELECT t.gateway_id, r.record_id, r.metric, r.device_id, r.ts, r.value "
                                          "FROM readings r LEFT JOIN telemetry t ON t.id = r.record_id")


def _upgrade_postgresql(conn: Connection) -> None:
    for fk in foreign_key_names(conn, "readings", "telemetry"):
        conn.execute(text(f'ALTER TABLE readings DROP CONSTRAINT "{fk}"'))
    conn.execute(text("ALTER TABLE readings ADD COLUMN gateway_id VARCHAR(64)"))
    conn.execute(text("UPDATE readings SET gateway_id = t.gateway_id FROM telemetry t WHERE t.id = readings.record_id"))
    conn.execute(text("ALTER TABLE readings ALTER COLUMN gateway_id SET NOT NULL"))
    for table in _KEYED_BY_ID:
        conn.execute(text(f'ALTER TABLE {table.name} DROP CONSTRAINT "{primary_key_name(conn, table.name)}"'))
        conn.execute(text(f"ALTER TABLE {table.name} ADD PRIMARY KEY (gateway_id, id)"))
    conn.execute(text(f'ALTER TABLE readings DROP CONSTRAINT "{primary_key_name(conn, "readings")}"'))
    conn.execute(text("ALTER TABLE readings ADD PRIMARY KEY (gateway_id, record_id, metric)"))
    conn.execute(text("ALTER TABLE readings ADD FOREIGN KEY (gateway_id, record_id) "
                      "REFERENCES telemetry (gateway_id, id)"))
    for old, table in _LISTING_INDEXES.items():
        conn.execute(text(f"DROP INDEX {old}"))
        for index in table.indexes:
            index.create(conn)
