"""Drop ``ix_telemetry_device_ts`` (issue 13: the ingest's cost). The index cost about 1.5 ms of PostgreSQL
CPU per 1,000-record batch (850 telemetry rows) and served only the console's device list and a device's
newest message time, which now read the readings' own ``(device_id, metric, ts)`` index: every telemetry
message holds at least one reading, so the devices and times are the same."""

from __future__ import annotations

from sqlalchemy import Connection, text


def upgrade(conn: Connection) -> None:
    # On PostgreSQL the partitioned index: dropping it drops every partition's index with it.
    conn.execute(text("DROP INDEX IF EXISTS ix_telemetry_device_ts"))
