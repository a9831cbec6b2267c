"""Replaying stored telemetry through a scorer: warm-ups, never alerted on.

A model about to take over (or to run in shadow) first scores the stored rows the running model
has seen, so its per-stream (or per-device) state is warm at the swap; the results are discarded.
A :data:`RowScorer` scores one stored row (``device_id, ts, readings_json``) and says how many
readings it scored: :func:`stream_rows` for the stream scorer, the device worker has its own.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from edge_agent.store.telemetry import readings_of, rows_after, warmup_start

if TYPE_CHECKING:
    from models.anomaly import AnomalyScorer

#: Telemetry rows read (and scored) per query.
CHUNK_ROWS = 500
#: A model being prepared catches up with the running one until fewer rows than this are left
#: for the scoring thread to replay at the swap (at most this many passes).
_CATCH_UP_ROWS = 20
_CATCH_UP_PASSES = 8

#: Scores one stored row (device_id, ts, readings JSON) for a warm-up; the readings it scored.
RowScorer: TypeAlias = Callable[[str, int, str], int]


def stream_rows(scorer: AnomalyScorer) -> RowScorer:
    """Every reading of a row scored per ``(device_id, metric)`` stream (bad readings skipped)."""

    def score_row(device_id: str, ts: int, readings_json: str) -> int:
        try:
            readings = readings_of(device_id, ts, readings_json)
        except (ValueError, TypeError, AttributeError):
            return 0
        n = 0
        for r in readings:
            with contextlib.suppress(Exception):
                scorer.score(f"{r.device_id}/{r.metric}", r.ts, r.value)
                n += 1
        return n

    return score_row


def replay(conn: sqlite3.Connection, score_row: RowScorer, after: int, upto: int) -> int:
    """Score the stored rows ``after < rowid <= upto`` with ``score_row`` (warm-up: results unused)."""
    n = 0
    cursor = after
    while cursor < upto:
        rows = rows_after(conn, cursor, CHUNK_ROWS, upto=upto)
        if not rows:
            break
        for rowid, device_id, ts, readings_json in rows:
            cursor = rowid
            n += score_row(device_id, int(ts), readings_json)
            time.sleep(0)
    return n


def warm_up(
    conn: sqlite3.Connection, score_row: RowScorer, messages: int, cursor: Callable[[], int]
) -> tuple[int, int]:
    """Warm a scorer (``score_row``) up on the last ``messages`` rows the running model scored (``cursor()``:
    its position, moving meanwhile); return (readings replayed, the rowid warmed up to).

    It catches up with what the running model scored meanwhile, here rather than on the scoring
    thread: the swap itself then replays only the last few rows.
    """
    warmed_to = cursor()
    if messages <= 0 or warmed_to <= 0:
        return 0, warmed_to
    start = warmup_start(conn, messages, upto=warmed_to)
    n = replay(conn, score_row, start, warmed_to)
    for _ in range(_CATCH_UP_PASSES):
        now = cursor()
        if now - warmed_to <= _CATCH_UP_ROWS:
            break
        n += replay(conn, score_row, warmed_to, now)
        warmed_to = now
    return n, warmed_to
