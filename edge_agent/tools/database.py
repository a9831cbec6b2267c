"""The agent's store as the operator's tools see it: a sqlite-utils ``Database`` on a connection
with the agent's own pragmas (WAL, busy timeout), read-only unless a tool must write.

Safe next to a running agent: in WAL mode a reader never blocks the ingest writer and sees one
consistent snapshot per statement; the only writer among the tools (dead-letter replay) takes
short ``BEGIN IMMEDIATE`` transactions, waiting up to the busy timeout for the agent's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from edge_agent.store.db import READER_CACHE_KIB, connect

#: Tables of SQLite's own that the tools never list.
_INTERNAL_PREFIX = "sqlite_"


class ToolError(Exception):
    """What an operator's command cannot do, in words fit to print (the CLI exits 1 with it)."""


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    rows: int
    columns: tuple[str, ...]


def open_database(path: Path, writable: bool = False) -> sqlite_utils.Database:
    """The store at ``path`` (never created here); ``PRAGMA query_only`` unless ``writable``."""
    if not path.is_file():
        raise ToolError(f"no agent database at {path} (is data_dir right? has the agent run once?)")
    try:
        conn = connect(path, cache_kib=READER_CACHE_KIB)
        if not writable:
            conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise ToolError(f"cannot open {path}: {exc}") from None
    db = sqlite_utils.Database(conn, execute_plugins=False)
    if not db["schema_migrations"].exists():
        db.close()
        raise ToolError(f"{path} is not an agent database (no schema_migrations table)")
    return db


def tables(db: sqlite_utils.Database) -> list[TableInfo]:
    """Every table of the store with its row count and columns, by name."""
    out = []
    for name in sorted(db.table_names()):
        if name.startswith(_INTERNAL_PREFIX):
            continue
        table = db.table(name)
        out.append(TableInfo(name, table.count, tuple(c.name for c in table.columns)))
    return out


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: Iterator[dict[str, Any]]


def query(
    db: sqlite_utils.Database, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> QueryResult:
    """One SQL statement (read-only on a read-only database); rows stream as dicts."""
    try:
        cursor = db.execute(sql, params or [])
    except (sqlite3.Error, ValueError) as exc:  # ProgrammingError is an sqlite3.Error
        raise ToolError(f"query failed: {exc}") from None
    columns = tuple(d[0] for d in cursor.description or ())

    def rows() -> Iterator[dict[str, Any]]:
        for row in cursor:
            yield dict(zip(columns, row, strict=True))

    return QueryResult(columns, rows())
