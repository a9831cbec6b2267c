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
from sqlalchemy import Connection, Engine

from cloud.db import stock_repo
from cloud.db.engine import reader
from cloud.db.stock_repo import COUNT_KEY, LISTING_ORDER, POSITION_KEY
from cloud.services.errors import BadRequest
from protocols import StockDiscrepancyRecord, StockRecord

AnyStockRecord = StockRecord | StockDiscrepancyRecord
STOCK_RECORD_TYPES: Final = (StockRecord, StockDiscrepancyRecord)
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


@dataclass(frozen=True, slots=True)
class StoredStock:
    """Record ids written now, and the (site, sku) pairs whose on-hand stock may have changed."""

    ids: set[str]
    changed: set[tuple[str, str]]


def store(conn: Connection, records: Sequence[AnyStockRecord], now_ms: int) -> StoredStock:
    """Store the stock records of one batch (already checked: id from content, the batch's gateway)."""
    positions = _newest([_position_row(r, now_ms) for r in records if isinstance(r, StockRecord)],
                        POSITION_KEY, "version")
    counts = _newest([_discrepancy_row(r, now_ms) for r in records if isinstance(r, StockDiscrepancyRecord)],
                     COUNT_KEY, "revision")
    written = stock_repo.upsert_positions(conn, positions)
    changed = {(r["site"], r["sku"]) for r in positions if r["record_id"] in written}
    written |= stock_repo.upsert_discrepancies(conn, counts)
    return StoredStock(ids=written, changed=changed)


def on_hand_by_sku(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Synced stock on hand per (site, sku): the sum over the site's locations (and gateways)."""
    return stock_repo.on_hand_by_sku(conn, pairs)


#: A site's synced stock of one SKU: the sum over its positions, and its newest scan.
SyncedStock = stock_repo.SiteSkuStock


def synced_stock(conn: Connection, sites: Sequence[str]) -> dict[tuple[str, str], SyncedStock]:
    """Synced stock per (site, sku) of ``sites``."""
    return stock_repo.stock_of_sites(conn, sites)


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
    return _SEP.join(str(row[c]) for c in LISTING_ORDER).encode().hex()


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
    after = _decode_cursor(cursor) if cursor else None
    with reader(engine) as conn:
        rows = stock_repo.list_positions(conn, site=site, sku=sku, location=location, after=after, limit=limit)
    items = [StockPositionOut.model_validate(r) for r in rows]
    return StockPage(items=items, next_cursor=_cursor(rows[-1]) if len(rows) == limit else None)
