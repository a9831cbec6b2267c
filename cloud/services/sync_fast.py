"""The fast validation path of a JSON sync batch: the same acceptance as ``protocols.SyncBatch``, without a
pydantic model per device record.

``SyncBatch.model_validate_json`` builds four to six model instances per telemetry record and runs five
Python validators on them (measured at about 9-13 ms of a 1,000-record batch's 25 ms of API CPU). Here
msgspec decodes the same JSON into Structs (``cloud.services.sync_structs``) with the same constraints read
off the wire models (patterns, lengths, ranges, literals, a reading's range by its metric), as strictly,
checked in its C decoder (about 1.6 ms a batch against 6-7 ms for pydantic-core's TypeAdapter over the same
shapes as TypedDicts, which this path used before). What a model validator checks across fields (a metric
once per message, ``door_open`` exactly 0 or 1 (not a ``multiple_of``: pydantic-core's allows a relative
1e-9), metrics and directions of their version, RFID reads with a tag id, the batch's version and its record
kinds) is checked while the row tuples are built. The rare kinds (alerts, forecasts, stock) are validated as
their pydantic models from their own JSON, and their rows come from the same builders as the model path.
:func:`_add_records` does the same for records given as dicts (``cloud.services.sync_columnar``'s).

The fast path never decides a refusal. Whatever it does not accept (a failed check, an unusual spelling
such as ``schema_`` for ``schema``) goes to the model path, which accepts it or raises the
``ValidationError`` naming ``records.N.<field>`` exactly as before; so acceptance, errors and rows are the
model path's by construction, provided the fast path accepts nothing the model path refuses
(``tests/cloud/test_cloud_sync_fast.py`` runs both over valid and malformed batches and compares them).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ValidationError

from cloud.services import sync_structs
from cloud.services.sync_plan import PlanBuilder, PlannedBatch, mismatch_reason
from protocols import AlertRecord, ForecastRecord, RejectedRecord, StockDiscrepancyRecord, StockRecord
from protocols.messages import COUNT_DIRECTION, METRICS_V1


def _like(model: type[BaseModel], name: str) -> Any:
    """The type of a wire model's field with its constraints (pattern, length, range): the same checks,
    read off the model so that the two paths cannot drift apart."""
    field = model.model_fields[name]
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


def plan_json(raw_json: bytes, now_ms: int) -> PlannedBatch | None:
    """The plan of a JSON batch (as ``cloud.services.sync_plan.plan_batch`` makes it of the same batch
    validated as ``protocols.SyncBatch``); None where the fast path does not accept the batch (the model
    path then decides)."""
    decoded = sync_structs.decode(raw_json)
    if decoded is None:
        return None
    batch, records = decoded
    builder = PlanBuilder(batch.gateway_id, now_ms)
    if not _add_structs(builder, records, batch.v):
        return None
    return PlannedBatch(gateway_id=batch.gateway_id, batch_id=batch.batch_id, agent_version=batch.agent_version,
                        plan=builder.plan())


_PLACED_MODELS: Final[dict[str, type[BaseModel]]] = {
    "alert": AlertRecord, "forecast": ForecastRecord, "stock": StockRecord, "stock_discrepancy": StockDiscrepancyRecord,
}
if set(_PLACED_MODELS) != set(sync_structs.PLACED_KINDS):
    raise RuntimeError("sync_fast and sync_structs disagree on the rare record kinds")


def _add_structs(builder: PlanBuilder, records: list[Any], batch_v: int) -> bool:
    """:func:`_add_records` for the records as ``sync_structs`` decodes them; False at the first record the
    model path might judge otherwise."""
    gw, now = builder.gw, builder.now_ms
    telemetry, scans, status = builder.rows["telemetry"], builder.rows["scan"], builder.rows["device_status"]
    reading_rows = builder.readings
    for rec in records:
        if type(rec) is tuple:  # a rare kind: validated as its model, from its own JSON
            kind, raw = rec
            if batch_v < 2 and kind in ("stock", "stock_discrepancy"):
                return False
            try:
                builder.add_model(_PLACED_MODELS[kind].model_validate_json(raw))  # type: ignore[arg-type]
            except ValidationError:
                return False
            continue
        rid, m = rec.id, rec.msg
        device, boot, seq, ts, b = m.device_id, m.boot_id, m.seq, m.ts, m.body
        kind = rec.__struct_config__.tag
        if kind == "telemetry":
            readings = b.readings
            metrics = [r.metric for r in readings]
            if (len(set(metrics)) != len(metrics) or (m.v >= 2 and batch_v < 2)
                    or (m.v == 1 and not METRICS_V1.issuperset(metrics))
                    or ("door_open" in metrics and not all(r.value in (0.0, 1.0) for r in readings
                                                           if r.metric == "door_open"))):
                return False
        elif kind == "scan" and ((b.code_type == "rfid" and b.tag_id is None)
                                 or (b.qty < 1 and b.direction != COUNT_DIRECTION)
                                 or (m.v < 2 and b.direction == COUNT_DIRECTION)):
            return False  # ScanBody's and ScanMessage's validators, as _scan_consistent
        if not _admit(builder, rid, f"{kind}:{device}:{boot}:{seq}"):  # protocols.sync.record_id
            continue
        head = (gw, rid, device, boot, seq, m.msg_id, ts, rec.received_ts, now)
        if kind == "telemetry":
            telemetry.append((*head, len(readings)))
            reading_rows.extend([(gw, rid, r.metric, device, ts, r.value) for r in readings])
        elif kind == "scan":
            scans.append((*head, b.code_type, b.sku, b.location, b.direction, b.qty, b.reader_id, b.tag_id))
        else:
            status.append((*head, b.state, b.fw_version, b.uptime_s, b.reason))
    return True


def _add_records(builder: PlanBuilder, records: list[Any], batch_v: int) -> bool:
    """Check what the models' validators check and add each record's rows; False at the first record
    the model path might judge otherwise."""
    gw, now = builder.gw, builder.now_ms
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
        if not _admit(builder, rid, f"{kind}:{device}:{boot}:{seq}"):  # protocols.sync.record_id
            continue
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


def _admit(builder: PlanBuilder, rid: str, expected: str) -> bool:
    """Whether a device record is stored now: not repeated inside the batch (stored, or not, once) and its id
    its content's (else rejected with the reason); in batch order."""
    if rid in builder.seen:
        return False
    builder.seen.add(rid)
    if rid != expected:
        builder.rejected.append(RejectedRecord(id=rid, reason=mismatch_reason(rid, expected)))
        return False
    builder.order.append(rid)
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
