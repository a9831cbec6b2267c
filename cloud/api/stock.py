"""``GET /api/v1/stock``: stock on hand synced by gateways, per (site, location, SKU), for people."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from cloud.auth import ReaderDep
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.services import stock as service
from cloud.services.stock import MAX_STOCK_PAGE, StockPage

router = APIRouter(prefix="/api/v1", tags=["stock"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 403, 422)}


@router.get("/stock", response_model=StockPage, responses=_ERRORS)
def list_stock(
    _reader: ReaderDep,
    engine: EngineDep,
    site: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")] = None,
    sku: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = None,
    location: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_STOCK_PAGE, description="Page size")] = 1000,
    cursor: Annotated[str | None, Query(max_length=1200, description="next_cursor of the previous page")] = None,
) -> StockPage:
    """Each gateway's newest synced version of each position, ordered by site, SKU, location: on hand
    (negative is kept and flagged), whether a stock-out alert is open, and ``last_scan_ts``, the time
    of the last scan that changed it."""
    return service.list_stock(engine, site=site, sku=sku, location=location, limit=limit, cursor=cursor)
