"""The stock book: positions and cycle-count discrepancies from committed scans (``protocols.stock``).

:meth:`StockBook.apply` runs inside the ingest transaction, after the batch's fresh scans (deduped,
burst repeats dropped) were inserted: a scan moves its position exactly when it is stored, so a
duplicate, a redelivery after ``kill -9`` or a burst repeat never counts twice. Everything lives in
SQLite (``stock``, ``stock_discrepancies``); nothing is kept in memory between batches.

The common case costs one padded ``SELECT`` and one ``executemany`` per batch: movements scanned
after the position's latest count add to it. Only a count, or a movement scanned before the latest
count (late, reordered), reads the ``scans`` table (``scans_position_ts``) to place it in time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from edge_agent.store.db import padded
from protocols import ScanMessage
from protocols.stock import COUNT_DIRECTION, STOCK_MOVES

Position = tuple[str, str]  # (location, sku)
CountKey = tuple[int, str, str, int]  # (ts, device_id, boot_id, seq): the order of counts

_CHUNK: Final = 500
_SELECT_COLUMNS: Final = (
    "location, sku, on_hand, version, last_scan_ts, count_ts, count_device_id, count_boot_id, count_seq, "
    "count_qty, stockout_alert_id"
)
_UPSERT: Final = (
    "INSERT INTO stock (site, location, sku, on_hand, version, last_scan_ts, updated_ts, count_ts, "
    "count_device_id, count_boot_id, count_seq, count_qty, stockout_alert_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, location, sku) DO UPDATE SET "
    "on_hand = excluded.on_hand, version = excluded.version, last_scan_ts = excluded.last_scan_ts, "
    "updated_ts = excluded.updated_ts, count_ts = excluded.count_ts, count_device_id = excluded.count_device_id, "
    "count_boot_id = excluded.count_boot_id, count_seq = excluded.count_seq, count_qty = excluded.count_qty, "
    "stockout_alert_id = excluded.stockout_alert_id"
)
_SIGNED_QTY: Final = "CASE direction " + " ".join(
    f"WHEN '{d}' THEN {'' if sign > 0 else '-'}qty" for d, sign in STOCK_MOVES.items()
) + " ELSE 0 END"
_MOVES_SUM: Final = (
    f"SELECT COALESCE(SUM({_SIGNED_QTY}), 0) FROM scans "
    "WHERE location = ? AND sku = ? AND ts > ? AND ts <= ? AND direction != '" + COUNT_DIRECTION + "'"
)
_COUNTS_FROM: Final = (
    "SELECT ts, device_id, boot_id, seq, counted, expected, revision FROM stock_discrepancies "
    "WHERE site = ? AND location = ? AND sku = ? AND ts >= ? ORDER BY ts, device_id, boot_id, seq"
)
_COUNT_BEFORE: Final = (
    "SELECT ts, device_id, boot_id, seq, counted FROM stock_discrepancies "
    "WHERE site = ? AND location = ? AND sku = ? AND ts < ? "
    "ORDER BY ts DESC, device_id DESC, boot_id DESC, seq DESC LIMIT 1"
)
_INSERT_DISCREPANCY: Final = (
    "INSERT INTO stock_discrepancies (device_id, boot_id, seq, site, location, sku, ts, counted, expected, "
    "revision, received_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
)
_UPDATE_DISCREPANCY: Final = (
    "UPDATE stock_discrepancies SET expected = ?, revision = revision + 1, updated_ts = ? "
    "WHERE device_id = ? AND boot_id = ? AND seq = ?"
)
_MAX_TS: Final = 2**63 - 1


@dataclass(slots=True)
class PositionRow:
    """A ``stock`` row (also what a changed position is reported as)."""

    location: str
    sku: str
    on_hand: int = 0
    version: int = 0
    last_scan_ts: int = 0
    count: CountKey | None = None
    count_qty: int | None = None
    stockout_alert_id: str | None = None


@dataclass(frozen=True, slots=True)
class DiscrepancyRow:
    """A cycle count as recorded (a new one, or a new revision of one)."""

    location: str
    sku: str
    device_id: str
    boot_id: str
    seq: int
    ts: int
    counted: int
    expected: int
    revision: int


@dataclass(slots=True)
class StockChanges:
    """What one batch changed: positions (with their new version) and discrepancy revisions."""

    positions: list[PositionRow] = field(default_factory=list)
    discrepancies: list[DiscrepancyRow] = field(default_factory=list)
    #: Positions where a pick was scanned while the book held no stock (``on_hand`` ≤ 0 before it).
    picked_at_zero: set[Position] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Count:
    key: CountKey
    qty: int
    expected: int | None = None  # stored counts only
    revision: int = 0  # 0: counted in this batch


class StockBook:
    """Applies committed scans to the stock tables on the ingest connection (inside its transaction)."""

    def __init__(self, conn: sqlite3.Connection, site: str) -> None:
        self._conn = conn
        self._site = site

    def apply(self, scans: Sequence[ScanMessage], received_ts: int) -> StockChanges:
        """Move the positions of ``scans`` (just inserted into ``scans``); return what changed."""
        changes = StockChanges()
        if not scans:
            return changes
        by_position: dict[Position, list[ScanMessage]] = {}
        for m in scans:
            by_position.setdefault((m.body.location, m.body.sku), []).append(m)
        rows = self._load(list(by_position))
        upserts = []
        for pos, items in by_position.items():
            row = rows.get(pos) or PositionRow(pos[0], pos[1])
            if self._apply_position(row, items, received_ts, changes):
                row.version += 1
                changes.positions.append(row)
                upserts.append(self._upsert_row(row, received_ts))
        if upserts:
            self._conn.executemany(_UPSERT, upserts)
        return changes

    def set_stockout(self, row: PositionRow, alert_id: str | None) -> None:
        """Record the open stock-out alert of a position (same transaction, no new version)."""
        row.stockout_alert_id = alert_id
        self._conn.execute(
            "UPDATE stock SET stockout_alert_id = ? WHERE site = ? AND location = ? AND sku = ?",
            (alert_id, self._site, row.location, row.sku),
        )

    # ------------------------------------------------------------------ positions

    def _load(self, positions: list[Position]) -> dict[Position, PositionRow]:
        found: dict[Position, PositionRow] = {}
        for start in range(0, len(positions), _CHUNK):
            chunk = padded(positions[start : start + _CHUNK])
            values = ",".join(["(?,?)"] * len(chunk))
            params: list[object] = [self._site, *(part for pos in chunk for part in pos)]
            for r in self._conn.execute(
                f"SELECT {_SELECT_COLUMNS} FROM stock WHERE site = ? AND (location, sku) IN (VALUES {values})",
                params,
            ):
                count = None if r[5] is None else (int(r[5]), r[6], r[7], int(r[8]))
                found[(r[0], r[1])] = PositionRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), count, r[9], r[10])
        return found

    def _upsert_row(self, row: PositionRow, received_ts: int) -> tuple[object, ...]:
        c = row.count
        return (
            self._site, row.location, row.sku, row.on_hand, row.version, row.last_scan_ts, received_ts,
            None if c is None else c[0], None if c is None else c[1], None if c is None else c[2],
            None if c is None else c[3], row.count_qty, row.stockout_alert_id,
        )

    def _apply_position(
        self, row: PositionRow, items: list[ScanMessage], received_ts: int, changes: StockChanges
    ) -> bool:
        """Apply one position's scans of this batch to ``row``; True when the position changed."""
        moves = [(m.ts, STOCK_MOVES[m.body.direction] * m.body.qty, m.body.direction) for m in items
                 if m.body.direction != COUNT_DIRECTION]
        counts = sorted(
            (_Count((m.ts, m.device_id, m.boot_id, m.seq), m.body.qty) for m in items
             if m.body.direction == COUNT_DIRECTION),
            key=lambda c: c.key,
        )
        before = row.count
        on_hand_before = row.on_hand
        applied_ts = [ts for ts, _, _ in moves if before is None or ts > before[0]]
        if counts and (before is None or counts[-1].key > before):
            latest = counts[-1]
            row.count, row.count_qty = latest.key, latest.qty
            row.on_hand = latest.qty + self._moves_sum(row, latest.key[0], _MAX_TS)
            applied_ts = [latest.key[0], *(ts for ts in applied_ts if ts > latest.key[0])]
        else:
            row.on_hand += sum(delta for ts, delta, _ in moves if before is None or ts > before[0])
        running = on_hand_before
        for ts, delta, direction in moves:  # arrival order: was a pick scanned at zero stock?
            if before is not None and ts <= before[0]:
                continue
            if direction == "pick" and running <= 0:
                changes.picked_at_zero.add((row.location, row.sku))
            running += delta
        if counts or (before is not None and any(ts <= before[0] for ts, _, _ in moves)):
            movement_book = on_hand_before + sum(delta for _, delta, _ in moves)
            self._place_in_time(row, moves, counts, before is None, movement_book, received_ts, changes)
        if not applied_ts:
            return False
        row.last_scan_ts = max(row.last_scan_ts, *applied_ts)
        return True

    def _moves_sum(self, row: PositionRow, after_ts: int, up_to_ts: int) -> int:
        """Units moved at the position by stored scans with ``after_ts < ts <= up_to_ts``."""
        cur = self._conn.execute(_MOVES_SUM, (row.location, row.sku, after_ts, up_to_ts))
        return int(cur.fetchone()[0])

    # ------------------------------------------------------------------ counts

    def _place_in_time(
        self,
        row: PositionRow,
        moves: list[tuple[int, int, str]],
        counts: list[_Count],
        no_count_before: bool,
        movement_book: int,
        received_ts: int,
        changes: StockChanges,
    ) -> None:
        """Record the batch's counts and revise the counts whose expected quantity the batch changed.

        ``expected`` of a count is the previous count's quantity plus the movements between the two
        (``scans_position_ts``). The very first count of a position, when no count was known before
        this batch, takes the book instead (``movement_book`` minus what moved after it), so it does
        not depend on history retention may have dropped.
        """
        site, loc, sku = self._site, row.location, row.sku
        low = min([ts for ts, _, _ in moves] + [c.key[0] for c in counts])
        stored = [
            _Count((int(r[0]), r[1], r[2], int(r[3])), int(r[4]), int(r[5]), int(r[6]))
            for r in self._conn.execute(_COUNTS_FROM, (site, loc, sku, low))
        ]
        prev_row = self._conn.execute(_COUNT_BEFORE, (site, loc, sku, low)).fetchone()
        prev: _Count | None = None
        if prev_row is not None:
            prev = _Count((int(prev_row[0]), prev_row[1], prev_row[2], int(prev_row[3])), int(prev_row[4]))
        prev_changed = False
        for c in sorted(stored + counts, key=lambda c: c.key):
            lo_ts = None if prev is None else prev.key[0]
            if c.revision == 0 or prev_changed:
                if prev is not None:
                    expected = prev.qty + self._moves_sum(row, prev.key[0], c.key[0])
                elif no_count_before:
                    expected = movement_book - self._moves_sum(row, c.key[0], _MAX_TS)
                else:
                    expected = self._moves_sum(row, -1, c.key[0])
            else:
                absorbed = sum(d for ts, d, _ in moves if (lo_ts is None or ts > lo_ts) and ts <= c.key[0])
                expected = (c.expected or 0) + absorbed
            if c.revision == 0:
                self._conn.execute(_INSERT_DISCREPANCY, (c.key[1], c.key[2], c.key[3], site, loc, sku, c.key[0],
                                                         c.qty, expected, received_ts, received_ts))
                changes.discrepancies.append(self._discrepancy(row, c, expected, 1))
            elif expected != c.expected:
                self._conn.execute(_UPDATE_DISCREPANCY, (expected, received_ts, c.key[1], c.key[2], c.key[3]))
                changes.discrepancies.append(self._discrepancy(row, c, expected, c.revision + 1))
            prev_changed = c.revision == 0
            prev = c

    @staticmethod
    def _discrepancy(row: PositionRow, c: _Count, expected: int, revision: int) -> DiscrepancyRow:
        ts, device_id, boot_id, seq = c.key
        return DiscrepancyRow(row.location, row.sku, device_id, boot_id, seq, ts, c.qty, expected, revision)
