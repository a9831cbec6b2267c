"""Durable job queues: route jobs in a table, lease columns on train jobs, stored training artifacts.

Workers (``edgehouse-cloud worker``) claim queued rows, hold a lease while they run a job and store
its results in the database, so any API replica serves them (issue 13).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)

from cloud.db.migration_ops import add_column

_new: Final = MetaData()


def _queue_columns() -> list[Column[Any]]:
    return [
        Column("cancel_requested", Boolean, nullable=False, server_default=false()),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("worker", String(200), nullable=True),
        Column("lease_expires_ts", BigInteger, nullable=True),
        Column("heartbeat_ts", BigInteger, nullable=True),
    ]


_train_jobs: Final = Table("train_jobs", _new, Column("job_id", Integer, primary_key=True))
_train_job_artifacts: Final = Table(
    "train_job_artifacts", _new,
    Column("job_id", Integer, ForeignKey("train_jobs.job_id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)
_route_jobs: Final = Table(
    "route_jobs", _new,
    Column("job_id", String(32), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("engine", String(16), nullable=False),
    Column("time_limit_s", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("problem", JSON, nullable=False),
    Column("progress", Float, nullable=False, server_default="0"),
    Column("best_cost", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("plan", JSON, nullable=True),
    Column("geojson", JSON, nullable=True),
    Column("plot_png", LargeBinary, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("started_ts", BigInteger, nullable=True),
    Column("finished_ts", BigInteger, nullable=True),
    *_queue_columns(),
    Index("ix_route_jobs_state_created", "state", "created_ts"),
)


def upgrade(conn: Connection) -> None:
    for column in _queue_columns():
        add_column(conn, "train_jobs", column)
    _train_job_artifacts.create(conn)
    _route_jobs.create(conn)
