"""Read side of synced records: alerts and forecasts, filtered and paginated by keyset cursor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from cloud.db import repo
from cloud.db.engine import reader
from cloud.schemas import AlertOut, ForecastOut, Page, payload_dict
from cloud.services.errors import BadRequest
from protocols import AlertPayload, ForecastPayload

#: Neither gateway ids nor record ids may contain it (protocols' Ident and RecordId patterns).
_SEP = "/"
_MAX_TS_DIGITS = 19


def encode_cursor(ts: int, gateway_id: str, record_id: str) -> str:
    return f"{ts}{_SEP}{gateway_id}{_SEP}{record_id}"


def decode_cursor(cursor: str) -> tuple[int, str, str]:
    """``<ts>/<gateway id>/<record id>`` of the last item of the previous page."""
    parts = cursor.split(_SEP)
    if (len(parts) != 3 or not parts[1] or not parts[2] or not parts[0].isdigit()
            or len(parts[0]) > _MAX_TS_DIGITS or int(parts[0]) > 2**63 - 1):
        raise BadRequest("malformed cursor; pass next_cursor from the previous page unchanged", "cursor")
    return int(parts[0]), parts[1], parts[2]


def _next_cursor(rows: Sequence[Any], limit: int) -> str | None:
    if len(rows) < limit:
        return None
    last = rows[-1]
    return encode_cursor(last.ts, last.gateway_id, last.id)


def _query(limit: int, gateway_id: str | None, since_ts: int | None, cursor: str | None) -> repo.PageQuery:
    return repo.PageQuery(limit=limit, gateway_id=gateway_id, since_ts=since_ts,
                          after=decode_cursor(cursor) if cursor else None)


def list_alerts(engine: Engine, *, limit: int, gateway_id: str | None = None, since_ts: int | None = None,
                cursor: str | None = None, where: repo.AlertFilter | None = None) -> Page[AlertOut]:
    """Alerts ordered by their time (then gateway, id); ``since_ts`` keeps those raised at or after it,
    ``where`` filters on device, kind, code, metric and state."""
    query = _query(limit, gateway_id, since_ts, cursor)
    with reader(engine) as conn:
        rows = repo.list_alerts(conn, query, where or repo.AlertFilter())
    items = [
        AlertOut(id=r.id, gateway_id=r.gateway_id, stored_ts=r.stored_ts,
                 alert=AlertPayload.model_validate(payload_dict(r.payload), strict=False))
        for r in rows
    ]
    return Page[AlertOut](items=items, next_cursor=_next_cursor(rows, limit))


def list_forecasts(engine: Engine, *, limit: int, gateway_id: str | None = None, sku: str | None = None,
                   since_ts: int | None = None, cursor: str | None = None) -> Page[ForecastOut]:
    """Forecasts ordered by creation time (then gateway, id); ``since_ts`` keeps those created at or after it."""
    query = _query(limit, gateway_id, since_ts, cursor)
    with reader(engine) as conn:
        rows = repo.list_forecasts(conn, query, sku=sku)
    items = [
        ForecastOut(id=r.id, gateway_id=r.gateway_id, stored_ts=r.stored_ts,
                    forecast=ForecastPayload.model_validate(payload_dict(r.payload), strict=False))
        for r in rows
    ]
    return Page[ForecastOut](items=items, next_cursor=_next_cursor(rows, limit))
