"""The watermark of the readings' hourly rollup (``rollup_watermark``, issue 13): the rollup counts every
reading before it and none after it; closed hours are rolled up in bulk off the ingest path
(``cloud.db.rollups.advance``). It starts :data:`GRACE_MS` before the hour of the migration: the rollup
holds every reading stored so far (migration 0010 and ingest until now), and the hours from the watermark
on are recomputed from the readings when they are rolled up. The index ``ix_readings_ts`` (BRIN on
PostgreSQL, B-tree on SQLite) lets that hourly pass read one hour of readings instead of a whole week's
partition (PostgreSQL) or the whole table (SQLite)."""

from __future__ import annotations

import time
from typing import Final

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, insert, text

HOUR_MS: Final = 3_600_000
GRACE_MS: Final = 6 * HOUR_MS

_rollup_watermark: Final = Table(
    "rollup_watermark",
    MetaData(),
    Column("name", String(64), primary_key=True),
    Column("hour_ts", BigInteger, nullable=False),
    Column("ingest_ts", BigInteger, nullable=False),
)


def upgrade(conn: Connection) -> None:
    _rollup_watermark.create(conn)
    # autosummarize: a page range is summarized as soon as it fills, so the newest hours (the ones the pass
    # reads) are found through the index too, not read whole until the next VACUUM
    using = " USING brin" if conn.dialect.name == "postgresql" else ""
    options = " WITH (autosummarize = on)" if using else ""
    conn.execute(text(f"CREATE INDEX ix_readings_ts ON readings{using} (ts){options}"))
    # the rollup's own hour-range deletes (advance, rebuild, trim) find their rows by hour
    conn.execute(text("CREATE INDEX ix_readings_hourly_hour ON readings_hourly (hour_ts)"))
    now = int(time.time() * 1000)
    start = now - now % HOUR_MS - GRACE_MS
    conn.execute(insert(_rollup_watermark).values(name="readings_hourly", hour_ts=start, ingest_ts=start))
