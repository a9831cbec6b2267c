"""The outbox: sync records waiting for the cloud, in lanes (migration ``0004_outbox_lanes``).

Lane 0 holds alerts and device status, lane 1 everything else; a lane-1 record younger than the live
window is *live*, an older one *backlog*. :func:`read_lanes` takes lane 0 first, then live, then backlog,
each oldest first. Which records leave is still decided by the cloud's ack alone (:func:`delete`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from edge_agent.store.db import padded

_CHUNK = 500  # ids per statement, well under SQLite's host-parameter limit


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    kind: str
    created_ts: int
    payload: str


def read_oldest(conn: sqlite3.Connection, limit: int) -> list[OutboxRow]:
    rows = conn.execute(
        "SELECT id, kind, created_ts, payload FROM outbox ORDER BY rowid LIMIT ?", (limit,)
    ).fetchall()
    return [OutboxRow(*row) for row in rows]


#: The lanes as the metrics and the status name them, in the order they are sent.
LANES: Final = ("urgent", "live", "backlog")
_SELECT: Final = "SELECT id, kind, created_ts, payload FROM outbox "
_LANE_WHERE: Final = {
    "urgent": "WHERE lane = 0",
    "live": "WHERE lane = 1 AND created_ts >= ?",
    "backlog": "WHERE lane = 1 AND created_ts < ?",
}


@dataclass(frozen=True, slots=True)
class LaneStats:
    depth: int
    oldest_created_ts: int | None


def read_lanes(conn: sqlite3.Connection, limit: int, live_since_ms: int) -> list[OutboxRow]:
    """Up to ``limit`` rows: alerts and device status, then live data (created at or after
    ``live_since_ms``), then the backlog; each lane oldest first."""
    rows: list[OutboxRow] = []
    for lane in LANES:
        if len(rows) >= limit:
            break
        params: tuple[int, ...] = () if lane == "urgent" else (live_since_ms,)
        found = conn.execute(
            f"{_SELECT}{_LANE_WHERE[lane]} ORDER BY created_ts LIMIT ?", (*params, limit - len(rows))
        ).fetchall()
        rows.extend(OutboxRow(*row) for row in found)
    return rows


def lane_stats(conn: sqlite3.Connection, live_since_ms: int) -> dict[str, LaneStats]:
    """Depth and oldest record per lane (index range counts)."""
    stats = {}
    for lane in LANES:
        params: tuple[int, ...] = () if lane == "urgent" else (live_since_ms,)
        n, oldest = conn.execute(
            f"SELECT COUNT(*), MIN(created_ts) FROM outbox {_LANE_WHERE[lane]}", params
        ).fetchone()
        stats[lane] = LaneStats(int(n), None if oldest is None else int(oldest))
    return stats


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def delete(conn: sqlite3.Connection, ids: Iterable[str]) -> int:
    """Delete exactly these ids (call inside a transaction); return how many existed."""
    deleted = 0
    for chunk in map(padded, _chunks(sorted(set(ids)))):
        marks = ",".join("?" * len(chunk))
        deleted += conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", tuple(chunk)).rowcount
    return deleted


def move_to_rejected(conn: sqlite3.Connection, rejected: Iterable[tuple[str, str]], now_ms: int) -> int:
    """Move ``(id, reason)`` pairs from the outbox to ``sync_rejected`` (inside a transaction)."""
    moved = 0
    for rid, reason in rejected:
        cur = conn.execute(
            "INSERT OR REPLACE INTO sync_rejected (id, kind, created_ts, rejected_ts, reason, payload) "
            "SELECT id, kind, created_ts, ?, ?, payload FROM outbox WHERE id = ?",
            (now_ms, reason[:500], rid),
        )
        if cur.rowcount:
            conn.execute("DELETE FROM outbox WHERE id = ?", (rid,))
            moved += 1
    return moved


def depth(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def oldest_created_ts(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT created_ts FROM outbox ORDER BY rowid LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def rejected_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM sync_rejected").fetchone()[0])
