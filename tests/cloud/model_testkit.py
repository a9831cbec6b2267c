"""Helpers of the model registry / rollout tests: candidate uploads, simulated gateway reports, waiting."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cloud_testkit import admin_headers, register
from fastapi.testclient import TestClient

from models.manifest import manifest_path_for
from models.runtime import default_model_path
from protocols.signing import Signer, generate_private_key_pem
from tests.helpers.waiting import patience

T = TypeVar("T")


def write_key(path: Path) -> Signer:
    """A fresh Ed25519 key written as PKCS#8 PEM at ``path``."""
    pem = generate_private_key_pem()
    path.write_bytes(pem)
    return Signer(pem)


def candidate_body(task: str = "anomaly", salt: int = 1, **over: Any) -> dict[str, Any]:
    """An upload body: the shipped float model (real bytes, made unique by ``salt``) and a matching manifest."""
    model = default_model_path(task, "_float")
    data = model.read_bytes() + salt.to_bytes(4, "big")
    manifest = json.loads(manifest_path_for(model).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), name=task)
    body: dict[str, Any] = {"tflite_b64": base64.b64encode(data).decode(), "manifest": manifest,
                            "metrics": {"val_loss": 0.5}, "data_from_ts": 1_000, "data_to_ts": 2_000,
                            "parent_version": 1}
    body.update(over)
    return body


def upload(client: TestClient, task: str = "anomaly", salt: int = 1, **over: Any) -> int:
    resp = client.post(f"/api/v1/models/{task}/versions", json=candidate_body(task, salt, **over),
                       headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return int(resp.json()["model_version"])


def promote(client: TestClient, task: str, version: int, **body: Any) -> dict[str, Any]:
    resp = client.post(f"/api/v1/models/{task}/versions/{version}/promote", json=body or None,
                       headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def register_fleet(client: TestClient, n: int, site: str = "berlin", prefix: str = "gw") -> dict[str, dict[str, str]]:
    """Register ``n`` gateways; their auth headers by id."""
    return {f"{prefix}-{i:02d}": register(client, f"{prefix}-{i:02d}", site) for i in range(n)}


def desired(client: TestClient, gateway_id: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = client.get(f"/api/v1/gateways/{gateway_id}/models/desired", headers=headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def desired_versions(client: TestClient, gateway_id: str, headers: dict[str, str]) -> dict[str, tuple[int, str]]:
    """task -> (model_version, mode) of the gateway's desired state."""
    doc = desired(client, gateway_id, headers)
    return {m["task"]: (m["release"]["signed"]["model_version"], m["mode"]) for m in doc["models"]}


def stats(version: int, readings: int = 0, alerts: int = 0, actual: float = 0.0, error: float = 0.0
          ) -> dict[str, Any]:
    return {"model_version": version, "since_ts": 1_000, "readings": readings, "alerts_raised": alerts,
            "forecasts": 10 if actual else 0, "forecast_abs_error": error, "forecast_actual_units": actual}


def post_report(client: TestClient, gateway_id: str, headers: dict[str, str], task: str = "anomaly",
                **task_fields: Any) -> None:
    entry: dict[str, Any] = {"task": task, "state": "running", **task_fields}
    report = {"schema": "edgehouse.model_report", "v": 1, "gateway_id": gateway_id,
              "ts": int(time.time() * 1000), "agent_version": "0.2.0", "tasks": [entry]}
    resp = client.post(f"/api/v1/gateways/{gateway_id}/models/report", json=report, headers=headers)
    assert resp.status_code == 204, resp.text


def rollout_status(client: TestClient, rollout_id: int) -> dict[str, Any]:
    resp = client.get(f"/api/v1/rollouts/{rollout_id}", headers=admin_headers())
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def wait_for(probe: Callable[[], T | None], timeout_s: float = 15.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + patience(timeout_s)
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_rollout(client: TestClient, rollout_id: int, pred: Callable[[dict[str, Any]], bool],
                 what: str = "rollout state", timeout_s: float = 15.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = rollout_status(client, rollout_id)
        return st if pred(st) else None

    return wait_for(probe, timeout_s, what)
