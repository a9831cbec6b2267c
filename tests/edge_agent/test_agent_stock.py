"""edge_agent.store.stock: positions and cycle-count discrepancies from committed scans.

The book is checked against firmware_sim.stock_truth (a plain replay of every scan in device-time
order) on random streams delivered in random order, in random batches, with duplicates, burst
repeats and a writer restarted in between (state lives in SQLite only).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from agent_testkit import BASE_TS, SITE, inbound

from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from firmware_sim.stock_truth import StockTruth
from protocols import ScanBody, ScanMessage


def scan_msg(seq: int, direction: str, qty: int, ts: int, sku: str = "SKU-1", location: str = "A-01",
             device: str = "scan-1", boot: str = "boot-a") -> ScanMessage:
    return ScanMessage(
        msg_id=f"s-{device}-{boot}-{seq}", v=2 if direction == "count" else 1, device_id=device, boot_id=boot,
        seq=seq, ts=ts,
        body=ScanBody(code_type="barcode", sku=sku, location=location, direction=direction,  # type: ignore[arg-type]
                      qty=qty, reader_id=device),
    )


def writer(store: Store) -> BatchWriter:
    w = BatchWriter(store.connect(), SITE, 2000, 4096)
    w.load_state()
    return w


def positions(store: Store) -> dict[tuple[str, str, str], int]:
    rows = store.connect().execute("SELECT site, location, sku, on_hand FROM stock").fetchall()
    return {(r[0], r[1], r[2]): int(r[3]) for r in rows}


def discrepancies(store: Store) -> dict[tuple[str, str, int], tuple[int, int]]:
    rows = store.connect().execute("SELECT device_id, boot_id, seq, counted, expected FROM stock_discrepancies")
    return {(r[0], r[1], int(r[2])): (int(r[3]), int(r[4])) for r in rows}


def test_movements_and_a_count_set_the_position(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS)), inbound(scan_msg(1, "pick", 3, BASE_TS + 10))], 1)
    assert positions(store) == {(SITE, "A-01", "SKU-1"): 7}
    result = w.write([inbound(scan_msg(2, "count", 5, BASE_TS + 20)), inbound(scan_msg(3, "pick", 1, BASE_TS + 30))], 2)
    assert positions(store) == {(SITE, "A-01", "SKU-1"): 4}
    assert discrepancies(store) == {("scan-1", "boot-a", 2): (5, 7)}  # two units went missing
    assert [(d.counted, d.expected, d.revision) for d in result.stock.discrepancies] == [(5, 7, 1)]
    row = store.connect().execute("SELECT version, last_scan_ts, count_ts FROM stock").fetchone()
    assert row == (2, BASE_TS + 30, BASE_TS + 20)


def test_duplicates_and_redeliveries_never_count_twice(store: Store) -> None:
    w = writer(store)
    pick = inbound(scan_msg(1, "pick", 2, BASE_TS))
    w.write([pick, pick, inbound(scan_msg(0, "inbound", 9, BASE_TS - 5))], 1)
    w.write([pick], 2)
    writer(store).write([pick], 3)  # after a restart: the stored scan is the only state
    assert positions(store) == {(SITE, "A-01", "SKU-1"): 7}


def test_rfid_burst_repeats_do_not_move_stock(store: Store) -> None:
    w = writer(store)

    def read(seq: int, ts: int) -> ScanMessage:
        return ScanMessage(msg_id=f"r{seq}", device_id="portal-1", boot_id="b", seq=seq, ts=ts, v=1,
                           body=ScanBody(code_type="rfid", sku="SKU-9", location="dock-1", direction="inbound",
                                         qty=12, reader_id="portal-1", tag_id="urn:tag:1"))

    w.write([inbound(read(0, BASE_TS)), inbound(read(1, BASE_TS + 300)), inbound(read(2, BASE_TS + 900))], 1)
    assert positions(store) == {(SITE, "dock-1", "SKU-9"): 12}


def test_late_movement_is_in_the_count_and_revises_its_discrepancy(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS))], 1)
    w.write([inbound(scan_msg(2, "count", 6, BASE_TS + 20))], 2)
    assert discrepancies(store) == {("scan-1", "boot-a", 2): (6, 10)}
    # a pick scanned before the count arrives after it: the count already saw it
    result = w.write([inbound(scan_msg(1, "pick", 3, BASE_TS + 10))], 3)
    assert positions(store) == {(SITE, "A-01", "SKU-1"): 6}
    assert discrepancies(store) == {("scan-1", "boot-a", 2): (6, 7)}
    assert [(d.expected, d.revision) for d in result.stock.discrepancies] == [(7, 2)]
    assert result.stock.positions == []  # the position itself did not change


def test_count_arriving_after_later_movements_keeps_them(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS)), inbound(scan_msg(2, "pick", 4, BASE_TS + 30))], 1)
    w.write([inbound(scan_msg(1, "count", 9, BASE_TS + 20))], 2)  # counted before that pick
    assert positions(store) == {(SITE, "A-01", "SKU-1"): 5}
    assert discrepancies(store) == {("scan-1", "boot-a", 1): (9, 10)}


def test_negative_stock_is_kept_and_picks_at_zero_are_reported(store: Store) -> None:
    w = writer(store)
    r1 = w.write([inbound(scan_msg(0, "inbound", 1, BASE_TS)), inbound(scan_msg(1, "pick", 1, BASE_TS + 1))], 1)
    assert r1.stock.picked_at_zero == set()  # the last unit: not a stock-out
    r2 = w.write([inbound(scan_msg(2, "pick", 2, BASE_TS + 2))], 2)
    assert positions(store) == {(SITE, "A-01", "SKU-1"): -2}
    assert r2.stock.picked_at_zero == {("A-01", "SKU-1")}


def _random_stream(rng: random.Random, n: int) -> list[ScanMessage]:
    msgs = []
    for seq in range(n):
        device = rng.choice(["scan-1", "scan-2"])
        r = rng.random()
        direction = "count" if r < 0.12 else "inbound" if r < 0.35 else "outbound" if r < 0.42 else "pick"
        qty = rng.randint(0, 40) if direction == "count" else rng.randint(1, 9)
        ts = BASE_TS + rng.randint(0, 400) * 10  # coarse: equal timestamps happen, counts included
        msgs.append(scan_msg(seq, direction, qty, ts, sku=rng.choice(["S1", "S2", "S3"]),
                             location=rng.choice(["A-01", "B 02/x"]), device=device))
    return msgs


@pytest.mark.parametrize("seed", range(12))
def test_book_matches_a_replay_in_device_time_whatever_the_arrival_order(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    msgs = _random_stream(rng, 300)
    truth = StockTruth()
    for m in msgs:
        truth.add(SITE, m)
    arrival = msgs[:]
    rng.shuffle(arrival)
    arrival += rng.sample(msgs, 40)  # redeliveries and duplicates
    store = Store(tmp_path / f"agent-{seed}.db")
    store.open()
    w = writer(store)
    i = 0
    while i < len(arrival):
        size = rng.randint(1, 60)
        w.write([inbound(m) for m in arrival[i : i + size]], 1000 + i)
        i += size
        if rng.random() < 0.2:
            w = writer(store)  # a restart between two batches
    expected_positions, expected_disc = truth.replay()
    assert positions(store) == expected_positions
    assert discrepancies(store) == {k: (d.counted, d.expected) for k, d in expected_disc.items()}
    conn = store.connect()
    versions = conn.execute("SELECT MIN(version) FROM stock").fetchone()[0]
    assert versions >= 1
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_stock_tables_are_plain_sqlite(store: Store) -> None:
    """The operator's tools (``edgehouse-agent db``) read these tables by name."""
    conn = sqlite3.connect(store.path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"stock", "stock_discrepancies"} <= tables
