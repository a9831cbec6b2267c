"""The stock book's sync records and stock-out alerts.

**Discrepancies and stock-out alerts** are written by :meth:`StockOutput.write` inside the ingest
transaction of the scans that made them (each new revision of a cycle count's discrepancy is a
record; ids from content: a retry is a duplicate). **Positions** change with nearly every scan
batch, and the cloud keeps only the newest version of each, so they are queued apart:
:meth:`PositionQueue.queue` (the stock worker's, every ``[stock] interval_s``) puts the newest
version of every position changed since (``version > outboxed_version``) into the outbox and
marks it, in one transaction, and drops the previous version if it is still unsynced. The book is
committed with the scans, so a crash between the two loses nothing: the change is queued next time.

A **stock-out** is a pick scanned while the book held no stock: the position's stock-out alert
(``kind="system"``, ``code="stock_out"``, alert contract as it is) is raised once when a batch
ends with such a pick and nothing on hand, stays open while the position has nothing on hand, and
clears with the first change that puts stock back (``stock.stockout_alert_id`` remembers it across
batches and restarts). Stock-out alerts are operational signals from scans, not model alerts: they
do not pass the site's alert budget.

Record JSON is written from plain dicts, once, and spliced into its sync record (the tests
validate both against the contracts). Both return what to publish on the gateway's ``stock`` and
``alert`` topics (``edge_agent.stock_worker`` does, paced).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from edge_agent.store.db import transaction
from edge_agent.store.gateway_output import enqueue_in
from edge_agent.store.stock import DiscrepancyRow, PositionRow, StockBook, StockChanges
from protocols import AlertPayload, GatewayTopicKind, discrepancy_record_id, gateway_topic, stock_record_id
from protocols.stock import position_key

STOCK_OUT: Final = "stock_out"
POSITION_SCHEMA: Final = "edgehouse.stock_position"
DISCREPANCY_SCHEMA: Final = "edgehouse.stock_discrepancy"
OutboxRow = tuple[str, str, int, str]
_DELETE_OUTBOX: Final = "DELETE FROM outbox WHERE id = ?"
_INSERT_OUTBOX: Final = "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, ?, ?, ?)"
_PREFIX_CACHE_MAX: Final = 50_000
_CHANGED: Final = (
    "SELECT location, sku, on_hand, version, last_scan_ts, count_ts, stockout_alert_id, outboxed_version "
    "FROM stock WHERE site = ? AND version > outboxed_version LIMIT ?"
)
_ANY_CHANGED: Final = "SELECT 1 FROM stock WHERE site = ? AND version > outboxed_version LIMIT 1"
_MARK: Final = "UPDATE stock SET outboxed_version = ? WHERE site = ? AND location = ? AND sku = ?"


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Publication:
    """A message to publish on a gateway topic once the batch is committed; a newer one of the same
    ``key`` supersedes it (a position's versions; alerts and discrepancies have unique keys)."""

    key: str
    topic: str
    payload: bytes


class StockOutput:
    """Writes the sync records and stock-out alerts of one batch's :class:`StockChanges`."""

    def __init__(self, conn: sqlite3.Connection, book: StockBook, site: str, gateway_id: str) -> None:
        self._conn = conn
        self._book = book
        self._site = site
        self._gateway_id = gateway_id
        self._stock_topic = gateway_topic(site, gateway_id, GatewayTopicKind.STOCK)
        self._alert_topic = gateway_topic(site, gateway_id, GatewayTopicKind.ALERT)

    def write(self, changes: StockChanges, received_ts: int, outbox: list[OutboxRow]) -> list[Publication]:
        """Append the records to ``outbox`` (inserted by the caller in its transaction); store the alerts."""
        out: list[Publication] = []
        for row in changes.positions:
            if row.stockout_alert_id is not None or (row.location, row.sku) in changes.picked_at_zero:
                alert = self._stock_out(row, (row.location, row.sku) in changes.picked_at_zero, received_ts)
                if alert is not None and enqueue_in(self._conn, alert, received_ts):
                    out.append(Publication(alert.alert_id, self._alert_topic,
                                           alert.model_dump_json(by_alias=True).encode()))
        for d in changes.discrepancies:
            drid = discrepancy_record_id(d.device_id, d.boot_id, d.seq, d.revision)
            disc = _json(self._discrepancy(d, received_ts))
            outbox.append((drid, "stock_discrepancy", received_ts,
                           f'{{"kind":"stock_discrepancy","id":{_json(drid)},"discrepancy":{disc}}}'))
            out.append(Publication(drid, self._stock_topic, disc.encode()))
        return out

    def _stock_out(self, row: PositionRow, picked_at_zero: bool, now_ms: int) -> AlertPayload | None:
        """Raise (picks at zero stock, none open) or clear (stock back above zero) the position's alert."""
        where = f"{row.sku} at {row.location} ({self._site})"
        if row.stockout_alert_id is None and picked_at_zero and row.on_hand <= 0:
            alert_id = f"{STOCK_OUT}:{position_key(self._site, row.location, row.sku)}:{now_ms}.raised"
            self._book.set_stockout(row, alert_id)
            return AlertPayload(alert_id=alert_id, gateway_id=self._gateway_id, kind="system", state="raised",
                                severity="warning", ts=now_ms, code=STOCK_OUT, observed=float(row.on_hand),
                                message=f"stock-out: picks of {where} scanned with {row.on_hand} on hand")
        if row.stockout_alert_id is not None and row.on_hand > 0:
            alert_id = row.stockout_alert_id.removesuffix(".raised") + ".cleared"
            self._book.set_stockout(row, None)
            return AlertPayload(alert_id=alert_id, gateway_id=self._gateway_id, kind="system", state="cleared",
                                severity="info", ts=now_ms, code=STOCK_OUT, observed=float(row.on_hand),
                                message=f"stock-out over: {where} has {row.on_hand} on hand")
        return None

    def _discrepancy(self, d: DiscrepancyRow, now_ms: int) -> dict[str, Any]:
        """A ``protocols.StockDiscrepancy`` as JSON-ready dict (by alias)."""
        return {
            "schema": DISCREPANCY_SCHEMA, "v": 1, "gateway_id": self._gateway_id, "site": self._site,
            "location": d.location, "sku": d.sku, "device_id": d.device_id, "boot_id": d.boot_id, "seq": d.seq,
            "ts": d.ts, "counted": d.counted, "expected": d.expected, "delta": d.counted - d.expected,
            "revision": d.revision, "updated_ts": now_ms,
        }


class PositionQueue:
    """Queues the newest version of every changed position for sync (on the stock worker's connection)."""

    def __init__(self, site: str, gateway_id: str, max_rows: int = 20_000) -> None:
        self._site = site
        self._gateway_id = gateway_id
        self._max_rows = max_rows
        self._topic = gateway_topic(site, gateway_id, GatewayTopicKind.STOCK)
        #: (location, sku) -> the record id of its position without the version (a digest: worth keeping).
        self._prefixes: dict[tuple[str, str], str] = {}

    def _prefix(self, location: str, sku: str) -> str:
        """``stock_record_id(site, location, sku, v)`` is this prefix, ``:``, ``v``."""
        key = (location, sku)
        prefix = self._prefixes.get(key)
        if prefix is None:
            rid = stock_record_id(self._site, location, sku, 1)
            prefix = rid[: rid.rindex(":")]
            if len(self._prefixes) >= _PREFIX_CACHE_MAX:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def queue(self, conn: sqlite3.Connection, now_ms: int) -> list[Publication]:
        """One transaction on ``conn``: outbox the changed positions' newest versions (at most ``max_rows``;
        the rest next time), drop their unsynced previous versions, mark them; what to publish."""
        out: list[Publication] = []
        if conn.execute(_ANY_CHANGED, (self._site,)).fetchone() is None:
            return out  # a read: no write lock taken while nothing changed
        with transaction(conn):
            rows = conn.execute(_CHANGED, (self._site, self._max_rows)).fetchall()
            records, superseded, marks = [], [], []
            for location, sku, on_hand, version, last_scan_ts, count_ts, stockout_alert_id, outboxed in rows:
                prefix = self._prefix(location, sku)
                rid = f"{prefix}:{version}"
                position = _json({
                    "schema": POSITION_SCHEMA, "v": 1, "gateway_id": self._gateway_id, "site": self._site,
                    "location": location, "sku": sku, "on_hand": on_hand, "negative": on_hand < 0,
                    "version": version, "last_scan_ts": last_scan_ts, "updated_ts": now_ms, "count_ts": count_ts,
                    "stock_out": stockout_alert_id is not None,
                })
                records.append((rid, "stock", now_ms, f'{{"kind":"stock","id":{_json(rid)},"position":{position}}}'))
                if outboxed:
                    superseded.append((f"{prefix}:{outboxed}",))
                marks.append((version, self._site, location, sku))
                out.append(Publication(prefix, self._topic, position.encode()))
            if superseded:
                conn.executemany(_DELETE_OUTBOX, superseded)
            conn.executemany(_INSERT_OUTBOX, records)
            conn.executemany(_MARK, marks)
        return out
