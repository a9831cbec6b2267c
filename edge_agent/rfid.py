"""RFID burst filter: a reader reports the same tag many times while it sits in the field.

A read of ``(reader_id, tag_id)`` within ``window_ms`` of device time of the last *accepted*
read of that pair is dropped. Measuring from accepted reads (not from dropped ones) keeps the
state reconstructible from the ``scans`` table, so the filter behaves the same after a restart.
"""

from __future__ import annotations

import sqlite3

_PRUNE_EVERY = 4096


class RfidBurstFilter:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._last: dict[tuple[str, str], int] = {}
        #: Newest accepted read per reader. Horizons are per reader: device clocks differ (skew,
        #: a reader that was offline), so one reader's time says nothing about another's.
        self._reader_max: dict[str, int] = {}
        self._since_prune = 0

    def load(self, conn: sqlite3.Connection) -> int:
        """Rebuild the state from stored RFID scans; return how many pairs were loaded."""
        self._last.clear()
        self._reader_max.clear()
        if self.window_ms <= 0:
            return 0
        rows = conn.execute(
            "SELECT s.reader_id, s.tag_id, MAX(s.ts), r.max_ts FROM scans AS s "
            "JOIN (SELECT reader_id, MAX(ts) AS max_ts FROM scans WHERE code_type = 'rfid' "
            "      GROUP BY reader_id) AS r ON r.reader_id = s.reader_id "
            "WHERE s.code_type = 'rfid' AND s.ts >= r.max_ts - ? GROUP BY s.reader_id, s.tag_id",
            (2 * self.window_ms,),
        )
        for reader_id, tag_id, ts, reader_max in rows:
            self._last[(reader_id, tag_id)] = int(ts)
            self._reader_max[reader_id] = int(reader_max)
        return len(self._last)

    def is_burst(self, key: tuple[str, str], ts: int, pending: dict[tuple[str, str], int]) -> bool:
        """True when ``key`` was accepted within the window of ``ts`` (``pending`` first)."""
        if self.window_ms <= 0:
            return False
        last = pending.get(key)
        if last is None:
            last = self._last.get(key)
        return last is not None and abs(ts - last) < self.window_ms

    def commit(self, pending: dict[tuple[str, str], int]) -> None:
        """Remember accepted reads once their transaction is committed."""
        for key, ts in pending.items():
            if ts >= self._last.get(key, -1):
                self._last[key] = ts
            if ts > self._reader_max.get(key[0], -1):
                self._reader_max[key[0]] = ts
        self._since_prune += len(pending)
        if self._since_prune >= _PRUNE_EVERY:
            self._prune()

    def _prune(self) -> None:
        """Forget pairs last accepted well outside the window of their reader's newest read."""
        self._since_prune = 0
        keep = 2 * self.window_ms
        self._last = {k: ts for k, ts in self._last.items() if ts >= self._reader_max[k[0]] - keep}

    def __len__(self) -> int:
        return len(self._last)
