from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from agent_testkit import GATEWAY, SITE, FakeCloud, inbound, telemetry

from edge_agent.config import AgentConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.sync import Outcome, SyncWorker
from protocols import AlertPayload, SyncBatch


def fill(store: Store, n: int) -> None:
    BatchWriter(store.connect(), SITE, 2000, 4096).write([inbound(telemetry(i)) for i in range(n)], 1)


def worker(
    make_config: Any,
    store: Store,
    cloud: FakeCloud,
    alerts: list[AlertPayload] | None = None,
    **cloud_cfg: Any,
) -> tuple[SyncWorker, AgentMetrics]:
    cfg: AgentConfig = make_config(
        cloud={
            "url": cloud.url,
            "token": "tok",
            "backoff_min_s": 0.01,
            "backoff_max_s": 0.05,
            "interval_s": 0.2,
            **cloud_cfg,
        }
    )
    metrics = AgentMetrics()
    sink = alerts.append if alerts is not None else None
    return SyncWorker(cfg.cloud, GATEWAY, store, metrics, raise_alert=sink), metrics


def client(cloud: FakeCloud) -> httpx.Client:
    return httpx.Client(base_url=cloud.url, headers={"Authorization": "Bearer tok"})


def test_ack_deletes_settled_and_is_gzip_with_bearer(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, 5)
    w, metrics = worker(make_config, store, fake_cloud, batch_max_records=3)
    conn = store.connect()
    with client(fake_cloud) as c:
        first = w.run_once(conn, c)
        assert first.outcome is Outcome.SENT and first.settled == 3 and first.more
        second = w.run_once(conn, c)
        assert second.settled == 2 and not second.more
        assert w.run_once(conn, c).outcome is Outcome.IDLE
    assert ob.depth(conn) == 0
    assert fake_cloud.headers[0]["content-encoding"] == "gzip"
    assert fake_cloud.headers[0]["authorization"] == "Bearer tok"
    assert [r.id for r in fake_cloud.batches[0].records] == [f"telemetry:dev-1:boot-a:{i}" for i in range(3)]
    assert metrics.value("synced_records_total") == 5
    assert metrics.value("last_sync_success_timestamp_seconds") > 0


def test_only_acked_ids_are_deleted_and_duplicates_settle(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, 4)

    def partial(batch: SyncBatch, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        ids = [r.id for r in batch.records]
        return 200, {
            "schema": "edgehouse.sync_ack",
            "batch_id": batch.batch_id,
            "stored": ids[:1],
            "duplicates": ids[1:2] + ["telemetry:unknown:x:1"],
        }

    fake_cloud.responder = partial
    w, _ = worker(make_config, store, fake_cloud)
    conn = store.connect()
    with client(fake_cloud) as c:
        assert w.run_once(conn, c).settled == 2
    assert [r.id for r in ob.read_oldest(conn, 10)] == [
        "telemetry:dev-1:boot-a:2",
        "telemetry:dev-1:boot-a:3",
    ]


def test_rejected_records_are_set_aside_with_an_alert(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, 3)

    def reject_one(batch: SyncBatch, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        ids = [r.id for r in batch.records]
        return 200, {
            "schema": "edgehouse.sync_ack",
            "batch_id": batch.batch_id,
            "stored": ids[1:],
            "rejected": [{"id": ids[0], "reason": "device unknown"}],
        }

    fake_cloud.responder = reject_one
    alerts: list[AlertPayload] = []
    w, metrics = worker(make_config, store, fake_cloud, alerts)
    conn = store.connect()
    with client(fake_cloud) as c:
        result = w.run_once(conn, c)
    assert result.rejected == 1 and result.settled == 2 and ob.depth(conn) == 0
    assert conn.execute("SELECT id, reason FROM sync_rejected").fetchall() == [
        ("telemetry:dev-1:boot-a:0", "device unknown")
    ]
    assert len(alerts) == 1 and alerts[0].kind == "system" and "device unknown" in alerts[0].message
    assert metrics.value("sync_rejected_records_total") == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (429, Outcome.RETRY),
        (401, Outcome.AUTH),
        (403, Outcome.AUTH),
        (404, Outcome.RETRY),
    ],
)
def test_failures_keep_everything(
    make_config: Any, store: Store, fake_cloud: FakeCloud, status: int, outcome: Outcome
) -> None:
    fill(store, 3)
    fake_cloud.responder = lambda b, h: (status, {"detail": "no"})
    w, _metrics = worker(make_config, store, fake_cloud)
    conn = store.connect()
    with client(fake_cloud) as c:
        assert w.run_once(conn, c).outcome is outcome
    assert ob.depth(conn) == 3
    assert conn.execute("SELECT COUNT(*) FROM sync_rejected").fetchone()[0] == 0


def test_network_error_is_retryable(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    fill(store, 2)
    w, metrics = worker(make_config, store, fake_cloud)
    conn = store.connect()
    with httpx.Client(base_url="http://127.0.0.1:9", timeout=1.0) as c:
        assert w.run_once(conn, c).outcome is Outcome.RETRY
    assert ob.depth(conn) == 2 and metrics.value("sync_failures_total", {"reason": "network"}) == 1


def test_refused_batch_is_bisected_to_the_bad_record(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, 4)
    bad = "telemetry:dev-1:boot-a:2"

    def refuse(batch: SyncBatch, headers: dict[str, str]) -> tuple[int, Any]:
        if any(r.id == bad for r in batch.records):
            return 422, {"detail": "unprocessable"}
        return fake_cloud.ack_all(batch, headers)

    fake_cloud.responder = refuse
    alerts: list[AlertPayload] = []
    w, _ = worker(make_config, store, fake_cloud, alerts)
    conn = store.connect()
    with client(fake_cloud) as c:
        for _ in range(10):
            if w.run_once(conn, c).outcome is Outcome.IDLE:
                break
    assert ob.depth(conn) == 0
    assert fake_cloud.stored == {f"telemetry:dev-1:boot-a:{i}" for i in (0, 1, 3)}
    assert conn.execute("SELECT id FROM sync_rejected").fetchall() == [(bad,)]
    assert len(alerts) == 1


def test_thread_retries_5xx_then_succeeds_and_wakes_on_notify(
    make_config: Any, store: Store, fake_cloud: FakeCloud
) -> None:
    fill(store, 3)
    answers = [(503, "busy"), (500, "oops")]

    def flaky(batch: SyncBatch, headers: dict[str, str]) -> tuple[int, Any]:
        return answers.pop(0) if answers else fake_cloud.ack_all(batch, headers)

    fake_cloud.responder = flaky
    w, metrics = worker(make_config, store, fake_cloud, interval_s=30)
    w.start()
    try:
        deadline = time.monotonic() + 5
        while metrics.value("synced_records_total") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metrics.value("synced_records_total") == 3
        assert metrics.value("sync_failures_total", {"reason": "server"}) == 2
        fill_more = BatchWriter(store.connect(), SITE, 2000, 4096)
        fill_more.write([inbound(telemetry(100))], 2)
        w.notify()  # interval is 30 s: only the wake-up makes this fast
        deadline = time.monotonic() + 5
        while metrics.value("synced_records_total") < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metrics.value("synced_records_total") == 4
    finally:
        w.stop(flush=False)


def test_stop_flushes_one_round(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    w, _metrics = worker(make_config, store, fake_cloud, interval_s=30)
    w.start()
    time.sleep(0.1)
    fill(store, 5)
    w.stop(flush=True)
    assert ob.depth(store.connect()) == 0


def test_auth_failure_backs_off_long(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    fill(store, 2)
    fake_cloud.responder = lambda b, h: (401, {"detail": "bad token"})
    w, _metrics = worker(make_config, store, fake_cloud, auth_backoff_s=60)
    w.start()
    time.sleep(0.5)
    w.stop(flush=True, timeout_s=5)
    assert len(fake_cloud.batches) == 1  # no hammering within the auth back-off, no flush after 401
    assert ob.depth(store.connect()) == 2


class CountingTransport(httpx.BaseTransport):
    """Wraps the agent's own transport and records what it sends (the public ``transport=`` hook)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.sent: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        self.sent.append((request.method, request.url.path, resp.status_code))
        return resp

    def close(self) -> None:
        self.inner.close()


def test_worker_sends_through_a_given_transport(make_config: Any, store: Store, fake_cloud: FakeCloud) -> None:
    from edge_agent.cloud_client import cloud_transport

    fill(store, 4)
    cfg: AgentConfig = make_config(cloud={"url": fake_cloud.url, "token": "tok", "interval_s": 0.2})
    transport = CountingTransport(cloud_transport(cfg.cloud))
    metrics = AgentMetrics()
    w = SyncWorker(cfg.cloud, GATEWAY, store, metrics, transport=transport)
    w.start()
    try:
        deadline = time.monotonic() + 5
        while metrics.value("synced_records_total") < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        w.stop(flush=False)
    assert metrics.value("synced_records_total") == 4 and ob.depth(store.connect()) == 0
    posts = [s for s in transport.sent if s[0] == "POST"]
    assert posts and all(path.endswith("/sync") and status == 200 for _m, path, status in posts)
    assert len(fake_cloud.batches) == len(posts)  # every request the cloud saw went through it
