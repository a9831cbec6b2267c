"""Retraining jobs: data extraction and hold-out split (SQLite and PostgreSQL), the API, a real tiny
anomaly retrain end to end in a worker process, not-enough-data failures, cancel, restart recovery,
and the guard that TensorFlow never enters the API or worker process."""

from __future__ import annotations

import builtins
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cloud_testkit import GATEWAY_ID, admin_headers, make_settings, register
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from train_testkit import DAY_MS, T0, scan_records, sync, telemetry_records, wait_for_state
from worker_kit import alive

from cloud.db.engine import build_engine
from cloud.db.migrate import migrate
from cloud.jobs.queue import TRAIN, claim
from cloud.jobs.train_runner import TrainRunner
from cloud.jobs.worker import Worker
from cloud.services import train_job_store
from cloud.services.model_registry import CandidateIn
from cloud.services.train_spec import TrainResult
from cloud.services.training_data import demand_panel, head_rows, parse_scope, reading_series, split_series
from cloud.settings import CloudSettings
from models.runtime import default_model_path

ADMIN = admin_headers()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> CloudSettings:
    return make_settings(database_url, train_workdir=tmp_path / "train", train_min_readings=100)


#: Tests that run a TensorFlow worker run once, on SQLite (the data path is covered on both backends).
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# data extraction ---------------------------------------------------------------------------


def test_scope_parsing() -> None:
    assert parse_scope("fleet") is None
    assert parse_scope("site:dc-north") == "dc-north"
    for bad in ("", "site:", "Fleet", "site:a b", "region:x"):
        with pytest.raises(ValueError):
            parse_scope(bad)


def test_reading_series_by_scope_range_and_split(client: TestClient, engine: Engine) -> None:
    north = register(client, "gw-north", "north")
    south = register(client, "gw-south", "south")
    sync(client, north, "gw-north", telemetry_records("cold-n", 50, seed=1) + telemetry_records("cold-m", 30, seed=2))
    sync(client, south, "gw-south", telemetry_records("cold-s", 40, seed=3, start_ms=T0 + 600_000))

    fleet = reading_series(engine)
    assert [(s.device_id, s.metric, len(s)) for s in fleet] == [
        ("cold-m", "humidity_pct", 30), ("cold-m", "temperature_c", 30), ("cold-n", "humidity_pct", 50),
        ("cold-n", "temperature_c", 50), ("cold-s", "humidity_pct", 40), ("cold-s", "temperature_c", 40),
    ]
    for s in fleet:
        assert np.all(np.diff(s.ts_ms) > 0) and s.ts_ms.dtype == np.int64
    expected = [r["msg"]["body"]["readings"][0]["value"] for r in telemetry_records("cold-n", 50, seed=1)]
    assert fleet[3].values.tolist() == expected

    assert {s.device_id for s in reading_series(engine, "south")} == {"cold-s"}
    assert reading_series(engine, "nowhere") == []
    ranged = reading_series(engine, "north", from_ts=T0 + 10 * 60_000, to_ts=T0 + 20 * 60_000)
    assert {len(s) for s in ranged} == {10}
    assert all(s.ts_ms[0] == T0 + 600_000 and s.ts_ms[-1] == T0 + 19 * 60_000 for s in ranged)

    for split in split_series(fleet, 0.2):
        first, last = split.train.span()[0], split.holdout.span()[1]
        assert split.train.span()[1] < split.cut_ts <= split.holdout.span()[0]  # never overlapping
        assert len(split.train) + len(split.holdout) == len(next(s for s in fleet if s.device_id == split.train.device_id))
        assert split.cut_ts - first == pytest.approx(0.8 * (last - first), abs=60_000)


def test_demand_panel_counts_the_demand_direction_per_site_and_day(client: TestClient, engine: Engine) -> None:
    north = register(client, "gw-north", "north")
    south = register(client, "gw-south", "south")
    picks_n = scan_records("rd-n", 10, ["A", "B"], seed=1)
    inbound = scan_records("rd-n", 10, ["A"], seed=2, direction="inbound", seq0=len(picks_n))
    picks_s = scan_records("rd-s", 8, ["A"], seed=3, start_ms=T0 + DAY_MS)
    sync(client, north, "gw-north", picks_n + inbound)
    sync(client, south, "gw-south", picks_s)

    panel = demand_panel(engine, "pick")
    assert panel is not None
    assert panel.skus == ("north/A", "north/B", "south/A")
    assert len(panel.dates) == 10 and panel.dates[0].isoformat() == "2026-03-01"
    assert (panel.dates[-1] - panel.dates[0]).days == 9
    assert not panel.promo.any()

    def units(records: list[dict[str, Any]], sku: str, day: int) -> float:
        return float(sum(r["msg"]["body"]["qty"] for r in records
                         if r["msg"]["body"]["sku"] == sku and (r["msg"]["ts"] - T0) // DAY_MS == day))

    for day in range(10):
        assert panel.qty[day, 0] == units(picks_n, "A", day)  # inbound scans are not demand
        assert panel.qty[day, 1] == units(picks_n, "B", day)
        assert panel.qty[day, 2] == units(picks_s, "A", day)  # 0 on day 0, before its first scan
    south_only = demand_panel(engine, "pick", "south")
    south_days = sorted({(r["msg"]["ts"] - T0) // DAY_MS for r in picks_s})
    assert south_only is not None and south_only.skus == ("south/A",)
    assert len(south_only.dates) == south_days[-1] - south_days[0] + 1  # first to last scanned day
    cut = demand_panel(engine, "pick", to_ts=T0 + 5 * DAY_MS + 3_600_000)  # day 5 incomplete: left out
    assert cut is not None and len(cut.dates) == 5
    assert demand_panel(engine, "outbound") is None
    head = head_rows(panel, 7)
    assert head.qty.shape == (7, 3) and head.dates == panel.dates[:7]


# API ---------------------------------------------------------------------------------------


def test_train_api_checks_roles_and_fields(client: TestClient, gw_headers: dict[str, str]) -> None:
    assert client.post("/api/v1/models/train", json={"task": "anomaly"}).status_code == 401
    assert client.post("/api/v1/models/train", json={"task": "anomaly"}, headers=gw_headers).status_code == 403
    assert client.get("/api/v1/models/jobs", headers=gw_headers).status_code == 403
    for body, field in (
        ({"task": "routing"}, "task"),
        ({"task": "anomaly", "scope": "region:x"}, "scope"),
        ({"task": "anomaly", "scope": "site:atlantis"}, "scope"),
        ({"task": "anomaly", "epochs": 0}, "epochs"),
        ({"task": "anomaly", "holdout_fraction": 0.9}, "holdout_fraction"),
        ({"task": "anomaly", "data_from_ts": 10, "data_to_ts": 5}, "data_to_ts"),
        ({"task": "anomaly", "bogus": 1}, "bogus"),
    ):
        resp = client.post("/api/v1/models/train", json=body, headers=ADMIN)
        assert 400 <= resp.status_code < 500, (body, resp.text)
        assert [e["field"] for e in resp.json()["detail"]] == [field], (body, resp.text)
    resp = client.get("/api/v1/models/jobs/999", headers=ADMIN)
    assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "job_id"
    assert client.get("/api/v1/models/jobs?state=sleeping", headers=ADMIN).status_code == 422


def test_not_enough_data_is_a_failed_job_with_a_clear_error(client: TestClient, gw_headers: dict[str, str]) -> None:
    """Real worker processes (no TensorFlow is needed to refuse): on both backends."""
    sync(client, gw_headers, GATEWAY_ID, telemetry_records("cold-1", 60) + scan_records("rd-1", 30, ["A"]))
    anomaly = client.post("/api/v1/models/train", json={"task": "anomaly", "scope": "site:berlin"}, headers=ADMIN)
    demand = client.post("/api/v1/models/train", json={"task": "demand"}, headers=ADMIN)
    assert anomaly.status_code == demand.status_code == 202, anomaly.text + demand.text
    job = wait_for_state(client, anomaly.json()["job_id"], {"failed", "succeeded"}, 60)
    assert job["state"] == "failed" and job["candidate_version"] is None
    assert job["error"].startswith("not enough data for an anomaly retrain of site:berlin: 0 of 2 reading series")
    assert ">= 100 readings before the hold-out" in job["error"]
    job = wait_for_state(client, demand.json()["job_id"], {"failed", "succeeded"}, 60)
    assert job["state"] == "failed"
    assert job["error"] == ("not enough data for a demand retrain of fleet: 30 days of 'pick' scans, need at least "
                            "112 (min_history 28 + 28 training + 28 validation + 28 held back)")
    assert any("error: not enough data" in line for line in job["log"])
    listed = client.get("/api/v1/models/jobs?state=failed&task=demand", headers=ADMIN).json()
    assert [j["job_id"] for j in listed] == [demand.json()["job_id"]]


def _record_imports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of every import statement or import_module call in this process from now on (cached or not)."""
    seen: list[str] = []
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def recording_import(name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(name)
        return real_import(name, *args, **kwargs)

    def recording_import_module(name: str, package: str | None = None) -> Any:
        seen.append(name)
        return real_import_module(name, package)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    monkeypatch.setattr(importlib, "import_module", recording_import_module)
    return seen


@sqlite_only
def test_anomaly_retrain_end_to_end(request: pytest.FixtureRequest, client: TestClient, engine: Engine,
                                    gw_headers: dict[str, str], settings: CloudSettings,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Synced readings -> worker (TensorFlow) -> int8 candidate -> evaluation on held-back readings ->
    registered candidate; the API process never imports TensorFlow and still solves routes after."""
    tf_preloaded = "tensorflow" in sys.modules  # other test modules of this session may have imported it
    records = telemetry_records("cold-1", 500, seed=1) + telemetry_records("cold-2", 500, seed=2, base=2.0)
    sync(client, gw_headers, GATEWAY_ID, records)
    imports = _record_imports(monkeypatch)
    started = time.monotonic()
    resp = client.post("/api/v1/models/train", json={"task": "anomaly", "epochs": 1, "seed": 3}, headers=ADMIN)
    assert resp.status_code == 202, resp.text
    queued = resp.json()
    assert queued["state"] == "queued" and queued["task"] == "anomaly" and queued["scope"] == "fleet"
    assert queued["created_by"] == "admin" and queued["progress"] == 0.0

    job = wait_for_state(client, queued["job_id"], {"succeeded", "failed"}, 150)
    elapsed = time.monotonic() - started
    monkeypatch.undo()
    assert not [name for name in imports if name.split(".")[0] in ("tensorflow", "keras")]  # trained elsewhere
    assert tf_preloaded or "tensorflow" not in sys.modules
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["finished_ts"] >= job["started_ts"] >= job["created_ts"]
    metrics = job["metrics"]
    for name in ("candidate_holdout_nll", "deployed_holdout_nll", "candidate_holdout_alerts_per_1k",
                 "deployed_holdout_alerts_per_1k", "fit_train_rows_real", "fit_train_rows_synthetic"):
        assert np.isfinite(metrics[name]), name
    assert metrics["candidate_holdout_windows"] == metrics["deployed_holdout_windows"] == 4 * 100
    assert metrics["fit_warm_started"] == 1.0  # from the shipped default's .keras
    assert metrics["candidate_threshold"] == metrics["deployed_threshold"]  # the parent's threshold is kept
    assert isinstance(job["gate_passed"], bool) and "candidate holdout_nll" in job["gate_reason"]
    assert job["candidate_version"] is not None and job["candidate_version"] >= 2
    assert job["parent_version"] == 1
    assert any("epoch 1/1" in line for line in job["log"]) and len(job["log"]) <= 200

    result = TrainResult.model_validate_json(
        (settings.train_workdir / f"job-{job['job_id']}" / "candidate" / "result.json").read_text())
    assert result.series_used == 4 and len(result.splits) == 4
    for split in result.splits:  # held-back readings never overlap training readings
        assert split.train[0] <= split.train[1] < split.holdout[0] <= split.holdout[1]
    assert job["data_from_ts"] == result.data_from_ts == T0
    assert job["data_to_ts"] == result.data_to_ts < result.holdout_from_ts
    assert result.holdout_to_ts == T0 + 499 * 60_000

    from cloud.services.model_registry import list_versions

    registered = {v.model_version: v for v in list_versions(engine, task="anomaly")}
    candidate = registered[job["candidate_version"]]
    assert candidate.job_id == job["job_id"] and candidate.gate_passed == job["gate_passed"]
    assert candidate.parent_version == 1 and candidate.data_to_ts == result.data_to_ts

    from test_cloud_routes_api import problem_doc

    routes = client.post("/api/v1/routes?time_limit_s=0.5&engine=ortools", json=problem_doc(), headers=ADMIN)
    assert routes.status_code == 200, routes.text  # OR-Tools in the API process after a training job
    print(f"anomaly retrain end to end: {elapsed:.1f} s")


@sqlite_only
def test_cancel_stops_the_worker_and_a_queued_job_never_runs(request: pytest.FixtureRequest, client: TestClient,
                                                             gw_headers: dict[str, str]) -> None:
    sync(client, gw_headers, GATEWAY_ID, telemetry_records("cold-1", 300, seed=1))
    long_job = client.post("/api/v1/models/train", json={"task": "anomaly", "epochs": 1000}, headers=ADMIN).json()
    queued = client.post("/api/v1/models/train", json={"task": "anomaly", "epochs": 1}, headers=ADMIN).json()
    assert client.get(f"/api/v1/models/jobs/{queued['job_id']}", headers=ADMIN).json()["state"] == "queued"
    resp = client.delete(f"/api/v1/models/jobs/{queued['job_id']}", headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"

    worker: Worker = client.app.state.cloud.worker  # type: ignore[attr-defined]  # the app's embedded worker
    deadline = time.monotonic() + 60
    while True:  # until TensorFlow is loaded and training has begun in the worker
        job = client.get(f"/api/v1/models/jobs/{long_job['job_id']}", headers=ADMIN).json()
        assert job["state"] == "running" or job["state"] == "queued", job
        pid = worker.running_pid("train", long_job["job_id"])
        if pid is not None and job["progress"] >= 0.1:
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    resp = client.delete(f"/api/v1/models/jobs/{long_job['job_id']}", headers=ADMIN)
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "the worker survived its cancellation"
        time.sleep(0.1)
    time.sleep(0.5)  # the runner thread records what it saw; state stays cancelled
    final = client.get(f"/api/v1/models/jobs/{long_job['job_id']}", headers=ADMIN).json()
    assert final["state"] == "cancelled" and final["candidate_version"] is None
    never = client.get(f"/api/v1/models/jobs/{queued['job_id']}", headers=ADMIN).json()
    assert never["state"] == "cancelled" and never["started_ts"] is None
    again = client.delete(f"/api/v1/models/jobs/{long_job['job_id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["state"] == "cancelled"


# recovery and wiring -----------------------------------------------------------------------


def _default_deployed(_engine: Engine, task: str, _scope: str) -> tuple[int, bytes, dict[str, Any]]:
    path = default_model_path(task)
    return 1, path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


def test_a_job_whose_worker_died_runs_again_until_its_attempts_are_spent(tmp_path: Path) -> None:
    """A worker alone, with injected registry callables (the shipped default as the deployed model)."""
    settings = make_settings(f"sqlite:///{tmp_path / 'cloud.db'}", train_workdir=tmp_path / "train",
                             job_max_attempts=2, embedded_worker=False)
    engine = build_engine(settings.database_url)
    migrate(engine)
    params = {"epochs": 1, "seed": 7, "holdout_fraction": 0.2}
    orphan = train_job_store.insert(engine, "anomaly", "fleet", params, "admin")
    assert claim(engine, TRAIN, "gone:1:dead", lease_s=0.001) is not None  # its worker died right after
    spent = train_job_store.insert(engine, "anomaly", "fleet", params, "admin")
    assert claim(engine, TRAIN, "gone:2:dead", lease_s=0.001) is not None
    train_job_store.transition(engine, spent, ["running"], attempts=2)  # its second worker died too
    waiting = train_job_store.insert(engine, "anomaly", "fleet", params, "admin")
    registered: list[CandidateIn] = []

    def register_candidate(_engine: Engine, c: CandidateIn) -> int:
        registered.append(c)
        return 2

    worker = Worker(settings, engine, ["train"], train_runner=TrainRunner(settings, register_candidate,
                                                                           _default_deployed))
    worker.start()
    try:
        deadline = time.monotonic() + 90
        while any(train_job_store.detail(engine, j).state in ("queued", "running")  # type: ignore[union-attr]
                  for j in (orphan, waiting)):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        given_up = train_job_store.detail(engine, spent)
        assert given_up is not None and given_up.state == "failed" and given_up.attempts == 2
        assert given_up.error == "given up: worker gone:2:dead stopped renewing its lease (attempt 2 of 2); no attempt left"
        for job_id, attempts in ((orphan, 2), (waiting, 1)):  # run (again) to the end, here: not enough data
            job = train_job_store.detail(engine, job_id)
            assert job is not None and job.state == "failed" and job.attempts == attempts, job
            assert job.error is not None and job.error.startswith("not enough data") and job.worker == worker.name
        assert registered == []
    finally:
        worker.stop()
        engine.dispose()


def test_the_api_process_never_imports_tensorflow() -> None:
    code = ("import sys, cloud.app, cloud.services.train_jobs, cloud.api.train_jobs, cloud.services.training_data, "
            "cloud.jobs.worker, cloud.cli; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
