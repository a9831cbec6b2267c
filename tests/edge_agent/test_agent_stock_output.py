"""edge_agent.store.stock_output: stock changes become sync records and stock-out alerts in the ingest
transaction (same commit as the scans), published on the gateway's topics after it."""

from __future__ import annotations

import json

from agent_testkit import BASE_TS, SITE, inbound
from pydantic import TypeAdapter
from test_agent_stock import scan_msg

from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from protocols import gateway_topic
from protocols.sync import StockDiscrepancyRecord, StockRecord, SyncRecord

GW = "gw-test"
_RECORD: TypeAdapter[SyncRecord] = TypeAdapter(SyncRecord)


def writer(store: Store) -> BatchWriter:
    w = BatchWriter(store.connect(), SITE, 2000, 4096, gateway_id=GW)
    w.load_state()
    return w


def outbox(store: Store, kind: str) -> list[object]:
    rows = store.connect().execute("SELECT id, payload FROM outbox WHERE kind = ? ORDER BY rowid", (kind,))
    out = []
    for rid, payload in rows:
        rec = _RECORD.validate_json(payload)
        assert rec.id == rid == rec.content_id  # type: ignore[union-attr]
        out.append(rec)
    return out


def test_each_committed_change_is_one_stock_record_with_its_version(store: Store) -> None:
    w = writer(store)
    r1 = w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS)), inbound(scan_msg(1, "pick", 3, BASE_TS + 10))], 1)
    w.write([inbound(scan_msg(2, "count", 5, BASE_TS + 20))], 2)
    w.write([inbound(scan_msg(2, "count", 5, BASE_TS + 20))], 3)  # a redelivery changes nothing
    recs = outbox(store, "stock")
    assert all(isinstance(r, StockRecord) for r in recs)
    assert [(r.position.on_hand, r.position.version, r.position.count_ts) for r in recs] == [  # type: ignore[attr-defined]
        (7, 1, None), (5, 2, BASE_TS + 20)]
    [disc] = outbox(store, "stock_discrepancy")
    assert isinstance(disc, StockDiscrepancyRecord)
    d = disc.discrepancy
    assert (d.gateway_id, d.counted, d.expected, d.delta, d.revision) == (GW, 5, 7, -2, 1)
    assert [p.topic for p in r1.published] == [gateway_topic(SITE, GW, "stock")]
    assert json.loads(r1.published[0].payload)["on_hand"] == 7


def test_picks_at_zero_raise_one_stock_out_alert_cleared_by_stock_coming_back(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 1, BASE_TS)), inbound(scan_msg(1, "pick", 1, BASE_TS + 1))], 1)
    assert outbox(store, "alert") == []  # the last unit: not a stock-out
    r2 = w.write([inbound(scan_msg(2, "pick", 2, BASE_TS + 2))], 2)
    w.write([inbound(scan_msg(3, "pick", 1, BASE_TS + 3))], 3)  # still out: not raised again
    [raised] = outbox(store, "alert")
    a = raised.alert  # type: ignore[attr-defined]
    assert (a.kind, a.code, a.state, a.observed) == ("system", "stock_out", "raised", -2.0)
    assert "SKU-1 at A-01" in a.message
    assert gateway_topic(SITE, GW, "alert") in {p.topic for p in r2.published}
    assert [r.position.stock_out for r in outbox(store, "stock")] == [False, True, True]  # type: ignore[attr-defined]
    writer(store).write([inbound(scan_msg(4, "inbound", 5, BASE_TS + 4))], 4)  # after a restart
    alerts = [r.alert for r in outbox(store, "alert")]  # type: ignore[attr-defined]
    assert [x.state for x in alerts] == ["raised", "cleared"]
    assert alerts[1].alert_id == a.alert_id.removesuffix(".raised") + ".cleared"
    last = outbox(store, "stock")[-1]
    assert (last.position.on_hand, last.position.stock_out) == (2, False)  # type: ignore[attr-defined]
    stored = store.connect().execute("SELECT COUNT(*) FROM alerts WHERE alert_id LIKE 'stock_out:%'").fetchone()
    assert stored[0] == 2
