"""The fleet: every gateway with its health, filtered, sorted and paginated in the database.

A gateway's *last contact* is the later of its last sync and its last model report (the report comes
every ``updates.report_interval_s``, 60 s by default, even when there is nothing to sync). Status:
``online`` when heard from within ``fleet_late_after_s`` and its agent is connected to its MQTT broker,
``late`` when heard from within ``fleet_offline_after_s`` (or online but its broker link is down),
``offline`` otherwise or never. Outbox depth, the oldest unsynced record and the broker link come from
the model report's ``gateway`` part (``protocols.GatewayHealth``, report v2); models and rejected
updates from its tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, and_, case, func, literal, or_, select

from cloud.clock import now_ms
from cloud.console_schemas import (
    DeviceOut,
    FleetGateway,
    FleetPage,
    GatewayDetail,
    GatewayStatus,
    ModelRun,
    RejectedUpdate,
)
from cloud.db.engine import reader
from cloud.db.tables import RECORD_KINDS, gateway_model_reports, gateways, readings, telemetry
from cloud.services.errors import NotFound
from cloud.settings import CloudSettings

MAX_DEVICES: Final = 500
_r = gateway_model_reports
_g = gateways


@dataclass(frozen=True, slots=True)
class FleetFilter:
    status: GatewayStatus | None = None
    site: str | None = None
    #: Part of the gateway id or site (case-insensitive).
    q: str | None = None
    #: Only gateways that rejected an update.
    rejected: bool | None = None


@dataclass(frozen=True, slots=True)
class Thresholds:
    late_after_ms: int
    offline_after_ms: int

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> Thresholds:
        return cls(int(settings.fleet_late_after_s * 1000), int(settings.fleet_offline_after_s * 1000))


def _last_contact() -> Any:
    seen = func.coalesce(_g.c.last_seen_ts, -1)
    reported = func.coalesce(_r.c.received_ts, -1)
    return case((seen >= reported, seen), else_=reported)


def _status_expr(now: int, t: Thresholds) -> Any:
    contact = _last_contact()
    return case(
        (and_(contact >= now - t.late_after_ms, or_(_r.c.mqtt_connected.is_(None), _r.c.mqtt_connected)),
         literal("online")),
        (and_(contact >= 0, contact >= now - t.offline_after_ms), literal("late")),
        else_=literal("offline"))


def _base(columns: list[Any]) -> Any:
    return select(*columns).select_from(_g.outerjoin(_r, _r.c.gateway_id == _g.c.gateway_id))


def _filtered(stmt: Any, f: FleetFilter, now: int, t: Thresholds, with_status: bool = True) -> Any:
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
        conds.append(_status_expr(now, t) == f.status)
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


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return value if isinstance(value, dict) else dict(json.loads(value))


def _models(report: dict[str, Any]) -> tuple[list[ModelRun], list[RejectedUpdate]]:
    runs, rejected = [], []
    for task in report.get("tasks") or []:
        runs.append(ModelRun(task=task.get("task", "?"), state=task.get("state", "?"),
                             version=task.get("current_version"), pending_version=task.get("pending_version"),
                             shadow_version=task.get("shadow_version"), rollout_id=task.get("rollout_id")))
        if task.get("rejected_version") is not None:
            rejected.append(RejectedUpdate(task=task.get("task", "?"), version=task["rejected_version"],
                                           code=task.get("rejected_code"), reason=task.get("rejected_reason"),
                                           ts=task.get("rejected_ts")))
    return runs, rejected


def _gateway(row: Any, now: int) -> FleetGateway:
    report = _as_dict(row.report)
    runs, rejected = _models(report)
    contact = max(row.last_seen_ts or -1, row.received_ts or -1)
    oldest = row.oldest_unsynced_ts
    return FleetGateway(
        gateway_id=row.gateway_id, site=row.site, status=row.status,
        last_contact_ts=None if contact < 0 else contact, last_sync_ts=row.last_seen_ts,
        last_report_ts=row.received_ts, outbox_depth=row.outbox_depth, oldest_unsynced_ts=oldest,
        oldest_unsynced_age_s=None if oldest is None else max(0.0, (now - oldest) / 1000.0),
        mqtt_connected=row.mqtt_connected, agent_version=report.get("agent_version") or row.agent_version,
        models=runs, rejected=rejected,
        counts={kind: int(getattr(row, f"n_{kind}")) for kind in RECORD_KINDS},  # type: ignore[misc]
    )


def _columns(now: int, t: Thresholds) -> list[Any]:
    return [_g.c.gateway_id, _g.c.site, _g.c.last_seen_ts, _g.c.agent_version,
            *[_g.c[f"n_{k}"] for k in RECORD_KINDS], _r.c.received_ts, _r.c.report, _r.c.outbox_depth,
            _r.c.oldest_unsynced_ts, _r.c.mqtt_connected, _status_expr(now, t).label("status")]


def list_fleet(engine: Engine, t: Thresholds, f: FleetFilter, *, sort: str = "gateway_id", descending: bool = False,
               offset: int = 0, limit: int = 50, now: int | None = None) -> FleetPage:
    at = now_ms() if now is None else now
    status = _status_expr(at, t).label("status")
    with reader(engine) as conn:
        rows = conn.execute(_filtered(_base(_columns(at, t)), f, at, t)
                            .order_by(*_order(sort, descending)).offset(offset).limit(limit)).all()
        by_status = {"online": 0, "late": 0, "offline": 0}
        counted = _filtered(_base([status, func.count()]), f, at, t, with_status=False).group_by(status)
        for name, n in conn.execute(counted):
            by_status[name] = int(n)
    total = by_status[f.status] if f.status is not None else sum(by_status.values())
    return FleetPage(items=[_gateway(r, at) for r in rows], total=total, offset=offset, limit=limit,
                     by_status=by_status, late_after_s=t.late_after_ms / 1000, offline_after_s=t.offline_after_ms / 1000)


def _devices(conn: Connection, gateway_id: str) -> list[DeviceOut]:
    rows = conn.execute(select(telemetry.c.device_id, func.max(telemetry.c.ts), func.count())
                        .where(telemetry.c.gateway_id == gateway_id).group_by(telemetry.c.device_id)
                        .order_by(telemetry.c.device_id).limit(MAX_DEVICES)).all()
    out = []
    for device_id, last_ts, n in rows:
        latest = conn.execute(select(telemetry.c.id).where(telemetry.c.device_id == device_id,
                                                           telemetry.c.gateway_id == gateway_id)
                              .order_by(telemetry.c.ts.desc()).limit(1)).scalar()
        metrics = sorted(conn.execute(select(readings.c.metric).where(
            readings.c.gateway_id == gateway_id, readings.c.record_id == latest)).scalars())
        out.append(DeviceOut(device_id=device_id, last_ts=int(last_ts), messages=int(n), metrics=metrics))
    return out


def gateway_detail(engine: Engine, t: Thresholds, gateway_id: str, now: int | None = None) -> GatewayDetail:
    at = now_ms() if now is None else now
    with reader(engine) as conn:
        row = conn.execute(_base(_columns(at, t)).where(_g.c.gateway_id == gateway_id)).first()
        if row is None:
            raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
        devices = _devices(conn, gateway_id)
    return GatewayDetail(gateway=_gateway(row, at), devices=devices,
                         report=_as_dict(row.report) if row.report is not None else None)


def sites(engine: Engine) -> list[str]:
    with reader(engine) as conn:
        return sorted(conn.execute(select(_g.c.site).distinct()).scalars())
