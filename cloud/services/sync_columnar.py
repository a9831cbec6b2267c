"""The column-wise path of a columnar sync batch (``protocols.columnar``): the same acceptance, errors and rows as
expanding the document to the batch's JSON and validating that (``cloud.services.sync.plan_json``), without
rebuilding and re-parsing every record.

A group of device records is read column by column (``protocols.columnar.group_columns``: the decoder's own
structural checks and size budget); its paths must be exactly those of a telemetry, scan or status record of
one kind. Each column is validated once, as a JSON list of the field's type in pydantic-core (the types read
off the wire models, ``strict``, no NaN): a constant or dictionary-coded column (device_id, metric, boot_id, ...)
validates its distinct values only, the others (seq, ts, values, msg_id) in one call. Derived ids are built
as the decoder builds them (``protocols.sync.record_id``); a column of ids is validated as ``RecordId`` and
compared with the content by ``sync_fast``'s row builder, which also runs the models' cross-field checks
(a metric once per message, ``door_open``, versions, RFID tags). Groups placed by ``at`` (alerts, forecasts,
stock) are decoded as the decoder does and validated as their models from their JSON.

This path never decides a refusal: at anything it does not take (an unknown path, a type it does not know
to be valid, a failed check) it answers None and :func:`plan_columnar` expands the document and validates
the JSON as before, which accepts it or raises the error naming ``records.N.<field>`` (or the columnar
field); ``tests/cloud/test_cloud_sync_columnar_fast.py`` compares both over valid and malformed documents.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter
from sqlalchemy import Engine

from cloud import clock
from cloud.services import sync as sync_service
from cloud.services.errors import BadRequest
from cloud.services.reorder import ReorderPolicy
from cloud.services.sync_fast import _add_records, _like
from cloud.services.sync_plan import PlanBuilder, PlannedBatch
from protocols import (
    AlertRecord,
    ForecastRecord,
    StockDiscrepancyRecord,
    StockRecord,
    SyncAck,
    SyncBatchHeader,
)
from protocols.columnar import SCHEMA, VERSION, ColumnarError, decode, group_columns, group_records
from protocols.messages import (
    METRIC_RANGES,
    ScanBody,
    ScanMessage,
    StatusBody,
    StatusMessage,
    TelemetryMessage,
)
from protocols.sync import MAX_BATCH_RECORDS, TelemetryRecord, record_id

_CONFIG: Final = ConfigDict(strict=True, allow_inf_nan=False)
_MAX_READINGS: Final = 16
_ENVELOPE: Final = ("msg_id", "device_id", "boot_id", "seq", "ts")
#: Per device kind: its message model, its body model and body fields (required, optional).
_KINDS: Final[dict[str, tuple[type[BaseModel], type[BaseModel] | None, tuple[str, ...], tuple[str, ...]]]] = {
    "telemetry": (TelemetryMessage, None, (), ()),
    "scan": (ScanMessage, ScanBody, ("code_type", "sku", "location", "direction", "qty", "reader_id"), ("tag_id",)),
    "device_status": (StatusMessage, StatusBody, ("state", "fw_version"), ("uptime_s", "reason")),
}
#: The record models of the kinds a gateway produces (groups placed by ``at``).
_PLACED: Final[dict[str, type[BaseModel]]] = {
    "alert": AlertRecord, "forecast": ForecastRecord, "stock": StockRecord, "stock_discrepancy": StockDiscrepancyRecord,
}

Path = tuple[str | int, ...]


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[list[Any]]:
    """A JSON list of the values of ``model``'s field ``name``, checked as the model checks the field."""
    return TypeAdapter(list[_like(model, name)], config=_CONFIG)  # type: ignore[misc]


_FLOATS: Final = TypeAdapter(list[float], config=_CONFIG)
_METRIC: Final = TypeAdapter(list[Literal[tuple(METRIC_RANGES)]], config=_CONFIG)  # type: ignore[misc]


class _Slots:
    """The values of every device group's column of one field, concatenated over the batch's groups, to
    validate each field once per batch (its distinct values where they are strings)."""

    __slots__ = ("adapters", "values")

    def __init__(self) -> None:
        self.values: dict[Any, list[Any]] = {}
        self.adapters: dict[Any, TypeAdapter[list[Any]]] = {}

    def take(self, key: Any, adapter: TypeAdapter[list[Any]], values: list[Any]) -> tuple[Any, int, int]:
        """Add a column's values; the reference to read them back validated (:meth:`read`)."""
        held = self.values.get(key)
        if held is None:
            held = self.values[key] = []
            self.adapters[key] = adapter
        start = len(held)
        held.extend(values)
        return key, start, start + len(values)

    def validate(self) -> None:
        """Validate every field's values as their JSON (raises ValueError: ValidationError)."""
        for key, values in self.values.items():
            adapter = self.adapters[key]
            if all(type(v) is str for v in values):
                distinct = list(dict.fromkeys(values))
                checked = dict(zip(distinct, adapter.validate_json(json.dumps(distinct)), strict=True))
                self.values[key] = [checked[v] for v in values]
            else:
                self.values[key] = adapter.validate_json(json.dumps(values, allow_nan=False))

    def read(self, ref: tuple[Any, int, int]) -> list[Any]:
        key, start, stop = ref
        return self.values[key][start:stop]


@dataclass(frozen=True, slots=True)
class _Group:
    """A device group whose columns are in :class:`_Slots`, by field."""

    kind: str
    n: int
    ids: tuple[Any, int, int] | None  # None: derived
    fields: dict[str, tuple[Any, int, int]]  # received_ts and the message's fields
    body: dict[str, tuple[Any, int, int]]
    readings: list[tuple[tuple[Any, int, int], tuple[Any, int, int]]]


def _take_group(kind: str, ids: str, cols: dict[Path, list[Any]], n: int, slots: _Slots) -> _Group | None:
    """Register a device group of ``kind``; None where its paths are not exactly those of such records."""
    msg_model, body_model, required, optional = _KINDS[kind]
    known: set[Path] = {("kind",), ("received_ts",), *(("msg", f) for f in _ENVELOPE)}
    if ids == "column":
        known.add(("id",))
    msg_fields = [*_ENVELOPE, *(f for f in ("schema", "v") if ("msg", f) in cols)]
    known.update(("msg", f) for f in msg_fields)
    readings = 0
    body_fields: list[str] = []
    if body_model is None:
        while ("msg", "body", "readings", readings, "metric") in cols:
            known.update({("msg", "body", "readings", readings, "metric"), ("msg", "body", "readings", readings, "value")})
            readings += 1
        if not 1 <= readings <= _MAX_READINGS:
            return None
    else:
        body_fields = [*required, *(f for f in optional if ("msg", "body", f) in cols)]
        known.update(("msg", "body", f) for f in body_fields)
    if set(cols) != known:
        return None

    def take(path: Path, model: type[BaseModel], name: str) -> tuple[Any, int, int]:
        return slots.take((kind, path), _adapter(model, name), cols[path])

    fields = {"received_ts": take(("received_ts",), TelemetryRecord, "received_ts")}
    fields.update((f, take(("msg", f), msg_model, "schema_" if f == "schema" else f)) for f in msg_fields)
    body = {f: take(("msg", "body", f), body_model, f) for f in body_fields} if body_model is not None else {}
    return _Group(
        kind=kind, n=n, ids=take(("id",), TelemetryRecord, "id") if ids == "column" else None, fields=fields,
        body=body,
        readings=[(slots.take(("metric", j), _METRIC, cols[("msg", "body", "readings", j, "metric")]),
                   slots.take(("value", j), _FLOATS, cols[("msg", "body", "readings", j, "value")]))
                  for j in range(readings)])


def _group_records(group: _Group, slots: _Slots) -> list[dict[str, Any]]:
    """A registered group's records (after :meth:`_Slots.validate`) in the shape ``sync_fast`` builds rows of."""
    kind, n, read = group.kind, group.n, slots.read
    f = {name: read(ref) for name, ref in group.fields.items()}
    if group.ids is not None:
        rids = read(group.ids)
    else:
        rids = [record_id(kind, d, b, s) for d, b, s in zip(f["device_id"], f["boot_id"], f["seq"], strict=True)]
    if group.readings:
        pairs = [(read(m), read(v)) for m, v in group.readings]
        bodies = [{"readings": [{"metric": m[r], "value": v[r]} for m, v in pairs]} for r in range(n)]
    else:
        body = {name: read(ref) for name, ref in group.body.items()}
        bodies = [dict(zip(body, row, strict=True)) for row in zip(*body.values(), strict=True)]
    received = f.pop("received_ts")
    return [{"kind": kind, "id": rid, "received_ts": rts, "msg": {**dict(zip(f, m, strict=True)), "body": b}}
            for rid, rts, m, b in zip(rids, received, zip(*f.values(), strict=True), bodies, strict=True)]


def _readings_in_range(slots: _Slots) -> bool:
    """Every reading's value within its metric's range (``Reading``'s per-metric bounds)."""
    for key, metrics in slots.values.items():
        if key[0] == "metric":
            values = slots.values[("value", key[1])]
            if not all(METRIC_RANGES[m][0] <= v <= METRIC_RANGES[m][1] for m, v in zip(metrics, values, strict=True)):
                return False
    return True


def _placed_records(group: dict[str, Any], paths: list[Path], columns: list[list[Any]], field: str
                    ) -> list[BaseModel] | None:
    records = group_records(group, paths, columns, field)
    models = [_PLACED.get(r.get("kind")) for r in records]  # type: ignore[arg-type]
    if any(m is None for m in models):
        return None
    return [m.model_validate_json(json.dumps(r, allow_nan=False)) for m, r in zip(models, records, strict=True)
            if m is not None]


def _batch_records(doc: Any, budget: int) -> tuple[dict[str, Any], list[Any]] | None:
    if not isinstance(doc, dict) or set(doc) != {"schema", "v", "batch", "groups"}:
        return None
    if doc["schema"] != SCHEMA or type(doc["v"]) is not int or doc["v"] != VERSION:
        return None
    header, groups = doc["batch"], doc["groups"]
    if not isinstance(header, dict) or "records" in header or not isinstance(groups, list) or not groups:
        return None
    total = sum(g["n"] for g in groups if isinstance(g, dict) and type(g.get("n")) is int)
    if total > MAX_BATCH_RECORDS:
        return None
    placed: dict[int, Any] = {}
    pending: list[_Group] = []
    slots = _Slots()
    for g, group in enumerate(groups):
        positions, paths, columns, budget = group_columns(group, f"groups.{g}", budget)
        if positions is not None:
            models = _placed_records(group, paths, columns, f"groups.{g}")
            if models is None:
                return None
            for position, model in zip(positions, models, strict=True):
                if position in placed or not 0 <= position < total:
                    return None
                placed[position] = model
            continue
        cols = dict(zip(paths, columns, strict=True))
        kind = group["cols"][paths.index(("kind",))] if ("kind",) in cols else {}
        if len(cols) != len(paths) or set(kind) != {"c"} or kind["c"] not in _KINDS:
            return None
        taken = _take_group(kind["c"], group["ids"], cols, group["n"], slots)
        if taken is None:
            return None
        pending.append(taken)
    slots.validate()
    if not _readings_in_range(slots):
        return None
    unplaced = [record for group in pending for record in _group_records(group, slots)]
    if any(g.ids is None for g in pending):  # derived ids: valid record ids too
        _adapter(TelemetryRecord, "id").validate_json(json.dumps([r["id"] for r in unplaced]))
    if len(placed) + len(unplaced) != total:
        return None
    rest = iter(unplaced)
    return header, [placed[i] if i in placed else next(rest) for i in range(total)]


def plan_document(document: bytes, max_expanded_bytes: int, now_ms: int) -> PlannedBatch | None:
    """The plan of a columnar document read column by column; None where this path does not take it."""
    try:
        read = _batch_records(json.loads(document), max_expanded_bytes - len(document))
        if read is None:
            return None
        header = SyncBatchHeader.model_validate_json(json.dumps(read[0], allow_nan=False))
    except (ValueError, RecursionError, OverflowError, TypeError, KeyError):
        return None  # ColumnarError and ValidationError included: the expanding path answers
    builder = PlanBuilder(header.gateway_id, now_ms)
    if not _add_records(builder, read[1], header.v):
        return None
    return PlannedBatch(gateway_id=header.gateway_id, batch_id=header.batch_id, agent_version=header.agent_version,
                        plan=builder.plan())


def plan_columnar(document: bytes, max_expanded_bytes: int, now_ms: int) -> PlannedBatch:
    """Validate a columnar document and split it into rows: column-wise where :func:`plan_document` takes it,
    else expanded to the batch's JSON and planned as a JSON batch (raises BadRequest naming the columnar
    field, or the ValidationError naming ``records.N.<field>``)."""
    planned = plan_document(document, max_expanded_bytes, now_ms)
    if planned is not None:
        return planned
    try:
        batch_json = decode(document, max_expanded_bytes)
    except ColumnarError as exc:
        raise BadRequest(str(exc), exc.field) from None
    return sync_service.plan_json(batch_json, now_ms)


def ingest_columnar(engine: Engine, document: bytes, gateway_id: str, max_expanded_bytes: int,
                    reorder: ReorderPolicy | None = None) -> SyncAck:
    """Validate and store one batch's (decompressed) columnar document."""
    now = clock.now_ms()
    return sync_service.store_planned(engine, plan_columnar(document, max_expanded_bytes, now), gateway_id, now,
                                      reorder)
