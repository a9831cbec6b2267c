"""edge_agent.ingest_batch: decode, dead letters, dedup, RFID bursts, device status, padded lookups."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from agent_testkit import BASE_TS, SITE, inbound, scan, status_msg, telemetry

from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from protocols import device_topic, encode


def writer(store: Store, window_ms: int = 2000, dead_max: int = 16) -> BatchWriter:
    w = BatchWriter(store.connect(), SITE, window_ms, dead_max)
    w.load_state()
    return w


def count(store: Store, table: str) -> int:
    return int(store.connect().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_duplicates_in_batch_and_across_batches(store: Store) -> None:
    w = writer(store)
    r1 = w.write([inbound(telemetry(1)), inbound(telemetry(1)), inbound(telemetry(2))], 1)
    assert r1.stored["telemetry"] == 2 and r1.duplicates == 1
    r2 = w.write([inbound(telemetry(2)), inbound(telemetry(3)), inbound(telemetry(1, boot="boot-b"))], 2)
    assert r2.stored["telemetry"] == 2 and r2.duplicates == 1
    assert count(store, "telemetry") == 4 and count(store, "outbox") == 4


def test_dead_letters_keep_reason_field_topic_and_truncated_bytes(store: Store) -> None:
    w = writer(store, dead_max=16)
    good = telemetry(1)
    bad_value = encode(good).replace(b"4.5", b'"4.5"')
    batch = [
        Inbound("not/ours", b"x", 1, 1),
        Inbound(device_topic(SITE, "dev-1", "telemetry"), b"{not json" + b"x" * 100, 2, 1),
        Inbound(device_topic(SITE, "dev-1", "telemetry"), bad_value, 3, 1),
        Inbound(device_topic(SITE, "dev-1", "scan"), encode(good), 4, 1),  # schema vs topic kind
        Inbound(device_topic(SITE, "dev-2", "telemetry"), encode(good), 5, 1),  # device_id vs topic
        Inbound(device_topic("other-site", "dev-1", "telemetry"), encode(good), 6, 1),
        inbound(good, 7),
    ]
    result = w.write(batch, 5)
    assert result.dead_letters == 6 and result.stored["telemetry"] == 1
    rows = (
        store.connect()
        .execute("SELECT topic, reason, field, payload, payload_bytes FROM dead_letters ORDER BY id")
        .fetchall()
    )
    assert rows[0][0] == "not/ours" and rows[0][2] == "topic"
    assert len(rows[1][3]) == 16 and rows[1][4] == 109
    assert rows[2][2] == "body.readings.0.value"
    assert rows[3][2] == "schema"
    assert rows[4][2] == "device_id" and "dev-2" in rows[4][1]
    assert "site" in rows[5][1]


def test_rfid_burst_window_uses_device_time(store: Store) -> None:
    w = writer(store, window_ms=2000)
    batch = [
        inbound(scan(1, ts=BASE_TS)),
        inbound(scan(2, ts=BASE_TS + 500)),  # same tag, same reader, inside the window
        inbound(scan(3, ts=BASE_TS + 600, tag="tag-2")),  # other tag
        inbound(scan(4, ts=BASE_TS + 700, reader="reader-2")),  # other reader
        inbound(scan(5, ts=BASE_TS + 800, code_type="barcode")),  # barcodes are never burst-filtered
        inbound(scan(6, ts=BASE_TS + 2500)),  # outside the window of the accepted read
    ]
    result = w.write(batch, 1)
    assert result.rfid_burst_dropped == 1 and result.stored["scan"] == 5


def test_rfid_burst_state_survives_restart(store: Store) -> None:
    writer(store).write([inbound(scan(1, ts=BASE_TS))], 1)
    again = writer(store)  # a new process: state rebuilt from the scans table
    result = again.write([inbound(scan(2, ts=BASE_TS + 1000)), inbound(scan(3, ts=BASE_TS + 3000))], 2)
    assert result.rfid_burst_dropped == 1 and result.stored["scan"] == 1


def test_rolled_back_batch_does_not_poison_burst_state(store: Store) -> None:
    w = writer(store)
    conn_trigger = store.connect()
    conn_trigger.execute("CREATE TRIGGER t BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(sqlite3.IntegrityError):
        w.write([inbound(scan(1, ts=BASE_TS))], 1)
    conn_trigger.execute("DROP TRIGGER t")
    assert w.write([inbound(scan(1, ts=BASE_TS))], 2).stored["scan"] == 1


def test_device_status_latest_and_history(store: Store) -> None:
    w = writer(store)
    w.write([inbound(status_msg(2, state="offline")), inbound(status_msg(1, state="online"))], 1)
    conn = store.connect()
    assert conn.execute("SELECT state, seq FROM device_status").fetchall() == [("offline", 2)]
    assert count(store, "device_status_history") == 2
    ids = sorted(r.id for r in ob.read_oldest(conn, 10))
    assert ids == ["device_status:dev-1:boot-a:1", "device_status:dev-1:boot-a:2"]


def test_ingest_dedup_is_exact_at_every_padded_length(tmp_path: Path) -> None:
    """Batches of every size around the padded lengths: duplicates found, nothing else dropped."""
    store = Store(tmp_path / "agent.db")
    store.open()
    w = BatchWriter(store.connect(), SITE, 2000, 16)
    w.load_state()
    stored = 0
    seq = 0
    for size in (1, 15, 16, 17, 127, 128, 129, 250):
        fresh = [inbound(telemetry(seq + i)) for i in range(size)]
        seq += size
        again = fresh[: max(1, size // 3)]  # a third are re-deliveries of this same batch
        result = w.write(fresh + again, 1)
        assert result.stored["telemetry"] == size and result.duplicates == len(again)
        stored += size
        assert w.write(again, 2).duplicates == len(again)  # and of an earlier, committed one
    conn = store.connect()
    try:
        assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == stored
    finally:
        conn.close()
