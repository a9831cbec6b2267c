"""Sync ingest: decode a (gzip) batch, store each record at most once, answer with a SyncAck.

A JSON batch is validated and split into row tuples by the fast path (``cloud.services.sync_fast``: no
pydantic model per device record) and, where that path does not accept it, by ``protocols.SyncBatch`` and
``cloud.services.sync_plan``, which accept it or raise the ValidationError naming the field: the same
acceptance, errors and rows either way.

Every record is keyed by ``(gateway_id, id)``: the authenticated gateway and the record's stable
id, which must equal the id derived from its content (``content_id``); a record whose id does not
is rejected with the reason in the ack, never stored. ``cloud.db.bulk_store`` inserts the rows (COPY
into staging tables and ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` on PostgreSQL, a lookup and
``executemany`` under the write lock on SQLite) and answers exactly the ids stored now; the others were
already stored for this gateway (by an earlier try of the batch, or by a concurrent one: the gateway's
row is locked first, so its batches take turns). The whole batch, the gateway's counters and its
last-seen time (one write to its row, after the batch) commit in one transaction; a deadlock or
serialization failure retries the transaction.
"""

from __future__ import annotations

import logging
import zlib
from typing import Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from cloud import clock
from cloud.db import alarm_repo, bulk_store, repo
from cloud.db.bulk_store import COLUMNS
from cloud.services import stock_sync, sync_fast
from cloud.services.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, UnsupportedEncoding
from cloud.services.reorder import ReorderPolicy
from cloud.services.sync_plan import PlannedBatch, plan_batch
from protocols import SyncAck, SyncBatch

log = logging.getLogger(__name__)

IDENTITY_ENCODINGS: Final = frozenset({"", "identity"})
GZIP_ENCODINGS: Final = frozenset({"gzip", "x-gzip"})
#: PostgreSQL SQLSTATEs worth retrying the whole batch for: deadlock, serialization failure.
_RETRYABLE_SQLSTATES: Final = frozenset({"40P01", "40001"})
MAX_ATTEMPTS: Final = 3

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


def plan_json(raw_json: bytes, now_ms: int) -> PlannedBatch:
    """Validate a JSON batch and split it into rows: the fast path (``cloud.services.sync_fast``) where it
    accepts the batch, else the model path, which accepts it or raises the ValidationError naming the field."""
    planned = sync_fast.plan_json(raw_json, now_ms)
    return planned if planned is not None else plan_batch(parse_batch(raw_json), now_ms)


def _store(conn: Connection, gateway_id: str, batch: PlannedBatch, now_ms: int, reorder: ReorderPolicy) -> set[str]:
    plan = batch.plan
    if not repo.lock_gateway(conn, gateway_id):
        raise NotFound(f"gateway {gateway_id!r} is not registered", "gateway_id")
    new = bulk_store.store_rows(conn, gateway_id, plan.rows, plan.readings)
    repo.record_sync(conn, gateway_id, now_ms, batch.batch_id, batch.agent_version,
                     {kind: len(ids) for kind, ids in new.items()})
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
    now = clock.now_ms() if now_ms is None else now_ms
    return store_planned(engine, plan_batch(batch, now), gateway_id, now, reorder)


def store_planned(engine: Engine, batch: PlannedBatch, gateway_id: str, now_ms: int,
                  reorder: ReorderPolicy | None = None) -> SyncAck:
    """Store a planned batch (its rows' ``stored_ts`` is ``now_ms``) for the authenticated ``gateway_id``."""
    if batch.gateway_id != gateway_id:
        raise Forbidden(f"batch is for gateway {batch.gateway_id!r} but the token is for {gateway_id!r}",
                        "gateway_id")
    plan = batch.plan
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                stored = _store(conn, gateway_id, batch, now_ms, reorder or ReorderPolicy())
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
    return ingest_json(engine, decode_body(raw, content_encoding, max_decompressed_bytes), gateway_id, reorder)


def ingest_json(engine: Engine, raw_json: bytes, gateway_id: str, reorder: ReorderPolicy | None = None) -> SyncAck:
    """Validate and store one batch's JSON (raises ValidationError for a bad batch)."""
    now = clock.now_ms()
    return store_planned(engine, plan_json(raw_json, now), gateway_id, now, reorder)

