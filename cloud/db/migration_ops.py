"""Schema changes that migrations need on both SQLite and PostgreSQL (SQLAlchemy Core).

Plain ``table.create(conn)`` and ``index.create(conn)`` already work on both databases; this
module adds what differs between them: adding a column, and rebuilding a table whose keys change
(SQLite cannot alter a primary key or a foreign key, so the table is copied into its new shape).
Every function runs inside the migration's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Table, inspect, text
from sqlalchemy.schema import CreateColumn, CreateTable


def add_column(conn: Connection, table: str, column: Column[Any]) -> None:
    """``ALTER TABLE table ADD COLUMN ...``; a NOT NULL column needs a ``server_default``."""
    if not column.nullable and column.server_default is None:
        raise ValueError(f"{table}.{column.name}: a NOT NULL column added to a table needs a server_default")
    ddl = CreateColumn(column).compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {_q(conn, table)} ADD COLUMN {ddl}"))


def primary_key_name(conn: Connection, table: str) -> str:
    """The name of ``table``'s primary key constraint (PostgreSQL names it ``<table>_pkey``)."""
    name = inspect(conn).get_pk_constraint(table).get("name")
    if not name:
        raise ValueError(f"{table} has no named primary key")
    return str(name)


def foreign_key_names(conn: Connection, table: str, referred_table: str) -> list[str]:
    """Names of ``table``'s foreign keys to ``referred_table``."""
    return [str(fk["name"]) for fk in inspect(conn).get_foreign_keys(table)
            if fk["referred_table"] == referred_table and fk.get("name")]


def rebuild_sqlite_table(conn: Connection, table: Table, select_sql: str) -> int:
    """Give an SQLite table the shape of ``table`` by copying it; the number of rows copied.

    ``select_sql`` reads the old table (still under its name) and yields the new table's columns in
    order. The new table is created as ``<name>__new``, filled, the old one (and its indexes)
    dropped, the new one renamed and ``table``'s indexes created. The migrator runs migrations
    with foreign keys off and checks them all before committing (SQLite's documented procedure).
    """
    if conn.dialect.name != "sqlite":
        raise ValueError("rebuild_sqlite_table is for SQLite; alter the table on PostgreSQL")
    name, scratch = table.name, f"{table.name}__new"
    ddl = str(CreateTable(table).compile(dialect=conn.dialect)).strip()
    head = f"CREATE TABLE {_q(conn, name)} ("
    if not ddl.startswith(head):
        raise ValueError(f"unexpected DDL for {name}: {ddl[:80]!r}")
    conn.execute(text(f"CREATE TABLE {_q(conn, scratch)} (" + ddl.removeprefix(head)))  # no indexes yet
    columns = ", ".join(_q(conn, c.name) for c in table.columns)
    copied = conn.execute(text(f"INSERT INTO {_q(conn, scratch)} ({columns}) {select_sql}")).rowcount
    conn.execute(text(f"DROP TABLE {_q(conn, name)}"))
    conn.execute(text(f"ALTER TABLE {_q(conn, scratch)} RENAME TO {_q(conn, name)}"))
    for index in table.indexes:
        index.create(conn)
    return int(copied)


def _q(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
