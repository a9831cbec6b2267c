"""The fleet for people: every gateway's health (filtered, sorted, paginated on the server), one gateway's
devices and model report, and who the caller is (``GET /api/v1/me``, what the console's buttons follow)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from cloud.auth import AnyRoleDep, ReaderDep
from cloud.console_schemas import FleetPage, FleetSort, GatewayDetail, GatewayStatus, Me
from cloud.deps import EngineDep, SettingsDep
from cloud.errors import ErrorBody
from cloud.schemas import GatewayIdStr
from cloud.services import fleet as service

router = APIRouter(prefix="/api/v1", tags=["fleet"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}


@router.get("/me", response_model=Me, responses=_ERRORS)
def me(principal: AnyRoleDep) -> Me:
    """The caller's role (and gateway, for gateway tokens)."""
    return Me(role=principal.role, gateway_id=principal.gateway_id, token_id=principal.token_id)


@router.get("/fleet", response_model=FleetPage, responses=_ERRORS)
def list_fleet(
    _reader: ReaderDep,
    engine: EngineDep,
    settings: SettingsDep,
    status: Annotated[GatewayStatus | None, Query()] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=64, description="Part of the gateway id or site")] = None,
    rejected: Annotated[bool | None, Query(description="Only gateways that rejected an update (or none)")] = None,
    sort: Annotated[FleetSort, Query()] = "gateway_id",
    desc: Annotated[bool, Query()] = False,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FleetPage:
    """Gateways with online/late/offline, outbox depth, oldest unsynced record, agent and model versions,
    rejected updates; the count per status under the same filters."""
    f = service.FleetFilter(status=status, site=site, q=q, rejected=rejected)
    return service.list_fleet(engine, service.Thresholds.from_settings(settings), f, sort=sort, descending=desc,
                              offset=offset, limit=limit)


@router.get("/fleet/{gateway_id}", response_model=GatewayDetail, responses=_ERRORS)
def gateway_detail(gateway_id: Annotated[GatewayIdStr, Path()], _reader: ReaderDep, engine: EngineDep,
                   settings: SettingsDep) -> GatewayDetail:
    """One gateway: its health, its devices with their metrics, its latest model report."""
    return service.gateway_detail(engine, service.Thresholds.from_settings(settings), gateway_id)
