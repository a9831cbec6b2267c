"""Stock synced by gateways (issue 15): storing the stock record kinds, and the stock listing.

A gateway's stock book (``edge_agent.store.stock``) syncs each new version of a position and each
new revision of a cycle count's discrepancy as a record whose id derives from its content
(``protocols.stock``). The cloud keeps the newest of each per gateway (``cloud.db.stock_tables``):
an upsert that only replaces an older version, so a record re-synced, or arriving after a newer
one, changes nothing and is answered as already held. It runs inside the sync batch's transaction,
after the gateway's row was locked: batches of one gateway take turns, different gateways never
share a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, Table, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from cloud.db.engine import reader
from cloud.db.stock_tables import stock_discrepancies, stock_positions
from cloud.services.errors import BadRequest
from protocols import StockDiscrepancyRecord, StockRecord

AnyStockRecord = StockRecord | StockDiscrepancyRecord
STOCK_RECORD_TYPES: Final = (StockRecord, StockDiscrepancyRecord)
_POSITION_KEY: Final = ("gateway_id", "site", "location", "sku")
_COUNT_KEY: Final = ("gateway_id", "device_id", "boot_id", "seq")
MAX_STOCK_PAGE: Final = 5000


def reject_reason(rec: AnyStockRecord, gateway_id: str) -> str | None:
    """Why a stock record can never be stored for this gateway (its id is checked by the caller)."""
    body = rec.position if isinstance(rec, StockRecord) else rec.discrepancy
    if body.gateway_id != gateway_id:
        return f"{rec.kind}.gateway_id {body.gateway_id!r} differs from the batch's {gateway_id!r}"
    return None


def _position_row(rec: StockRecord, now_ms: int) -> dict[str, Any]:
    p = rec.position
    return {"gateway_id": p.gateway_id, "site": p.site, "location": p.location, "sku": p.sku, "record_id": rec.id,
            "on_hand": p.on_hand, "negative": p.negative, "version": p.version, "last_scan_ts": p.last_scan_ts,
            "updated_ts": p.updated_ts, "count_ts": p.count_ts, "stock_out": p.stock_out, "stored_ts": now_ms}


def _discrepancy_row(rec: StockDiscrepancyRecord, now_ms: int) -> dict[str, Any]:
    d = rec.discrepancy
    return {"gateway_id": d.gateway_id, "device_id": d.device_id, "boot_id": d.boot_id, "seq": d.seq,
            "record_id": rec.id, "site": d.site, "location": d.location, "sku": d.sku, "ts": d.ts,
            "counted": d.counted, "expected": d.expected, "delta": d.delta, "revision": d.revision,
            "updated_ts": d.updated_ts, "stored_ts": now_ms}


def _newest(rows: Sequence[dict[str, Any]], key: Sequence[str], version: str) -> list[dict[str, Any]]:
    """One row per key: the highest ``version`` (a batch may carry several versions of one position)."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in key)
        if k not in best or row[version] > best[k][version]:
            best[k] = row
    return list(best.values())


def _upsert_newer(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str],
                  version: str) -> set[str]:
    """Insert rows, or replace the stored row of the same key when its ``version`` is lower; the
    ``record_id``s written now."""
    if not rows:
        return set()
    insert = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    columns = [c.name for c in table.columns if c.name not in key]
    stmt = insert.on_conflict_do_update(
        index_elements=list(key),
        set_={c: insert.excluded[c] for c in columns},
        where=table.c[version] < insert.excluded[version],
    ).returning(table.c.record_id)
    return {r[0] for r in conn.execute(stmt, list(rows))}


@dataclass(frozen=True, slots=True)
class StoredStock:
    """Record ids written now, and the (site, sku) pairs whose on-hand stock may have changed."""

    ids: set[str]
    changed: set[tuple[str, str]]


def store(conn: Connection, records: Sequence[AnyStockRecord], now_ms: int) -> StoredStock:
    """Store the stock records of one batch (already checked: id from content, the batch's gateway)."""
    positions = _newest([_position_row(r, now_ms) for r in records if isinstance(r, StockRecord)],
                        _POSITION_KEY, "version")
    counts = _newest([_discrepancy_row(r, now_ms) for r in records if isinstance(r, StockDiscrepancyRecord)],
                     _COUNT_KEY, "revision")
    written = _upsert_newer(conn, stock_positions, positions, _POSITION_KEY, "version")
    changed = {(r["site"], r["sku"]) for r in positions if r["record_id"] in written}
    written |= _upsert_newer(conn, stock_discrepancies, counts, _COUNT_KEY, "revision")
    return StoredStock(ids=written, changed=changed)


def on_hand_by_sku(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Synced stock on hand per (site, sku): the sum over the site's locations (and gateways)."""
    out: dict[tuple[str, str], int] = {}
    unique = sorted(set(pairs))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        t = stock_positions
        for row in conn.execute(select(t.c.site, t.c.sku, func.sum(t.c.on_hand))
                                .where(tuple_(t.c.site, t.c.sku).in_(chunk)).group_by(t.c.site, t.c.sku)):
            out[(row[0], row[1])] = int(row[2])
    return out


@dataclass(frozen=True, slots=True)
class SyncedStock:
    """A site's synced stock of one SKU: the sum over its positions, and its newest scan."""

    on_hand: int
    last_scan_ts: int
    positions: int


def synced_stock(conn: Connection, sites: Sequence[str]) -> dict[tuple[str, str], SyncedStock]:
    """Synced stock per (site, sku) of ``sites``."""
    t = stock_positions
    out: dict[tuple[str, str], SyncedStock] = {}
    site_list = sorted(set(sites))
    for start in range(0, len(site_list), 500):
        query = (select(t.c.site, t.c.sku, func.sum(t.c.on_hand), func.max(t.c.last_scan_ts), func.count())
                 .where(t.c.site.in_(site_list[start:start + 500])).group_by(t.c.site, t.c.sku))
        for row in conn.execute(query):
            out[(row[0], row[1])] = SyncedStock(int(row[2]), int(row[3]), int(row[4]))
    return out


# --- the listing ------------------------------------------------------------------------------------


class StockPositionOut(BaseModel):
    gateway_id: str
    site: str
    location: str
    sku: str
    on_hand: int
    negative: bool = Field(description="on_hand < 0: more was picked than the book knew of")
    stock_out: bool = Field(description="the gateway has a stock-out alert open (picks at zero stock)")
    version: int
    last_scan_ts: int = Field(description="device clock (ms) of the newest scan that changed the position")
    count_ts: int | None = Field(description="device clock (ms) of the latest cycle count applied")
    updated_ts: int = Field(description="gateway clock (ms) of this version")
    stored_ts: int = Field(description="when the cloud stored this version (ms)")


class StockPage(BaseModel):
    items: list[StockPositionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


_SEP: Final = "\x1f"


def _cursor(row: Mapping[str, Any]) -> str:
    return _SEP.join(str(row[c]) for c in ("site", "sku", "location", "gateway_id")).encode().hex()


def _decode_cursor(cursor: str) -> tuple[str, str, str, str]:
    try:
        parts = bytes.fromhex(cursor).decode().split(_SEP)
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != 4:
        raise BadRequest("malformed cursor; pass next_cursor from the previous page unchanged", "cursor")
    return parts[0], parts[1], parts[2], parts[3]


def list_stock(engine: Engine, *, site: str | None = None, sku: str | None = None, location: str | None = None,
               limit: int = 1000, cursor: str | None = None) -> StockPage:
    """Positions ordered by site, SKU, location, gateway; each with the time of its last scan."""
    t = stock_positions
    order = (t.c.site, t.c.sku, t.c.location, t.c.gateway_id)
    query = select(t)
    if site is not None:
        query = query.where(t.c.site == site)
    if sku is not None:
        query = query.where(t.c.sku == sku)
    if location is not None:
        query = query.where(t.c.location == location)
    if cursor:
        query = query.where(tuple_(*order) > tuple_(*_decode_cursor(cursor)))
    with reader(engine) as conn:
        rows = [r._mapping for r in conn.execute(query.order_by(*order).limit(limit))]
    items = [StockPositionOut.model_validate(dict(r)) for r in rows]
    return StockPage(items=items, next_cursor=_cursor(rows[-1]) if len(rows) == limit else None)
