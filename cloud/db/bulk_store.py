"""Bulk insert of one sync batch's rows, each record at most once per gateway; one fast path per database.

The caller (``cloud.services.sync``) has built every row as a tuple in its table's column order
(:data:`COLUMNS`) and holds the transaction, having locked the gateway's row first (so two batches of
one gateway never interleave, and batches of different gateways never touch the same keys).
:func:`store_rows` answers the record ids stored now, per kind; the others were stored before.

* **PostgreSQL**: every table's rows go by ``COPY`` (psycopg 3, text format) into a temporary staging
  table (``ON COMMIT DELETE ROWS``, one per connection and table), then one statement moves them: a
  chain of ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING id``, one per record table, and the
  readings of exactly the telemetry records that statement inserted. Five round trips for a batch
  instead of one multi-row ``INSERT`` per few hundred rows.
* **SQLite**: the transaction holds the database's write lock from its ``BEGIN IMMEDIATE``, so nothing
  else writes in between: one ``SELECT`` finds the ids already stored (ids passed as one JSON array),
  then ``executemany`` of a cached plain ``INSERT`` stores the rest (sqlite3's C loop).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection

from cloud.db.tables import RECORD_TABLES, readings

Row = tuple[Any, ...]
#: Column order of the row tuples, per table name (as ``tables.py`` declares them).
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    t.name: tuple(c.name for c in t.columns) for t in (*RECORD_TABLES.values(), readings)
}
_STAGE_PREFIX: Final = "stage_"


def store_rows(conn: Connection, gateway_id: str, rows: Mapping[str, Sequence[Row]],
               reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    """Insert the new records of ``rows`` (per kind) and the readings of the new telemetry records.

    Rows are ``(gateway_id, id, ...)``; ``reading_rows`` are ``(gateway_id, record_id, ...)``.
    """
    if conn.dialect.name == "postgresql":
        return _store_postgresql(conn, rows, reading_rows)
    return _store_sqlite(conn, gateway_id, rows, reading_rows)


# --- PostgreSQL -------------------------------------------------------------------------------------


def _cols(table: str) -> str:
    return ", ".join(COLUMNS[table])


def _store_postgresql(conn: Connection, rows: Mapping[str, Sequence[Row]],
                      reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    kinds = [kind for kind in RECORD_TABLES if rows.get(kind)]
    if not kinds:
        return {}
    tables = [RECORD_TABLES[k].name for k in kinds]
    with_readings = "telemetry" in kinds and bool(reading_rows)
    staged = tables + ([readings.name] if with_readings else [])
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute("; ".join(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_PREFIX}{t} (LIKE {t} INCLUDING DEFAULTS) "
                              "ON COMMIT DELETE ROWS" for t in staged))
        for kind, table in zip(kinds, tables, strict=True):
            _copy(cur, table, rows[kind])
        if with_readings:
            _copy(cur, readings.name, reading_rows)
        ctes = [f"new_{t} AS (INSERT INTO {t} ({_cols(t)}) SELECT {_cols(t)} FROM {_STAGE_PREFIX}{t} "
                "ON CONFLICT DO NOTHING RETURNING id)" for t in tables]
        if with_readings:
            r = readings.name
            ctes.append(f"new_{r} AS (INSERT INTO {r} ({_cols(r)}) SELECT {_cols(r)} FROM {_STAGE_PREFIX}{r} "
                        f"WHERE record_id IN (SELECT id FROM new_{RECORD_TABLES['telemetry'].name}))")
        answer = " UNION ALL ".join(f"SELECT {i}, id FROM new_{t}" for i, t in enumerate(tables))
        cur.execute(f"WITH {', '.join(ctes)} {answer}")
        out: dict[str, set[str]] = {kind: set() for kind in kinds}
        for i, rid in cur.fetchall():
            out[kinds[i]].add(rid)
    return out


def _copy(cur: Any, table: str, rows: Sequence[Row]) -> None:
    with cur.copy(f"COPY {_STAGE_PREFIX}{table} ({_cols(table)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# --- SQLite -----------------------------------------------------------------------------------------


def _store_sqlite(conn: Connection, gateway_id: str, rows: Mapping[str, Sequence[Row]],
                  reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    raw = conn.connection.driver_connection
    cur = raw.cursor()  # type: ignore[union-attr]
    out: dict[str, set[str]] = {}
    try:
        for kind, table in RECORD_TABLES.items():
            batch = rows.get(kind)
            if not batch:
                continue
            ids = json.dumps([row[1] for row in batch])
            known = {r[0] for r in cur.execute(
                f"SELECT id FROM {table.name} WHERE gateway_id = ? AND id IN (SELECT value FROM json_each(?))",
                (gateway_id, ids))}
            new = [row for row in batch if row[1] not in known] if known else list(batch)
            _insert_sqlite(cur, table.name, new)
            out[kind] = {row[1] for row in new}
        new_telemetry = out.get("telemetry")
        if new_telemetry and reading_rows:
            _insert_sqlite(cur, readings.name, [r for r in reading_rows if r[1] in new_telemetry])
    finally:
        cur.close()
    return out


def _insert_sqlite(cur: Any, table: str, rows: Sequence[Row]) -> None:
    if rows:
        marks = ", ".join("?" * len(COLUMNS[table]))
        cur.executemany(f"INSERT INTO {table} ({_cols(table)}) VALUES ({marks})", rows)
