"""edge_agent.store.stock_output and edge_agent.stock_worker: discrepancies and stock-out alerts in the
ingest transaction; changed positions queued for sync, newest version only, by the stock worker;
what is published, and when."""

from __future__ import annotations

import json

from agent_testkit import BASE_TS, SITE, inbound
from pydantic import TypeAdapter
from test_agent_stock import scan_msg

from edge_agent.config_stock import StockConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.stock_worker import StockWorker
from edge_agent.store import Store
from edge_agent.store.stock_output import PositionQueue
from protocols import gateway_topic
from protocols.stock import StockDiscrepancy, StockPosition
from protocols.sync import StockDiscrepancyRecord, StockRecord, SyncRecord

GW = "gw-test"
_RECORD: TypeAdapter[SyncRecord] = TypeAdapter(SyncRecord)


def writer(store: Store) -> BatchWriter:
    w = BatchWriter(store.connect(), SITE, 2000, 4096, gateway_id=GW)
    w.load_state()
    return w


def queue(store: Store, now: int = BASE_TS + 10_000) -> int:
    return len(PositionQueue(SITE, GW).queue(store.connect(), now))


def outbox(store: Store, kind: str) -> list[object]:
    rows = store.connect().execute("SELECT id, payload FROM outbox WHERE kind = ? ORDER BY rowid", (kind,))
    out = []
    for rid, payload in rows:
        rec = _RECORD.validate_json(payload)
        assert rec.id == rid == rec.content_id  # type: ignore[union-attr]
        out.append(rec)
    return out


def test_changed_positions_are_queued_newest_version_only(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS)), inbound(scan_msg(1, "pick", 3, BASE_TS + 10))], 1)
    assert outbox(store, "stock") == []  # ingest queues no positions
    assert queue(store) == 1
    w.write([inbound(scan_msg(2, "count", 5, BASE_TS + 20))], 2)
    w.write([inbound(scan_msg(3, "pick", 1, BASE_TS + 30))], 3)
    w.write([inbound(scan_msg(3, "pick", 1, BASE_TS + 30))], 4)  # a redelivery changes nothing
    assert queue(store) == 1 and queue(store) == 0  # nothing changed since
    recs = outbox(store, "stock")
    assert all(isinstance(r, StockRecord) for r in recs)
    # version 1 was still unsynced: version 3 replaced it (the cloud keeps the newest only)
    assert [(r.position.on_hand, r.position.version, r.position.count_ts) for r in recs] == [  # type: ignore[attr-defined]
        (4, 3, BASE_TS + 20)]
    payload = store.connect().execute("SELECT payload FROM outbox WHERE kind = 'stock'").fetchone()[0]
    written = json.loads(payload)["position"]  # every field of the contract, written without pydantic
    assert set(written) == {f.alias or name for name, f in StockPosition.model_fields.items()}
    assert StockPosition.model_validate(written) == recs[0].position  # type: ignore[attr-defined]
    [disc] = outbox(store, "stock_discrepancy")
    assert isinstance(disc, StockDiscrepancyRecord)
    d = disc.discrepancy
    assert (d.gateway_id, d.counted, d.expected, d.delta, d.revision) == (GW, 5, 7, -2, 1)
    raw = store.connect().execute("SELECT payload FROM outbox WHERE kind = 'stock_discrepancy'").fetchone()[0]
    assert set(json.loads(raw)["discrepancy"]) == {f.alias or n for n, f in StockDiscrepancy.model_fields.items()}


def test_a_synced_version_stays_and_the_next_one_is_queued(store: Store) -> None:
    w = writer(store)
    w.write([inbound(scan_msg(0, "inbound", 10, BASE_TS))], 1)
    queue(store)
    conn = store.connect()
    conn.execute("DELETE FROM outbox WHERE kind = 'stock'")  # the sync took version 1 (acknowledged)
    conn.commit()
    w.write([inbound(scan_msg(1, "pick", 4, BASE_TS + 1))], 2)
    queue(store)
    assert [(r.position.version, r.position.on_hand) for r in outbox(store, "stock")] == [(2, 6)]  # type: ignore[attr-defined]


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
    assert [p.topic for p in r2.published] == [gateway_topic(SITE, GW, "alert")]
    queue(store)
    [pos] = outbox(store, "stock")
    assert (pos.position.on_hand, pos.position.stock_out) == (-3, True)  # type: ignore[attr-defined]
    writer(store).write([inbound(scan_msg(4, "inbound", 5, BASE_TS + 4))], 4)  # after a restart
    alerts = [r.alert for r in outbox(store, "alert")]  # type: ignore[attr-defined]
    assert [x.state for x in alerts] == ["raised", "cleared"]
    assert alerts[1].alert_id == a.alert_id.removesuffix(".raised") + ".cleared"
    queue(store)
    [last] = outbox(store, "stock")
    assert (last.position.on_hand, last.position.stock_out) == (2, False)  # type: ignore[attr-defined]


def test_the_worker_queues_and_publishes_the_newest_version_once_per_round(store: Store) -> None:
    sent: list[tuple[str, bytes, int]] = []
    woken: list[int] = []
    worker = StockWorker(StockConfig(interval_s=0.01, publish_qos=1), store, SITE, GW,
                         lambda topic, payload, qos: sent.append((topic, payload, qos)) or True,
                         lambda: woken.append(1), clock_ms=lambda: BASE_TS + 99)
    w = writer(store)
    for seq in range(3):  # three versions of one position, then a stock-out alert
        worker.offer(w.write([inbound(scan_msg(seq, "inbound" if seq == 0 else "pick", 1, BASE_TS + seq))], seq))
    worker.offer(w.write([inbound(scan_msg(3, "pick", 1, BASE_TS + 3))], 3))
    assert sent == []  # nothing is published on the ingest thread
    assert worker.run_once() == 1 and woken == [1]
    by_topic = {topic: json.loads(payload) for topic, payload, _ in sent}
    assert len(sent) == 2 and by_topic[gateway_topic(SITE, GW, "stock")]["on_hand"] == -2
    assert by_topic[gateway_topic(SITE, GW, "alert")]["code"] == "stock_out"
    assert {qos for _, _, qos in sent} == {1}
    assert worker.run_once() == 0 and len(sent) == 2 and woken == [1]


def test_the_worker_started_and_stopped_queues_what_ingest_committed(store: Store) -> None:
    worker = StockWorker(StockConfig(interval_s=3600, publish=False), store, SITE, GW, None)
    worker.start()
    writer(store).write([inbound(scan_msg(0, "inbound", 3, BASE_TS))], 1)
    worker.stop()  # the final round at the stop
    assert [r.position.on_hand for r in outbox(store, "stock")] == [3]  # type: ignore[attr-defined]
