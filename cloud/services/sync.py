"""Sync ingest: decode a (gzip) batch, store each record at most once, answer with a SyncAck.

Every record is keyed by ``(gateway_id, id)``: the authenticated gateway and the record's stable
id, which must equal the id derived from its content (``content_id``); a record whose id does not
is rejected with the reason in the ack, never stored. Rows are inserted with ``ON CONFLICT DO
NOTHING RETURNING id``, so the ids returned are exactly those stored now; the others were already
stored for this gateway (by an earlier try of the batch, or by a concurrent one). The whole batch, the
gateway's counters and its last-seen time commit in one transaction.
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
from cloud.db import alarm_repo, repo
from cloud.db.tables import RECORD_KINDS, RECORD_TABLES, readings
from cloud.services.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, UnsupportedEncoding
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

AnyRecord = TelemetryRecord | ScanRecord | DeviceStatusRecord | AlertRecord | ForecastRecord


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
    """A batch split into rows per table, in a fixed order (ids sorted) to avoid deadlocks."""

    order: tuple[str, ...]
    rows: dict[str, list[dict[str, Any]]]
    readings: dict[str, list[dict[str, Any]]]
    rejected: tuple[RejectedRecord, ...]


def _message_row(rec: TelemetryRecord | ScanRecord | DeviceStatusRecord, gateway_id: str, now_ms: int
                 ) -> dict[str, Any]:
    m = rec.msg
    return {"id": rec.id, "gateway_id": gateway_id, "device_id": m.device_id, "boot_id": m.boot_id,
            "seq": m.seq, "msg_id": m.msg_id, "ts": m.ts, "received_ts": rec.received_ts, "stored_ts": now_ms}


def _telemetry_rows(rec: TelemetryRecord, gateway_id: str, now_ms: int) -> dict[str, Any]:
    return {**_message_row(rec, gateway_id, now_ms), "n_readings": len(rec.msg.body.readings)}


def _scan_rows(rec: ScanRecord, gateway_id: str, now_ms: int) -> dict[str, Any]:
    b = rec.msg.body
    return {**_message_row(rec, gateway_id, now_ms), "code_type": b.code_type, "sku": b.sku,
            "location": b.location, "direction": b.direction, "qty": b.qty, "reader_id": b.reader_id,
            "tag_id": b.tag_id}


def _status_rows(rec: DeviceStatusRecord, gateway_id: str, now_ms: int) -> dict[str, Any]:
    b = rec.msg.body
    return {**_message_row(rec, gateway_id, now_ms), "state": b.state, "fw_version": b.fw_version,
            "uptime_s": b.uptime_s, "reason": b.reason}


def _alert_rows(rec: AlertRecord, gateway_id: str, now_ms: int) -> dict[str, Any]:
    a = rec.alert
    return {"id": rec.id, "gateway_id": gateway_id, "alert_id": a.alert_id, "kind": a.kind, "state": a.state,
            "severity": a.severity, "device_id": a.device_id, "ts": a.ts, "stored_ts": now_ms,
            "payload": a.model_dump(mode="json", by_alias=True)}


def _forecast_rows(rec: ForecastRecord, gateway_id: str, now_ms: int) -> dict[str, Any]:
    f = rec.forecast
    return {"id": rec.id, "gateway_id": gateway_id, "forecast_id": f.forecast_id, "site": f.site, "sku": f.sku,
            "origin": f.origin, "created_ts": f.created_ts, "model_version": f.model_version,
            "stored_ts": now_ms, "payload": f.model_dump(mode="json", by_alias=True)}


_ROW_BUILDERS: Final[Mapping[type, Callable[[Any, str, int], dict[str, Any]]]] = {
    TelemetryRecord: _telemetry_rows,
    ScanRecord: _scan_rows,
    DeviceStatusRecord: _status_rows,
    AlertRecord: _alert_rows,
    ForecastRecord: _forecast_rows,
}


def _reject_reason(rec: AnyRecord, gateway_id: str) -> str | None:
    """Why a record can never be stored for this gateway, or None."""
    expected = rec.content_id
    if rec.id != expected:
        return f"id {rec.id!r} does not match the record's content (expected {expected!r})"
    if isinstance(rec, AlertRecord) and rec.alert.gateway_id != gateway_id:
        return f"alert.gateway_id {rec.alert.gateway_id!r} differs from the batch's {gateway_id!r}"
    if isinstance(rec, ForecastRecord) and rec.forecast.gateway_id != gateway_id:
        return f"forecast.gateway_id {rec.forecast.gateway_id!r} differs from the batch's {gateway_id!r}"
    return None


def _plan(batch: SyncBatch, now_ms: int) -> _Plan:
    order: list[str] = []
    seen: set[str] = set()
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RECORD_KINDS}
    reading_rows: dict[str, list[dict[str, Any]]] = {}
    rejected: list[RejectedRecord] = []
    for rec in batch.records:
        if rec.id in seen:  # repeated inside the batch: stored (or not) once
            continue
        seen.add(rec.id)
        reason = _reject_reason(rec, batch.gateway_id)
        if reason is not None:
            rejected.append(RejectedRecord(id=rec.id, reason=reason))
            continue
        order.append(rec.id)
        rows[rec.kind].append(_ROW_BUILDERS[type(rec)](rec, batch.gateway_id, now_ms))
        if isinstance(rec, TelemetryRecord):
            m = rec.msg
            reading_rows[rec.id] = [
                {"gateway_id": batch.gateway_id, "record_id": rec.id, "metric": r.metric, "device_id": m.device_id,
                 "ts": m.ts, "value": r.value}
                for r in m.body.readings
            ]
    for kind_rows in rows.values():
        kind_rows.sort(key=lambda row: str(row["id"]))
    return _Plan(order=tuple(order), rows=rows, readings=reading_rows, rejected=tuple(rejected))


def _store(conn: Connection, gateway_id: str, batch: SyncBatch, plan: _Plan, now_ms: int) -> set[str]:
    if not repo.touch_gateway(conn, gateway_id, now_ms, batch.batch_id, batch.agent_version):
        raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
    stored: set[str] = set()
    counts: dict[str, int] = {}
    for kind in RECORD_KINDS:
        new_ids = repo.insert_new(conn, RECORD_TABLES[kind], plan.rows[kind], scope=("gateway_id",))
        counts[kind] = len(new_ids)
        stored |= new_ids
        if kind == "telemetry" and new_ids:
            repo.insert_ignore(conn, readings, [r for rid in sorted(new_ids) for r in plan.readings[rid]])
        if kind == "alert" and new_ids:  # alert management (ISA-18.2 states) follows every stored raise/clear
            alarm_repo.track(conn, gateway_id, [r for r in plan.rows[kind] if r["id"] in new_ids])
    repo.add_counts(conn, gateway_id, counts)
    return stored


def _retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def store_batch(engine: Engine, batch: SyncBatch, gateway_id: str, now_ms: int | None = None) -> SyncAck:
    """Store a batch for the authenticated ``gateway_id``; the answer says what is new and what was known."""
    if batch.gateway_id != gateway_id:
        raise Forbidden(f"batch is for gateway {batch.gateway_id!r} but the token is for {gateway_id!r}",
                        "gateway_id")
    now = clock.now_ms() if now_ms is None else now_ms
    plan = _plan(batch, now)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                stored = _store(conn, gateway_id, batch, plan, now)
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
           max_decompressed_bytes: int) -> SyncAck:
    """Decode, validate and store one posted batch (raises ValidationError for a bad batch)."""
    batch = parse_batch(decode_body(raw, content_encoding, max_decompressed_bytes))
    return store_batch(engine, batch, gateway_id)

