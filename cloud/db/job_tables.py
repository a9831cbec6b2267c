"""Tables of the durable job queues (``cloud.jobs.queue``): retraining jobs, their artifacts, route jobs.

Registered on ``cloud.db.tables.metadata`` (which imports this module), so the schema and migrations see them.
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
    String,
    Table,
    Text,
)

from cloud.db.columns import queue_columns
from cloud.db.tables import metadata

#: Retraining jobs (cloud.services.train_jobs, run by cloud.jobs workers): one row per job, kept after it finished.
train_jobs: Final = Table(
    "train_jobs",
    metadata,
    Column("job_id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(16), nullable=False),
    Column("scope", String(80), nullable=False),
    Column("state", String(16), nullable=False),
    Column("progress", Float, nullable=False, server_default="0"),
    Column("message", String(500), nullable=True),
    Column("log", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=True),
    Column("candidate_version", Integer, nullable=True),
    Column("parent_version", Integer, nullable=True),
    Column("gate_passed", Boolean, nullable=True),
    Column("gate_reason", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("data_from_ts", BigInteger, nullable=True),
    Column("data_to_ts", BigInteger, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("started_ts", BigInteger, nullable=True),
    Column("finished_ts", BigInteger, nullable=True),
    *queue_columns(),
    Index("ix_train_jobs_state", "state"),
    Index("ix_train_jobs_task_created", "task", "created_ts"),
)

#: Files a retraining job produced that later jobs or other hosts need (the candidate's ``.keras``,
#: from which the next retrain of the model it becomes is fine-tuned; ``result.json``).
train_job_artifacts: Final = Table(
    "train_job_artifacts",
    metadata,
    Column("job_id", Integer, ForeignKey("train_jobs.job_id"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
)

#: Route planning jobs (cloud.services.route_jobs, solved by cloud.jobs workers), with their results.
route_jobs: Final = Table(
    "route_jobs",
    metadata,
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
    *queue_columns(),
    Index("ix_route_jobs_state_created", "state", "created_ts"),
)
