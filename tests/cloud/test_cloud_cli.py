"""edgehouse-cloud CLI: provisioning commands and ``python -m cloud serve`` as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cloud_testkit import ADMIN_TOKEN, telemetry_batch
from typer.testing import CliRunner

from cloud.cli import app

runner = CliRunner()


@pytest.fixture
def cloud_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"EDGEHOUSE_CLOUD_DATABASE_URL": database_url, "EDGEHOUSE_CLOUD_ADMIN_TOKEN": ADMIN_TOKEN}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_gateway_add_list_and_token_create(cloud_env: dict[str, str]) -> None:
    added = runner.invoke(app, ["gateway", "add", "gw-cli", "--site", "hamburg"])
    assert added.exit_code == 0, added.output
    assert len(added.stdout.strip()) >= 40
    given = runner.invoke(app, ["gateway", "add", "gw-cli-2", "--site", "hamburg", "--token", "Given-" + "t0k3n-9Xq2Lp7Wm"])
    assert given.exit_code == 0 and given.stdout.strip() == "Given-t0k3n-9Xq2Lp7Wm"
    again = runner.invoke(app, ["gateway", "add", "gw-cli", "--site", "hamburg"])
    assert again.exit_code == 1 and "already registered" in again.stderr
    listing = runner.invoke(app, ["gateway", "list", "--json"])
    assert listing.exit_code == 0
    assert [g["gateway_id"] for g in json.loads(listing.stdout)] == ["gw-cli", "gw-cli-2"]
    table = runner.invoke(app, ["gateway", "list"])
    assert "gw-cli-2" in table.stdout and "telemetry=0" in table.stdout
    token = runner.invoke(app, ["token", "create", "--role", "planner"])
    assert token.exit_code == 0 and len(token.stdout.strip()) >= 40
    assert runner.invoke(app, ["token", "create", "--role", "root"]).exit_code == 2


def test_bad_config_fails_naming_the_key(cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["check-config"]).exit_code == 0
    monkeypatch.setenv("EDGEHOUSE_CLOUD_ADMIN_TOKEN", "admin")
    result = runner.invoke(app, ["gateway", "list"])
    assert result.exit_code == 2 and "admin_token" in result.stderr
    check = runner.invoke(app, ["check-config"])
    assert check.exit_code == 2 and "configuration error: admin_token:" in check.stderr


def test_supplied_secrets_follow_the_weak_token_rule(cloud_env: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    weak = runner.invoke(app, ["gateway", "add", "gw-z", "--site", "s", "--token", "x" * 20])
    assert weak.exit_code == 1 and "token: token must use at least 8 distinct characters" in weak.stderr
    monkeypatch.setenv("EDGEHOUSE_CLOUD_ENVIRONMENT", "development")
    assert runner.invoke(app, ["gateway", "add", "gw-z", "--site", "s", "--token", "x" * 20]).exit_code == 0


def test_a_misspelled_variable_fails_check_config(cloud_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEHOUSE_CLOUD_MAX_BODY_BYTE", "10")
    check = runner.invoke(app, ["check-config"])
    assert check.exit_code == 2
    assert "EDGEHOUSE_CLOUD_MAX_BODY_BYTE: unknown setting (did you mean EDGEHOUSE_CLOUD_MAX_BODY_BYTES?)" in check.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_python_m_cloud_serve(tmp_path: Path) -> None:
    """The process wiring (config file + env, uvicorn, graceful SIGTERM); storage is covered on both databases
    by the in-process tests, so one backend is enough here."""
    port = _free_port()
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(f'host = "127.0.0.1"\nport = {port}\n')
    env = {**os.environ, "EDGEHOUSE_CLOUD_DATABASE_URL": f"sqlite:///{tmp_path / 'cloud.db'}",
           "EDGEHOUSE_CLOUD_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "cloud", "serve", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = httpx.post(f"{url}/api/v1/gateways", json={"gateway_id": "gw-srv", "site": "s"}, headers=admin)
        ack = httpx.post(f"{url}/api/v1/sync", json=telemetry_batch("gw-srv", 0, 3),
                         headers={"Authorization": f"Bearer {token.json()['token']}"})
        assert ack.status_code == 200 and len(ack.json()["stored"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert proc.returncode in (0, -signal.SIGTERM), out.decode()
    assert b"Application shutdown complete" in out
