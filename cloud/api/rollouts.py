"""Staged rollouts (admin): create, list, status with stages/members/events, and actions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from cloud.api.model_deps import KeyringDep
from cloud.auth import AdminDep
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.model_schemas import RolloutAction, RolloutCreate, RolloutOut, RolloutState, RolloutStatus
from cloud.schemas import RowIdPath
from cloud.services import rollouts as service
from protocols.model_update import ModelTask

router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)}
RolloutId = RowIdPath
ActionBody = Annotated[RolloutAction | None, Body()]


def _reason(body: RolloutAction | None) -> str | None:
    return None if body is None else body.reason


@router.post("", status_code=201, response_model=RolloutStatus, responses=_ERRORS)
def create_rollout(body: RolloutCreate, principal: AdminDep, engine: EngineDep) -> RolloutStatus:
    """Start a staged rollout of a promoted version: canary first, then the waves, gated by reports."""
    return service.create(engine, body, principal.label)


@router.get("", response_model=list[RolloutOut], responses=_ERRORS)
def list_rollouts(_admin: AdminDep, engine: EngineDep, task: Annotated[ModelTask | None, Query()] = None,
                  state: Annotated[RolloutState | None, Query()] = None) -> list[RolloutOut]:
    return service.list_rollouts(engine, task, state)


@router.get("/{rollout_id}", response_model=RolloutStatus, responses=_ERRORS)
def rollout_status(rollout_id: RolloutId, _admin: AdminDep, engine: EngineDep) -> RolloutStatus:
    """Stages, members (gate verdict, running version, mode) and every event with its reason."""
    return service.status(engine, rollout_id)


@router.post("/{rollout_id}/pause", response_model=RolloutStatus, responses=_ERRORS)
def pause(rollout_id: RolloutId, principal: AdminDep, engine: EngineDep, body: ActionBody = None
          ) -> RolloutStatus:
    """Stop advancing for now; gateways keep their desired state."""
    return service.pause(engine, rollout_id, principal.label, _reason(body))


@router.post("/{rollout_id}/resume", response_model=RolloutStatus, responses=_ERRORS)
def resume(rollout_id: RolloutId, principal: AdminDep, engine: EngineDep, body: ActionBody = None
           ) -> RolloutStatus:
    """Continue a paused or halted rollout (the current stage's clock restarts)."""
    return service.resume(engine, rollout_id, principal.label, _reason(body))


@router.post("/{rollout_id}/abort", response_model=RolloutStatus, responses=_ERRORS)
def abort(rollout_id: RolloutId, principal: AdminDep, engine: EngineDep, body: ActionBody = None
          ) -> RolloutStatus:
    """Stop for good and leave every gateway on what it runs now."""
    return service.abort(engine, rollout_id, principal.label, _reason(body))


@router.post("/{rollout_id}/rollback", response_model=RolloutStatus, responses=_ERRORS)
def rollback(rollout_id: RolloutId, principal: AdminDep, engine: EngineDep, keyring: KeyringDep,
             body: ActionBody = None) -> RolloutStatus:
    """Send every member back to its previous model (signed rollback release); the candidate is rejected."""
    return service.rollback(engine, keyring, rollout_id, principal.label, _reason(body))
