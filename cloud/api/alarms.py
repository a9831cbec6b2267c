"""Alert management (ISA-18.2): alarms with their states, acknowledge, shelve, comment, flood per site.

Every person's role reads (admin, planner, operator); operators and admins act. Every action is
recorded with who did it and when (``GET /api/v1/alarms/{gateway_id}/{id}`` lists them).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from cloud.auth import OperatorDep, ReaderDep
from cloud.console_schemas import (
    AckRequest,
    AckResult,
    AlarmDetail,
    AlarmPage,
    AlarmRef,
    AlarmSort,
    CommentRequest,
    RecordIdStr,
    ShelveRequest,
    SiteFlood,
)
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.schemas import GatewayIdStr, TsQuery
from cloud.services import alarms as service

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}
GatewayPath = Annotated[GatewayIdStr, Path()]
AlarmPath = Annotated[RecordIdStr, Path()]
Name = Annotated[str | None, Query(max_length=64)]


@router.get("", response_model=AlarmPage, responses=_ERRORS)
def list_alarms(
    _reader: ReaderDep,
    engine: EngineDep,
    site: Name = None,
    gateway_id: Annotated[GatewayIdStr | None, Query()] = None,
    device_id: Name = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    state: Annotated[Literal["active", "cleared"] | None, Query()] = None,
    ack: Annotated[Literal["unacked", "acked"] | None, Query()] = None,
    shelved: Annotated[Literal["hide", "only"] | None, Query(description="hide: not shelved now; only: shelved")] = None,
    since: TsQuery = None,
    sort: Annotated[AlarmSort, Query()] = "-ts",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlarmPage:
    """Alarms (raised alerts) with ISA-18.2 state, newest first, and the flood indicator of each site."""
    f = service.AlarmFilter(site=site, gateway_id=gateway_id, device_id=device_id, severity=severity, kind=kind,
                            state=state, ack=ack, shelved=shelved, since_ts=since)
    return service.list_alarms(engine, f, sort=sort, offset=offset, limit=limit)


@router.get("/flood", response_model=list[SiteFlood], responses=_ERRORS)
def flood(_reader: ReaderDep, engine: EngineDep, site: Name = None) -> list[SiteFlood]:
    """Alarms raised per site in the last 10 minutes against the limit of 10 (more is a flood)."""
    return service.floods(engine, site)


@router.post("/ack", response_model=AckResult, responses=_ERRORS)
def acknowledge_many(body: AckRequest, principal: OperatorDep, engine: EngineDep) -> AckResult:
    """Acknowledge one or many alarms at once (all or none: an unknown one is 404 naming it)."""
    return service.acknowledge(engine, body, principal.label)


@router.get("/{gateway_id}/{alarm_id}", response_model=AlarmDetail, responses=_ERRORS)
def get_alarm(gateway_id: GatewayPath, alarm_id: AlarmPath, _reader: ReaderDep, engine: EngineDep) -> AlarmDetail:
    """One alarm with who did what and when."""
    return service.get_alarm(engine, gateway_id, alarm_id)


@router.post("/{gateway_id}/{alarm_id}/ack", response_model=AckResult, responses=_ERRORS)
def acknowledge(gateway_id: GatewayPath, alarm_id: AlarmPath, principal: OperatorDep, engine: EngineDep
                ) -> AckResult:
    """Acknowledge one alarm (again: nothing changes, it is listed as already acknowledged)."""
    req = AckRequest(alarms=[AlarmRef(gateway_id=gateway_id, id=alarm_id)])
    return service.acknowledge(engine, req, principal.label)


@router.post("/{gateway_id}/{alarm_id}/shelve", response_model=AlarmDetail, responses=_ERRORS)
def shelve(gateway_id: GatewayPath, alarm_id: AlarmPath, body: ShelveRequest, principal: OperatorDep,
           engine: EngineDep) -> AlarmDetail:
    """Shelve for ``duration_s`` with a reason; it comes back by itself when that time is over."""
    return service.shelve(engine, gateway_id, alarm_id, body, principal.label)


@router.post("/{gateway_id}/{alarm_id}/unshelve", response_model=AlarmDetail, responses=_ERRORS)
def unshelve(gateway_id: GatewayPath, alarm_id: AlarmPath, principal: OperatorDep, engine: EngineDep
             ) -> AlarmDetail:
    """Return a shelved alarm now (409 when it is not shelved)."""
    return service.unshelve(engine, gateway_id, alarm_id, principal.label)


@router.post("/{gateway_id}/{alarm_id}/comments", response_model=AlarmDetail, responses=_ERRORS)
def add_comment(gateway_id: GatewayPath, alarm_id: AlarmPath, body: CommentRequest, principal: OperatorDep,
                engine: EngineDep) -> AlarmDetail:
    """Add a comment to the alarm's log."""
    return service.comment(engine, gateway_id, alarm_id, body.text, principal.label)
