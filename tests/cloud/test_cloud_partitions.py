"""Time-series storage: week partitions (PostgreSQL), rows moved out of the default partition when their week
is created, retention by dropping whole weeks (PostgreSQL) or deleting rows (SQLite); both databases."""

from __future__ import annotations

from typing import Any

from cloud_testkit import BASE_TS, admin_headers, batch, gz, register, scan_record, telemetry_record
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cloud.db import partitions
from cloud.services.partition_upkeep import WEEKS_AHEAD, upkeep

DAY = partitions.DAY_MS


def _records(seq0: int, n: int, ts0: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        rec = telemetry_record("cold-1", seq0 + i)
        rec["msg"]["ts"] = ts0 + i * 60_000
        scan = scan_record("reader-1", seq0 + i)
        scan["msg"]["ts"] = ts0 + i * 60_000
        out += [rec, scan]
    return out


def _sync(client: TestClient, headers: dict[str, str], records: list[dict[str, Any]], batch_id: str) -> Any:
    resp = client.post("/api/v1/sync", content=gz(batch("gw-berlin-1", records, batch_id)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _where(engine: Engine, table: str) -> dict[str, int]:
    """Rows of ``table`` per partition (PostgreSQL) or in the table (SQLite)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return {table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())}
        return {str(name): int(n) for name, n in conn.execute(
            text(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1"))}


def test_rows_wait_in_the_default_partition_until_their_week_is_created(client: TestClient, engine: Engine) -> None:
    gw = register(client)
    week = partitions.week_start(BASE_TS)
    first = _sync(client, gw, _records(0, 30, week + DAY), "b1")
    assert len(first["stored"]) == 60
    postgres = engine.dialect.name == "postgresql"
    if postgres:  # start-up created the weeks around the real today, not this one (2026-09)
        assert _where(engine, "readings") == {"readings_default": 60}
    report = upkeep(engine, retention_days=0, now_ms=week + 3 * DAY)
    name = partitions.partition_name("readings", week)
    if postgres:
        assert name == "readings_w20260921" and name in report.created
        assert _where(engine, "readings") == {name: 60}
        assert _where(engine, "scans") == {"scans_w20260921": 30}
        with engine.connect() as conn:
            starts = [p.start_ts for p in partitions.weeks(conn, "telemetry")]
        assert all(w in starts for w in range(week - 4 * partitions.WEEK_MS, week + WEEKS_AHEAD * partitions.WEEK_MS,
                                              partitions.WEEK_MS))
    else:
        assert report.created == [] and _where(engine, "readings") == {"readings": 60}
    again = _sync(client, gw, _records(0, 30, week + DAY), "b1-retry")  # the same records, now in their week
    assert again["stored"] == [] and len(again["duplicates"]) == 60
    assert upkeep(engine, retention_days=0, now_ms=week + 3 * DAY).created == []  # nothing left to do
    out = client.get("/api/v1/devices/cold-1/readings", headers=admin_headers(),
                     params={"metric": "temperature_c", "from": week, "to": week + 2 * DAY, "max_points": 1})
    assert [p["count"] for p in out.json()["points"]] == [30]


def test_retention_drops_whole_old_weeks_and_keeps_the_recent_ones(client: TestClient, engine: Engine) -> None:
    gw = register(client)
    now = partitions.week_start(BASE_TS) + 2 * DAY
    old, recent = now - 60 * DAY, now - 2 * DAY
    upkeep(engine, retention_days=0, now_ms=old)  # the old weeks existed when their data came
    _sync(client, gw, _records(0, 20, old) + _records(100, 20, recent), "b1")
    _sync(client, gw, _records(200, 5, 10 * DAY), "b2")  # a device clock in 1970: default partition
    report = upkeep(engine, retention_days=30, now_ms=now)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        assert partitions.partition_name("readings", partitions.week_start(old)) in report.dropped
        assert all(n != partitions.partition_name("readings", partitions.week_start(recent)) for n in report.dropped)
        assert report.deleted_rows == 5 + 2 * 5 + 5  # the 1970 rows of the default partitions
        assert sum(_where(engine, "readings").values()) == 40 and "readings_default" not in _where(engine, "readings")
    else:
        assert report.deleted_rows == 25 + 2 * 25 + 25  # telemetry, readings (2 each), scans: old and 1970
        assert _where(engine, "readings") == {"readings": 40}
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT min(ts), max(ts) FROM telemetry")).one()
    assert kept == (recent, recent + 19 * 60_000)
    # a retried batch of records older than the retention is stored again (and goes at the next pass)
    again = _sync(client, gw, _records(0, 20, old), "b1-late")
    assert len(again["stored"]) == 40
    assert upkeep(engine, retention_days=30, now_ms=now).deleted_rows == 20 + 2 * 20 + 20  # PostgreSQL: from the default
