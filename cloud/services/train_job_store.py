"""Retraining jobs as the API shows them: create, read, and guarded state transitions (queries in ``train_repo``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine

from cloud.clock import now_ms
from cloud.db import train_repo
from cloud.db.engine import reader

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: Final = frozenset({"succeeded", "failed", "cancelled"})



class TrainJobOut(BaseModel):
    """A retraining job as the API shows it."""

    model_config = ConfigDict(frozen=True)

    job_id: int
    task: str
    scope: str
    state: JobState
    progress: float
    message: str | None
    metrics: dict[str, float] | None
    candidate_version: int | None
    parent_version: int | None
    gate_passed: bool | None
    gate_reason: str | None
    error: str | None
    data_from_ts: int | None
    data_to_ts: int | None
    params: dict[str, Any]
    created_by: str
    created_ts: int
    started_ts: int | None
    finished_ts: int | None
    #: Times a worker took the job (more than 1 after a worker died while training it), and the last one.
    attempts: int = 0
    worker: str | None = None


class TrainJobDetail(TrainJobOut):
    log: list[str]


def _out(row: Any, with_log: bool = False) -> TrainJobOut:
    fields = {c: getattr(row, c) for c in TrainJobOut.model_fields}
    if with_log:
        return TrainJobDetail(**fields, log=list(row.log or []))
    return TrainJobOut(**fields)


def insert(engine: Engine, task: str, scope: str, params: Mapping[str, Any], created_by: str) -> int:
    with engine.begin() as conn:
        return train_repo.insert_job(conn, task=task, scope=scope, params=params, created_by=created_by, now=now_ms())


def get(engine: Engine, job_id: int) -> Any | None:
    with reader(engine) as conn:
        return train_repo.get_job(conn, job_id)


def detail(engine: Engine, job_id: int) -> TrainJobDetail | None:
    row = get(engine, job_id)
    out = _out(row, with_log=True) if row is not None else None
    assert out is None or isinstance(out, TrainJobDetail)
    return out


def summary(engine: Engine, job_id: int) -> TrainJobOut | None:
    row = get(engine, job_id)
    return _out(row) if row is not None else None


def list_jobs(engine: Engine, task: str | None, state: str | None, limit: int) -> list[TrainJobOut]:
    with reader(engine) as conn:
        return [_out(r) for r in train_repo.list_jobs(conn, task, state, limit)]


def transition(engine: Engine, job_id: int, from_states: Iterable[str], **values: Any) -> bool:
    """Set ``values`` if the job is in one of ``from_states``; whether it was."""
    with engine.begin() as conn:
        return train_repo.transition(conn, job_id, from_states, **values)
