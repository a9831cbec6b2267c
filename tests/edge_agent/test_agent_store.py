"""edge_agent.store: WAL and migrations, transactions, the outbox, gateway output, retention, padding."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from agent_testkit import BASE_TS, GATEWAY, SITE, inbound, scan, status_msg, telemetry

from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Retention, Store, enqueue, migrate, transaction
from edge_agent.store import outbox as ob
from edge_agent.store.db import PADDED_LENGTHS, connect, padded, used_bytes
from edge_agent.store.retention import HISTORY
from protocols import AlertPayload, ForecastPayload, record_id


def alert(alert_id: str = "a-1") -> AlertPayload:
    return AlertPayload(
        alert_id=alert_id, gateway_id=GATEWAY, kind="system", state="raised", ts=1, message="m"
    )


def test_wal_mode_and_migrations_idempotent(store: Store) -> None:
    conn = store.connect()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert migrate(conn) == []
    assert store.open() == []
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
    assert names == ["0001_initial", "0002_rfid_burst_repeats", "0003_stock", "0004_outbox_lanes",
                     "0005_stock_outboxed_version"]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "telemetry",
        "scans",
        "device_status",
        "device_status_history",
        "dead_letters",
        "outbox",
        "sync_rejected",
        "alerts",
        "forecasts",
        "schema_migrations",
    } <= tables


def test_full_synchronous_is_configurable(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db", "FULL")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_transaction_rolls_back(store: Store) -> None:
    conn = store.connect()
    with pytest.raises(RuntimeError), transaction(conn):
        conn.execute("INSERT INTO outbox VALUES ('x', 'alert', 1, '{}')")
        raise RuntimeError("boom")
    assert ob.depth(conn) == 0


def test_outbox_is_written_with_the_data_in_one_transaction(store: Store) -> None:
    conn = store.connect()
    writer = BatchWriter(conn, SITE, 2000, 4096)
    writer.write([inbound(telemetry(1)), inbound(scan(2, code_type="barcode")), inbound(status_msg(3))], 10)
    ids = {r.id for r in ob.read_oldest(conn, 10)}
    assert ids == {
        record_id("telemetry", "dev-1", "boot-a", 1),
        record_id("scan", "scan-1", "boot-a", 2),
        record_id("device_status", "dev-1", "boot-a", 3),
    }
    # A failure inside the transaction leaves neither the data nor the outbox row behind.
    conn.execute(
        "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        writer.write([inbound(telemetry(4))], 11)
    assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 1
    assert ob.depth(conn) == 3


def forecast() -> ForecastPayload:
    return ForecastPayload(
        forecast_id="f-1",
        gateway_id=GATEWAY,
        site=SITE,
        sku="SKU-1",
        origin="2026-11-23",
        created_ts=1,
        p50=(1.0, 2.0),
        p90=(2.0, 3.0),
        model_version=1,
    )


def test_enqueue_alert_and_forecast(store: Store) -> None:
    conn = store.connect()
    assert enqueue(conn, alert(), 5)
    assert not enqueue(conn, alert(), 6)
    assert enqueue(conn, forecast(), 7)
    rows = ob.read_oldest(conn, 10)
    assert [(r.id, r.kind) for r in rows] == [("alert:a-1", "alert"), ("forecast:f-1", "forecast")]
    assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 1


def test_outbox_delete_and_reject(store: Store) -> None:
    conn = store.connect()
    for i in range(3):
        enqueue(conn, alert(f"a-{i}"), i)
    with transaction(conn):
        assert ob.delete(conn, ["alert:a-0", "alert:nope"]) == 1
        assert ob.move_to_rejected(conn, [("alert:a-1", "bad")], 99) == 1
    assert [r.id for r in ob.read_oldest(conn, 10)] == ["alert:a-2"]
    assert conn.execute("SELECT id, reason, rejected_ts FROM sync_rejected").fetchall() == [
        ("alert:a-1", "bad", 99)
    ]
    assert ob.oldest_created_ts(conn) == 2


def test_retention_id_expressions_match_record_id(store: Store) -> None:
    """Every history table holds a row here, and its SQL id is exactly the outbox id of that row."""
    conn = store.connect()
    writer = BatchWriter(conn, SITE, 2000, 4096)
    # scan 3 repeats scan 2's tag 500 ms later: dropped as an RFID burst repeat (local only)
    burst = scan(3, ts=scan(2).ts + 500)
    writer.write([inbound(telemetry(1)), inbound(scan(2)), inbound(burst), inbound(status_msg(4))], 10)
    enqueue(conn, alert(), 1)
    enqueue(conn, forecast(), 1)
    outbox_kind = {"telemetry": "telemetry", "scans": "scan", "device_status_history": "device_status"}
    outbox_kind |= {"alerts": "alert", "forecasts": "forecast"}
    outboxed = {r.id: r.kind for r in ob.read_oldest(conn, 100)}
    for table, (expr, _) in HISTORY.items():
        sql_ids = {r[0] for r in conn.execute(f"SELECT {expr} FROM {table} t")}
        assert len(sql_ids) == 1, table
        if table == "rfid_burst_repeats":  # never synced: its ids name no outbox record
            assert not sql_ids & outboxed.keys()
            continue
        assert sql_ids == {rid for rid, kind in outboxed.items() if kind == outbox_kind[table]}, table


def _fill(conn: sqlite3.Connection, n: int, start: int = 0) -> None:
    writer = BatchWriter(conn, SITE, 2000, 4096)
    for base in range(start, start + n, 500):
        writer.write([inbound(telemetry(i)) for i in range(base, min(base + 500, start + n))], 1000 + base)


def test_retention_never_drops_unsynced(store: Store) -> None:
    conn = store.connect()
    _fill(conn, 2000)
    with transaction(conn):
        conn.execute(
            "INSERT INTO dead_letters (received_ts, topic, reason, payload, payload_bytes) "
            "VALUES (1, 't', 'r', x'00', 1)"
        )
    result = Retention(conn, quota_bytes=4096).enforce(now_ms=10**13)
    assert result.over_quota
    assert ob.depth(conn) == 2000
    assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 2000  # unsynced history kept
    assert conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0] == 0  # dead letters go


def test_retention_drops_synced_history_oldest_first(store: Store) -> None:
    conn = store.connect()
    _fill(conn, 6000)
    with transaction(conn):  # the first 5000 were synced
        ob.delete(conn, [r.id for r in ob.read_oldest(conn, 5000)])
    full = used_bytes(conn)
    quota = full * 7 // 10
    result = Retention(conn, quota_bytes=quota).enforce(now_ms=10**13)
    assert not result.over_quota and result.used_bytes <= quota
    seqs = [r[0] for r in conn.execute("SELECT seq FROM telemetry ORDER BY seq")]
    assert seqs[-1000:] == list(range(5000, 6000))  # every unsynced row is still there
    assert seqs[0] > 0 and seqs == list(range(seqs[0], 6000))  # oldest went first
    assert ob.depth(conn) == 1000


def test_retention_age_limits(store: Store) -> None:
    conn = store.connect()
    _fill(conn, 10)
    with transaction(conn):
        ob.delete(conn, [r.id for r in ob.read_oldest(conn, 5)])
    result = Retention(conn, quota_bytes=10**9, history_max_age_ms=1, dead_letter_max_age_ms=1).enforce(
        now_ms=10**6
    )
    assert result.deleted == {"telemetry": 5}
    assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 5


def test_padded_repeats_the_last_item_up_to_the_next_length() -> None:
    assert padded([]) == []
    assert padded([1]) == [1] * PADDED_LENGTHS[0]
    items = list(range(PADDED_LENGTHS[0] + 1))
    out = padded(items)
    assert len(out) == PADDED_LENGTHS[1] and out[: len(items)] == items
    assert set(out[len(items) :]) == {items[-1]}
    assert len(padded(list(range(PADDED_LENGTHS[-1])))) == PADDED_LENGTHS[-1]
    with pytest.raises(ValueError, match="chunk"):
        padded(list(range(PADDED_LENGTHS[-1] + 1)))


def test_outbox_delete_counts_each_id_once_whatever_the_padding(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    store.open()
    conn = store.connect()
    try:
        ids = [f"r{i}" for i in range(1203)]
        conn.executemany(
            "INSERT INTO outbox (id, kind, created_ts, payload) VALUES (?, 'reading', 1, '{}')",
            [(i,) for i in ids],
        )
        assert ob.delete(conn, ids[:3] + ["missing"]) == 3
        assert ob.delete(conn, ids[3:]) == 1200
        assert ob.depth(conn) == 0
        # The cache holds one statement per padded length, not one per batch size.
        for n in range(1, 40):
            ob.delete(conn, [f"x{i}" for i in range(n)])
    finally:
        conn.close()


def test_every_table_holds_what_the_agent_writes_into_it(store: Store) -> None:
    """Each table of the schema, filled the way the agent fills it, holds exactly those rows."""
    conn = store.connect()
    writer = BatchWriter(conn, SITE, 2000, 4096)
    batch = [inbound(telemetry(1)), inbound(scan(2)), inbound(scan(3, ts=BASE_TS + 2500)),  # 3 repeats 2's tag
             inbound(status_msg(4)), Inbound(inbound(telemetry(5)).topic, b"{not json", 9, 1)]
    result = writer.write(batch, 10)
    assert result.dead_letters == 1
    assert enqueue(conn, alert(), 11) and enqueue(conn, forecast(), 12)
    with transaction(conn):
        assert ob.move_to_rejected(conn, [("forecast:f-1", "too late")], 13) == 1

    def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in conn.execute(sql)]

    assert rows("SELECT device_id, seq, received_ts, readings FROM telemetry") == [
        ("dev-1", 1, 10, '{"temperature_c":4.5}')]
    assert rows("SELECT device_id, seq, sku, location, direction, qty, tag_id FROM scans") == [
        ("scan-1", 2, "SKU-1", "A-01", "pick", 1, "tag-1")]
    assert rows("SELECT device_id, seq, tag_id FROM rfid_burst_repeats") == [("scan-1", 3, "tag-1")]
    assert rows("SELECT device_id, seq, state, fw_version FROM device_status_history") == [
        ("dev-1", 4, "online", "1.2.3")]
    assert rows("SELECT device_id, seq, state FROM device_status") == [("dev-1", 4, "online")]
    assert rows("SELECT received_ts, reason IS NOT NULL, payload FROM dead_letters") == [(10, 1, b"{not json")]
    assert rows("SELECT alert_id, kind, state FROM alerts") == [("a-1", "system", "raised")]
    assert rows("SELECT forecast_id, sku, origin FROM forecasts") == [("f-1", "SKU-1", "2026-11-23")]
    assert rows("SELECT id, kind, reason, rejected_ts FROM sync_rejected") == [
        ("forecast:f-1", "forecast", "too late", 13)]
    assert sorted(r[0] for r in rows("SELECT id FROM outbox")) == sorted([
        record_id("telemetry", "dev-1", "boot-a", 1), record_id("scan", "scan-1", "boot-a", 2),
        record_id("device_status", "dev-1", "boot-a", 4), "alert:a-1"])
