"""RFID burst filter: horizons are per reader, because device clocks differ."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent_testkit import BASE_TS, SITE, inbound, scan

from edge_agent.ingest_batch import BatchWriter
from edge_agent.rfid import _PRUNE_EVERY, RfidBurstFilter
from edge_agent.store import Store


def test_prune_keeps_a_lagging_readers_recent_pairs() -> None:
    f = RfidBurstFilter(window_ms=2000)
    f.commit({("slow-reader", "tag-1"): 1_000_000})  # this reader's clock is an hour behind
    # the other reader races ahead and triggers pruning
    f.commit({("fast-reader", f"tag-{i}"): 4_600_000 + i for i in range(_PRUNE_EVERY)})
    assert f.is_burst(("slow-reader", "tag-1"), 1_000_500, {})


def test_reload_uses_each_readers_own_horizon() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE scans (code_type TEXT, reader_id TEXT, tag_id TEXT, ts INTEGER)")
    conn.executemany(
        "INSERT INTO scans VALUES ('rfid', ?, ?, ?)",
        [("slow", "t1", 1_000_000), ("slow", "t0", 900_000), ("fast", "t9", 9_000_000)],
    )
    f = RfidBurstFilter(window_ms=2000)
    assert f.load(conn) == 2  # slow/t1 and fast/t9; slow/t0 is outside slow's own horizon
    assert f.is_burst(("slow", "t1"), 1_001_000, {})
    assert not f.is_burst(("slow", "t0"), 900_500 + 5_000, {})



def test_copy_of_a_dropped_burst_repeat_is_a_duplicate_even_after_the_filter_forgot(tmp_path: Path) -> None:
    """A duplicate of a dropped repeat, arriving after the filter pruned its pair, is not stored."""
    store = Store(tmp_path / "agent.db")
    store.open()
    w = BatchWriter(store.connect(), SITE, 2000, 4096)
    w.load_state()
    first, repeat = inbound(scan(1, ts=BASE_TS)), inbound(scan(2, ts=BASE_TS + 200))
    assert w.write([first, repeat], 1).rfid_burst_dropped == 1
    w.rfid.load(sqlite3.connect(":memory:").execute("CREATE TABLE scans (code_type, reader_id, tag_id, ts)")
                .connection)  # the filter forgot every pair (pruned, or a restart long after)
    again = w.write([repeat], 2)
    assert again.duplicates == 1
    assert again.stored.get("scan", 0) == 0 and again.rfid_burst_dropped == 0
