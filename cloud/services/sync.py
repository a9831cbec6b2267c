"""Sync ingest: decode a (gzip) batch, store each record at most once, answer with a SyncAck.

Every record is keyed by ``(gateway_id, id)``: the authenticated gateway and the record's stable
id, which must equal the id derived from its content (``content_id``); a record whose id does not
is rejected with the reason in the ack, never stored. ``cloud.db.bulk_store`` inserts the rows (COPY
into staging tables and ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` on PostgreSQL, a lookup and
``executemany`` under the write lock on SQLite) and answers exactly the ids stored now; the others were
already stored for this gateway (by an earlier try of the batch, or by a concurrent one: the gateway's
row is locked first, so its batches take turns). The whole batch, the gateway's counters and its
last-seen time commit in one transaction; a deadlock or serialization failure retries the transaction.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from cloud import clock
from cloud.db import alarm_repo, bulk_store, repo
from cloud.db.bulk_store import COLUMNS, Row
from cloud.db.tables import RECORD_KINDS
from cloud.services import stock_sync
from cloud.services.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, UnsupportedEncoding
from cloud.services.reorder import ReorderPolicy
from cloud.services.stock import STOCK_RECORD_TYPES, AnyStockRecord
from cloud.services.stock import reject_reason as stock_reject_reason
from protocols import (
    AlertRecord,
    DeviceStatusRecord,
    ForecastRecord,
    RejectedRecord,
    ScanRecord,
    SyncAck,
    SyncBatch,
    TelemetryRecord,
)

log = logging.getLogger(__name__)

IDENTITY_ENCODINGS: Final = frozenset({"", "identity"})
GZIP_ENCODINGS: Final = frozenset({"gzip", "x-gzip"})
#: PostgreSQL SQLSTATEs worth retrying the whole batch for: deadlock, serialization failure.
_RETRYABLE_SQLSTATES: Final = frozenset({"40P01", "40001"})
MAX_ATTEMPTS: Final = 3

AnyRecord = TelemetryRecord | ScanRecord | DeviceStatusRecord | AlertRecord | ForecastRecord | AnyStockRecord


def decode_body(raw: bytes, content_encoding: str | None, max_decompressed_bytes: int) -> bytes:
    """The JSON bytes of a request body sent with ``content_encoding`` (gzip or none)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in IDENTITY_ENCODINGS:
        if len(raw) > max_decompressed_bytes:
            raise PayloadTooLarge(f"body exceeds {max_decompressed_bytes} bytes", "body")
        return raw
    if encoding not in GZIP_ENCODINGS:
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip or none)",
                                  "content-encoding")
    return gunzip_limited(raw, max_decompressed_bytes)


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Decompress gzip ``data`` (one or more members), refusing to produce more than ``limit`` bytes."""
    if not data:
        raise BadRequest("empty gzip body", "body")
    out = bytearray()
    while data:
        decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += decomp.decompress(data, limit - len(out) + 1)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}", "body") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes", "body")
        if not decomp.eof:
            raise BadRequest("body is not valid gzip: truncated stream", "body")
        data = decomp.unused_data
    return bytes(out)


def parse_batch(raw_json: bytes) -> SyncBatch:
    """Validate a batch; raises pydantic's ValidationError naming the field inside the batch."""
    return SyncBatch.model_validate_json(raw_json)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A batch split into row tuples per table (``cloud.db.bulk_store.COLUMNS`` order)."""

    order: tuple[str, ...]
    rows: dict[str, list[Row]]
    readings: list[Row]
    rejected: tuple[RejectedRecord, ...]
    #: Stock records (versioned state: ``cloud.services.stock``), in batch order.
    stock: tuple[AnyStockRecord, ...] = ()


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
_ROW_BUILDERS: Final[Mapping[type, tuple[str, Callable[[Any, str, int], Row]]]] = {
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


def _reject_reason(rec: AnyRecord, gateway_id: str) -> str | None:
    """Why a record can never be stored for this gateway, or None."""
    expected = rec.content_id
    if rec.id != expected:
        return f"id {rec.id!r} does not match the record's content (expected {expected!r})"
    if isinstance(rec, AlertRecord) and rec.alert.gateway_id != gateway_id:
        return f"alert.gateway_id {rec.alert.gateway_id!r} differs from the batch's {gateway_id!r}"
    if isinstance(rec, ForecastRecord) and rec.forecast.gateway_id != gateway_id:
        return f"forecast.gateway_id {rec.forecast.gateway_id!r} differs from the batch's {gateway_id!r}"
    if isinstance(rec, STOCK_RECORD_TYPES):
        return stock_reject_reason(rec, gateway_id)
    return None


def _plan(batch: SyncBatch, now_ms: int) -> _Plan:
    gw = batch.gateway_id
    order: list[str] = []
    seen: set[str] = set()
    rows: dict[str, list[Row]] = {kind: [] for kind in RECORD_KINDS}
    reading_rows: list[Row] = []
    rejected: list[RejectedRecord] = []
    stock: list[AnyStockRecord] = []
    for rec in batch.records:
        if rec.id in seen:  # repeated inside the batch: stored (or not) once
            continue
        seen.add(rec.id)
        reason = _reject_reason(rec, gw)
        if reason is not None:
            rejected.append(RejectedRecord(id=rec.id, reason=reason))
            continue
        order.append(rec.id)
        if isinstance(rec, STOCK_RECORD_TYPES):
            stock.append(rec)
            continue
        kind, build = _ROW_BUILDERS[type(rec)]
        rows[kind].append(build(rec, gw, now_ms))
        if kind == "telemetry":
            m = rec.msg  # type: ignore[union-attr]
            reading_rows.extend((gw, rec.id, r.metric, m.device_id, m.ts, r.value) for r in m.body.readings)
    return _Plan(order=tuple(order), rows=rows, readings=reading_rows, rejected=tuple(rejected), stock=tuple(stock))


def _store(conn: Connection, gateway_id: str, batch: SyncBatch, plan: _Plan, now_ms: int,
           reorder: ReorderPolicy) -> set[str]:
    if not repo.touch_gateway(conn, gateway_id, now_ms, batch.batch_id, batch.agent_version):
        raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
    new = bulk_store.store_rows(conn, gateway_id, plan.rows, plan.readings)
    repo.add_counts(conn, gateway_id, {kind: len(ids) for kind, ids in new.items()})
    if new.get("alert"):  # alert management (ISA-18.2 states) follows every stored raise/clear
        alarm_repo.track(conn, gateway_id, [dict(zip(COLUMNS["alerts"], r, strict=True))
                                            for r in plan.rows["alert"] if r[1] in new["alert"]])
    forecast_pairs = [(r[3], r[4]) for r in plan.rows["forecast"] if r[1] in new.get("forecast", ())]
    stock_ids = stock_sync.store(conn, gateway_id, plan.stock, forecast_pairs, reorder, now_ms)
    return set().union(stock_ids, *new.values())


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def store_batch(engine: Engine, batch: SyncBatch, gateway_id: str, now_ms: int | None = None,
                reorder: ReorderPolicy | None = None) -> SyncAck:
    """Store a batch for the authenticated ``gateway_id``; the answer says what is new and what was known.

    Stock records are answered as stored when they replaced an older version (``cloud.services.stock``);
    ``reorder`` is when the stock it changed raises a reorder alert (default :class:`ReorderPolicy`)."""
    if batch.gateway_id != gateway_id:
        raise Forbidden(f"batch is for gateway {batch.gateway_id!r} but the token is for {gateway_id!r}",
                        "gateway_id")
    now = clock.now_ms() if now_ms is None else now_ms
    plan = _plan(batch, now)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                stored = _store(conn, gateway_id, batch, plan, now, reorder or ReorderPolicy())
            break
        except DBAPIError as exc:
            if attempt == MAX_ATTEMPTS or not _retryable(exc):
                raise
            log.warning("batch %s: retrying after %s (attempt %d)", batch.batch_id, exc.orig, attempt)
    return SyncAck(
        schema="edgehouse.sync_ack",
        batch_id=batch.batch_id,
        stored=tuple(rid for rid in plan.order if rid in stored),
        duplicates=tuple(rid for rid in plan.order if rid not in stored),
        rejected=plan.rejected,
    )


def ingest(engine: Engine, raw: bytes, content_encoding: str | None, gateway_id: str,
           max_decompressed_bytes: int, reorder: ReorderPolicy | None = None) -> SyncAck:
    """Decode, validate and store one posted batch (raises ValidationError for a bad batch)."""
    batch = parse_batch(decode_body(raw, content_encoding, max_decompressed_bytes))
    return store_batch(engine, batch, gateway_id, reorder=reorder)

