"""The cloud retrain of the device (multichannel) model: device runs joined per message from synced
telemetry (SQLite and PostgreSQL), and a real tiny retrain end to end in a worker process (TensorFlow
there, never in the API process) that registers a device_anomaly candidate."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cloud_testkit import GATEWAY_ID, admin_headers, make_settings, register
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from train_testkit import T0, machine_records, sync, telemetry_records, wait_for_state

from cloud.services.model_registry import list_versions
from cloud.services.train_spec import TrainResult
from cloud.services.training_data import device_runs, reading_series, split_runs
from cloud.settings import CloudSettings

ADMIN = admin_headers()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> CloudSettings:
    return make_settings(database_url, train_workdir=tmp_path / "train", train_min_readings=100)


def test_device_runs_join_the_channels_of_each_message(client: TestClient, engine: Engine) -> None:
    north = register(client, "gw-north", "north")
    pump = machine_records("pump-1", 120, seed=1)
    sync(client, north, "gw-north", pump + telemetry_records("cold-1", 80, seed=2))
    runs = device_runs(reading_series(engine))
    # cold-1 has two channels: left to the per-stream model; the machine's three joined per message
    assert [(r.device_id, r.channels, len(r)) for r in runs] == [
        ("pump-1", ("power_w", "temperature_c", "vibration_rms_mm_s"), 120)]
    run = runs[0]
    first = {x["metric"]: x["value"] for x in pump[0]["msg"]["body"]["readings"]}
    assert run.values[0].tolist() == [first[c] for c in run.channels]
    assert run.ts_ms[0] == T0 and np.all(np.diff(run.ts_ms) == 60_000)
    assert device_runs(reading_series(engine), min_channels=2)[0].device_id == "cold-1"
    (split,) = split_runs(runs, 0.25)
    assert split.train.span()[1] < split.cut_ts <= split.holdout.span()[0]
    assert len(split.train) + len(split.holdout) == 120 and len(split.holdout) == 30


def test_device_retrain_without_multichannel_devices_is_refused(client: TestClient,
                                                                gw_headers: dict[str, str]) -> None:
    sync(client, gw_headers, GATEWAY_ID, telemetry_records("cold-1", 300))
    resp = client.post("/api/v1/models/train", json={"task": "device_anomaly"}, headers=ADMIN)
    assert resp.status_code == 202, resp.text
    job = wait_for_state(client, resp.json()["job_id"], {"succeeded", "failed"}, 120)
    assert job["state"] == "failed" and "multichannel devices" in job["error"], job


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_device_retrain_end_to_end(client: TestClient, engine: Engine, gw_headers: dict[str, str],
                                   settings: CloudSettings) -> None:
    """Synced pump telemetry -> worker (TensorFlow) -> int8 device candidate -> evaluation on the held-back
    messages -> registered device_anomaly candidate with its gate."""
    tf_preloaded = "tensorflow" in sys.modules
    records = machine_records("pump-1", 700, seed=1) + machine_records("pump-2", 700, seed=2, speed=1.2)
    sync(client, gw_headers, GATEWAY_ID, records)
    started = time.monotonic()
    resp = client.post("/api/v1/models/train", json={"task": "device_anomaly", "epochs": 1, "seed": 3},
                       headers=ADMIN)
    assert resp.status_code == 202, resp.text
    job = wait_for_state(client, resp.json()["job_id"], {"succeeded", "failed"}, 240)
    assert job["state"] == "succeeded", job
    assert tf_preloaded or "tensorflow" not in sys.modules
    metrics = job["metrics"]
    for name in ("candidate_holdout_mse", "deployed_holdout_mse", "candidate_holdout_alerts_per_1k",
                 "deployed_holdout_alerts_per_1k", "fit_train_rows_real", "fit_train_rows_synthetic"):
        assert np.isfinite(metrics[name]), name
    assert metrics["candidate_holdout_rows"] == metrics["deployed_holdout_rows"] == 2 * 140
    assert "candidate holdout_mse" in job["gate_reason"] and isinstance(job["gate_passed"], bool)
    assert job["parent_version"] == 1 and job["candidate_version"] == 2
    result = TrainResult.model_validate_json(
        (settings.train_workdir / f"job-{job['job_id']}" / "candidate" / "result.json").read_text())
    assert result.task == "device_anomaly" and result.series_used == 2
    for split in result.splits:
        assert split.train[1] < split.holdout[0]
    registered = {v.model_version: v for v in list_versions(engine, task="device_anomaly")}
    assert registered[2].job_id == job["job_id"] and registered[2].status == "candidate"
    detail = client.get("/api/v1/models/device_anomaly/versions/2", headers=ADMIN).json()
    assert detail["manifest"]["task"] == "device_anomaly" and detail["manifest"]["version"] == 2
    assert detail["manifest"]["anomaly_defaults"]["threshold"] == 0.9  # the parent's threshold is kept
    print(f"device retrain end to end: {time.monotonic() - started:.1f} s")
