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

from sqlalchemy import Engine

from cloud.clock import now_ms
from cloud.console_schemas import (
    DeviceOut,
    FleetGateway,
    FleetPage,
    GatewayDetail,
    ModelRun,
    RejectedUpdate,
)
from cloud.db import fleet_repo
from cloud.db.engine import reader
from cloud.db.fleet_repo import FleetFilter
from cloud.db.tables import RECORD_KINDS
from cloud.services.errors import NotFound
from cloud.settings import CloudSettings

__all__ = ["DEVICE_WINDOW_MS", "FleetFilter", "Thresholds", "gateway_detail", "list_fleet", "sites"]

MAX_DEVICES: Final = 500
#: The console's gateway page lists the devices heard from in this much device time before the gateway's
#: last sync (its totals are the gateway's counters): a window, not every stored message, so the page
#: stays fast on a big telemetry table (on PostgreSQL it reads only that window's partitions).
DEVICE_WINDOW_MS: Final = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    late_after_ms: int
    offline_after_ms: int

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> Thresholds:
        return cls(int(settings.fleet_late_after_s * 1000), int(settings.fleet_offline_after_s * 1000))

    def at(self, now: int) -> fleet_repo.Health:
        return fleet_repo.Health(now, self.late_after_ms, self.offline_after_ms)


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


def list_fleet(engine: Engine, t: Thresholds, f: FleetFilter, *, sort: str = "gateway_id", descending: bool = False,
               offset: int = 0, limit: int = 50, now: int | None = None) -> FleetPage:
    at = now_ms() if now is None else now
    health = t.at(at)
    with reader(engine) as conn:
        rows = fleet_repo.page(conn, health, f, sort, descending, offset, limit)
        by_status = fleet_repo.status_counts(conn, health, f)
    total = by_status[f.status] if f.status is not None else sum(by_status.values())
    return FleetPage(items=[_gateway(r, at) for r in rows], total=total, offset=offset, limit=limit,
                     by_status=by_status, late_after_s=t.late_after_ms / 1000, offline_after_s=t.offline_after_ms / 1000)


def gateway_detail(engine: Engine, t: Thresholds, gateway_id: str, now: int | None = None,
                   window_ms: int | None = None) -> GatewayDetail:
    """The gateway, its devices and its latest model report; ``window_ms``: only the devices heard from in that
    much device time before its last sync (None: every stored message counted)."""
    at = now_ms() if now is None else now
    with reader(engine) as conn:
        row = fleet_repo.gateway(conn, t.at(at), gateway_id)
        if row is None:
            raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
        since = None if window_ms is None else (row.last_seen_ts if row.last_seen_ts is not None else at) - window_ms
        devices = [DeviceOut(device_id=device_id, last_ts=last_ts, messages=n, metrics=metrics)
                   for device_id, last_ts, n, metrics in fleet_repo.devices(conn, gateway_id, MAX_DEVICES, since)]
    return GatewayDetail(gateway=_gateway(row, at), devices=devices, devices_since_ts=since,
                         report=_as_dict(row.report) if row.report is not None else None)


def sites(engine: Engine) -> list[str]:
    with reader(engine) as conn:
        return fleet_repo.sites(conn)
