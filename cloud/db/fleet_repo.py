"""Queries over the fleet: every gateway joined with its latest model report, its status computed in the database.

The caller owns the transaction. A gateway's last contact is the later of its last sync (``gateways.last_seen_ts``)
and its last report (``gateway_model_reports.received_ts``); :class:`Health` says when that makes it ``online``,
``late`` or ``offline`` (see ``cloud.services.fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row, and_, case, func, literal, or_, select

from cloud.db.tables import RECORD_KINDS, gateway_model_reports, gateways, readings, telemetry

_r = gateway_model_reports
_g = gateways


@dataclass(frozen=True, slots=True)
class FleetFilter:
    #: ``online``, ``late`` or ``offline``.
    status: str | None = None
    site: str | None = None
    #: Part of the gateway id or site (case-insensitive).
    q: str | None = None
    #: Only gateways that rejected an update.
    rejected: bool | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """When the status is computed, and how long a gateway may stay silent before it is late, then offline."""

    now: int
    late_after_ms: int
    offline_after_ms: int


def _last_contact() -> Any:
    seen = func.coalesce(_g.c.last_seen_ts, -1)
    reported = func.coalesce(_r.c.received_ts, -1)
    return case((seen >= reported, seen), else_=reported)


def _status_expr(h: Health) -> Any:
    contact = _last_contact()
    return case(
        (and_(contact >= h.now - h.late_after_ms, or_(_r.c.mqtt_connected.is_(None), _r.c.mqtt_connected)),
         literal("online")),
        (and_(contact >= 0, contact >= h.now - h.offline_after_ms), literal("late")),
        else_=literal("offline"))


def _base(columns: list[Any]) -> Any:
    return select(*columns).select_from(_g.outerjoin(_r, _r.c.gateway_id == _g.c.gateway_id))


def _filtered(stmt: Any, f: FleetFilter, h: Health, with_status: bool = True) -> Any:
    conds: list[Any] = []
    if f.site is not None:
        conds.append(_g.c.site == f.site)
    if f.q:
        pattern = f"%{f.q.lower().replace('%', '').replace('_', '')}%"
        conds.append(or_(func.lower(_g.c.gateway_id).like(pattern), func.lower(_g.c.site).like(pattern)))
    if f.rejected is not None:
        has = func.coalesce(_r.c.rejected_updates, 0) > 0
        conds.append(has if f.rejected else ~has)
    if with_status and f.status is not None:
        conds.append(_status_expr(h) == f.status)
    return stmt.where(*conds) if conds else stmt


_SORTS: Final = {
    "gateway_id": lambda: [_g.c.gateway_id],
    "site": lambda: [_g.c.site, _g.c.gateway_id],
    "last_contact": lambda: [_last_contact(), _g.c.gateway_id],
    "status": lambda: [_last_contact(), _g.c.gateway_id],
    "outbox_depth": lambda: [func.coalesce(_r.c.outbox_depth, -1), _g.c.gateway_id],
    "oldest_unsynced": lambda: [func.coalesce(_r.c.oldest_unsynced_ts, 2**62), _g.c.gateway_id],
    "agent_version": lambda: [func.coalesce(_g.c.agent_version, ""), _g.c.gateway_id],
    "rejected": lambda: [func.coalesce(_r.c.rejected_updates, 0), _g.c.gateway_id],
}


def _order(sort: str, descending: bool) -> list[Any]:
    cols = _SORTS[sort]()
    return [c.desc() for c in cols] if descending else list(cols)


def _columns(h: Health) -> list[Any]:
    return [_g.c.gateway_id, _g.c.site, _g.c.last_seen_ts, _g.c.agent_version,
            *[_g.c[f"n_{k}"] for k in RECORD_KINDS], _r.c.received_ts, _r.c.report, _r.c.outbox_depth,
            _r.c.oldest_unsynced_ts, _r.c.mqtt_connected, _status_expr(h).label("status")]


def page(conn: Connection, h: Health, f: FleetFilter, sort: str, descending: bool, offset: int, limit: int
         ) -> list[Row[Any]]:
    """One page of the filtered gateways: their columns, ``n_<kind>`` counters, report columns and ``status``."""
    return list(conn.execute(_filtered(_base(_columns(h)), f, h)
                             .order_by(*_order(sort, descending)).offset(offset).limit(limit)).all())


def status_counts(conn: Connection, h: Health, f: FleetFilter) -> dict[str, int]:
    """Gateways per status that pass ``f`` (its ``status`` left out), each status listed."""
    status = _status_expr(h).label("status")
    by_status = {"online": 0, "late": 0, "offline": 0}
    counted = _filtered(_base([status, func.count()]), f, h, with_status=False).group_by(status)
    for name, n in conn.execute(counted):
        by_status[name] = int(n)
    return by_status


def gateway(conn: Connection, h: Health, gateway_id: str) -> Row[Any] | None:
    """What :func:`page` answers for one gateway."""
    return conn.execute(_base(_columns(h)).where(_g.c.gateway_id == gateway_id)).first()


def devices(conn: Connection, gateway_id: str, limit: int, since_ts: int | None = None
            ) -> list[tuple[str, int, int, list[str]]]:
    """(device_id, last ts, messages, metrics of its latest message) of the gateway's devices, by device_id.

    ``since_ts``: only telemetry from this device time on (messages counted over that window). On
    PostgreSQL the time series are partitioned by ``ts``, so a window reads only its partitions; None
    counts every stored message of the gateway (the API's answer; slow on a big table).
    """
    conds = [telemetry.c.gateway_id == gateway_id]
    if since_ts is not None:
        conds.append(telemetry.c.ts >= since_ts)
    rows = conn.execute(select(telemetry.c.device_id, func.max(telemetry.c.ts), func.count())
                        .where(*conds).group_by(telemetry.c.device_id)
                        .order_by(telemetry.c.device_id).limit(limit)).all()
    return [(device_id, int(last_ts), int(n), latest_metrics(conn, gateway_id, device_id, int(last_ts)))
            for device_id, last_ts, n in rows]


def latest_metrics(conn: Connection, gateway_id: str, device_id: str, ts: int) -> list[str]:
    """The metrics a device reported at device time ``ts`` (its latest message), sorted.

    By (device, ts), the readings' own index (and on PostgreSQL the one partition holding ``ts``).
    """
    return sorted(conn.execute(select(readings.c.metric).distinct().where(
        readings.c.device_id == device_id, readings.c.ts == ts, readings.c.gateway_id == gateway_id)).scalars())


def sites(conn: Connection) -> list[str]:
    """Every site with a registered gateway, sorted."""
    return sorted(conn.execute(select(_g.c.site).distinct()).scalars())
