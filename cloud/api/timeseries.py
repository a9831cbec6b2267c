"""Time series for the console and planners: downsampled readings of a device, daily demand of a SKU."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query

from cloud.auth import ReaderDep
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.schemas import MAX_API_INT, DemandOut, GatewayIdStr, ReadingsOut
from cloud.services import timeseries as service
from cloud.services.errors import InvalidParameter
from protocols import METRIC_RANGES

router = APIRouter(prefix="/api/v1", tags=["time series"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422)}
_IDENT: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
#: The most buckets one readings request may ask for.
MAX_POINTS: Final = 10_000

From = Annotated[int, Query(alias="from", ge=0, le=MAX_API_INT, description="Start, ms since the epoch (inclusive)")]
To = Annotated[int, Query(alias="to", ge=1, le=MAX_API_INT, description="End, ms since the epoch (exclusive)")]


@router.get("/devices/{device_id}/readings", response_model=ReadingsOut, responses=_ERRORS)
def device_readings(
    _reader: ReaderDep,
    engine: EngineDep,
    device_id: Annotated[str, Path(pattern=_IDENT)],
    metric: Annotated[str, Query(max_length=32, description=f"One of {', '.join(METRIC_RANGES)}")],
    from_ts: From,
    to_ts: To,
    max_points: Annotated[int, Query(ge=1, le=MAX_POINTS, description="Most buckets in the answer")] = 1000,
    gateway_id: Annotated[GatewayIdStr | None, Query(description="Only readings synced by this gateway")] = None,
) -> ReadingsOut:
    """At most ``max_points`` buckets of ``[from, to)``, each with the min, max, mean and count of its readings."""
    if metric not in METRIC_RANGES:
        raise InvalidParameter(f"unknown metric (one of {', '.join(METRIC_RANGES)})", "metric")
    return service.downsampled_readings(engine, device_id, metric, from_ts, to_ts, max_points, gateway_id)


@router.get("/sites/{site}/demand", response_model=DemandOut, responses=_ERRORS)
def site_demand(
    _reader: ReaderDep,
    engine: EngineDep,
    site: Annotated[str, Path(pattern=_IDENT)],
    sku: Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")],
    from_ts: From,
    to_ts: To,
) -> DemandOut:
    """Units picked of ``sku`` at ``site`` per UTC day of ``[from, to)``, from the synced pick scans."""
    return service.daily_demand(engine, site, sku, from_ts, to_ts)
