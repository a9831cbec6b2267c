"""Opening the agent's SQLite database: pragmas, transactions, size accounting.

Every thread opens its own connection (sqlite3 connections are bound to their thread).
Connections run in autocommit mode; :func:`transaction` issues ``BEGIN IMMEDIATE`` so two
writers never deadlock upgrading a read lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]

BUSY_TIMEOUT_MS = 10_000


#: Auto-checkpoint threshold of ordinary connections (SQLite's default).
DEFAULT_AUTOCHECKPOINT_PAGES = 1000
#: Page cache of a connection, KiB: the ingest writer's. On the ingest bench 1 MiB ingests as
#: fast as 2 MiB (pages it misses come from the OS page cache) and peaks 1 MB lower.
DEFAULT_CACHE_KIB = 1024
#: Page cache of the threads that read forward through recent rows (scoring, forecasts, sync):
#: those pages were just written and sit in the OS page cache, so a large private cache buys
#: nothing but resident memory.
READER_CACHE_KIB = 512
#: Largest WAL kept on disk after a checkpoint reset it.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def connect(
    path: Path | str,
    synchronous: Synchronous = "NORMAL",
    autocheckpoint_pages: int = DEFAULT_AUTOCHECKPOINT_PAGES,
    cache_kib: int = DEFAULT_CACHE_KIB,
) -> sqlite3.Connection:
    """Open a connection with the agent's pragmas.

    WAL + ``synchronous=NORMAL``: a committed transaction is in the WAL file before ``COMMIT``
    returns, so it survives the agent process dying at any moment (``kill -9``), which is
    what we promise before acknowledging an MQTT message. Only the last transactions before a
    power loss or OS crash may roll back (the WAL is fsynced at checkpoints, not per commit).
    ``FULL`` fsyncs the WAL on every commit: power-loss durable, roughly 10-25 % slower here.

    ``autocheckpoint_pages``: a commit that finds the WAL larger than this checkpoints it on
    the committing thread (fsyncs included). The ingest connection raises it so that the
    :class:`~edge_agent.store.checkpoint.Checkpointer` thread does that work instead.

    ``cache_kib``: this connection's page cache; each connection has its own, so threads that
    only checkpoint or delete in bulk ask for less than the ingest and scoring threads.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=True)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Must precede the first table of a new database; a no-op afterwards.
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal" and str(path) != ":memory:":
        raise sqlite3.OperationalError(f"cannot enable WAL on {path} (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA wal_autocheckpoint={int(autocheckpoint_pages)}")
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")  # negative: KiB, a bound on RSS
    return conn


#: Lengths that variable-length statements (``IN (?, ...)``, ``VALUES (...), ...``) are padded
#: to. Python's sqlite3 caches up to 128 prepared statements per connection and every distinct
#: length is a distinct statement: unpadded, the ingest connection's cache held one compiled
#: statement per batch size seen (8.6 MB on the ingest bench); padded, at most four per shape.
PADDED_LENGTHS: tuple[int, ...] = (16, 128, 500, 1000)


def padded(items: Sequence[T]) -> list[T]:
    """``items`` lengthened to the next of :data:`PADDED_LENGTHS` by repeating the last one.

    Only for statements where a repeated value changes nothing (set membership, ``IN`` lists).
    Longer inputs must be chunked by the caller to at most ``PADDED_LENGTHS[-1]``.
    """
    n = len(items)
    if n == 0:
        return []
    if n > PADDED_LENGTHS[-1]:
        raise ValueError(f"{n} items: chunk to at most {PADDED_LENGTHS[-1]}")
    target = next(length for length in PADDED_LENGTHS if length >= n)
    return [*items, *([items[-1]] * (target - n))]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; roll back and re-raise on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of live pages (file size minus free pages); what the disk quota is checked against."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def release_free_pages(conn: sqlite3.Connection) -> None:
    """Give free pages back to the file system (needs ``auto_vacuum=INCREMENTAL``)."""
    # executescript steps the pragma to completion; execute() would free a single page.
    conn.executescript("PRAGMA incremental_vacuum;")
