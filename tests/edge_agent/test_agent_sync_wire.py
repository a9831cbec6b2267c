"""Sync over thin links, agent side: lanes, the upload cap, batches bounded in bytes, JSON for an old cloud."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import pytest
from agent_testkit import BASE_TS, GATEWAY, SITE, FakeCloud, inbound, status_msg, telemetry

from edge_agent.bandwidth import ByteBucket
from edge_agent.config import AgentConfig, CapWindow, CloudConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.status import StatusProbe
from edge_agent.store import Store, gateway_output
from edge_agent.store import outbox as ob
from edge_agent.sync import Outcome, SyncWorker
from protocols import AlertPayload

NOW = BASE_TS + 3_600_000


def alert(n: int) -> AlertPayload:
    return AlertPayload(alert_id=f"a-{n}", gateway_id=GATEWAY, kind="system", state="raised", severity="warning",
                        ts=NOW, message="disk almost full", code="quota_exceeded")


def fill(store: Store, seqs: range, received_ts: int, device: str = "dev-1") -> None:
    BatchWriter(store.connect(), SITE, 2000, 4096).write([inbound(telemetry(i, device)) for i in seqs], received_ts)


def worker(make_config: Any, store: Store, cloud: FakeCloud, **cloud_cfg: Any) -> tuple[SyncWorker, AgentMetrics]:
    cfg: AgentConfig = make_config(cloud={"url": cloud.url, "token": "tok", "backoff_min_s": 0.01,
                                          "backoff_max_s": 0.05, "interval_s": 0.2, **cloud_cfg})
    metrics = AgentMetrics()
    return SyncWorker(cfg.cloud, GATEWAY, store, metrics, clock_ms=lambda: NOW), metrics


def client(cloud: FakeCloud) -> httpx.Client:
    return httpx.Client(base_url=cloud.url, headers={"Authorization": "Bearer tok"})


def test_lanes_alerts_and_status_then_live_then_backlog_each_oldest_first(store: Store) -> None:
    fill(store, range(5), NOW - 3_000_000)  # backlog: older than the live window
    fill(store, range(5, 8), NOW - 10_000)  # live
    conn = store.connect()
    BatchWriter(conn, SITE, 2000, 4096).write([inbound(status_msg(0, "dev-2"))], NOW - 3_500_000)
    with conn:
        gateway_output.enqueue(conn, alert(1), NOW - 1000)
    rows = ob.read_lanes(conn, 100, NOW - 300_000)
    assert [r.kind for r in rows[:2]] == ["device_status", "alert"]  # lane 0, oldest first
    assert [r.id.rsplit(":", 1)[1] for r in rows[2:]] == ["5", "6", "7", "0", "1", "2", "3", "4"]
    assert [r.id for r in ob.read_lanes(conn, 3, NOW - 300_000)] == [r.id for r in rows[:3]]
    stats = ob.lane_stats(conn, NOW - 300_000)
    assert {k: v.depth for k, v in stats.items()} == {"urgent": 2, "live": 3, "backlog": 5}
    assert stats["urgent"].oldest_created_ts == NOW - 3_500_000
    assert stats["backlog"].oldest_created_ts == NOW - 3_000_000


def test_a_fresh_alert_goes_out_in_the_next_round_ahead_of_the_backlog(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, range(300), NOW - 3_000_000)
    w, _ = worker(make_config, store, fake_cloud, batch_max_records=50)
    conn = store.connect()
    with client(fake_cloud) as c:
        assert w.run_once(conn, c).outcome is Outcome.SENT
        with conn:
            gateway_output.enqueue(conn, alert(2), NOW)
        w.run_once(conn, c)
    assert fake_cloud.batches[1].records[0].id == "alert:a-2"
    assert [r.id for r in fake_cloud.batches[0].records][:2] == ["telemetry:dev-1:boot-a:0", "telemetry:dev-1:boot-a:1"]


def test_an_old_cloud_gets_json_with_a_content_length(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    fill(store, range(30), NOW)
    w, metrics = worker(make_config, store, fake_cloud, batch_max_records=10)
    conn = store.connect()
    with client(fake_cloud) as c:
        while w.run_once(conn, c).outcome is Outcome.SENT:
            pass
    assert len(fake_cloud.headers) == 3 and ob.depth(conn) == 0
    for headers in fake_cloud.headers:
        assert headers["content-type"] == "application/json" and headers["content-encoding"] == "gzip"
        assert "transfer-encoding" not in headers and int(headers["content-length"]) > 0
    bodies = sum(int(h["content-length"]) for h in fake_cloud.headers)
    sent = metrics.value("sync_bytes_sent_total")
    assert bodies + 3 * 150 < sent < bodies + 3 * 600  # request lines and headers counted too
    assert metrics.value("sync_bytes_received_total") > 0


def test_batches_are_bounded_in_bytes(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    conn = store.connect()
    with conn:  # records that hardly compress: a batch of them is far over 4 KiB
        for i in range(200):
            gateway_output.enqueue(conn, alert(i).model_copy(update={"message": f"{i}" + _noise(i)}), NOW)
    w, _ = worker(make_config, store, fake_cloud, batch_max_bytes=4096)
    with client(fake_cloud) as c:
        while w.run_once(conn, c).outcome is Outcome.SENT:
            pass
    assert ob.depth(conn) == 0 and len(fake_cloud.headers) > 5
    assert max(int(h["content-length"]) for h in fake_cloud.headers) <= 4096


def _noise(i: int) -> str:
    import hashlib

    return "".join(hashlib.sha256(f"{i}.{k}".encode()).hexdigest() for k in range(6))


def test_the_bucket_holds_the_cap_over_any_window() -> None:
    clock = [0.0]
    sent: list[tuple[float, int]] = []

    def sleep(s: float) -> None:
        clock[0] += s

    config = CloudConfig(max_bytes_per_s=10_000)
    bucket = ByteBucket(config, clock=lambda: clock[0], sleep=sleep)
    for i in range(2000):
        n = 300 + (i * 37) % 3000
        bucket.take(n)
        sent.append((clock[0], n))
    duration = clock[0]
    assert bucket.sent_bytes / duration == pytest.approx(10_000, rel=0.05)
    worst = 0
    for start, _ in sent:
        worst = max(worst, sum(n for t, n in sent if start <= t < start + 10.0))
    assert worst <= 10_000 * 10 * 1.05
    assert bucket.chunk_size() == 2500  # a quarter second of the cap


def test_an_uncapped_bucket_never_waits() -> None:
    bucket = ByteBucket(CloudConfig(), sleep=lambda s: pytest.fail("waited"))
    for _ in range(100):
        bucket.take(1_000_000)
    assert bucket.sent_bytes == 100_000_000 and bucket.cap() is None


def test_cap_schedule_windows() -> None:
    config = CloudConfig(max_bytes_per_s=50_000, cap_schedule=(
        CapWindow(start="07:00", end="19:00", max_bytes_per_s=8_000, days=(1, 2, 3, 4, 5)),
        CapWindow(start="22:00", end="02:00", max_bytes_per_s=100_000),
    ))
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert config.cap_at(monday.replace(hour=8)) == 8_000
    assert config.cap_at(monday.replace(hour=19)) == 50_000
    assert config.cap_at((monday + dt.timedelta(days=5)).replace(hour=8)) == 50_000  # Saturday
    assert config.cap_at(monday.replace(hour=23, minute=59)) == 100_000
    assert config.cap_at(monday.replace(hour=1, minute=30)) == 100_000  # past midnight
    assert config.cap_at(monday.replace(hour=2)) == 50_000
    with pytest.raises(ValueError):
        CapWindow(start="07:00", end="07:00", max_bytes_per_s=8_000)
    with pytest.raises(ValueError):
        CloudConfig(max_bytes_per_s=10)


def test_status_shows_lanes_cap_and_expected_drain(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    fill(store, range(40), int(time.time() * 1000) - 3_600_000)
    w, metrics = worker(make_config, store, fake_cloud, batch_max_records=10, max_bytes_per_s=2000)
    conn = store.connect()
    with client(fake_cloud) as c:
        assert w.run_once(conn, c).outcome is Outcome.SENT
    probe = StatusProbe(GATEWAY, store, metrics, mqtt_connected=lambda: True, intake_paused=lambda: False,
                        sync=w.wire_status, cache_s=0.0)
    status = probe.snapshot().sync
    assert status is not None and status.cap_bytes_per_s == 2000 and status.encoding == "json"
    assert status.lanes["backlog"].depth == 30 and status.lanes["urgent"].depth == 0
    assert status.lanes["backlog"].oldest_age_s is not None and status.lanes["backlog"].oldest_age_s > 3000
    assert status.expected_drain_s == pytest.approx(30 * status.bytes_per_record / 2000, abs=0.06)
    assert status.bytes_sent == metrics.value("sync_bytes_sent_total") > 0
    assert probe.health() == []


def test_the_running_agent_exports_cap_lanes_and_drain_time(make_config: Any, fake_cloud: FakeCloud) -> None:
    from agent_testkit import free_port

    from edge_agent.app import Agent
    from edge_agent.cli import sync_lines

    cfg = make_config(mqtt={"port": free_port(), "reconnect_min_s": 0.05, "reconnect_max_s": 0.2},
                      cloud={"url": fake_cloud.url, "token": "tok", "max_bytes_per_s": 32_000,
                             "interval_s": 0.2})
    agent = Agent(cfg)
    agent.start()
    try:
        assert agent.http is not None
        base = f"http://127.0.0.1:{agent.http.port}"
        metrics = httpx.get(f"{base}/metrics").text
        for line in ('edgehouse_agent_outbox_lane_depth{lane="urgent"}', 'edgehouse_agent_outbox_lane_depth{lane="backlog"}',
                     'edgehouse_agent_outbox_lane_oldest_age_seconds{lane="live"}',
                     "edgehouse_agent_sync_cap_bytes_per_second 32000.0", "edgehouse_agent_sync_bytes_sent_total",
                     "edgehouse_agent_sync_expected_drain_seconds"):
            assert line in metrics, line
        sync = httpx.get(f"{base}/status").json()["sync"]
        assert sync["cap_bytes_per_s"] == 32_000 and set(sync["lanes"]) == {"urgent", "live", "backlog"}
        rows = dict(sync_lines({**sync, "expected_drain_s": 5400.0}))
        assert rows["sync.expected_drain"] == "1h 30m" and rows["sync.link"].startswith("cap 256 kbit/s")
    finally:
        agent.stop()
