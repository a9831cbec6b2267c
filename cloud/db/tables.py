"""Tables of the cloud store (SQLAlchemy Core). One table per sync record kind.

Records are keyed by ``(gateway_id, id)``: the id is derived from the record's content (checked at
ingest, see ``protocols.sync``) and scoped to the gateway that authenticated the batch, so no
gateway can pre-empt or shadow another's records. A device heard by two gateways (moved between
sites, or in range of both) has its messages stored once per gateway, each under its own gateway.

Timestamps are integer milliseconds since the epoch, like the wire contracts.

The time series (``telemetry``, its ``readings``, ``scans``) are partitioned by ``ts`` on PostgreSQL
(weekly range partitions kept by ``cloud.db.partitions``; ignored on SQLite). PostgreSQL requires a
partitioned table's unique keys to hold the partition key, so these two record tables are keyed by
``(gateway_id, id, ts)``: ``ts`` is the time of the device message the id names, the same in every
retry of the record. ``readings`` has no key of its own: its rows are inserted only with the
telemetry record they belong to, when that record is new.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

import protocols
from cloud.db.columns import count_columns, message_columns

metadata: Final = MetaData()

#: One table (and one gateway counter ``n_<kind>``) per sync record kind of the wire contract.
RECORD_KINDS: Final = protocols.RECORD_KINDS


gateways: Final = Table(
    "gateways",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("site", String(64), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("last_seen_ts", BigInteger, nullable=True),
    Column("last_batch_id", String(128), nullable=True),
    Column("agent_version", String(32), nullable=True),
    *count_columns(RECORD_KINDS),
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


#: How PostgreSQL partitions the time series (``cloud.db.partitions`` creates the partitions).
PARTITION_BY: Final = "RANGE (ts)"


telemetry: Final = Table(
    "telemetry",
    metadata,
    *message_columns(time_keyed=True),
    Column("n_readings", Integer, nullable=False),
    # no index by device: the readings' (device_id, metric, ts) answers the device queries (migration 0013)
    postgresql_partition_by=PARTITION_BY,
)

#: One row per reading of a telemetry message: the series the readings API downsamples and training reads
#: (device, metric, time range; PostgreSQL answers from the index alone, ``value`` included in it).
readings: Final = Table(
    "readings",
    metadata,
    Column("gateway_id", String(64), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_readings_device_metric_ts", "device_id", "metric", "ts", postgresql_include=["value"]),
    # the rollup's hourly pass reads one closed hour of every series (``cloud.db.rollups.advance``): a BRIN
    # index on PostgreSQL (rows arrive in about time order, a few pages per week), a B-tree on SQLite
    Index("ix_readings_ts", "ts", postgresql_using="brin", postgresql_with={"autosummarize": "on"}),
    postgresql_partition_by=PARTITION_BY,
)

scans: Final = Table(
    "scans",
    metadata,
    *message_columns(time_keyed=True),
    Column("code_type", String(16), nullable=False),
    Column("sku", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("reader_id", String(64), nullable=False),
    Column("tag_id", String(128), nullable=True),
    Index("ix_scans_sku_ts", "sku", "ts"),
    postgresql_partition_by=PARTITION_BY,
)

#: The partitioned time series, each with the column it is partitioned by.
TIME_SERIES: Final[tuple[Table, ...]] = (telemetry, readings, scans)

device_status: Final = Table(
    "device_status",
    metadata,
    *message_columns(),
    Column("state", String(16), nullable=False),
    Column("fw_version", String(32), nullable=False),
    Column("uptime_s", Float, nullable=False),
    Column("reason", String(200), nullable=True),
    Index("ix_device_status_device_ts", "device_id", "ts"),
)

alerts: Final = Table(
    "alerts",
    metadata,
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
    #: Alert v2 (migration 0008): what a system alert is about (``alert_flood``, ...), the stream's metric.
    Column("code", String(48), nullable=True),
    Column("metric", String(64), nullable=True),
    Index("ix_alerts_ts_gw_id", "ts", "gateway_id", "id"),
)

forecasts: Final = Table(
    "forecasts",
    metadata,
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

#: Table holding each sync record kind.
RECORD_TABLES: Final[dict[str, Table]] = {
    "telemetry": telemetry,
    "scan": scans,
    "device_status": device_status,
    "alert": alerts,
    "forecast": forecasts,
}


# --- model registry, signed releases and staged rollouts (cloud/services/model_registry.py, rollouts.py) ---

#: Every model version of a task; ``scope`` is "fleet" or "site:<site>".
model_versions: Final = Table(
    "model_versions",
    metadata,
    Column("task", String(16), primary_key=True),
    Column("model_version", BigInteger, primary_key=True),
    Column("scope", String(80), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("data_from_ts", BigInteger, nullable=True),
    Column("data_to_ts", BigInteger, nullable=True),
    Column("parent_version", BigInteger, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("job_id", BigInteger, nullable=True),
    Column("status", String(16), nullable=False),
    Column("gate_passed", Boolean, nullable=True),
    Column("gate_reason", Text, nullable=True),
    Column("promoted_by", String(200), nullable=True),
    Column("promoted_ts", BigInteger, nullable=True),
    Index("ix_model_versions_status", "task", "status"),
)

#: ``.tflite`` bytes, stored once per digest.
model_artifacts: Final = Table(
    "model_artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)

#: Signed release documents (protocols.SignedRelease JSON). ``held``: a pre-signed rollback not served yet.
model_releases: Final = Table(
    "model_releases",
    metadata,
    Column("task", String(16), primary_key=True),
    Column("metadata_version", BigInteger, primary_key=True),
    Column("model_version", BigInteger, nullable=False),
    Column("rollback", Boolean, nullable=False),
    Column("held", Boolean, nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    Index("ix_model_releases_model", "task", "model_version", "metadata_version"),
)

#: Release documents waiting for an offline signature (``edgehouse models sign``).
model_signing_requests: Final = Table(
    "model_signing_requests",
    metadata,
    Column("request_id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(16), nullable=False),
    Column("metadata_version", BigInteger, nullable=False),
    Column("model_version", BigInteger, nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("held", Boolean, nullable=False),
    Column("release", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("signed_ts", BigInteger, nullable=True),
    UniqueConstraint("task", "metadata_version", name="uq_model_signing_requests_task_md"),
)

#: Accepted key rotations (protocols.SignedKeyRotation JSON), served to every gateway.
model_key_rotations: Final = Table(
    "model_key_rotations",
    metadata,
    Column("rotation_version", BigInteger, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)

#: The model version each scope runs outside rollouts ("fleet", "site:<site>").
model_baselines: Final = Table(
    "model_baselines",
    metadata,
    Column("task", String(16), primary_key=True),
    Column("scope", String(80), primary_key=True),
    Column("model_version", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

#: Per-gateway pins (group rollouts that completed, aborted rollouts, rollbacks); override the baseline.
gateway_model_pins: Final = Table(
    "gateway_model_pins",
    metadata,
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), primary_key=True),
    Column("task", String(16), primary_key=True),
    Column("model_version", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
)

gateway_groups: Final = Table(
    "gateway_groups",
    metadata,
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), primary_key=True),
    Column("group_name", String(64), nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Index("ix_gateway_groups_group", "group_name"),
)

rollouts: Final = Table(
    "rollouts",
    metadata,
    Column("rollout_id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(16), nullable=False),
    Column("model_version", BigInteger, nullable=False),
    Column("previous_version", BigInteger, nullable=True),
    Column("scope", String(80), nullable=False),
    Column("group_name", String(64), nullable=True),
    Column("state", String(16), nullable=False),
    Column("stage", Integer, nullable=False),
    Column("n_stages", Integer, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("stage_started_ts", BigInteger, nullable=False),
    Column("params", JSON, nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("updated_ts", BigInteger, nullable=False),
    Index("ix_rollouts_task_state", "task", "state"),
)

rollout_members: Final = Table(
    "rollout_members",
    metadata,
    Column("rollout_id", Integer, ForeignKey("rollouts.rollout_id"), primary_key=True),
    Column("gateway_id", String(64), primary_key=True),
    Column("stage", Integer, nullable=False),
    Column("previous_version", BigInteger, nullable=True),
    Column("gate", String(16), nullable=False),
    Column("detail", Text, nullable=True),
)

rollout_events: Final = Table(
    "rollout_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("rollout_id", Integer, ForeignKey("rollouts.rollout_id"), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("stage", Integer, nullable=True),
    Column("reason", Text, nullable=False),
    Index("ix_rollout_events_rollout", "rollout_id", "event_id"),
)

#: The latest protocols.ModelReport of each gateway.
gateway_model_reports: Final = Table(
    "gateway_model_reports",
    metadata,
    Column("gateway_id", String(64), ForeignKey("gateways.gateway_id"), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
    Column("report", JSON, nullable=False),
    #: From the report's ``gateway`` part (v2) and its tasks, for the fleet's filters and sort (issue 16).
    Column("outbox_depth", BigInteger, nullable=True),
    Column("oldest_unsynced_ts", BigInteger, nullable=True),
    Column("mqtt_connected", Boolean, nullable=True),
    Column("rejected_updates", Integer, nullable=False, server_default="0"),
)


# Alert management (issue 16), the job queues, the readings rollup and synced stock (issue 15) live in their own
# modules, registered on this metadata here.
from cloud.db import alarm_tables as _alarm_tables  # noqa: F401
from cloud.db import job_tables as _job_tables  # noqa: F401
from cloud.db import rollups as _rollups  # noqa: F401  (readings_hourly)
from cloud.db import stock_tables as _stock_tables  # noqa: F401
