"""A validated sync batch as row tuples per table (``cloud.db.bulk_store.COLUMNS`` order): what
``cloud.services.sync`` stores.

:func:`plan_batch` builds the plan of a ``protocols.SyncBatch`` (the model path); ``cloud.services.sync_fast``
builds the same plan straight from the JSON for the common records and uses the builders here for the others.
A record repeated inside a batch counts once; a record that can never be stored for the batch's gateway
(its id is not its ``content_id``, an alert or forecast of another gateway, a stock record that fails
``cloud.services.stock``'s checks) is rejected with the reason, in batch order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cloud.db.bulk_store import COLUMNS, Row
from cloud.db.tables import RECORD_KINDS
from cloud.services.stock import STOCK_RECORD_TYPES, AnyStockRecord
from cloud.services.stock import reject_reason as stock_reject_reason
from protocols import (
    AlertRecord,
    DeviceStatusRecord,
    ForecastRecord,
    RejectedRecord,
    ScanRecord,
    SyncBatch,
    TelemetryRecord,
)

AnyRecord = TelemetryRecord | ScanRecord | DeviceStatusRecord | AlertRecord | ForecastRecord | AnyStockRecord


@dataclass(frozen=True, slots=True)
class Plan:
    """A batch split into row tuples per table (``cloud.db.bulk_store.COLUMNS`` order)."""

    order: tuple[str, ...]
    rows: dict[str, list[Row]]
    readings: list[Row]
    rejected: tuple[RejectedRecord, ...]
    #: Stock records (versioned state: ``cloud.services.stock``), in batch order.
    stock: tuple[AnyStockRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """What storing a batch needs of it: its header's fields and its plan."""

    gateway_id: str
    batch_id: str
    agent_version: str
    plan: Plan


def _telemetry_row(rec: TelemetryRecord, gw: str, now_ms: int) -> Row:
    m = rec.msg
    return (gw, rec.id, m.device_id, m.boot_id, m.seq, m.msg_id, m.ts, rec.received_ts, now_ms,
            len(m.body.readings))


def _scan_row(rec: ScanRecord, gw: str, now_ms: int) -> Row:
    m, b = rec.msg, rec.msg.body
    return (gw, rec.id, m.device_id, m.boot_id, m.seq, m.msg_id, m.ts, rec.received_ts, now_ms, b.code_type, b.sku,
            b.location, b.direction, b.qty, b.reader_id, b.tag_id)


def _status_row(rec: DeviceStatusRecord, gw: str, now_ms: int) -> Row:
    m, b = rec.msg, rec.msg.body
    return (gw, rec.id, m.device_id, m.boot_id, m.seq, m.msg_id, m.ts, rec.received_ts, now_ms, b.state,
            b.fw_version, b.uptime_s, b.reason)


def _alert_row(rec: AlertRecord, gw: str, now_ms: int) -> Row:
    a = rec.alert
    return (gw, rec.id, a.alert_id, a.kind, a.state, a.severity, a.device_id, a.ts, now_ms,
            a.model_dump_json(by_alias=True), a.code, a.metric)


def _forecast_row(rec: ForecastRecord, gw: str, now_ms: int) -> Row:
    f = rec.forecast
    return (gw, rec.id, f.forecast_id, f.site, f.sku, f.origin, f.created_ts, f.model_version, now_ms,
            f.model_dump_json(by_alias=True))


#: Row builder per record type, with the columns its tuples fill (checked against the tables below).
ROW_BUILDERS: Final[Mapping[type, tuple[str, Callable[[Any, str, int], Row]]]] = {
    TelemetryRecord: ("telemetry", _telemetry_row),
    ScanRecord: ("scan", _scan_row),
    DeviceStatusRecord: ("device_status", _status_row),
    AlertRecord: ("alert", _alert_row),
    ForecastRecord: ("forecast", _forecast_row),
}
_MESSAGE: Final = ("gateway_id", "id", "device_id", "boot_id", "seq", "msg_id", "ts", "received_ts", "stored_ts")
_FILLED: Final = {
    "telemetry": (*_MESSAGE, "n_readings"),
    "scans": (*_MESSAGE, "code_type", "sku", "location", "direction", "qty", "reader_id", "tag_id"),
    "device_status": (*_MESSAGE, "state", "fw_version", "uptime_s", "reason"),
    "alerts": ("gateway_id", "id", "alert_id", "kind", "state", "severity", "device_id", "ts", "stored_ts", "payload",
               "code", "metric"),
    "forecasts": ("gateway_id", "id", "forecast_id", "site", "sku", "origin", "created_ts", "model_version",
                  "stored_ts", "payload"),
    "readings": ("gateway_id", "record_id", "metric", "device_id", "ts", "value"),
}
if _FILLED != COLUMNS:  # a column added to a table must be filled here too
    raise RuntimeError(f"sync row builders {_FILLED} do not match the tables {COLUMNS}")


def reject_reason(rec: AnyRecord, gateway_id: str) -> str | None:
    """Why a record can never be stored for this gateway, or None."""
    expected = rec.content_id
    if rec.id != expected:
        return mismatch_reason(rec.id, expected)
    if isinstance(rec, AlertRecord) and rec.alert.gateway_id != gateway_id:
        return f"alert.gateway_id {rec.alert.gateway_id!r} differs from the batch's {gateway_id!r}"
    if isinstance(rec, ForecastRecord) and rec.forecast.gateway_id != gateway_id:
        return f"forecast.gateway_id {rec.forecast.gateway_id!r} differs from the batch's {gateway_id!r}"
    if isinstance(rec, STOCK_RECORD_TYPES):
        return stock_reject_reason(rec, gateway_id)
    return None


def mismatch_reason(rid: str, expected: str) -> str:
    """Why a record whose id is not its ``content_id`` is rejected."""
    return f"id {rid!r} does not match the record's content (expected {expected!r})"


class PlanBuilder:
    """Accumulates a plan record by record, in batch order (shared by the model and the fast path)."""

    __slots__ = ("gw", "now_ms", "order", "readings", "rejected", "rows", "seen", "stock")

    def __init__(self, gateway_id: str, now_ms: int) -> None:
        self.gw = gateway_id
        self.now_ms = now_ms
        self.order: list[str] = []
        self.seen: set[str] = set()
        self.rows: dict[str, list[Row]] = {kind: [] for kind in RECORD_KINDS}
        self.readings: list[Row] = []
        self.rejected: list[RejectedRecord] = []
        self.stock: list[AnyStockRecord] = []

    def add_model(self, rec: AnyRecord) -> None:
        """Add a record validated as its model."""
        if rec.id in self.seen:  # repeated inside the batch: stored (or not) once
            return
        self.seen.add(rec.id)
        reason = reject_reason(rec, self.gw)
        if reason is not None:
            self.rejected.append(RejectedRecord(id=rec.id, reason=reason))
            return
        self.order.append(rec.id)
        if isinstance(rec, STOCK_RECORD_TYPES):
            self.stock.append(rec)
            return
        kind, build = ROW_BUILDERS[type(rec)]
        self.rows[kind].append(build(rec, self.gw, self.now_ms))
        if kind == "telemetry":
            m = rec.msg  # type: ignore[union-attr]
            gw, rid = self.gw, rec.id
            self.readings.extend((gw, rid, r.metric, m.device_id, m.ts, r.value) for r in m.body.readings)

    def plan(self) -> Plan:
        return Plan(order=tuple(self.order), rows=self.rows, readings=self.readings, rejected=tuple(self.rejected),
                    stock=tuple(self.stock))


def plan_batch(batch: SyncBatch, now_ms: int) -> PlannedBatch:
    """The plan of a batch validated as ``protocols.SyncBatch``."""
    builder = PlanBuilder(batch.gateway_id, now_ms)
    for rec in batch.records:
        builder.add_model(rec)
    return PlannedBatch(gateway_id=batch.gateway_id, batch_id=batch.batch_id, agent_version=batch.agent_version,
                        plan=builder.plan())
