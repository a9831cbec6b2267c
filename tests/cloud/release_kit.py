"""Databases made by an earlier release's own code, and the schema and contents of a database.

:func:`checkout_release` extracts a commit's ``cloud``, ``protocols`` and ``models`` from this
repository's git history (local, no network); :func:`run_release` runs a script with that tree
first on the path, so the old release creates and fills a database exactly as it did in the field.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, select, text

from tests.helpers.postgres import fresh_database

#: The last release without named migrations (its create_all schema is 0001_initial).
PREVIOUS_RELEASE = "e60cd69"
REPO = Path(__file__).resolve().parents[2]


def checkout_release(commit: str, dest: Path) -> Path:
    """The packages of ``commit`` under ``dest`` (``git archive``; needs the repository's history)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "cloud", "protocols", "models"],
                             check=True, capture_output=True, timeout=60).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_release(tree: Path, script: str, *args: str, timeout_s: float = 120) -> str:
    """Run ``script`` with the release in ``tree`` (and not this checkout) on the path; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", script, *args], check=False, cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise AssertionError(f"the release's script failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


@contextmanager
def scratch_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of its own (PostgreSQL: created here and dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'scratch-{secrets.token_hex(4)}.db'}"
        return
    with fresh_database() as url:
        yield url


def schema_of(engine: Engine, skip: frozenset[str] = frozenset({"schema_migrations"})) -> dict[str, Any]:
    """Tables with their columns (type, nullable, default), primary key (in order), foreign keys, indexes
    and unique constraints, as reflected from the database: two databases with equal results answer every
    query alike. Column order and constraint names other than indexes' are left out."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    partition_keys, partitions = _partitioning(engine)
    for table in sorted(set(insp.get_table_names()) - skip - partitions):
        columns = {c["name"]: (_type_name(c["type"]), bool(c["nullable"]), _default(c.get("default")))
                   for c in insp.get_columns(table)}
        out[table] = {
            "columns": columns,
            "primary_key": tuple(insp.get_pk_constraint(table)["constrained_columns"]),
            "foreign_keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                    tuple(fk["referred_columns"])) for fk in insp.get_foreign_keys(table)),
            "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]),
                               tuple(ix.get("include_columns") or ()))
                              for ix in insp.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "partitioned_by": partition_keys.get(table),
        }
    return out


def _partitioning(engine: Engine) -> tuple[dict[str, str], frozenset[str]]:
    """PostgreSQL: the partition key of each partitioned table, and the names of the partitions (which
    the service creates as time goes on: not part of the schema)."""
    if engine.dialect.name != "postgresql":
        return {}, frozenset()
    with engine.connect() as conn:
        keys = {r[0]: r[1] for r in conn.execute(text(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"))}
        parts = frozenset(r[0] for r in conn.execute(text("SELECT relname FROM pg_class WHERE relispartition "
                                                          "AND relkind IN ('r', 'p')")))
    return keys, parts


def _type_name(column_type: Any) -> str:
    return str(column_type.compile()).upper() if hasattr(column_type, "compile") else str(column_type)


def _default(value: Any) -> str | None:
    return None if value is None else str(value).strip("'\"() ")


def contents_of(engine: Engine, skip: frozenset[str] = frozenset({"schema_migrations"})) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (bytes as hex), sorted, for comparing two states of a database."""
    meta = MetaData()
    meta.reflect(engine)
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name in skip:
                continue
            rows = [{k: (v.hex() if isinstance(v, bytes | memoryview) else v) for k, v in row._mapping.items()}
                    for row in conn.execute(select(table))]
            out[name] = sorted(rows, key=lambda r: repr(sorted(r.items())))
    return out
