"""Upkeep of the time series: week partitions created ahead of time, retention by dropping whole weeks.

Every API process runs one :class:`PartitionUpkeep` (a :class:`cloud.background.Loop`, first pass at
start-up, then every ``PARTITION_UPKEEP_S``). A pass, per partitioned table (``telemetry``, ``readings``,
``scans``; each in its own short transaction):

* PostgreSQL: create the weeks from :data:`WEEKS_BEHIND` before now to :data:`WEEKS_AHEAD` after it that
  are missing (rows waiting for a new week in the default partition move into it), so live data and an
  ordinary backlog always land in a week of their own; with ``READINGS_RETENTION_DAYS`` set, drop the weeks
  that ended before ``now - retention`` and delete the default partition's rows older than that.
* SQLite (no partitions): with retention set, ``DELETE`` the rows older than the cutoff.
* Both: the hourly rollup of the readings (``cloud.db.rollups``) loses the hours the readings lost (the
  hour cut by the boundary is recomputed), so it always sums what the readings table holds.

A second loop, every :data:`COMPACT_INTERVAL_S`, rolls up the readings' closed hours past the rollup's
watermark (:func:`advance_rollup`: the hours closed under the rollup lock for a moment, then rolled up
under the compaction lock) and merges the rollup's partial rows (:func:`compact_rollup`); on PostgreSQL
the compaction lock is an advisory lock, so one replica at a time (the others skip).

Replicas do not repeat each other's work: a pass on PostgreSQL runs under ``pg_try_advisory_xact_lock``
and skips the table another process is upkeeping; DDL waits at most ``lock_timeout`` (5 s) for a lock,
so it never queues ingest behind it for long (the table is tried again at the next pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, Engine

from cloud.background import Loop, LoopHealth
from cloud.db import partitions, rollups
from cloud.db.tables import TIME_SERIES

log = logging.getLogger(__name__)

WEEKS_BEHIND: Final = 4
#: Seconds between two passes of the readings rollup (closed hours rolled up, partial rows merged).
COMPACT_INTERVAL_S: Final = 60.0
WEEKS_AHEAD: Final = 4
#: pg advisory lock keys of the upkeep, one per table (beside cloud.db.migrate.LOCK_KEY).
_LOCK_BASE: Final = 7263512100
_LOCK_TIMEOUT: Final = "5s"
_COMPACT_LOCK: Final = _LOCK_BASE + 99


@dataclass
class UpkeepReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    skipped: list[str] = field(default_factory=list)


def upkeep(engine: Engine, retention_days: float, now_ms: int | None = None) -> UpkeepReport:
    """One pass over every partitioned table; ``retention_days`` 0 keeps everything."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = now - int(retention_days * partitions.DAY_MS) if retention_days > 0 else None
    report = UpkeepReport()
    for i, table in enumerate(TIME_SERIES):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                if not partitions.try_upkeep_lock(conn, _LOCK_BASE + i):
                    report.skipped.append(table.name)
                    continue
                partitions.set_lock_timeout(conn, _LOCK_TIMEOUT)
                start = now - WEEKS_BEHIND * partitions.WEEK_MS
                if cutoff is not None:
                    start = max(start, partitions.week_start(cutoff) + partitions.WEEK_MS)
                report.created += partitions.ensure_weeks(conn, table.name, start,
                                                          now + WEEKS_AHEAD * partitions.WEEK_MS)
                if cutoff is not None:
                    dropped, deleted = partitions.drop_before(conn, table.name, cutoff)
                    report.dropped += dropped
                    report.deleted_rows += deleted
                    if table.name == "readings":  # what is left starts at the oldest week kept, or the cutoff
                        kept = partitions.weeks(conn, table.name)
                        # the compaction's lock: the two never delete the same rows at once
                        partitions.upkeep_lock(conn, _COMPACT_LOCK)
                        rollups.trim(conn, min([cutoff, *(p.start_ts for p in kept[:1])]))
            elif cutoff is not None:
                report.deleted_rows += partitions.delete_before(conn, table.name, cutoff)
                if table.name == "readings":
                    rollups.trim(conn, cutoff)
    if report.created or report.dropped or report.deleted_rows:
        log.info("partition upkeep: created %s, dropped %s, deleted %d old rows", report.created or "none",
                 report.dropped or "none", report.deleted_rows)
    return report


def advance_rollup(engine: Engine, now_ms: int | None = None) -> int:
    """Roll up every closed hour past the rollup's watermark (``cloud.db.rollups``): close the hours under the
    rollup lock (a moment: it waits for the batches in flight), then roll them up in short transactions
    under the compaction lock (PostgreSQL: skipped while another process holds it); the hours rolled up."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            partitions.set_lock_timeout(conn, _LOCK_TIMEOUT)
        rollups.lock_for_advance(conn)
        rollups.close_hours(conn, now)
    return _in_slices(engine, rollups.advance, rollups.ADVANCE_HOURS)


def _in_slices(engine: Engine, step: Callable[[Connection], int], full: int) -> int:
    """Repeat ``step`` (one short transaction each, under the compaction lock on PostgreSQL: skipped while another
    process holds it) until it does less than ``full``; the sum of what it did."""
    total = 0
    while True:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql" and not partitions.try_upkeep_lock(conn, _COMPACT_LOCK):
                return total  # another process is at it
            done = step(conn)
        total += done
        if done < full:
            return total


def compact_rollup(engine: Engine) -> int:
    """Merge every partial row of the readings rollup (one short transaction per slice); keys merged."""
    return _in_slices(engine, rollups.compact, rollups.COMPACT_KEYS)


class PartitionUpkeep:
    """:func:`upkeep` once at :meth:`start` (so the weeks exist before requests come), then every ``interval_s``."""

    def __init__(self, engine: Engine, retention_days: float, interval_s: float) -> None:
        self._engine = engine
        self._retention_days = retention_days
        self._loop = Loop("partition-upkeep", interval_s, self._tick, jitter=0.1)
        self._compaction = Loop("rollup-compaction", COMPACT_INTERVAL_S, self._compact, jitter=0.1)
        self._ran_at_start = False

    @property
    def health(self) -> LoopHealth:
        return self._loop.health

    def _tick(self) -> bool:
        if self._ran_at_start:  # start() just made the pass the loop's first tick would make
            self._ran_at_start = False
        else:
            upkeep(self._engine, self._retention_days)
        return False

    def _compact(self) -> bool:
        advance_rollup(self._engine)
        compact_rollup(self._engine)
        return False

    def start(self) -> None:
        try:
            upkeep(self._engine, self._retention_days)
            self._ran_at_start = True
        except Exception:  # the loop tries again (rows wait in the default partitions meanwhile)
            log.exception("partition upkeep at start-up failed; retrying in the background")
            self._ran_at_start = False
        self._loop.start()
        self._compaction.start()

    def stop(self) -> None:
        self._compaction.stop()
        self._loop.stop()
