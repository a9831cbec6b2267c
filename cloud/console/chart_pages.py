"""Streams (a device's metric over any range, downsampled on the server, with its alerts: anomaly score,
expected vs observed) and Demand (P50/P90 forecast bands against the picks that happened).

The page carries what the server knows cheaply (devices, the alerts of the stream, the forecasts);
``charts.js`` fetches the series from the API (``/api/v1/devices/{id}/readings`` with ``max_points``,
``/api/v1/sites/{site}/demand``) for the chosen range, so the browser never gets more than
:data:`MAX_POINTS` buckets whatever the range.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from fastapi.responses import HTMLResponse
from sqlalchemy import Engine, func, select

from cloud.auth import Principal
from cloud.clock import now_ms
from cloud.console.html import Html, join, page, tag
from cloud.console.html import select as select_box
from cloud.db.alarm_repo import AlarmFilter
from cloud.db.engine import reader
from cloud.db.tables import forecasts, telemetry
from cloud.schemas import payload_dict
from cloud.services import alarms
from protocols import METRIC_RANGES

#: Buckets asked for per chart: min/max per bucket keeps spikes visible, the browser stays fast.
MAX_POINTS: Final = 1000
DAY_MS: Final = 86_400_000
_MAX_ALERTS: Final = 500
_MAX_FORECASTS: Final = 400
_MAX_DEVICES: Final = 2000


def _devices(engine: Engine) -> list[str]:
    """Every device with telemetry (up to :data:`_MAX_DEVICES`), one probe of ``ix_telemetry_device_ts`` per
    device (a loose index scan: the next device after the last one) instead of reading every message."""
    device = telemetry.c.device_id
    walk = select(func.min(device).label("d")).cte("devices", recursive=True)
    walk = walk.union_all(select(select(func.min(device)).where(device > walk.c.d).scalar_subquery())
                          .where(walk.c.d.is_not(None)))
    with reader(engine) as conn:
        found = conn.execute(select(walk.c.d).where(walk.c.d.is_not(None)).limit(_MAX_DEVICES)).scalars()
        return sorted(found)


def _last_ts(engine: Engine, device_id: str) -> int | None:
    with reader(engine) as conn:
        value = conn.execute(select(func.max(telemetry.c.ts)).where(telemetry.c.device_id == device_id)).scalar()
    return None if value is None else int(value)


def _range_form(path: str, fields: Html, from_ts: int, to_ts: int) -> Html:
    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M")

    return Html(f"""<form class="filters" method="get" action="{path}" data-form="range">{fields}
<label>From <input type="datetime-local" data-local="from" value="{iso(from_ts)}"></label>
<label>To <input type="datetime-local" data-local="to" value="{iso(to_ts)}"></label>
<input type="hidden" name="from" value="{from_ts}"><input type="hidden" name="to" value="{to_ts}">
<span class="quick">{join(tag("button", label, type="button", data_range=str(ms)) for label, ms in
                          (("1 h", 3_600_000), ("1 day", DAY_MS), ("7 days", 7 * DAY_MS), ("30 days", 30 * DAY_MS),
                           ("1 year", 365 * DAY_MS)))}</span>
<button type="submit">Show</button> <span class="hint">times in UTC</span></form>""")


def streams_page(engine: Engine, principal: Principal, params: dict[str, Any]) -> HTMLResponse:
    devices = _devices(engine)
    device_id = params.get("device_id") or (devices[0] if devices else None)
    metric = params.get("metric") or "temperature_c"
    last = _last_ts(engine, device_id) if device_id else None
    to_ts = int(params.get("to") or ((last + 1) if last is not None else now_ms()))
    from_ts = int(params.get("from") or (to_ts - DAY_MS))
    fields = join([select_box("device_id", [(d, d) for d in devices], device_id, "Device"),
                   select_box("metric", [(m, m) for m in METRIC_RANGES], metric, "Metric")])
    marks = []
    if device_id:
        found = alarms.list_alarms(engine, AlarmFilter(device_id=device_id, since_ts=from_ts), sort="ts",
                                   limit=_MAX_ALERTS)
        for a in found.items:
            if a.ts < to_ts and a.alert.get("metric") in (None, metric):
                marks.append({"ts": a.ts, "score": a.alert.get("score"), "threshold": a.alert.get("threshold"),
                              "expected": a.alert.get("expected"), "observed": a.alert.get("observed"),
                              "cleared_ts": a.cleared_ts, "severity": a.alert.get("severity"),
                              "message": a.alert.get("message"), "id": a.id, "gateway_id": a.gateway_id})
    data = {"device_id": device_id, "metric": metric, "from": from_ts, "to": to_ts, "max_points": MAX_POINTS,
            "alerts": marks}
    body = join([_range_form("/console/streams", fields, from_ts, to_ts),
                 Html('<p class="summary" id="stream-summary">loading…</p>'
                      '<figure class="chart" id="stream-chart"></figure>'
                      '<h2>Anomaly score at each alert</h2><figure class="chart small" id="score-chart"></figure>'),
                 tag("p", "No telemetry synced yet." if not devices else
                     f"{len(marks)} alerts of this stream in the range (markers; expected vs observed at each).",
                     class_="hint")])
    return page("Streams", principal, "streams", body, scripts=("charts.js",), data=data)


def _forecast_options(engine: Engine) -> tuple[list[str], dict[str, list[str]]]:
    with reader(engine) as conn:
        rows = conn.execute(select(forecasts.c.site, forecasts.c.sku).distinct().limit(5000)).all()
    skus: dict[str, list[str]] = {}
    for site, sku in rows:
        skus.setdefault(site, []).append(sku)
    return sorted(skus), {k: sorted(v) for k, v in skus.items()}


def _bands(engine: Engine, site: str, sku: str) -> list[dict[str, Any]]:
    """Per forecast day the newest forecast made for it (its origin at or before the day): P50 and P90."""
    with reader(engine) as conn:
        rows = conn.execute(select(forecasts.c.origin, forecasts.c.created_ts, forecasts.c.payload)
                            .where(forecasts.c.site == site, forecasts.c.sku == sku)
                            .order_by(forecasts.c.origin.desc(), forecasts.c.created_ts.desc())
                            .limit(_MAX_FORECASTS)).all()
    by_day: dict[str, dict[str, Any]] = {}
    for origin, created_ts, payload in reversed(rows):  # oldest first: newer forecasts overwrite
        doc = payload_dict(payload)
        start = dt.date.fromisoformat(origin)
        for i, (p50, p90) in enumerate(zip(doc["p50"], doc["p90"], strict=True)):
            day = (start + dt.timedelta(days=i)).isoformat()
            by_day[day] = {"day": day, "p50": p50, "p90": p90, "origin": origin, "created_ts": created_ts}
    return [by_day[d] for d in sorted(by_day)]


def demand_page(engine: Engine, principal: Principal, params: dict[str, Any]) -> HTMLResponse:
    sites, skus = _forecast_options(engine)
    site = params.get("site") or (sites[0] if sites else None)
    site_skus = skus.get(site or "", [])
    sku = params.get("sku") if params.get("sku") in site_skus else (site_skus[0] if site_skus else None)
    bands = _bands(engine, site, sku) if site and sku else []
    fields = join([select_box("site", [(s, s) for s in sites], site, "Site"),
                   select_box("sku", [(s, s) for s in site_skus], sku, "SKU")])
    form = Html(f'<form class="filters" method="get" action="/console/demand">{fields}'
                '<button type="submit">Show</button></form>')
    data = {"site": site, "sku": sku, "bands": bands}
    body = join([form, Html('<p class="summary" id="demand-summary">loading…</p>'
                            '<figure class="chart" id="demand-chart"></figure>'),
                 tag("p", "No forecasts synced yet." if not bands else
                     "Band: P50 to P90 of the newest forecast made for each day; dots: units actually picked.",
                     class_="hint")])
    return page("Demand", principal, "demand", body, scripts=("charts.js",), data=data)

