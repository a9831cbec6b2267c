"""Retraining jobs for the API: queue one, read them, cancel one. The jobs are rows of ``train_jobs``.

The API inserts a job (queued); a worker (cloud.jobs, ``edgehouse-cloud worker`` or the embedded
one) claims it, trains in its own ``python -m cloud.train_worker`` process (TensorFlow never enters
an API or worker process), writes progress, the last log lines and the metrics into the row, and
registers the candidate. Any API replica serves the jobs and cancels them (the worker sees the
cancellation within half a second and kills the training process group). A job whose worker died
is queued again after its lease expired, up to ``job_max_attempts`` times, then failed with the reason.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import Engine

from cloud.db import train_repo
from cloud.db.engine import reader
from cloud.jobs.queue import TRAIN
from cloud.jobs.queue import cancel as cancel_job
from cloud.services import train_job_store as store
from cloud.services.errors import Conflict, NotFound, ServiceError
from cloud.services.train_job_store import TrainJobDetail, TrainJobOut
from cloud.services.train_spec import TrainTask
from cloud.services.training_data import parse_scope
from cloud.settings import CloudSettings


class TooBusy(ServiceError):
    status_code = 429


class Unprocessable(ServiceError):
    status_code = 422


class TrainParams(BaseModel):
    """What a caller asks for; unset values come from the settings."""

    task: TrainTask
    scope: str = "fleet"
    epochs: int | None = None
    seed: int = 7
    holdout_fraction: float | None = None
    data_from_ts: int | None = None
    data_to_ts: int | None = None


def submit(engine: Engine, settings: CloudSettings, params: TrainParams, created_by: str) -> TrainJobOut:
    site = _check_scope(engine, params.scope)
    if params.data_from_ts is not None and params.data_to_ts is not None and params.data_to_ts <= params.data_from_ts:
        raise Unprocessable("must be after data_from_ts", field="data_to_ts")
    epochs = params.epochs or (  # the device model trains as long as the stream model
        settings.train_demand_epochs if params.task == "demand" else settings.train_anomaly_epochs
    )
    stored = {
        "epochs": epochs, "seed": params.seed, "site": site,
        "holdout_fraction": params.holdout_fraction or settings.train_holdout_fraction,
        "data_from_ts": params.data_from_ts, "data_to_ts": params.data_to_ts,
    }
    with reader(engine) as conn:
        waiting = train_repo.count_in_state(conn, "queued")
    if waiting >= settings.max_queued_train_jobs:
        raise TooBusy(f"{waiting} retraining jobs are waiting; retry later")
    job_id = store.insert(engine, params.task, params.scope, stored, created_by)
    out = store.summary(engine, job_id)
    assert out is not None
    return out


def get(engine: Engine, job_id: int) -> TrainJobDetail:
    out = store.detail(engine, job_id)
    if out is None:
        raise NotFound(f"no retraining job {job_id}", field="job_id")
    return out


def list_jobs(engine: Engine, task: str | None = None, state: str | None = None, limit: int = 100) -> list[TrainJobOut]:
    return store.list_jobs(engine, task, state, limit)


def cancel(engine: Engine, job_id: int) -> TrainJobDetail:
    """Cancel a queued or running job (its worker kills the training process); 409 once it succeeded or failed."""
    before = cancel_job(engine, TRAIN, job_id, message="cancelled")
    if before is None:
        raise NotFound(f"no retraining job {job_id}", field="job_id")
    if before in ("succeeded", "failed"):
        raise Conflict(f"job is already {before}", field="job_id")
    return get(engine, job_id)


def _check_scope(engine: Engine, scope: str) -> str | None:
    try:
        site = parse_scope(scope)
    except ValueError as exc:
        raise Unprocessable(str(exc), field="scope") from None
    if site is not None:
        with reader(engine) as conn:
            known = train_repo.site_has_gateway(conn, site)
        if not known:
            raise Unprocessable(f"no gateway is registered at site {site!r}", field="scope")
    return site
