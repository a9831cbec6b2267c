"""Read side of the time series: downsampled readings of one device metric, daily demand of one SKU.

* Readings: ``[from_ts, to_ts)`` is cut into at most ``max_points`` buckets of ``bucket_ms =
  ceil((to - from) / max_points)``; each bucket with readings answers its min, max, mean and count, so a
  spike shorter than a bucket still shows in ``max`` (or ``min``). One ``GROUP BY`` in the database:
  the rows never leave it, whatever the range holds. The index ``(device_id, metric, ts)`` including
  ``value`` answers it from the index alone (PostgreSQL, each time partition; see cloud/README.md).
* Demand: units picked (``direction = 'pick'`` scans) of one SKU at one site per UTC day, every day of
  ``[from_ts, to_ts)`` listed (0 when nothing was picked); a site's scans are those of its gateways.

Times are ms since the epoch; ranges are half-open.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from sqlalchemy import Engine, func, select

from cloud.db.engine import reader
from cloud.db.tables import gateways, readings, scans
from cloud.schemas import DemandDay, DemandOut, ReadingPoint, ReadingsOut
from cloud.services.errors import InvalidParameter

DAY_MS: Final = 86_400_000
EPOCH: Final = date(1970, 1, 1)
#: The longest demand range one request may ask for (days listed in the answer).
MAX_DEMAND_DAYS: Final = 3_660
PICK: Final = "pick"


def _check_range(from_ts: int, to_ts: int) -> None:
    if to_ts <= from_ts:
        raise InvalidParameter(f"to ({to_ts}) must be after from ({from_ts})", "to")


def bucket_width(from_ts: int, to_ts: int, max_points: int) -> int:
    """The bucket width in ms that cuts ``[from_ts, to_ts)`` into at most ``max_points`` buckets."""
    return max(1, -(-(to_ts - from_ts) // max_points))


def downsampled_readings(engine: Engine, device_id: str, metric: str, from_ts: int, to_ts: int,
                         max_points: int, gateway_id: str | None = None) -> ReadingsOut:
    """Min/max/mean/count per bucket of one device metric over ``[from_ts, to_ts)``, buckets in time order."""
    _check_range(from_ts, to_ts)
    width = bucket_width(from_ts, to_ts, max_points)
    bucket = ((readings.c.ts - from_ts) // width).label("bucket")
    stmt = (
        select(bucket, func.min(readings.c.value), func.max(readings.c.value), func.avg(readings.c.value),
               func.count())
        .where(readings.c.device_id == device_id, readings.c.metric == metric,
               readings.c.ts >= from_ts, readings.c.ts < to_ts)
    )
    if gateway_id is not None:
        stmt = stmt.where(readings.c.gateway_id == gateway_id)
    stmt = stmt.group_by(bucket).order_by(bucket)
    with reader(engine) as conn:
        rows = conn.execute(stmt).all()
    points = [ReadingPoint(ts=from_ts + int(b) * width, min=float(lo), max=float(hi), mean=float(mean),
                           count=int(n)) for b, lo, hi, mean, n in rows]
    return ReadingsOut(device_id=device_id, metric=metric, from_ts=from_ts, to_ts=to_ts, bucket_ms=width,
                       points=points)


def daily_demand(engine: Engine, site: str, sku: str, from_ts: int, to_ts: int) -> DemandOut:
    """Units and pick scans of ``sku`` at ``site`` per UTC day of ``[from_ts, to_ts)`` (days cut by the range)."""
    _check_range(from_ts, to_ts)
    first_day, end_day = from_ts // DAY_MS, -(-to_ts // DAY_MS)
    if end_day - first_day > MAX_DEMAND_DAYS:
        raise InvalidParameter(f"at most {MAX_DEMAND_DAYS} days per request (asked {end_day - first_day})", "to")
    day = (scans.c.ts // DAY_MS).label("day")  # integer division on both backends (ts >= 0)
    stmt = (
        select(day, func.sum(scans.c.qty), func.count())
        .join(gateways, gateways.c.gateway_id == scans.c.gateway_id)
        .where(gateways.c.site == site, scans.c.sku == sku, scans.c.direction == PICK,
               scans.c.ts >= from_ts, scans.c.ts < to_ts)
        .group_by(day)
    )
    with reader(engine) as conn:
        per_day = {int(d): (int(units), int(n)) for d, units, n in conn.execute(stmt)}
    days = [DemandDay(date=EPOCH + timedelta(days=d), day_start_ts=d * DAY_MS, units=per_day.get(d, (0, 0))[0],
                      scans=per_day.get(d, (0, 0))[1]) for d in range(first_day, end_day)]
    return DemandOut(site=site, sku=sku, from_ts=from_ts, to_ts=to_ts, days=days)
