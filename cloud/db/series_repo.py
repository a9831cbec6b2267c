"""Queries over the time series and forecasts for the read API and the console's charts.

The caller owns the transaction. Times are ms since the epoch; ranges are half-open ``[from_ts, to_ts)``.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, Select, func, select, tuple_, union_all

from cloud.db.rollups import readings_hourly
from cloud.db.tables import forecasts, gateways, readings, scans

DAY_MS: Final = 86_400_000


def reading_buckets(conn: Connection, device_id: str, metric: str, from_ts: int, to_ts: int, width: int,
                    gateway_id: str | None = None) -> list[tuple[int, float, float, float, int]]:
    """(bucket, min, max, mean, count) per ``width``-ms bucket from ``from_ts`` that holds readings, in order.

    One ``GROUP BY`` in the database: the rows never leave it.
    """
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
    return [(int(b), float(lo), float(hi), float(mean), int(n)) for b, lo, hi, mean, n in conn.execute(stmt)]


def _raw_part(device_id: str, metric: str, lo: int, hi: int, width: int, gateway_id: str | None) -> Select[Any]:
    bucket = (readings.c.ts // width).label("bucket")
    stmt = (select(bucket, func.min(readings.c.value), func.max(readings.c.value), func.sum(readings.c.value),
                   func.count())
            .where(readings.c.device_id == device_id, readings.c.metric == metric, readings.c.ts >= lo,
                   readings.c.ts < hi))
    if gateway_id is not None:
        stmt = stmt.where(readings.c.gateway_id == gateway_id)
    return stmt.group_by(bucket)


def aligned_buckets(conn: Connection, device_id: str, metric: str, width: int, gateway_id: str | None,
                    whole_hours: tuple[int, int] | None, edges: list[tuple[int, int]]
                    ) -> list[tuple[int, float, float, float, int]]:
    """(bucket, min, max, sum, count) per bucket ``ts // width`` (aligned on the epoch) of one device metric.

    Read from the hourly rollup over ``whole_hours`` (``[first, end)``, whole hours) and from the readings over
    each ``edges`` range; one row per bucket and part, unordered: the caller merges a bucket's rows.
    """
    parts = []
    if whole_hours is not None:
        first_hour, end_hour = whole_hours
        h = readings_hourly.c
        bucket = (h.hour_ts // width).label("bucket")
        rollup = (select(bucket, func.min(h.min_value), func.max(h.max_value), func.sum(h.sum_value), func.sum(h.n))
                  .where(h.device_id == device_id, h.metric == metric, h.hour_ts >= first_hour, h.hour_ts < end_hour))
        if gateway_id is not None:
            rollup = rollup.where(h.gateway_id == gateway_id)
        parts.append(rollup.group_by(bucket))
    parts += [_raw_part(device_id, metric, lo, hi, width, gateway_id) for lo, hi in edges if lo < hi]
    return [(int(b), float(lo), float(hi), float(total), int(n))
            for b, lo, hi, total, n in conn.execute(union_all(*parts))]


def daily_scans(conn: Connection, site: str, sku: str, direction: str, from_ts: int, to_ts: int
                ) -> dict[int, tuple[int, int]]:
    """UTC day number → (units, scans) of ``direction`` scans of ``sku`` by the gateways of ``site``."""
    day = (scans.c.ts // DAY_MS).label("day")  # integer division on both backends (ts >= 0)
    stmt = (
        select(day, func.sum(scans.c.qty), func.count())
        .join(gateways, gateways.c.gateway_id == scans.c.gateway_id)
        .where(gateways.c.site == site, scans.c.sku == sku, scans.c.direction == direction,
               scans.c.ts >= from_ts, scans.c.ts < to_ts)
        .group_by(day)
    )
    return {int(d): (int(units), int(n)) for d, units, n in conn.execute(stmt)}


def device_ids(conn: Connection, limit: int) -> list[str]:
    """Up to ``limit`` devices that sent telemetry (every message holds a reading), sorted.

    One probe of the readings' ``(device_id, metric, ts)`` index per device (a loose index scan: the next device
    after the last one) instead of reading every reading.
    """
    device = readings.c.device_id
    walk = select(func.min(device).label("d")).cte("devices", recursive=True)
    walk = walk.union_all(select(select(func.min(device)).where(device > walk.c.d).scalar_subquery())
                          .where(walk.c.d.is_not(None)))
    return sorted(conn.execute(select(walk.c.d).where(walk.c.d.is_not(None)).limit(limit)).scalars())


def last_telemetry_ts(conn: Connection, device_id: str) -> int | None:
    """The device clock of the device's newest telemetry, None without any.

    By the readings' ``(device_id, metric, ts)`` index: its metrics by a loose scan, then the newest reading of
    each (one probe each, per partition on PostgreSQL).
    """
    metric, of_device = readings.c.metric, readings.c.device_id == device_id
    walk = select(func.min(metric).label("m")).where(of_device).cte("metrics", recursive=True)
    walk = walk.union_all(select(select(func.min(metric)).where(of_device, metric > walk.c.m).scalar_subquery())
                          .where(walk.c.m.is_not(None)))
    newest = select(func.max(readings.c.ts)).where(of_device, metric == walk.c.m).scalar_subquery()
    value = conn.execute(select(func.max(newest)).where(walk.c.m.is_not(None))).scalar()
    return None if value is None else int(value)


def forecast_series(conn: Connection, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` (site, sku) pairs that have forecasts."""
    return [(site, sku) for site, sku in conn.execute(
        select(forecasts.c.site, forecasts.c.sku).distinct().limit(limit)).all()]


def newest_forecasts(conn: Connection, site: str, sku: str, limit: int) -> list[tuple[str, int, Any]]:
    """(origin, created_ts, payload) of the ``limit`` newest forecasts of one series, newest origin first."""
    return [(origin, created_ts, payload) for origin, created_ts, payload in conn.execute(
        select(forecasts.c.origin, forecasts.c.created_ts, forecasts.c.payload)
        .where(forecasts.c.site == site, forecasts.c.sku == sku)
        .order_by(forecasts.c.origin.desc(), forecasts.c.created_ts.desc())
        .limit(limit)).all()]


def latest_forecast_ids(conn: Connection, sites: list[str], skus: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(gateway_id, record id) of the latest forecast per (site, sku) among ``sites`` x ``skus`` that have one:
    greatest origin, then created_ts, then gateway_id and id."""
    keys = conn.execute(
        select(forecasts.c.gateway_id, forecasts.c.id, forecasts.c.site, forecasts.c.sku)
        .where(forecasts.c.site.in_(sites), forecasts.c.sku.in_(skus))
        .order_by(forecasts.c.site, forecasts.c.sku, forecasts.c.origin.desc(), forecasts.c.created_ts.desc(),
                  forecasts.c.gateway_id.desc(), forecasts.c.id.desc())
    )
    winners: dict[tuple[str, str], tuple[str, str]] = {}
    for row in keys:
        winners.setdefault((row.site, row.sku), (row.gateway_id, row.id))
    return winners


def forecast_payloads(conn: Connection, ids: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The stored payload of each forecast (gateway_id, record id) in ``ids``."""
    return {(row.gateway_id, row.id): row.payload
            for row in conn.execute(select(forecasts.c.gateway_id, forecasts.c.id, forecasts.c.payload)
                                    .where(tuple_(forecasts.c.gateway_id, forecasts.c.id).in_(ids)))}
