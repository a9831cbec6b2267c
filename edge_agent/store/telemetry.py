"""The ``telemetry`` table as scoring reads it, and the format of its ``readings`` column.

``readings`` holds one stored message's readings as a JSON object ``{"metric": value}``: metric
names from the fixed set of :class:`protocols.Reading`, values finite floats (both validated at
decode). :func:`readings_column` writes it (ingest), :func:`readings_of` reads it back (scoring):
this module is the one owner of that format. Rows are read forward by ``rowid``, the order in
which they were committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import protocols

#: ``(rowid, device_id, ts, readings)`` of one stored telemetry message.
TelemetryRow = tuple[int, str, int, str]


@dataclass(frozen=True, slots=True)
class Reading:
    """One committed telemetry reading."""

    device_id: str
    metric: str
    ts: int
    value: float


def readings_column(readings: Iterable[protocols.Reading]) -> str:
    """The ``readings`` value of one message.

    Metric names are a fixed Literal set and values finite floats (validated), so this is valid
    JSON, several times cheaper than ``json.dumps``.
    """
    return "{" + ",".join([f'"{r.metric}":{r.value!r}' for r in readings]) + "}"


def readings_of(device_id: str, ts: int, column: str) -> list[Reading]:
    """The readings of one stored telemetry row (``column``: its ``readings`` value)."""
    values = json.loads(column)
    return [Reading(device_id, str(metric), int(ts), float(value)) for metric, value in values.items()]


def rows_after(
    conn: sqlite3.Connection, after: int, limit: int, upto: int | None = None
) -> list[TelemetryRow]:
    """Up to ``limit`` rows with ``after < rowid`` (``<= upto`` when given), oldest first."""
    if upto is None:
        return conn.execute(
            "SELECT rowid, device_id, ts, readings FROM telemetry WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        ).fetchall()
    return conn.execute(
        "SELECT rowid, device_id, ts, readings FROM telemetry WHERE rowid > ? AND rowid <= ? "
        "ORDER BY rowid LIMIT ?",
        (after, upto, limit),
    ).fetchall()


def count_between(conn: sqlite3.Connection, after: int, upto: int) -> int:
    """Stored messages with ``after < rowid <= upto``."""
    (n,) = conn.execute(
        "SELECT count(*) FROM telemetry WHERE rowid > ? AND rowid <= ?", (after, upto)
    ).fetchone()
    return int(n)


def max_rowid(conn: sqlite3.Connection) -> int:
    (newest,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM telemetry").fetchone()
    return int(newest)


def warmup_start(conn: sqlite3.Connection, messages: int, upto: int | None = None) -> int:
    """The rowid after which the last ``messages`` stored telemetry rows (up to ``upto``) begin."""
    newest = max_rowid(conn) if upto is None else upto
    if messages <= 0:
        return newest
    (first,) = conn.execute(
        "SELECT min(rowid) FROM (SELECT rowid FROM telemetry WHERE rowid <= ? ORDER BY rowid DESC LIMIT ?)",
        (newest, messages),
    ).fetchone()
    return 0 if first is None else int(first) - 1
