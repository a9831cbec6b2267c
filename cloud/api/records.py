"""Alerts and forecasts synced by gateways, for admins and planners (filtered, keyset-paginated)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from cloud.auth import ReaderDep
from cloud.db.repo import AlertFilter
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.schemas import MAX_API_INT, AlertOut, ForecastOut, GatewayIdStr, Page
from cloud.services import records as service

router = APIRouter(prefix="/api/v1", tags=["records"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 422)}

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Since = Annotated[int | None, Query(ge=0, le=MAX_API_INT, description="Only items at or after this time (ms since epoch)")]
Cursor = Annotated[str | None, Query(max_length=300, description="next_cursor of the previous page")]
GatewayFilter = Annotated[GatewayIdStr | None, Query()]


@router.get("/alerts", response_model=Page[AlertOut], responses=_ERRORS)
def list_alerts(
    _reader: ReaderDep,
    engine: EngineDep,
    gateway_id: GatewayFilter = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[Literal["anomaly", "system"] | None, Query(description="anomaly or system alerts")] = None,
    code: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,47}$",
                                      description="e.g. alert_flood, disk_quota, sync_rejected")] = None,
    metric: Annotated[str | None, Query(max_length=64, description="the stream's metric")] = None,
    state: Annotated[Literal["raised", "cleared"] | None, Query()] = None,
    since: Since = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[AlertOut]:
    """Alerts ordered by alert time, then id. Each carries its whole payload: the stream(s) that drove
    it (``drivers``, for a device alert each channel's contribution), expected vs observed, the window
    and, for an ``alert_flood``, the budget's figures (``flood``: alerts in the window, withheld)."""
    where = AlertFilter(device_id=device_id, kind=kind, code=code, metric=metric, state=state)
    return service.list_alerts(engine, limit=limit, gateway_id=gateway_id, since_ts=since, cursor=cursor,
                               where=where)


@router.get("/forecasts", response_model=Page[ForecastOut], responses=_ERRORS)
def list_forecasts(
    _reader: ReaderDep,
    engine: EngineDep,
    gateway_id: GatewayFilter = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    since: Since = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ForecastOut]:
    """Forecasts ordered by creation time, then id."""
    return service.list_forecasts(engine, limit=limit, gateway_id=gateway_id, sku=sku, since_ts=since,
                                  cursor=cursor)
