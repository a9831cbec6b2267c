"""What ``edgehouse-agent db export`` exports: named datasets (readings, scans, alerts, stock,
dead letters, …) or any table, filtered by time, oldest committed first.

Rows stream from one read statement (one WAL snapshot), so an export never holds more than a
row in memory and never blocks the agent's writer. Times are epoch ms; which column a time
filter applies to is the dataset's (``--time-column`` picks another).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import sqlite_utils

from edge_agent.store.telemetry import readings_of
from edge_agent.tools.database import ToolError


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    #: The first of these tables that exists holds it.
    tables: tuple[str, ...]
    #: The column the time filters apply to by default (None: the first of TIME_COLUMNS it has).
    time_column: str | None
    about: str


#: Columns that hold a time (epoch ms), in the order a table's default is guessed from.
TIME_COLUMNS: Final = ("ts", "received_ts", "updated_ts", "last_scan_ts", "created_ts", "rejected_ts")

DATASETS: Final = {
    d.name: d
    for d in (
        Dataset("readings", ("telemetry",), "ts", "one row per telemetry reading (device clock ts)"),
        Dataset("telemetry", ("telemetry",), "ts", "one row per telemetry message, readings as JSON"),
        Dataset("scans", ("scans",), "ts", "barcode/RFID scans (device clock ts)"),
        Dataset("alerts", ("alerts",), "ts", "the gateway's alerts (anomaly, stock, system)"),
        Dataset("forecasts", ("forecasts",), "created_ts", "daily per-SKU demand forecasts"),
        Dataset("stock", ("stock_positions", "stock"), None, "stock on hand per (site, location, SKU)"),
        Dataset(
            "dead-letters", ("dead_letters",), "received_ts", "messages that did not decode, with reason"
        ),
        Dataset("device-status", ("device_status_history",), "ts", "device birth/offline/status history"),
        Dataset("outbox", ("outbox",), "created_ts", "records waiting for the cloud"),
    )
}

_READING_COLUMNS: Final = ("device_id", "boot_id", "seq", "ts", "received_ts", "metric", "value")


@dataclass(frozen=True, slots=True)
class Export:
    table: str
    time_column: str | None
    columns: tuple[str, ...]
    rows: Iterator[dict[str, Any]]


def _table_of(db: sqlite_utils.Database, what: str) -> tuple[str, Dataset | None]:
    dataset = DATASETS.get(what)
    if dataset is None:
        if what in db.table_names() and not what.startswith("sqlite_"):
            return what, None
        names = ", ".join([*DATASETS, "or a table name (edgehouse-agent db tables)"])
        raise ToolError(f"nothing to export called {what!r}: give one of {names}")
    for table in dataset.tables:
        if db.table(table).exists():
            return table, dataset
    raise ToolError(f"this store has no {what} yet (no table {' or '.join(dataset.tables)})")


def export(
    db: sqlite_utils.Database,
    what: str,
    since: int | None = None,
    until: int | None = None,
    limit: int | None = None,
    time_column: str | None = None,
) -> Export:
    """The rows of dataset or table ``what`` with ``since <= time < until``, in commit order."""
    table, dataset = _table_of(db, what)
    columns = tuple(c.name for c in db.table(table).columns)
    column = time_column or (dataset.time_column if dataset else None)
    if column is None:
        column = next((c for c in TIME_COLUMNS if c in columns), None)
    if column is not None and column not in columns:
        raise ToolError(f"{table} has no column {column!r} (its columns: {', '.join(columns)})")
    if column is None and (since is not None or until is not None):
        raise ToolError(f"{table} has no time column to filter on; give --time-column")
    where, args = [], []
    if since is not None:
        where.append(f"[{column}] >= ?")
        args.append(since)
    if until is not None:
        where.append(f"[{column}] < ?")
        args.append(until)
    flat = dataset is not None and dataset.name == "readings"
    rows = db.table(table).rows_where(
        " AND ".join(where) or None, args, order_by="rowid", limit=None if flat else limit
    )
    if flat:
        out: Iterator[dict[str, Any]] = _readings(rows)
        if limit is not None:
            out = itertools.islice(out, limit)
        return Export(table, column, _READING_COLUMNS, out)
    return Export(table, column, columns, rows)


def _readings(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        for reading in readings_of(row["device_id"], row["ts"], row["readings"]):
            yield {
                "device_id": row["device_id"],
                "boot_id": row["boot_id"],
                "seq": row["seq"],
                "ts": row["ts"],
                "received_ts": row["received_ts"],
                "metric": reading.metric,
                "value": reading.value,
            }
