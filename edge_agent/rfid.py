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
        self._max_ts = 0
        self._since_prune = 0

    def load(self, conn: sqlite3.Connection) -> int:
        """Rebuild the state from stored RFID scans; return how many pairs were loaded."""
        self._last.clear()
        if self.window_ms <= 0:
            return 0
        row = conn.execute("SELECT MAX(ts) FROM scans WHERE code_type = 'rfid'").fetchone()
        if row is None or row[0] is None:
            return 0
        self._max_ts = int(row[0])
        rows = conn.execute(
            "SELECT reader_id, tag_id, MAX(ts) FROM scans WHERE code_type = 'rfid' AND ts >= ? "
            "GROUP BY reader_id, tag_id",
            (self._max_ts - 2 * self.window_ms,),
        )
        for reader_id, tag_id, ts in rows:
            self._last[(reader_id, tag_id)] = int(ts)
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
            self._max_ts = max(self._max_ts, ts)
        self._since_prune += len(pending)
        if self._since_prune >= _PRUNE_EVERY:
            self._prune()

    def _prune(self) -> None:
        """Forget pairs last accepted well outside the window of the newest read."""
        self._since_prune = 0
        horizon = self._max_ts - 2 * self.window_ms
        self._last = {k: ts for k, ts in self._last.items() if ts >= horizon}

    def __len__(self) -> int:
        return len(self._last)
