"""The fast validation path of a JSON sync batch: the same acceptance as ``protocols.SyncBatch``, without a
pydantic model per device record.

``SyncBatch.model_validate_json`` builds four to six model instances per telemetry record and runs five
Python validators on them (measured at about 9-13 ms of a 1,000-record batch's 25 ms of API CPU). Here one
``TypeAdapter`` validates the same JSON into plain dicts and lists, with the same constrained types
(``Ident``, ``TsMs``, the patterns), the same strict config and the same limits, so the checks run in
pydantic-core: a reading's range is a tagged union on its metric (one ``ge``/``le`` pair per metric). What a
model validator checks across fields (a metric once per message, ``door_open`` exactly 0 or 1 (not a
``multiple_of``: pydantic-core's allows a relative 1e-9), metrics and directions of their version, RFID reads with a tag id, the batch's version and its
record kinds) is checked while the row tuples are built. The rare kinds (alerts, forecasts, stock) stay
pydantic models inside the same union, and their rows come from the same builders as the model path.

The fast path never decides a refusal. Whatever it does not accept (a failed check, an unusual spelling
such as ``schema_`` for ``schema``) goes to the model path, which accepts it or raises the
``ValidationError`` naming ``records.N.<field>`` exactly as before; so acceptance, errors and rows are the
model path's by construction, provided the fast path accepts nothing the model path refuses
(``tests/cloud/test_cloud_sync_fast.py`` runs both over valid and malformed batches and compares them).
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Final, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from cloud.services.sync_plan import PlanBuilder, PlannedBatch, mismatch_reason
from protocols import AlertRecord, ForecastRecord, RejectedRecord, StockDiscrepancyRecord, StockRecord
from protocols.messages import (
    COUNT_DIRECTION,
    METRIC_RANGES,
    METRICS_V1,
    BootId,
    Ident,
    MsgId,
    ScanBody,
    StatusBody,
    TelemetryMessage,
    TsMs,
)
from protocols.sync import MAX_BATCH_RECORDS, RecordId, SyncBatchHeader

#: ``protocols.messages.Frozen``'s validation settings (strict types, unknown keys refused, no NaN).
_CONFIG: Final = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, cache_strings="keys")


def _like(model: type[BaseModel], name: str) -> Any:
    """The type of a wire model's field with its constraints (pattern, length, range): the same checks,
    read off the model so that the two paths cannot drift apart."""
    field = model.model_fields[name]
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


_Seq = _like(TelemetryMessage, "seq")
_Sku = _like(ScanBody, "sku")
_Location = _like(ScanBody, "location")
_Qty = _like(ScanBody, "qty")
_TagId = _like(ScanBody, "tag_id")
_FwVersion = _like(StatusBody, "fw_version")
_Uptime = _like(StatusBody, "uptime_s")
_Reason = _like(StatusBody, "reason")
_BatchId = _like(SyncBatchHeader, "batch_id")
_AgentVersion = _like(SyncBatchHeader, "agent_version")


def _reading_shape(metric: str, lo: float, hi: float) -> Any:
    value: Any = Annotated[float, Field(ge=lo, le=hi)]
    shape: Any = TypedDict(f"Reading_{metric}", {"metric": Literal[metric], "value": value})  # type: ignore[misc]
    shape.__pydantic_config__ = _CONFIG
    return shape


_Reading = Annotated[
    functools.reduce(operator.or_, (_reading_shape(m, lo, hi) for m, (lo, hi) in METRIC_RANGES.items())),
    Field(discriminator="metric"),
]


@with_config(_CONFIG)
class _TelemetryBody(TypedDict):
    readings: Annotated[list[_Reading], Field(min_length=1, max_length=16)]


@with_config(_CONFIG)
class _DeviceMsg(TypedDict):
    """The header every device message carries (its dedup key and times)."""

    msg_id: MsgId
    device_id: Ident
    boot_id: BootId
    seq: _Seq
    ts: TsMs


@with_config(_CONFIG)
class _TelemetryMsg(_DeviceMsg):
    schema: NotRequired[Literal["edgehouse.telemetry"]]
    v: NotRequired[Literal[1, 2]]
    body: _TelemetryBody


@with_config(_CONFIG)
class _ScanBody(TypedDict):
    code_type: Literal["barcode", "rfid"]
    sku: _Sku
    location: _Location
    direction: Literal["inbound", "pick", "outbound", "count"]
    qty: _Qty
    reader_id: Ident
    tag_id: NotRequired[_TagId]


@with_config(_CONFIG)
class _ScanMsg(_DeviceMsg):
    schema: NotRequired[Literal["edgehouse.scan"]]
    v: NotRequired[Literal[1, 2]]
    body: _ScanBody


@with_config(_CONFIG)
class _StatusBody(TypedDict):
    state: Literal["online", "offline"]
    fw_version: _FwVersion
    uptime_s: NotRequired[_Uptime]
    reason: NotRequired[_Reason]


@with_config(_CONFIG)
class _StatusMsg(_DeviceMsg):
    schema: NotRequired[Literal["edgehouse.status"]]
    v: NotRequired[Literal[1]]
    body: _StatusBody


@with_config(_CONFIG)
class _Telemetry(TypedDict):
    kind: Literal["telemetry"]
    id: RecordId
    received_ts: TsMs
    msg: _TelemetryMsg


@with_config(_CONFIG)
class _Scan(TypedDict):
    kind: Literal["scan"]
    id: RecordId
    received_ts: TsMs
    msg: _ScanMsg


@with_config(_CONFIG)
class _Status(TypedDict):
    kind: Literal["device_status"]
    id: RecordId
    received_ts: TsMs
    msg: _StatusMsg


_Record = Annotated[
    _Telemetry | _Scan | _Status | AlertRecord | ForecastRecord | StockRecord | StockDiscrepancyRecord,
    Field(discriminator="kind"),
]


@with_config(_CONFIG)
class FastBatch(TypedDict):
    """A sync batch as validated by the fast path: the header's fields and the records (dicts for
    the device records, models for the others)."""

    schema: NotRequired[Literal["edgehouse.sync_batch"]]
    v: NotRequired[Literal[1, 2]]
    gateway_id: Ident
    batch_id: _BatchId
    sent_ts: TsMs
    agent_version: _AgentVersion
    records: Annotated[list[_Record], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


_ADAPTER: Final = TypeAdapter(FastBatch)


def plan_json(raw_json: bytes, now_ms: int) -> PlannedBatch | None:
    """The plan of a JSON batch (as ``cloud.services.sync_plan.plan_batch`` makes it of the same batch
    validated as ``protocols.SyncBatch``); None where the fast path does not accept the batch (the model
    path then decides)."""
    try:
        batch = _ADAPTER.validate_json(raw_json)
    except ValidationError:
        return None
    gw = batch["gateway_id"]
    builder = PlanBuilder(gw, now_ms)
    if not _add_records(builder, batch["records"], batch.get("v", 2)):
        return None
    return PlannedBatch(gateway_id=gw, batch_id=batch["batch_id"], agent_version=batch["agent_version"],
                        plan=builder.plan())


def _add_records(builder: PlanBuilder, records: list[Any], batch_v: int) -> bool:
    """Check what the models' validators check and add each record's rows; False at the first record
    the model path might judge otherwise."""
    gw, now, seen, order, rejected = builder.gw, builder.now_ms, builder.seen, builder.order, builder.rejected
    telemetry, scans, status = builder.rows["telemetry"], builder.rows["scan"], builder.rows["device_status"]
    reading_rows = builder.readings
    for rec in records:
        if not isinstance(rec, dict):  # the rare kinds, validated as their models
            if batch_v < 2 and isinstance(rec, StockRecord | StockDiscrepancyRecord):
                return False
            builder.add_model(rec)
            continue
        kind, rid, m = rec["kind"], rec["id"], rec["msg"]
        device, boot, seq, ts, b = m["device_id"], m["boot_id"], m["seq"], m["ts"], m["body"]
        if kind == "telemetry":
            readings = b["readings"]
            metrics = [r["metric"] for r in readings]
            v = m.get("v", 2)
            if (len(set(metrics)) != len(metrics) or (v >= 2 and batch_v < 2)
                    or (v == 1 and not METRICS_V1.issuperset(metrics))
                    or ("door_open" in metrics and not _door_exact(readings))):
                return False
        elif kind == "scan" and not _scan_consistent(m, b):
            return False
        if rid in seen:  # repeated inside the batch: stored (or not) once
            continue
        seen.add(rid)
        expected = f"{kind}:{device}:{boot}:{seq}"  # protocols.sync.record_id
        if rid != expected:
            rejected.append(RejectedRecord(id=rid, reason=mismatch_reason(rid, expected)))
            continue
        order.append(rid)
        head = (gw, rid, device, boot, seq, m["msg_id"], ts, rec["received_ts"], now)
        if kind == "telemetry":
            telemetry.append((*head, len(readings)))
            reading_rows.extend([(gw, rid, r["metric"], device, ts, r["value"]) for r in readings])
        elif kind == "scan":
            scans.append((*head, b["code_type"], b["sku"], b["location"], b["direction"], b["qty"], b["reader_id"],
                          b.get("tag_id")))
        else:
            status.append((*head, b["state"], b["fw_version"], b.get("uptime_s", 0.0), b.get("reason")))
    return True


def _door_exact(readings: list[Any]) -> bool:
    """``Reading``'s validator: a door is open (1) or closed (0), nothing between."""
    return all(r["value"] in (0.0, 1.0) for r in readings if r["metric"] == "door_open")


def _scan_consistent(m: dict[str, Any], b: dict[str, Any]) -> bool:
    """``ScanBody`` and ``ScanMessage``'s validators: RFID reads carry a tag id, only counts may be of 0
    units, and counts need scan schema v2."""
    return not ((b["code_type"] == "rfid" and b.get("tag_id") is None)
                or (b["qty"] < 1 and b["direction"] != COUNT_DIRECTION)
                or (m.get("v", 2) < 2 and b["direction"] == COUNT_DIRECTION))
