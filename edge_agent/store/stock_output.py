"""What a batch's stock changes produce, inside the ingest transaction: sync records and stock-out alerts.

Every new version of a position (``protocols.StockPosition``) and every new revision of a cycle
count's discrepancy goes into the outbox with the scans that made it, so a position is synced
exactly when the scans behind it are stored (ids from content: a retry is a duplicate). A
**stock-out** is a pick scanned while the book held no stock: the position's stock-out alert
(``kind="system"``, ``code="stock_out"``, alert contract as it is) is raised once when a batch
ends with such a pick and nothing on hand, stays open while the position has nothing on hand, and clears with the first change that puts stock back
(``stock.stockout_alert_id`` remembers it across batches and restarts). Stock-out alerts are
operational signals from scans, not model alerts: they do not pass the site's alert budget.

The caller publishes what :meth:`StockOutput.write` returns on the gateway's ``stock`` and
``alert`` topics after the commit (local consumers; the outbox carries everything anyway).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from edge_agent.store.gateway_output import enqueue_in
from edge_agent.store.stock import DiscrepancyRow, PositionRow, StockBook, StockChanges
from protocols import (
    AlertPayload,
    GatewayTopicKind,
    StockDiscrepancy,
    StockDiscrepancyRecord,
    StockPosition,
    StockRecord,
    discrepancy_record_id,
    gateway_topic,
    stock_record_id,
)
from protocols.stock import position_key

STOCK_OUT: Final = "stock_out"
OutboxRow = tuple[str, str, int, str]


@dataclass(frozen=True, slots=True)
class Publication:
    """A message to publish on a gateway topic once the batch is committed."""

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
            alert = self._stock_out(row, (row.location, row.sku) in changes.picked_at_zero, received_ts)
            if alert is not None and enqueue_in(self._conn, alert, received_ts):
                out.append(Publication(self._alert_topic, alert.model_dump_json(by_alias=True).encode()))
            position = self._position(row, received_ts)
            rec = StockRecord(id=stock_record_id(self._site, row.location, row.sku, row.version), position=position)
            outbox.append((rec.id, rec.kind, received_ts, rec.model_dump_json(by_alias=True)))
            out.append(Publication(self._stock_topic, position.model_dump_json(by_alias=True).encode()))
        for d in changes.discrepancies:
            disc = self._discrepancy(d, received_ts)
            drec = StockDiscrepancyRecord(id=discrepancy_record_id(d.device_id, d.boot_id, d.seq, d.revision),
                                          discrepancy=disc)
            outbox.append((drec.id, drec.kind, received_ts, drec.model_dump_json(by_alias=True)))
            out.append(Publication(self._stock_topic, disc.model_dump_json(by_alias=True).encode()))
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

    def _position(self, row: PositionRow, now_ms: int) -> StockPosition:
        return StockPosition(
            gateway_id=self._gateway_id, site=self._site, location=row.location, sku=row.sku, on_hand=row.on_hand,
            negative=row.on_hand < 0, version=row.version, last_scan_ts=row.last_scan_ts, updated_ts=now_ms,
            count_ts=None if row.count is None else row.count[0], stock_out=row.stockout_alert_id is not None,
        )

    def _discrepancy(self, d: DiscrepancyRow, now_ms: int) -> StockDiscrepancy:
        return StockDiscrepancy(
            gateway_id=self._gateway_id, site=self._site, location=d.location, sku=d.sku, device_id=d.device_id,
            boot_id=d.boot_id, seq=d.seq, ts=d.ts, counted=d.counted, expected=d.expected,
            delta=d.counted - d.expected, revision=d.revision, updated_ts=now_ms,
        )
