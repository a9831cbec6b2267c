"""Named schema migrations, applied once each and recorded in ``schema_migrations``.

Append new migrations to :data:`MIGRATIONS`; never edit or reorder one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from edge_agent.store.db import transaction


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    sql: str


_INITIAL = """
CREATE TABLE telemetry (
    device_id   TEXT    NOT NULL,
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,          -- device clock, ms
    received_ts INTEGER NOT NULL,          -- gateway clock, ms
    msg_id      TEXT    NOT NULL,
    readings    TEXT    NOT NULL,          -- JSON object {metric: value}
    PRIMARY KEY (device_id, boot_id, seq)
);
CREATE TABLE scans (
    device_id   TEXT    NOT NULL,
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    received_ts INTEGER NOT NULL,
    msg_id      TEXT    NOT NULL,
    code_type   TEXT    NOT NULL,
    sku         TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    direction   TEXT    NOT NULL,
    qty         INTEGER NOT NULL,
    reader_id   TEXT    NOT NULL,
    tag_id      TEXT,
    PRIMARY KEY (device_id, boot_id, seq)
);
CREATE INDEX scans_rfid_ts ON scans (ts) WHERE code_type = 'rfid';
CREATE TABLE device_status_history (
    device_id   TEXT    NOT NULL,
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    received_ts INTEGER NOT NULL,
    msg_id      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    fw_version  TEXT    NOT NULL,
    uptime_s    REAL    NOT NULL,
    reason      TEXT,
    PRIMARY KEY (device_id, boot_id, seq)
);
CREATE TABLE device_status (               -- latest status per device (by device clock)
    device_id   TEXT    PRIMARY KEY,
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    received_ts INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    fw_version  TEXT    NOT NULL,
    uptime_s    REAL    NOT NULL,
    reason      TEXT
);
CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ts   INTEGER NOT NULL,
    topic         TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    field         TEXT,
    payload       BLOB    NOT NULL,        -- truncated to ingest.dead_letter_max_bytes
    payload_bytes INTEGER NOT NULL         -- original size
);
CREATE TABLE outbox (                      -- rowid order = oldest first
    id         TEXT    PRIMARY KEY,        -- protocols.record_id / alert_id / forecast_id
    kind       TEXT    NOT NULL,
    created_ts INTEGER NOT NULL,           -- gateway clock, ms
    payload    TEXT    NOT NULL            -- JSON of a protocols SyncRecord
);
CREATE TABLE sync_rejected (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    created_ts  INTEGER NOT NULL,
    rejected_ts INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    payload     TEXT    NOT NULL
);
CREATE TABLE alerts (
    alert_id TEXT    PRIMARY KEY,
    ts       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    state    TEXT    NOT NULL,
    severity TEXT    NOT NULL,
    device_id TEXT,
    payload  TEXT    NOT NULL
);
CREATE TABLE forecasts (
    forecast_id TEXT    PRIMARY KEY,
    created_ts  INTEGER NOT NULL,
    sku         TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    payload     TEXT    NOT NULL
);
"""

# RFID reads dropped as burst repeats are kept (never synced) so that a later redelivery or
# duplicate of one is recognised by its key, like any other duplicate, instead of passing the
# burst filter once the filter has forgotten that (reader, tag) pair.
_RFID_BURST_REPEATS = """
CREATE TABLE rfid_burst_repeats (
    device_id   TEXT    NOT NULL,
    boot_id     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    received_ts INTEGER NOT NULL,
    reader_id   TEXT    NOT NULL,
    tag_id      TEXT    NOT NULL,
    PRIMARY KEY (device_id, boot_id, seq)
);
"""

# Stock kept from committed scans (edge_agent/store/stock.py), updated in the ingest transaction.
# ``stock``: one row per (site, location, sku) position; ``stock_discrepancies``: one row per cycle
# count (keyed by the count scan), which is also the count history the book orders counts by.
# ``scans_position_ts`` serves the sums of movements after a count (a count or a late movement).
_STOCK = """
CREATE TABLE stock (
    site              TEXT    NOT NULL,
    location          TEXT    NOT NULL,
    sku               TEXT    NOT NULL,
    on_hand           INTEGER NOT NULL,    -- may be negative: flagged, never clipped
    version           INTEGER NOT NULL,    -- +1 per committed change (the sync record's version)
    last_scan_ts      INTEGER NOT NULL,    -- device clock of the newest scan that changed it
    updated_ts        INTEGER NOT NULL,    -- gateway clock of the last change
    count_ts          INTEGER,             -- the latest cycle count applied (NULL: none yet)
    count_device_id   TEXT,
    count_boot_id     TEXT,
    count_seq         INTEGER,
    count_qty         INTEGER,
    stockout_alert_id TEXT,                -- the open stock-out alert (NULL: none)
    PRIMARY KEY (site, location, sku)
);
CREATE TABLE stock_discrepancies (
    device_id     TEXT    NOT NULL,        -- the count scan
    boot_id       TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    site          TEXT    NOT NULL,
    location      TEXT    NOT NULL,
    sku           TEXT    NOT NULL,
    ts            INTEGER NOT NULL,        -- the count's device clock
    counted       INTEGER NOT NULL,
    expected      INTEGER NOT NULL,        -- the book at ts
    revision      INTEGER NOT NULL,        -- +1 when a late movement changed expected
    received_ts   INTEGER NOT NULL,
    updated_ts    INTEGER NOT NULL,
    PRIMARY KEY (device_id, boot_id, seq)
);
CREATE INDEX stock_discrepancies_position ON stock_discrepancies (site, location, sku, ts);
CREATE INDEX scans_position_ts ON scans (location, sku, ts);
"""

#: Outbox lanes (sync over thin links): alerts and device status (lane 0) go before data (lane 1); within
#: data, the live window before the backlog, each oldest first. The lane is derived from the kind, so no
#: writer has to know about it; the index serves every lane read, depth and oldest-per-lane query.
_OUTBOX_LANES = """
ALTER TABLE outbox ADD COLUMN lane INTEGER GENERATED ALWAYS AS
    (CASE WHEN kind IN ('alert', 'device_status') THEN 0 ELSE 1 END) VIRTUAL;
CREATE INDEX outbox_lane_created ON outbox (lane, created_ts);
"""

# Positions are queued for sync by the stock worker (edge_agent/stock_worker.py), not per ingest batch:
# ``outboxed_version`` is the version whose record is in (or went through) the outbox; a position with
# ``version > outboxed_version`` has a change still to queue.
_STOCK_OUTBOXED = """
ALTER TABLE stock ADD COLUMN outboxed_version INTEGER NOT NULL DEFAULT 0;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", _INITIAL),
    Migration("0002_rfid_burst_repeats", _RFID_BURST_REPEATS),
    Migration("0003_stock", _STOCK),
    Migration("0004_outbox_lanes", _OUTBOX_LANES),
    Migration("0005_stock_outboxed_version", _STOCK_OUTBOXED),
)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (our migrations hold no ';' inside literals)."""
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def applied(conn: sqlite3.Connection) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ts INTEGER NOT NULL)"
    )
    return [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their names."""
    done = set(applied(conn))
    newly = []
    for migration in migrations:
        if migration.name in done:
            continue
        with transaction(conn):
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_ts) VALUES (?, ?)",
                (migration.name, int(time.time() * 1000)),
            )
        newly.append(migration.name)
    return newly
