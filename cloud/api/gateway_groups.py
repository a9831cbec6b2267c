"""``PUT /api/v1/gateways/{gateway_id}/group``: put a gateway in a rollout group (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from cloud.auth import AdminDep
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.model_schemas import GatewayGroupIn, GatewayGroupOut
from cloud.schemas import GatewayIdStr
from cloud.services import rollouts as service

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}


@router.put("/{gateway_id}/group", response_model=GatewayGroupOut, responses=_ERRORS)
def set_group(gateway_id: Annotated[GatewayIdStr, Path()], body: GatewayGroupIn, _admin: AdminDep,
              engine: EngineDep) -> GatewayGroupOut:
    """Set (or with ``null`` clear) the gateway's group; rollouts may target one group."""
    return service.set_group(engine, gateway_id, body.group)
