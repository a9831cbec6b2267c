"""Durable jobs across processes: API replicas without workers, ``edgehouse-cloud worker`` processes, a
replica restarted and a worker killed (``kill -9``) mid-job, cancellation through another replica, and
concurrent workers taking distinct jobs. SQLite and PostgreSQL (several workers: PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import GATEWAY_ID, admin_headers, make_settings, register
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from test_cloud_routes_api import problem_doc, wait_for
from train_testkit import sync, telemetry_records, wait_for_state
from worker_kit import WorkerProcess, wait_until_gone

from cloud.app import create_app
from cloud.db.engine import build_engine
from cloud.db.job_tables import route_jobs, train_jobs
from cloud.jobs.queue import ROUTE, db_now_ms, delete_finished
from cloud.settings import CloudSettings

#: Short leases so that a dead worker's job is released within seconds.
LEASE_S = 2.0
WORKER_ENV = {"JOB_LEASE_S": str(LEASE_S), "WORKER_POLL_S": "0.2"}


def _replica_settings(database_url: str, tmp_path: Path) -> CloudSettings:
    """An API replica that runs no jobs itself (as in the compose file)."""
    return make_settings(database_url, embedded_worker=False, embedded_rollout_controller=False,
                         job_lease_s=LEASE_S, train_workdir=tmp_path / "train-api")


def _planner(client: TestClient) -> dict[str, str]:
    resp = client.post("/api/v1/tokens", json={"role": "planner", "label": "ops"}, headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def _row(engine: Engine, table: Any, job_id: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.job_id == job_id)).one()


def _wait_row(engine: Engine, table: Any, job_id: Any, what: str, ok: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        row = _row(engine, table, job_id)
        if ok(row):
            return row
        assert time.monotonic() < deadline, f"job {job_id} never {what}: {row.state}, attempts {row.attempts}"
        time.sleep(0.05)


def test_a_route_job_survives_an_api_restart_and_a_killed_worker(database_url: str, tmp_path: Path) -> None:
    settings = _replica_settings(database_url, tmp_path)
    engine = build_engine(database_url, pool_size=1)
    workers: list[WorkerProcess] = []
    try:
        with TestClient(create_app(settings)) as replica_b:
            planner = _planner(replica_b)
            with TestClient(create_app(settings)) as replica_a:
                resp = replica_a.post("/api/v1/route-jobs?time_limit_s=6&engine=ortools&seed=4", json=problem_doc(),
                                      headers=planner)
                assert resp.status_code == 202, resp.text
                job_id = resp.json()["id"]
                time.sleep(1.0)
                assert replica_a.get(f"/api/v1/route-jobs/{job_id}", headers=planner).json()["status"] == "queued"
            # replica A is gone; the job is a row, served by replica B and taken by the first worker
            first = WorkerProcess(database_url, tmp_path / "w1", WORKER_ENV, ["--queues", "route"]).start()
            workers.append(first)
            wait_for(replica_b, job_id, planner, {"running"})
            running = _wait_row(engine, route_jobs, job_id, "made progress", lambda r: r.progress > 0)
            assert running.worker == first.name and running.attempts == 1
            solvers = first.children()
            assert solvers, first.log()
            lease_at_kill = _row(engine, route_jobs, job_id).lease_expires_ts
            first.stop(kill=True)
            gone_s = wait_until_gone(solvers, 10)  # the lifeline ends the orphaned solver
            solver_gone_ms = int(time.time() * 1000)

            with TestClient(create_app(settings)) as replica_a:  # replica A restarted
                second = WorkerProcess(database_url, tmp_path / "w2", WORKER_ENV, ["--queues", "route"]).start()
                workers.append(second)
                started = time.monotonic()
                retried = _wait_row(engine, route_jobs, job_id, "claimed again", lambda r: r.attempts == 2)
                claimed_s = time.monotonic() - started
                assert retried.worker == second.name
                assert retried.started_ts >= lease_at_kill  # not before the dead worker's lease ran out ...
                assert retried.started_ts >= solver_gone_ms - 50  # ... and its solver had stopped: never twice at once
                final = wait_for(replica_a, job_id, planner, {"done", "failed", "cancelled"}, timeout_s=60)[-1]
                done_s = time.monotonic() - started
                assert final["status"] == "done" and final["attempts"] == 2 and final["best_cost"] is not None, final
                plans = [c.get(f"/api/v1/route-jobs/{job_id}/result", headers=planner).json()
                         for c in (replica_a, replica_b)]
                assert plans[0] == plans[1] and plans[0]["total_cost"] == pytest.approx(final["best_cost"])
                png = replica_b.get(f"/api/v1/route-jobs/{job_id}/plot.png", headers=planner)
                assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
                geo = replica_a.get(f"/api/v1/route-jobs/{job_id}/result.geojson", headers=planner)
                assert geo.status_code == 200 and geo.json()["type"] == "FeatureCollection"

                # cancelled through replica B while the worker solves it for replica A's caller
                long_id = replica_a.post("/api/v1/route-jobs?time_limit_s=60&engine=ortools", json=problem_doc(),
                                         headers=planner).json()["id"]
                wait_for(replica_b, long_id, planner, {"running"})
                solvers = _wait_children(second)
                asked = time.monotonic()
                resp = replica_b.delete(f"/api/v1/route-jobs/{long_id}", headers=planner)
                assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
                wait_until_gone(solvers, 10)
                cancel_s = time.monotonic() - asked
                assert replica_a.get(f"/api/v1/route-jobs/{long_id}", headers=planner).json()["status"] == "cancelled"
        print(f"route job after kill -9 of its worker: orphan solver gone in {gone_s:.2f} s, claimed by the next "
              f"worker {claimed_s:.2f} s after it started (lease {LEASE_S:g} s), done {done_s:.2f} s after; "
              f"cancel through another replica stopped the solver in {cancel_s:.2f} s")
    finally:
        for w in workers:
            w.stop()
        engine.dispose()


def test_a_worker_stopped_with_sigterm_hands_its_job_back_at_once(database_url: str, tmp_path: Path) -> None:
    """A rolling deploy: the job goes back to the queue without waiting for its lease, not counted as an attempt."""
    settings = _replica_settings(database_url, tmp_path)
    env = {**WORKER_ENV, "JOB_LEASE_S": "600"}  # a lease that would outlive the test
    engine = build_engine(database_url, pool_size=1)
    workers: list[WorkerProcess] = []
    try:
        with TestClient(create_app(settings)) as replica:
            planner = _planner(replica)
            job_id = replica.post("/api/v1/route-jobs?time_limit_s=4&engine=ortools", json=problem_doc(),
                                  headers=planner).json()["id"]
            first = WorkerProcess(database_url, tmp_path / "w1", env, ["--queues", "route"]).start()
            workers.append(first)
            wait_for(replica, job_id, planner, {"running"})
            solvers = _wait_children(first)
            asked = time.monotonic()
            assert first.stop() == 0
            handed_back_s = time.monotonic() - asked
            wait_until_gone(solvers, 5)
            back = _row(engine, route_jobs, job_id)
            assert back.state == "queued" and back.attempts == 0 and back.worker is None
            second = WorkerProcess(database_url, tmp_path / "w2", env, ["--queues", "route"]).start()
            workers.append(second)
            final = wait_for(replica, job_id, planner, {"done", "failed"}, timeout_s=60)[-1]
            assert final["status"] == "done" and final["attempts"] == 1
        print(f"worker stopped with SIGTERM mid-job: exited and handed the job back in {handed_back_s:.2f} s")
    finally:
        for w in workers:
            w.stop()
        engine.dispose()


def _wait_children(worker: WorkerProcess, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while not (kids := worker.children()):
        assert time.monotonic() < deadline, worker.log()[-2000:]
        time.sleep(0.05)
    return kids


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_concurrent_workers_take_each_job_once(database_url: str, tmp_path: Path) -> None:
    settings = _replica_settings(database_url, tmp_path)
    engine = build_engine(database_url, pool_size=1)
    with TestClient(create_app(settings)) as replica:
        planner = _planner(replica)
        ids = [replica.post(f"/api/v1/route-jobs?time_limit_s=0.5&engine=ortools&seed={k}", json=problem_doc(),
                            headers=planner).json()["id"] for k in range(8)]
        workers = [WorkerProcess(database_url, tmp_path / f"w{k}", WORKER_ENV,
                                 ["--queues", "route", "--route-concurrency", "2"]) for k in range(2)]
        try:
            started = time.monotonic()
            for w in workers:
                w.start()
            for job_id in ids:
                assert wait_for(replica, job_id, planner, {"done", "failed"}, timeout_s=90)[-1]["status"] == "done"
            took = time.monotonic() - started
            rows = [_row(engine, route_jobs, job_id) for job_id in ids]
        finally:
            for w in workers:
                w.stop()
            engine.dispose()
    assert all(r.attempts == 1 for r in rows)  # no job was claimed twice
    by_worker = {w.name: sum(1 for r in rows if r.worker == w.name) for w in workers}
    assert sum(by_worker.values()) == len(ids)
    print(f"8 route jobs on 2 workers x 2 slots: {took:.1f} s, split {sorted(by_worker.values())}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_training_job_survives_a_killed_worker_and_is_cancelled_through_another_replica(
        database_url: str, tmp_path: Path) -> None:
    """TensorFlow in the worker's child: killed with its worker (lifeline), run again by the next one."""
    settings = _replica_settings(database_url, tmp_path)
    env = {**WORKER_ENV, "TRAIN_MIN_READINGS": "100"}
    engine = build_engine(database_url, pool_size=1)
    workers: list[WorkerProcess] = []
    try:
        with TestClient(create_app(settings)) as replica_a, TestClient(create_app(settings)) as replica_b:
            headers = register(replica_a)
            sync(replica_a, headers, GATEWAY_ID, telemetry_records("cold-1", 300, seed=1))
            job_id = replica_a.post("/api/v1/models/train", json={"task": "anomaly", "epochs": 1000},
                                    headers=admin_headers()).json()["job_id"]
            first = WorkerProcess(database_url, tmp_path / "w1", env, ["--queues", "train"]).start()
            workers.append(first)
            _wait_row(engine, train_jobs, job_id, "trained", lambda r: r.progress >= 0.1, timeout_s=120)
            trainers = first.children()
            assert trainers
            first.stop(kill=True)
            gone_s = wait_until_gone(trainers, 15)
            second = WorkerProcess(database_url, tmp_path / "w2", env, ["--queues", "train"]).start()
            workers.append(second)
            job = _wait_row(engine, train_jobs, job_id, "claimed again", lambda r: r.attempts == 2, timeout_s=30)
            assert job.worker == second.name and job.state == "running"
            trainers = _wait_children(second)
            _wait_row(engine, train_jobs, job_id, "logged its attempt",
                      lambda r: any(line.startswith("attempt 2 on worker") for line in r.log))
            detail = wait_for_state(replica_b, job_id, {"running"})
            assert detail["attempts"] == 2 and detail["worker"] == second.name
            resp = replica_b.delete(f"/api/v1/models/jobs/{job_id}", headers=admin_headers())
            assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
            wait_until_gone(trainers, 15)
            final = replica_a.get(f"/api/v1/models/jobs/{job_id}", headers=admin_headers()).json()
            assert final["state"] == "cancelled" and final["candidate_version"] is None
        print(f"training job after kill -9 of its worker: TensorFlow child gone in {gone_s:.2f} s")
    finally:
        for w in workers:
            w.stop()
        engine.dispose()


def test_finished_route_jobs_past_their_retention_are_deleted(engine: Engine) -> None:
    """The worker's upkeep deletes done/failed/cancelled route jobs older than the retention, nothing else."""
    with engine.begin() as conn:
        now = db_now_ms(conn)
    day = 86_400_000
    jobs = {"old-done": ("done", now - 8 * day), "old-failed": ("failed", now - 8 * day),
            "old-cancelled": ("cancelled", now - 9 * day), "new-done": ("done", now - 6 * day),
            "old-running": ("running", None), "queued": ("queued", None)}
    with engine.begin() as conn:
        conn.execute(route_jobs.insert(), [
            {"job_id": job_id, "state": state, "engine": "ortools", "time_limit_s": 1.0, "seed": 1, "problem": {},
             "created_by": "test", "created_ts": now - 10 * day, "finished_ts": finished}
            for job_id, (state, finished) in jobs.items()])
    assert delete_finished(engine, ROUTE, ("done", "failed", "cancelled"), 7 * day) == 3
    with engine.begin() as conn:
        left = set(conn.execute(select(route_jobs.c.job_id)).scalars())
    assert left == {"new-done", "old-running", "queued"}
    assert delete_finished(engine, ROUTE, ("done", "failed", "cancelled"), 7 * day) == 0
