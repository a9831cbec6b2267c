"""Named migrations of the cloud database (SQLite and PostgreSQL), recorded in ``schema_migrations``.

A migration is one module in ``cloud/db/migrations/`` named ``NNNN_what_it_does.py`` with a
docstring (its first line is the summary ``migrate --status`` shows) and
``upgrade(conn: Connection) -> None``. The module's name is the migration's name; migrations run
in name order, each once, each in its own transaction together with its record. Never edit,
rename or delete a migration that has shipped: add a new one.

Safe when several processes start at once: every migration (and the bootstrap) runs under one
lock, the PostgreSQL advisory lock :data:`LOCK_KEY` (the key the releases before migrations took
around ``create_all``) or SQLite's write lock (``BEGIN IMMEDIATE``); inside the lock the record is
read again, so a migration another process applied meanwhile is skipped. SQLite migrations run
with foreign keys off (so tables can be rebuilt) and every foreign key is checked before commit.

A database made by the last release without migrations (its tables exist, nothing is recorded)
is recognised by the frozen schema of ``0001_initial``, stamped with it, and upgraded from there.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, String, Table, inspect, select, text

from cloud.clock import now_ms
from cloud.db.engine import reader

log = logging.getLogger(__name__)

MIGRATIONS_PACKAGE: Final = "cloud.db.migrations"
INITIAL: Final = "0001_initial"
#: The release whose ``create_all`` schema ``0001_initial`` freezes.
PRE_MIGRATION_RELEASE: Final = "e60cd69"
LOCK_KEY: Final = 7263512001
_NAME: Final = re.compile(r"^\d{4}_[a-z0-9_]+$")

schema_migrations: Final = Table(
    "schema_migrations",
    MetaData(),
    Column("name", String(200), primary_key=True),
    Column("applied_ts", BigInteger, nullable=False),
    #: "applied" (run here) or "stamped" (found already in place in a pre-migration database).
    Column("how", String(16), nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
)


class MigrationError(RuntimeError):
    """The database cannot be brought to the schema of this code; the message says why."""


class SchemaOutdated(MigrationError):
    """Migrations are pending and this process was told not to apply them."""

    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        super().__init__(f"the database lacks the migrations {', '.join(pending)}: run `edgehouse-cloud migrate` "
                         "(or start with MIGRATE_ON_START=true)")


@dataclass(frozen=True)
class Migration:
    name: str
    summary: str
    upgrade: Callable[[Connection], None]


@dataclass(frozen=True)
class MigrationState:
    name: str
    summary: str
    #: unknown: recorded in the database but not in this code (a newer release applied it).
    state: Literal["applied", "stamped", "pending", "unknown"]
    applied_ts: int | None = None
    duration_ms: int | None = None


def discover(package: str = MIGRATIONS_PACKAGE) -> tuple[Migration, ...]:
    """Every migration module of ``package``, in name order."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if _NAME.match(m.name))
    found = []
    for name in names:
        module = importlib.import_module(f"{package}.{name}")
        upgrade = getattr(module, "upgrade", None)
        if not callable(upgrade):
            raise MigrationError(f"migration {name} has no upgrade(conn) function")
        summary = (module.__doc__ or "").strip().splitlines()
        found.append(Migration(name, summary[0] if summary else "", upgrade))
    return tuple(found)


def status(engine: Engine, migrations: tuple[Migration, ...] | None = None) -> list[MigrationState]:
    """Each migration of this code (applied, stamped or pending), then any recorded one it does not know."""
    migrations = discover() if migrations is None else migrations
    recorded = _recorded(engine)
    out = []
    for m in migrations:
        row = recorded.pop(m.name, None)
        if row is None:
            out.append(MigrationState(m.name, m.summary, "pending"))
        else:
            out.append(MigrationState(m.name, m.summary, row.how, int(row.applied_ts), int(row.duration_ms)))
    out += [MigrationState(name, "", "unknown", int(row.applied_ts), int(row.duration_ms))
            for name, row in sorted(recorded.items())]
    return out


def pending(engine: Engine, migrations: tuple[Migration, ...] | None = None) -> list[str]:
    return [s.name for s in status(engine, migrations) if s.state == "pending"]


def check_current(engine: Engine, migrations: tuple[Migration, ...] | None = None) -> None:
    """Raise :class:`SchemaOutdated` when a migration of this code is not applied."""
    missing = pending(engine, migrations)
    if missing:
        raise SchemaOutdated(missing)


def ensure_schema(engine: Engine, apply: bool) -> list[str]:
    """At start-up: apply the pending migrations, or (``apply`` off) refuse to run on an outdated schema."""
    if apply:
        return migrate(engine)
    check_current(engine)
    return []


def migrate(engine: Engine, migrations: tuple[Migration, ...] | None = None) -> list[str]:
    """Apply every pending migration; the names applied (or stamped) by this call."""
    migrations = discover() if migrations is None else migrations
    recorded = _recorded(engine)
    todo = [m for m in migrations if m.name not in recorded]
    if not todo:
        return []
    done = _bootstrap(engine, migrations) if not recorded else []
    for m in todo:
        if m.name in done:
            continue
        started = time.perf_counter()
        with _locked(engine) as conn:
            if conn.execute(select(schema_migrations.c.name).where(schema_migrations.c.name == m.name)).first():
                continue  # another process applied it while we waited for the lock
            m.upgrade(conn)
            ms = int((time.perf_counter() - started) * 1000)
            _record(conn, m.name, "applied", ms)
        log.info("applied migration %s in %d ms", m.name, ms)
        done.append(m.name)
    unknown = [s.name for s in status(engine, migrations) if s.state == "unknown"]
    if unknown:
        log.warning("the database has migrations this code does not know (a newer release?): %s", ", ".join(unknown))
    return done


# internals -------------------------------------------------------------------------------------


def _recorded(engine: Engine) -> dict[str, Any]:
    with reader(engine) as conn:  # SQLite: a read, no write lock
        if not inspect(conn).has_table(schema_migrations.name):
            return {}
        return {row.name: row for row in conn.execute(select(schema_migrations))}


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the migration lock (SQLite: foreign keys off, checked before commit)."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _sqlite_pragma(conn, "foreign_keys=OFF")  # only takes effect outside a transaction
        try:
            with conn.begin():
                if sqlite:
                    if not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                        raise MigrationError("SQLite engines must come from cloud.db.engine.build_engine "
                                             "(BEGIN IMMEDIATE transactions)")
                else:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
                yield conn
                if sqlite:
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise MigrationError(f"{len(bad)} foreign key violations, e.g. {[tuple(r) for r in bad[:3]]}")
        finally:
            if sqlite:
                _sqlite_pragma(conn, "foreign_keys=ON")


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    cursor = conn.connection.cursor()
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _record(conn: Connection, name: str, how: str, duration_ms: int) -> None:
    conn.execute(schema_migrations.insert().values(name=name, applied_ts=now_ms(), how=how,
                                                   duration_ms=duration_ms))


def _bootstrap(engine: Engine, migrations: tuple[Migration, ...]) -> list[str]:
    """Create ``schema_migrations``; stamp a database of the last release without migrations."""
    with _locked(engine) as conn:
        schema_migrations.create(conn, checkfirst=True)
        if conn.execute(select(schema_migrations.c.name).limit(1)).first() is not None:
            return []  # another process bootstrapped it meanwhile
        initial = next((m for m in migrations if m.name == INITIAL), None)
        if initial is None:
            return []
        if not _pre_migration_schema(conn):
            return []
        started = time.perf_counter()
        initial.upgrade(conn)  # creates only the tables that release would have created at its next start
        _record(conn, INITIAL, "stamped", int((time.perf_counter() - started) * 1000))
    log.info("recognised a database of release %s (no migration recorded): stamped %s", PRE_MIGRATION_RELEASE,
             INITIAL)
    return [INITIAL]


def _pre_migration_schema(conn: Connection) -> bool:
    """Whether the database holds tables of the pre-migration release; raise if they are not its tables."""
    frozen = importlib.import_module(f"{MIGRATIONS_PACKAGE}.{INITIAL}").metadata
    insp = inspect(conn)
    present = sorted(set(insp.get_table_names()) & set(frozen.tables))
    for name in present:
        expected = set(frozen.tables[name].columns.keys())
        actual = {c["name"] for c in insp.get_columns(name)}
        if actual != expected:
            missing, extra = sorted(expected - actual), sorted(actual - expected)
            raise MigrationError(
                f"the database has tables but no migration record, and table {name} is not the one release "
                f"{PRE_MIGRATION_RELEASE} created (missing columns {missing or 'none'}, unknown columns "
                f"{extra or 'none'}): it was not made by a release of Edgehouse this code can upgrade")
    return bool(present)
