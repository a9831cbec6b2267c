"""The model registry: list versions, show one, upload a candidate, promote it (admin).

``/api/v1/models/train`` and ``/api/v1/models/jobs…`` belong to the retraining router.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from cloud.api.model_deps import KeyringDep
from cloud.auth import AdminDep
from cloud.deps import EngineDep
from cloud.errors import ApiError, ErrorBody
from cloud.model_schemas import (
    CandidateUpload,
    ModelStatus,
    ModelVersionDetail,
    ModelVersionOut,
    PromoteRequest,
)
from cloud.services import model_registry as registry
from protocols.model_update import ModelTask

router = APIRouter(prefix="/api/v1/models", tags=["models"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)}
TaskPath = Annotated[ModelTask, Path(description="anomaly, demand or device_anomaly")]
VersionPath = Annotated[int, Path(ge=1, le=2**53 - 1)]


@router.get("", response_model=list[ModelVersionOut], responses=_ERRORS)
def list_models(_admin: AdminDep, engine: EngineDep, task: Annotated[ModelTask | None, Query()] = None,
                status: Annotated[ModelStatus | None, Query()] = None) -> list[ModelVersionOut]:
    """Every registered model version (the shipped defaults included), filtered by task and status."""
    return registry.list_versions(engine, task, status)


@router.get("/{task}/versions/{version}", response_model=ModelVersionDetail, responses=_ERRORS)
def show_version(task: TaskPath, version: VersionPath, _admin: AdminDep, engine: EngineDep) -> ModelVersionDetail:
    """Manifest, metrics, training data range, parent, who promoted it, and its signed releases."""
    return registry.version_detail(engine, task, version)


@router.post("/{task}/versions", status_code=201, response_model=ModelVersionOut, responses=_ERRORS)
def upload_candidate(task: TaskPath, body: CandidateUpload, principal: AdminDep, engine: EngineDep
                     ) -> ModelVersionOut:
    """Register a model built elsewhere as a candidate; its version number is assigned here."""
    try:
        tflite = base64.b64decode(body.tflite_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "not valid base64", field="tflite_b64") from None
    return registry.register_candidate(engine, registry.CandidateIn(
        task=task, scope=body.scope, tflite=tflite, manifest=body.manifest, metrics=body.metrics,
        data_from_ts=body.data_from_ts, data_to_ts=body.data_to_ts, parent_version=body.parent_version,
        created_by=principal.label))


@router.post("/{task}/versions/{version}/promote", response_model=ModelVersionDetail, responses=_ERRORS)
def promote_version(task: TaskPath, version: VersionPath, principal: AdminDep, engine: EngineDep,
                    keyring: KeyringDep, body: Annotated[PromoteRequest | None, Body()] = None
                    ) -> ModelVersionDetail:
    """Approve a candidate: its release is signed now (online key) or awaits `edgehouse models sign`."""
    force = body.force if body is not None else False
    return registry.promote(engine, keyring, task, version, principal.label, force)
