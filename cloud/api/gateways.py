"""Gateways: register (token issued once), list with sync counters, show one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from cloud.auth import AdminDep, AnyRoleOwnGatewayDep
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ErrorBody
from cloud.schemas import GatewayCreate, GatewayCreated, GatewayIdStr, GatewayOut
from cloud.services import gateways as service

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}


@router.post("", status_code=201, response_model=GatewayCreated, responses=_ERRORS)
def register_gateway(body: GatewayCreate, _admin: AdminDep, engine: EngineDep,
                     settings: SettingsDep) -> GatewayCreated:
    """Register a gateway; the answer carries its bearer token, which is not shown again."""
    return service.register_gateway(engine, body, service.TokenRules.from_settings(settings))


@router.get("", response_model=list[GatewayOut], responses=_ERRORS)
def list_gateways(_admin: AdminDep, engine: EngineDep) -> list[GatewayOut]:
    """Every gateway with its last sync time and records stored per kind."""
    return service.list_gateways(engine)


@router.get("/{gateway_id}", response_model=GatewayOut, responses=_ERRORS)
def get_gateway(
    gateway_id: Annotated[GatewayIdStr, Path()], _principal: AnyRoleOwnGatewayDep, engine: EngineDep
) -> GatewayOut:
    """One gateway; admins and planners see any, a gateway token only its own."""
    return service.get_gateway(engine, gateway_id)
