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
_KIND: Final = TypeAdapter(list[str], config=_CONFIG)  # a device kind: the groups' constant, checked by _shape
_METRIC: Final = TypeAdapter(list[Literal[tuple(METRIC_RANGES)]], config=_CONFIG)  # type: ignore[misc]


def _validated(adapter: TypeAdapter[list[Any]], values: list[Any]) -> list[Any]:
    """``values`` as ``adapter`` validates them from their JSON (strings: each distinct value once);
    raises ValueError (ValidationError) where they are not valid."""
    if all(type(v) is str for v in values):
        distinct = list(dict.fromkeys(values))
        checked = dict(zip(distinct, adapter.validate_json(json.dumps(distinct)), strict=True))
        return [checked[v] for v in values]
    return adapter.validate_json(json.dumps(values, allow_nan=False))


class _Shape:
    """The device groups of one kind, id mode and paths: their columns concatenated field by field over the
    batch, validated once per field (:meth:`records`)."""

    __slots__ = ("columns", "count", "fields", "kind", "readings", "specs")

    def __init__(self, kind: str, specs: list[tuple[str, TypeAdapter[list[Any]]]], readings: int) -> None:
        self.kind = kind
        self.specs = specs  # per path (in the group's order): the field it fills and its type
        self.readings = readings
        self.columns: list[list[Any]] = [[] for _ in specs]
        self.count = 0

    def take(self, columns: list[list[Any]]) -> int:
        """Add a group's columns; where its records start among the shape's."""
        for held, values in zip(self.columns, columns, strict=True):
            held.extend(values)
        start, self.count = self.count, self.count + len(columns[0])
        return start

    def records(self) -> list[dict[str, Any]] | None:
        """The records in the shape ``sync_fast`` builds rows of; None where a reading is out of its range
        (raises ValueError where a field is not valid)."""
        f = {name: _validated(adapter, values) for (name, adapter), values in zip(self.specs, self.columns,
                                                                                 strict=True)}
        kind = self.kind
        del f["kind"]  # the shape's kind (validated as a string; _shape knows it is a device kind)
        if "id" in f:
            rids = f.pop("id")
        else:
            rids = [record_id(kind, d, b, s) for d, b, s in zip(f["device_id"], f["boot_id"], f["seq"], strict=True)]
            _adapter(TelemetryRecord, "id").validate_json(json.dumps(rids))
        received = f.pop("received_ts")
        if self.readings:
            pairs = [(f.pop(f"metric.{j}"), f.pop(f"value.{j}")) for j in range(self.readings)]
            for metrics, values in pairs:
                if not all(METRIC_RANGES[m][0] <= v <= METRIC_RANGES[m][1] for m, v in zip(metrics, values,
                                                                                          strict=True)):
                    return None
            bodies = [{"readings": [{"metric": m[r], "value": v[r]} for m, v in pairs]} for r in range(self.count)]
        else:
            body = {name[5:]: f.pop(name) for name in list(f) if name.startswith("body.")}
            bodies = [dict(zip(body, row, strict=True)) for row in zip(*body.values(), strict=True)]
        return [{"kind": kind, "id": rid, "received_ts": rts, "msg": {**dict(zip(f, m, strict=True)), "body": b}}
                for rid, rts, m, b in zip(rids, received, zip(*f.values(), strict=True), bodies, strict=True)]


def _shape(kind: str, ids: str, paths: list[Path]) -> _Shape | None:
    """The shape of device groups of ``kind`` with these paths; None where they are not exactly those of
    such records (a path twice, missing, unknown)."""
    msg_model, body_model, required, optional = _KINDS[kind]
    specs: dict[Path, tuple[str, TypeAdapter[list[Any]]]] = {
        ("kind",): ("kind", _KIND), ("received_ts",): ("received_ts", _adapter(TelemetryRecord, "received_ts")),
        **{("msg", f): (f, _adapter(msg_model, f)) for f in _ENVELOPE},
    }
    if ids == "column":
        specs[("id",)] = ("id", _adapter(TelemetryRecord, "id"))
    for f in ("schema", "v"):
        if ("msg", f) in paths:
            specs[("msg", f)] = (f, _adapter(msg_model, "schema_" if f == "schema" else f))
    readings = 0
    if body_model is None:
        while ("msg", "body", "readings", readings, "metric") in paths:
            specs[("msg", "body", "readings", readings, "metric")] = (f"metric.{readings}", _METRIC)
            specs[("msg", "body", "readings", readings, "value")] = (f"value.{readings}", _FLOATS)
            readings += 1
        if not 1 <= readings <= _MAX_READINGS:
            return None
    else:
        for f in (*required, *(f for f in optional if ("msg", "body", f) in paths)):
            specs[("msg", "body", f)] = (f"body.{f}", _adapter(body_model, f))
    if len(paths) != len(specs) or set(paths) != set(specs):
        return None
    return _Shape(kind, [specs[p] for p in paths], readings)


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
    shapes: dict[Any, _Shape | None] = {}
    pending: list[tuple[_Shape, int, int]] = []
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
        kind = group["cols"][paths.index(("kind",))] if ("kind",) in paths else {}
        if set(kind) != {"c"} or kind["c"] not in _KINDS:
            return None
        key = (kind["c"], group["ids"], tuple(paths))  # segments are str or int (group_columns checks)
        if key not in shapes:
            shapes[key] = _shape(kind["c"], group["ids"], paths)
        shape = shapes[key]
        if shape is None:
            return None
        pending.append((shape, shape.take(columns), group["n"]))
    built: dict[int, list[dict[str, Any]]] = {}
    for shape in shapes.values():
        assert shape is not None
        records = shape.records()
        if records is None:
            return None
        built[id(shape)] = records
    unplaced = [r for shape, start, n in pending for r in built[id(shape)][start:start + n]]
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
