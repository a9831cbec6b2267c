"""``edgehouse models`` against a real cloud served by uvicorn in a thread (no mocks)."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cloud_testkit import ADMIN_TOKEN, admin_headers, make_settings
from model_testkit import candidate_body, stats
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.models_cli import app
from edgehouse_cli.main import app as umbrella

ADMIN = admin_headers()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "release.pem"
    result = CliRunner().invoke(app, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    return path, result.stdout.strip()


@pytest.fixture
def cloud_url(database_url: str, key_file: tuple[Path, str]) -> Iterator[str]:
    """A cloud without an online key that trusts the key from ``keygen`` (offline signing)."""
    settings = make_settings(database_url, trusted_keys=[key_file[1]], rollout_tick_s=0.05)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def cli(cloud_url: str) -> CliRunner:
    return CliRunner(env={"EDGEHOUSE_URL": cloud_url, "EDGEHOUSE_TOKEN": ADMIN_TOKEN, "COLUMNS": "250"})


def _ok(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.stdout


def _register(http: httpx.Client, gateway_id: str) -> dict[str, str]:
    resp = http.post("/api/v1/gateways", json={"gateway_id": gateway_id, "site": "berlin"}, headers=ADMIN)
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_keygen_writes_a_private_key_and_prints_the_public_one(key_file: tuple[Path, str]) -> None:
    path, public = key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert len(public) == 44 and public.endswith("=")
    again = CliRunner().invoke(app, ["keygen", str(path)])
    assert again.exit_code == 1 and "exists" in again.stderr


def test_registry_signing_rollout_and_rotation_through_the_cli(cli: CliRunner, cloud_url: str,
                                                                key_file: tuple[Path, str], tmp_path: Path) -> None:
    key, _public = key_file
    http = httpx.Client(base_url=cloud_url, timeout=10)
    fleet = {gw: _register(http, gw) for gw in ("gw-a", "gw-b", "gw-c")}
    assert "shipped-default" in _ok(cli, "list")
    resp = http.post("/api/v1/models/anomaly/versions", json=candidate_body(), headers=ADMIN)
    assert resp.status_code == 201 and resp.json()["model_version"] == 2
    listed = json.loads(_ok(cli, "list", "--task", "anomaly", "--status", "candidate", "--json"))
    assert [m["model_version"] for m in listed] == [2]

    assert "offline signature" in _ok(cli, "promote", "anomaly", "2")
    early = cli.invoke(app, ["rollout", "anomaly", "2"])
    assert early.exit_code == 1 and "HTTP 409" in early.stderr and "sign" in early.stderr
    assert "would sign" in _ok(cli, "sign", "--key", str(key), "--dry-run")
    signed = _ok(cli, "sign", "--key", str(key))
    assert signed.count("signed ") == 2 and "rollback" in signed
    assert "nothing to sign" in _ok(cli, "sign", "--key", str(key))
    shown = _ok(cli, "show", "anomaly", "2")
    assert "promoted" in shown and "val_loss" in shown

    started = _ok(cli, "rollout", "anomaly", "2", "--no-shadow", "--min-readings", "10", "--min-stage-duration", "0")
    assert "rollout 1 started" in started and "canary" in started
    st = json.loads(_ok(cli, "status", "1", "--json"))
    [canary] = st["stages"][0]["gateways"]
    assert "paused" in _ok(cli, "pause", "1", "--reason", "lunch")
    report = {"schema": "edgehouse.model_report", "v": 1, "gateway_id": canary, "ts": int(time.time() * 1000),
              "agent_version": "0.2.0",
              "tasks": [{"task": "anomaly", "state": "running", "current_version": 2,
                         "active_stats": stats(2, readings=50, alerts=1), "previous_stats": stats(1, readings=50)}]}
    resp = http.post(f"/api/v1/gateways/{canary}/models/report", json=report, headers=fleet[canary])
    assert resp.status_code == 204
    assert "running" in _ok(cli, "resume", "1")
    deadline = time.monotonic() + 15
    while json.loads(_ok(cli, "status", "1", "--json"))["stage"] < 1:
        assert time.monotonic() < deadline, "the canary stage never completed"
        time.sleep(0.1)
    text = _ok(cli, "status", "1")
    assert "stage_done" in text and "lunch" in text and canary in text
    assert "anomaly" in _ok(cli, "status")
    rolled = _ok(cli, "rollback", "1", "--reason", "cli test")
    assert "rolled_back" in rolled and "pre-signed" in rolled
    assert json.loads(_ok(cli, "show", "anomaly", "2", "--json"))["status"] == "rejected"
    bad = cli.invoke(app, ["abort", "1"])
    assert bad.exit_code == 1 and "rolled_back" in bad.stderr

    new_key = tmp_path / "next.pem"
    assert CliRunner().invoke(app, ["keygen", str(new_key)]).exit_code == 0
    rotated = _ok(cli, "rotate-key", "--old-key", str(key), "--new-key", str(new_key), "--revoke-old")
    assert "rotation 1 accepted" in rotated
    keys = http.get("/api/v1/models/keys", headers=ADMIN).json()
    assert keys["rotation_version"] == 1 and len(keys["trusted"]) == 1
    desired = http.get("/api/v1/gateways/gw-a/models/desired", headers=fleet["gw-a"]).json()
    assert len(desired["key_rotations"]) == 1
    # the revoked key can no longer rotate
    again = cli.invoke(app, ["rotate-key", "--old-key", str(key), "--new-key", str(key)])
    assert again.exit_code == 1 and "unknown_key" in again.stderr
    http.close()


def test_train_follows_the_job_until_it_ends(cli: CliRunner) -> None:
    job_id = _ok(cli, "train", "demand", "--no-wait").strip()
    assert job_id.isdigit()
    result = cli.invoke(app, ["train", "anomaly", "--scope", "fleet", "--poll", "0.2"])
    assert result.exit_code == 1 and "failed" in result.stderr and "not enough data" in result.stderr


def test_errors_are_reported_with_the_status(cloud_url: str) -> None:
    wrong = CliRunner(env={"EDGEHOUSE_URL": cloud_url, "EDGEHOUSE_TOKEN": "not-a-token-at-all-123"})
    result = wrong.invoke(app, ["list"])
    assert result.exit_code == 1 and "HTTP 401" in result.stderr
    result = CliRunner().invoke(app, ["--url", "http://127.0.0.1:9", "--token", "x", "list"])
    assert result.exit_code == 1 and "cannot reach" in result.stderr
    result = CliRunner(env={"EDGEHOUSE_URL": cloud_url, "EDGEHOUSE_TOKEN": ADMIN_TOKEN}).invoke(
        app, ["rollout", "anomaly", "1", "--waves", "0.5"])
    assert result.exit_code == 1 and "waves" in result.stderr


def test_mounted_as_edgehouse_models() -> None:
    result = CliRunner().invoke(umbrella, ["models", "--help"])
    assert result.exit_code == 0 and "rotate-key" in result.stdout


def test_a_device_model_is_signed_offline_and_rolled_out_with_its_gates(cli: CliRunner, cloud_url: str,
                                                                        key_file: tuple[Path, str]) -> None:
    import base64
    import hashlib

    from models.manifest import manifest_path_for
    from models.runtime import default_model_path
    from protocols import SignedRelease

    key, _public = key_file
    http = httpx.Client(base_url=cloud_url, timeout=10)
    headers = _register(http, "gw-d")
    report = {"schema": "edgehouse.model_report", "v": 3, "gateway_id": "gw-d", "ts": int(time.time() * 1000),
              "agent_version": "0.3.0", "tasks": [{"task": "device_anomaly", "state": "running", "current_version": 1}]}
    assert http.post("/api/v1/gateways/gw-d/models/report", json=report, headers=headers).status_code == 204
    assert "device_anomaly" in _ok(cli, "list", "--task", "device_anomaly")  # the shipped default, version 1
    model = default_model_path("device_anomaly")
    data = model.read_bytes() + b"\x00cli"
    manifest = json.loads(manifest_path_for(model).read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    body = {"tflite_b64": base64.b64encode(data).decode(), "manifest": manifest, "metrics": {}, "parent_version": 1}
    assert http.post("/api/v1/models/device_anomaly/versions", json=body, headers=ADMIN).status_code == 201
    assert "offline signature" in _ok(cli, "promote", "device_anomaly", "2")
    assert "signed " in _ok(cli, "sign", "--key", str(key))
    started = _ok(cli, "rollout", "device_anomaly", "2", "--min-device-days", "0.5", "--max-error-rate", "0.05",
                  "--max-device-alerts-per-day", "2")
    assert "rollout 1 started" in started
    st = json.loads(_ok(cli, "status", "1", "--json"))
    assert st["task"] == "device_anomaly" and [m["gateway_id"] for m in st["members"]] == ["gw-d"]
    assert (st["gates"]["min_device_days"], st["gates"]["max_error_rate"], st["gates"]["max_device_alerts_per_day"]) \
        == (0.5, 0.05, 2.0)
    desired = http.get("/api/v1/gateways/gw-d/models/desired", headers=headers).json()
    [item] = [m for m in desired["models"] if m["task"] == "device_anomaly"]
    release = SignedRelease.model_validate_json(json.dumps(item["release"]))
    assert desired["v"] == 2 and release.signed.v == 2 and release.signed.model_version == 2 and release.signatures
