from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from agent_testkit import SITE, inbound, telemetry

from edge_agent.inbound import Inbound
from edge_agent.ingest import Ingest
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from tests.helpers.waiting import wait_for


def setup(
    make_config: Any, tmp_path: Path
) -> tuple[Ingest, queue.Queue[Inbound], list[tuple[int, int, int]], Store, threading.Event, AgentMetrics]:
    cfg = make_config(ingest={"batch_max": 50, "batch_max_wait_ms": 5})
    store = Store(tmp_path / "agent.db")
    store.open()
    inbox: queue.Queue[Inbound] = queue.Queue()
    acks: list[tuple[int, int, int]] = []
    conns: list[Any] = []

    def ack(item: Inbound) -> None:
        # Record how many rows were committed at the moment of each ack (on the ingest thread).
        if not conns:
            conns.append(store.connect())
        committed = conns[0].execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        acks.append((item.mid, item.qos, committed))

    paused = threading.Event()
    metrics = AgentMetrics()
    ingest = Ingest(cfg.ingest, SITE, store, inbox, ack, metrics, paused)
    return ingest, inbox, acks, store, paused, metrics


def test_acks_follow_commits_in_arrival_order(make_config: Any, tmp_path: Path) -> None:
    ingest, inbox, acks, _store, _, metrics = setup(make_config, tmp_path)
    ingest.start()
    try:
        for i in range(1, 201):
            inbox.put(inbound(telemetry(i), mid=i))
        inbox.put(Inbound("bad/topic", b"x", 201, 1))
        inbox.put(Inbound(inbound(telemetry(1)).topic, b"{}", 202, 0))  # QoS 0: nothing to ack
        assert wait_for(lambda: len(acks) == 201)
    finally:
        ingest.stop()
    assert [a[0] for a in acks] == list(range(1, 202))
    # message i was in the database before it was acked
    assert all(committed >= min(mid, 200) for mid, _, committed in acks)
    assert metrics.value("messages_in_total") == 202 and metrics.value("dead_letters_total") == 2


def test_paused_intake_leaves_messages_unacked_then_resumes(make_config: Any, tmp_path: Path) -> None:
    ingest, inbox, acks, _store, paused, _ = setup(make_config, tmp_path)
    paused.set()
    ingest.start()
    try:
        for i in range(10):
            inbox.put(inbound(telemetry(i), mid=i + 1))
        time.sleep(0.3)
        assert acks == [] and inbox.qsize() == 10
        paused.clear()
        assert wait_for(lambda: len(acks) == 10)
    finally:
        ingest.stop()


def test_stop_drains_the_queue(make_config: Any, tmp_path: Path) -> None:
    ingest, inbox, acks, store, _, _ = setup(make_config, tmp_path)
    ingest.start()
    for i in range(500):
        inbox.put(inbound(telemetry(i), mid=i + 1))
    ingest.stop()
    assert len(acks) == 500 and inbox.empty()
    assert store.connect().execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 500
