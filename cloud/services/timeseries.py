"""Read side of the time series: downsampled readings of one device metric, daily demand of one SKU.

* Readings: ``[from_ts, to_ts)`` is cut into at most ``max_points`` buckets of ``bucket_ms =
  ceil((to - from) / max_points)``; each bucket with readings answers its min, max, mean and count, so a
  spike shorter than a bucket still shows in ``max`` (or ``min``). One ``GROUP BY`` in the database:
  the rows never leave it, whatever the range holds. The index ``(device_id, metric, ts)`` including
  ``value`` answers it from the index alone (PostgreSQL, each time partition; see cloud/README.md).
  When that width is an hour or more the hourly rollup (``cloud.db.rollups``) answers instead: the width
  is rounded up to whole hours and buckets are aligned on multiples of it since the epoch (UTC hours), so
  every bucket is made of whole rollup hours, except the range's partial first and last hour and the hours
  from the rollup's watermark on (not rolled up yet: the last hours), which are read from the readings. A point's ``ts`` is its bucket's start, or
  ``from`` for a first bucket that starts before it. A year of one metric at one reading a minute is
  525,600 readings and 8,760 rollup rows.
* Demand: units picked (``direction = 'pick'`` scans) of one SKU at one site per UTC day, every day of
  ``[from_ts, to_ts)`` listed (0 when nothing was picked); a site's scans are those of its gateways.

Times are ms since the epoch; ranges are half-open.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from sqlalchemy import Engine

from cloud.db import rollups, series_repo
from cloud.db.engine import reader
from cloud.db.rollups import HOUR_MS
from cloud.schemas import DemandDay, DemandOut, ReadingPoint, ReadingsOut
from cloud.services.errors import InvalidParameter

DAY_MS: Final = series_repo.DAY_MS
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


def rollup_width(from_ts: int, to_ts: int, max_points: int) -> int:
    """Whole hours, at least :func:`bucket_width`, so that buckets aligned on multiples of it since the epoch
    cut ``[from_ts, to_ts)`` into at most ``max_points``."""
    width = -(-bucket_width(from_ts, to_ts, max_points) // HOUR_MS) * HOUR_MS
    while (to_ts - 1) // width - from_ts // width + 1 > max_points:
        width += HOUR_MS
    return width


def downsampled_readings(engine: Engine, device_id: str, metric: str, from_ts: int, to_ts: int,
                         max_points: int, gateway_id: str | None = None, use_rollup: bool = True) -> ReadingsOut:
    """Min/max/mean/count per bucket of one device metric over ``[from_ts, to_ts)``, buckets in time order.

    Buckets of an hour or more come from the hourly rollup (``use_rollup``): whole hours aligned on UTC,
    the rollup's hours inside the range plus the readings of the range's partial first and last hour.
    """
    _check_range(from_ts, to_ts)
    width = bucket_width(from_ts, to_ts, max_points)
    if use_rollup and width >= HOUR_MS:
        return _from_rollup(engine, device_id, metric, from_ts, to_ts, max_points, gateway_id)
    with reader(engine) as conn:
        rows = series_repo.reading_buckets(conn, device_id, metric, from_ts, to_ts, width, gateway_id)
    points = [ReadingPoint(ts=from_ts + b * width, min=lo, max=hi, mean=mean, count=n)
              for b, lo, hi, mean, n in rows]
    return ReadingsOut(device_id=device_id, metric=metric, from_ts=from_ts, to_ts=to_ts, bucket_ms=width,
                       points=points)


def _from_rollup(engine: Engine, device_id: str, metric: str, from_ts: int, to_ts: int, max_points: int,
                 gateway_id: str | None) -> ReadingsOut:
    width = rollup_width(from_ts, to_ts, max_points)
    first_hour, end_hour = -(-from_ts // HOUR_MS) * HOUR_MS, to_ts // HOUR_MS * HOUR_MS  # whole hours inside
    acc: dict[int, list[float]] = {}
    with reader(engine) as conn:
        # the rollup holds the hours before its watermark; from there on the readings answer (read first:
        # a watermark that moves on meanwhile only leaves more to the readings, which stay)
        rolled_end = min(end_hour, rollups.watermark(conn))
        if first_hour < rolled_end:
            whole: tuple[int, int] | None = (first_hour, rolled_end)
            edges = [(from_ts, first_hour), (rolled_end, to_ts)]
        else:
            whole, edges = None, [(from_ts, to_ts)]
        rows = series_repo.aligned_buckets(conn, device_id, metric, width, gateway_id, whole, edges)
    for b, lo, hi, total, n in rows:
        cur = acc.setdefault(b, [lo, hi, 0.0, 0])
        cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
        cur[2] += total
        cur[3] += n
    points = [ReadingPoint(ts=max(from_ts, b * width), min=lo, max=hi, mean=total / n, count=int(n))
              for b, (lo, hi, total, n) in sorted(acc.items())]
    return ReadingsOut(device_id=device_id, metric=metric, from_ts=from_ts, to_ts=to_ts, bucket_ms=width,
                       points=points)


def daily_demand(engine: Engine, site: str, sku: str, from_ts: int, to_ts: int) -> DemandOut:
    """Units and pick scans of ``sku`` at ``site`` per UTC day of ``[from_ts, to_ts)`` (days cut by the range)."""
    _check_range(from_ts, to_ts)
    first_day, end_day = from_ts // DAY_MS, -(-to_ts // DAY_MS)
    if end_day - first_day > MAX_DEMAND_DAYS:
        raise InvalidParameter(f"at most {MAX_DEMAND_DAYS} days per request (asked {end_day - first_day})", "to")
    with reader(engine) as conn:
        per_day = series_repo.daily_scans(conn, site, sku, PICK, from_ts, to_ts)
    days = [DemandDay(date=EPOCH + timedelta(days=d), day_start_ts=d * DAY_MS, units=per_day.get(d, (0, 0))[0],
                      scans=per_day.get(d, (0, 0))[1]) for d in range(first_day, end_day)]
    return DemandOut(site=site, sku=sku, from_ts=from_ts, to_ts=to_ts, days=days)
