"""Retraining jobs for admins: start one per task and scope, follow its progress and log, cancel it.

Training runs in a worker's process (cloud.services.train_jobs, cloud.jobs); these routes only queue, read and cancel.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from cloud.auth import AdminDep
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ErrorBody
from cloud.schemas import RowIdPath, TsField, _Request
from cloud.services import train_jobs as jobs
from cloud.services.train_job_store import JobState, TrainJobDetail, TrainJobOut
from cloud.services.train_jobs import TrainParams

router = APIRouter(prefix="/api/v1/models", tags=["models"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 429)}


class TrainRequest(_Request):

    task: Literal["anomaly", "demand", "device_anomaly"]
    scope: Annotated[
        str, Field(pattern=r"^(fleet|site:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$", description='"fleet" or "site:<site>"')
    ] = "fleet"
    epochs: Annotated[int | None, Field(ge=1, le=1000, description="default: the task's setting")] = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 7
    holdout_fraction: Annotated[
        float | None, Field(gt=0, le=0.5, description="anomaly: share of each series' time span held back")
    ] = None
    data_from_ts: Annotated[TsField | None, Field(description="use data at or after this time (ms)")] = None
    data_to_ts: Annotated[TsField | None, Field(description="use data before this time (ms)")] = None


JobId = RowIdPath


@router.post("/train", status_code=202, response_model=TrainJobOut, responses=_ERRORS)
def start_training(body: TrainRequest, admin: AdminDep, engine: EngineDep, settings: SettingsDep) -> TrainJobOut:
    """Queue a retraining job; a worker trains, evaluates against the deployed model and registers its candidate."""
    who = admin.label
    return jobs.submit(engine, settings, TrainParams(**body.model_dump()), created_by=who)


@router.get("/jobs", response_model=list[TrainJobOut], responses=_ERRORS)
def list_jobs(
    _admin: AdminDep,
    engine: EngineDep,
    task: Literal["anomaly", "demand", "device_anomaly"] | None = None,
    state: Annotated[JobState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TrainJobOut]:
    """Retraining jobs, newest first."""
    return jobs.list_jobs(engine, task, state, limit)


@router.get("/jobs/{job_id}", response_model=TrainJobDetail, responses=_ERRORS)
def get_job(job_id: JobId, _admin: AdminDep, engine: EngineDep) -> TrainJobDetail:
    """One job with its progress, metrics, gate verdict and the last log lines."""
    return jobs.get(engine, job_id)


@router.delete("/jobs/{job_id}", response_model=TrainJobDetail, responses=_ERRORS)
def cancel_job(job_id: JobId, _admin: AdminDep, engine: EngineDep) -> TrainJobDetail:
    """Cancel a queued or running job (its worker process is stopped); 409 once it succeeded or failed."""
    return jobs.cancel(engine, job_id)
