from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from agent_testkit import GATEWAY, SITE, inbound, telemetry

from edge_agent.housekeeping import Housekeeper
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store, enqueue, transaction
from edge_agent.store import outbox as ob
from edge_agent.store.db import used_bytes
from protocols import AlertPayload


def test_quota_pauses_intake_alerts_once_and_resumes(make_config: Any, tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    store.open()
    conn = store.connect()
    writer = BatchWriter(conn, SITE, 2000, 4096)
    for base in range(0, 3000, 500):
        writer.write([inbound(telemetry(i)) for i in range(base, base + 500)], 1)
    quota_mb = used_bytes(conn) * 0.35 / (1024 * 1024)
    cfg = make_config(store={"quota_mb": quota_mb})
    paused = threading.Event()
    metrics = AgentMetrics()
    alerts: list[AlertPayload] = []

    def raise_alert(alert: AlertPayload) -> None:
        alerts.append(alert)
        enqueue(store.connect(), alert, 5)

    keeper = Housekeeper(cfg.store, GATEWAY, store, metrics, paused, raise_alert)
    retention = keeper.retention(store.connect())

    keeper.run_once(retention)
    assert paused.is_set() and metrics.value("quota_exceeded") == 1
    keeper.run_once(retention)
    assert len(alerts) == 1 and alerts[0].kind == "system" and alerts[0].state == "raised"
    assert ob.depth(conn) == 3001  # every unsynced record kept (plus the alert)
    assert conn.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0] == 3000

    with transaction(conn):  # the cloud caught up on most of it
        ob.delete(conn, [r.id for r in ob.read_oldest(conn, 2500)])
    keeper.run_once(retention)
    assert not paused.is_set() and metrics.value("quota_exceeded") == 0
    assert [a.state for a in alerts] == ["raised", "cleared"]
    remaining = {r[0] for r in conn.execute("SELECT seq FROM telemetry")}
    assert set(range(2500, 3000)) <= remaining  # unsynced rows survived, synced history went first
    assert len(remaining) < 3000
