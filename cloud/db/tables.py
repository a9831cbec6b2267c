"""Tables of the cloud store (SQLAlchemy Core). One table per sync record kind, keyed by record id.

Timestamps are integer milliseconds since the epoch, like the wire contracts.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata: Final = MetaData()

RECORD_KINDS: Final = ("telemetry", "scan", "device_status", "alert", "forecast")


def _count_columns() -> list[Column[int]]:
    return [Column(f"n_{kind}", BigInteger, nullable=False, server_default="0") for kind in RECORD_KINDS]


gateways: Final = Table(
    "gateways",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_seen_ts", BigInteger, nullable=True),
    Column("last_batch_id", String(128), nullable=True),
    Column("agent_version", String(32), nullable=True),
    *_count_columns(),
)

tokens: Final = Table(
    "api_tokens",
    metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), nullable=True),
    Column("label", String(200), nullable=True),
    Column("created_ts", BigInteger, nullable=False),
)


def _message_columns() -> list[Column[Any]]:
    """Columns shared by the tables of device messages (envelope + where and when it arrived)."""
    return [
        Column("id", String(200), primary_key=True),
        Column("gateway_id", String(64), nullable=False),
        Column("device_id", String(64), nullable=False),
        Column("boot_id", String(64), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("msg_id", String(64), nullable=False),
        Column("ts", BigInteger, nullable=False),
        Column("received_ts", BigInteger, nullable=False),
        Column("stored_ts", BigInteger, nullable=False),
    ]


telemetry: Final = Table(
    "telemetry",
    metadata,
    *_message_columns(),
    Column("n_readings", Integer, nullable=False),
    Index("ix_telemetry_device_ts", "device_id", "ts"),
)

#: One row per reading of a telemetry message, for training queries (device, metric, time range).
readings: Final = Table(
    "readings",
    metadata,
    Column("record_id", String(200), ForeignKey("telemetry.id"), primary_key=True),
    Column("metric", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_readings_device_metric_ts", "device_id", "metric", "ts"),
)

scans: Final = Table(
    "scans",
    metadata,
    *_message_columns(),
    Column("code_type", String(16), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("reader_id", String(64), nullable=False),
    Column("tag_id", String(128), nullable=True),
    Index("ix_scans_sku_ts", "sku", "ts"),
)

device_status: Final = Table(
    "device_status",
    metadata,
    *_message_columns(),
    Column("state", String(16), nullable=False),
    Column("fw_version", String(32), nullable=False),
    Column("uptime_s", Float, nullable=False),
    Column("reason", String(200), nullable=True),
    Index("ix_device_status_device_ts", "device_id", "ts"),
)

alerts: Final = Table(
    "alerts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("gateway_id", String(64), nullable=False),
    Column("alert_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("device_id", String(64), nullable=True),
    Column("ts", BigInteger, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_alerts_ts_id", "ts", "id"),
)

forecasts: Final = Table(
    "forecasts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("gateway_id", String(64), nullable=False),
    Column("forecast_id", String(128), nullable=False),
    Column("site", String(64), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("origin", String(10), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("stored_ts", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_forecasts_created_id", "created_ts", "id"),
)

#: Table holding each sync record kind.
RECORD_TABLES: Final[dict[str, Table]] = {
    "telemetry": telemetry,
    "scan": scans,
    "device_status": device_status,
    "alert": alerts,
    "forecast": forecasts,
}
