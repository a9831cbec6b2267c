"""Bulk insert of one sync batch's rows, each record at most once per gateway; one fast path per database.

The caller (``cloud.services.sync``) has built every row as a tuple in its table's column order
(:data:`COLUMNS`) and holds the transaction, having locked the gateway's row first (so two batches of
one gateway never interleave, and batches of different gateways never touch the same keys).
:func:`store_rows` answers the record ids stored now, per kind; the others were stored before.

Both databases first try the common case, a batch sent once: inside a savepoint every record row goes
straight into its table, and the primary key (``(gateway_id, id)``, or ``(gateway_id, id, ts)`` for the
time-keyed tables) refuses any record stored before. If none was, every row is new and no lookup was
paid for. If one was (a retried batch, an overlap), the savepoint is rolled back and one lookup per
table finds the keys already stored; only the others are inserted. The readings of exactly the new
telemetry records follow, and partial hourly rollup rows for those of them before the rollup's watermark
(late ones; ``cloud.db.rollups`` rolls up the others off the ingest path). The answer is
exact either way: the keys decide, under the gateway's lock.

* **PostgreSQL**: ``COPY … FROM STDIN (FORMAT BINARY)`` (psycopg 3) into each target table (the
  partitioned ones route rows to their week); the lookup is one ``SELECT`` for every table (ids and
  times passed as arrays). Measured on 1,000-record batches (store only, back to back): 24 ms a batch
  against 31 ms for ``COPY`` into staging tables and ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING``.
* **SQLite**: the transaction holds the database's write lock from its ``BEGIN IMMEDIATE``;
  ``executemany`` of a cached plain ``INSERT`` (sqlite3's C loop); the lookup passes the ids as one
  JSON array.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final

import psycopg
from sqlalchemy import JSON, BigInteger, Boolean, Column, Connection, Float, Integer, String, Table

from cloud.db import rollups
from cloud.db.tables import RECORD_TABLES, readings

Row = tuple[Any, ...]
#: Column order of the row tuples, per table name (as ``tables.py`` declares them).
COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    t.name: tuple(c.name for c in t.columns) for t in (*RECORD_TABLES.values(), readings)
}
_SAVEPOINT: Final = "edgehouse_bulk"
#: Where the rows of the time-keyed tables hold ``ts``: they are keyed by ``(gateway_id, id, ts)`` (a
#: partitioned table's keys must hold the partition column), the others by ``(gateway_id, id)``.
_TS: Final[dict[str, int]] = {kind: COLUMNS[t.name].index("ts") for kind, t in RECORD_TABLES.items()
                              if "ts" in t.primary_key.columns}


def store_rows(conn: Connection, gateway_id: str, rows: Mapping[str, Sequence[Row]],
               reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    """Insert the new records of ``rows`` (per kind) and the readings of the new telemetry records.

    Rows are ``(gateway_id, id, ...)``; ``reading_rows`` are ``(gateway_id, record_id, ...)``.
    """
    if conn.dialect.name == "postgresql":
        return _store_postgresql(conn, gateway_id, rows, reading_rows)
    return _store_sqlite(conn, gateway_id, rows, reading_rows)


def _new_readings(out: Mapping[str, set[str]], rows: Mapping[str, Sequence[Row]],
                  reading_rows: Sequence[Row]) -> Sequence[Row]:
    """The readings of the telemetry records stored now."""
    new_telemetry = out.get("telemetry")
    if not new_telemetry or not reading_rows:
        return ()
    if len(new_telemetry) == len(rows["telemetry"]):
        return reading_rows
    return [r for r in reading_rows if r[1] in new_telemetry]


def _late_rollup(cur: Any, new_readings: Sequence[Row], postgresql: bool) -> list[rollups.Rollup]:
    """Partial rollup rows of the readings stored now that are late (before the rollup's ``ingest_ts``: the
    upkeep rolls up the others); PostgreSQL holds the rollup lock shared until the batch commits."""
    if not new_readings:
        return []
    if postgresql:
        rollups.lock_for_ingest(cur)
    return rollups.aggregate(rollups.late(new_readings, rollups.late_before(cur)))


# --- PostgreSQL -------------------------------------------------------------------------------------


def _cols(table: str) -> str:
    return ", ".join(COLUMNS[table])


def _copy_type(column: Column[Any]) -> str | None:
    """The PostgreSQL type whose binary COPY format the column's values are sent in (text for strings
    and JSON: their binary format is their UTF-8 text); None for another type."""
    kind = type(column.type)
    if issubclass(kind, BigInteger):
        return "int8"
    if issubclass(kind, Integer):
        return "int4"
    if issubclass(kind, Float):
        return "float8"
    if issubclass(kind, Boolean):
        return "bool"
    if issubclass(kind, String | JSON):
        return "text"
    return None


def _copy_types(table: Table) -> tuple[str, ...] | None:
    types = tuple(_copy_type(c) for c in table.columns)
    return None if None in types else types  # type: ignore[return-value]


#: Binary COPY types per table, in :data:`COLUMNS` order; None: that table's rows go in text format.
_COPY_TYPES: Final[dict[str, tuple[str, ...] | None]] = {
    t.name: _copy_types(t) for t in (*RECORD_TABLES.values(), readings)
}


def _known_sql(kind: str, param: int) -> tuple[str, bool]:
    """A query for the ids of ``kind`` already stored (the ``param``-th id array), and whether it also
    takes a ``ts`` array (time-keyed tables: the key, and so the record, is ``(gateway_id, id, ts)``)."""
    table = RECORD_TABLES[kind]
    if kind in _TS:
        return (f"SELECT {param}, t.id FROM unnest(%(ids{param})s::text[], %(ts{param})s::int8[]) AS u(id, ts) "
                f"JOIN {table.name} t ON t.gateway_id = %(gw)s AND t.id = u.id AND t.ts = u.ts"), True
    return f"SELECT {param}, id FROM {table.name} WHERE gateway_id = %(gw)s AND id = ANY(%(ids{param})s)", False


def _store_postgresql(conn: Connection, gateway_id: str, rows: Mapping[str, Sequence[Row]],
                      reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    kinds = [kind for kind in RECORD_TABLES if rows.get(kind)]
    if not kinds:
        return {}
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:  # optimistic: a batch sent once holds only new records, and the keys say so
            for kind in kinds:
                _copy(cur, RECORD_TABLES[kind].name, rows[kind])
        except psycopg.errors.UniqueViolation:  # some were stored before: look up which, store the others
            cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            out = _store_new_postgresql(cur, gateway_id, kinds, rows)
        else:
            out = {kind: {row[1] for row in rows[kind]} for kind in kinds}
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        new_readings = _new_readings(out, rows, reading_rows)
        _copy(cur, readings.name, new_readings)
        partial = _late_rollup(cur, new_readings, postgresql=True)
        if partial:
            with cur.copy(f"COPY {rollups.readings_hourly.name} ({', '.join(rollups.COLUMNS)}) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(rollups.COPY_TYPES)
                for row in partial:
                    copy.write_row(row)
    return out


def _store_new_postgresql(cur: Any, gateway_id: str, kinds: Sequence[str],
                          rows: Mapping[str, Sequence[Row]]) -> dict[str, set[str]]:
    """Store the rows whose key is not stored yet (one lookup for every kind); their ids per kind."""
    params: dict[str, Any] = {"gw": gateway_id}
    parts = []
    for i, kind in enumerate(kinds):
        sql, time_keyed = _known_sql(kind, i)
        parts.append(sql)
        params[f"ids{i}"] = [row[1] for row in rows[kind]]
        if time_keyed:
            params[f"ts{i}"] = [row[_TS[kind]] for row in rows[kind]]
    cur.execute(" UNION ALL ".join(parts), params)
    known: dict[str, set[str]] = {kind: set() for kind in kinds}
    for i, rid in cur.fetchall():
        known[kinds[i]].add(rid)
    out: dict[str, set[str]] = {}
    for kind in kinds:
        new = [row for row in rows[kind] if row[1] not in known[kind]]
        _copy(cur, RECORD_TABLES[kind].name, new)
        out[kind] = {row[1] for row in new}
    return out


def _copy(cur: Any, table: str, rows: Sequence[Row]) -> None:
    if not rows:
        return
    types = _COPY_TYPES[table]
    with cur.copy(f"COPY {table} ({_cols(table)}) FROM STDIN" + (" (FORMAT BINARY)" if types else "")) as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# --- SQLite -----------------------------------------------------------------------------------------


def _store_sqlite(conn: Connection, gateway_id: str, rows: Mapping[str, Sequence[Row]],
                  reading_rows: Sequence[Row]) -> dict[str, set[str]]:
    kinds = [kind for kind in RECORD_TABLES if rows.get(kind)]
    raw = conn.connection.driver_connection
    cur = raw.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:  # optimistic, as on PostgreSQL: the primary keys refuse a record stored before
            for kind in kinds:
                _insert_sqlite(cur, RECORD_TABLES[kind].name, rows[kind])
            out = {kind: {row[1] for row in rows[kind]} for kind in kinds}
        except sqlite3.IntegrityError:
            cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            out = _store_new_sqlite(cur, gateway_id, kinds, rows)
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        new_readings = _new_readings(out, rows, reading_rows)
        _insert_sqlite(cur, readings.name, new_readings)
        rollups.append_sqlite(cur, _late_rollup(cur, new_readings, postgresql=False))
    finally:
        cur.close()
    return out


def _store_new_sqlite(cur: Any, gateway_id: str, kinds: Sequence[str],
                      rows: Mapping[str, Sequence[Row]]) -> dict[str, set[str]]:
    """Store the rows whose id is not stored yet for the gateway (the transaction holds the write lock)."""
    out: dict[str, set[str]] = {}
    for kind in kinds:
        table = RECORD_TABLES[kind].name
        batch = rows[kind]
        ts = _TS.get(kind)  # time-keyed: the key is (gateway_id, id, ts)
        stored = {(r[0], r[1]) for r in cur.execute(
            f"SELECT id, {'ts' if ts is not None else 'NULL'} FROM {table} "
            "WHERE gateway_id = ? AND id IN (SELECT value FROM json_each(?))",
            (gateway_id, json.dumps([row[1] for row in batch])))}
        new = [row for row in batch if (row[1], row[ts] if ts is not None else None) not in stored]
        _insert_sqlite(cur, table, new)
        out[kind] = {row[1] for row in new}
    return out


def _insert_sqlite(cur: Any, table: str, rows: Sequence[Row]) -> None:
    if rows:
        marks = ", ".join("?" * len(COLUMNS[table]))
        cur.executemany(f"INSERT INTO {table} ({_cols(table)}) VALUES ({marks})", rows)
