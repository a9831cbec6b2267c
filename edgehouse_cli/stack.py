"""Processes of a local Edgehouse stack: the cloud service and gateway agents.

Used by ``edgehouse demo``, the end-to-end tests and the benchmarks, so that all three start,
stop, crash and inspect the parts the same way an operator would: as separate processes
started from their console entry points with their own config.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgehouse_cli.broker import free_port


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """Write a two-level dict (scalars, lists, and tables of scalars/lists) as TOML."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _wait(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last_exc = exc
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s} s ({last_exc!r})")


def _end(proc: subprocess.Popen[bytes] | None, log: Any, sig: int, timeout_s: float) -> int | None:
    """Signal a child, wait (SIGKILL after ``timeout_s``), close its log; its exit code."""
    if proc is None:
        return None
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    if log is not None:
        log.close()
    return rc


@dataclass
class CloudProcess:
    """``python -m cloud serve`` on a private port."""

    workdir: Path
    database_url: str | None = None
    port: int = 0
    host: str = "127.0.0.1"
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: More ``EDGEHOUSE_CLOUD_*`` settings (e.g. ``{"SIGNING_KEY_FILE": ...}``), prefix added here.
    settings: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        env = dict(os.environ)
        env.update(
            EDGEHOUSE_CLOUD_DATABASE_URL=self.database_url or f"sqlite:///{self.workdir / 'cloud.db'}",
            EDGEHOUSE_CLOUD_ADMIN_TOKEN=self.admin_token,
            EDGEHOUSE_CLOUD_HOST=self.host,
            EDGEHOUSE_CLOUD_PORT=str(self.port),
        )
        env.update({f"EDGEHOUSE_CLOUD_{k.upper()}": v for k, v in self.settings.items()})
        self._log = open(self.workdir / "cloud.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cloud", "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        _wait(self._healthy, timeout_s, "cloud /healthz")

    def _healthy(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"cloud exited with {self._proc.returncode}; see {self.workdir / 'cloud.log'}")
        return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200

    def stop(self, kill: bool = False) -> int | None:
        rc = _end(self._proc, self._log, signal.SIGKILL if kill else signal.SIGTERM, 15.0)
        self._proc = self._log = None
        return rc

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10)

    def register_gateway(self, gateway_id: str, site: str) -> str:
        with self.admin() as client:
            resp = client.post("/api/v1/gateways", json={"gateway_id": gateway_id, "site": site})
            resp.raise_for_status()
            return str(resp.json()["token"])

    def gateways(self) -> list[dict[str, Any]]:
        with self.admin() as client:
            resp = client.get("/api/v1/gateways")
            resp.raise_for_status()
            return list(resp.json())

    def counts(self) -> dict[str, int]:
        """Records stored in the cloud, summed over gateways, per kind."""
        total: dict[str, int] = {}
        for gw in self.gateways():
            for kind, n in (gw.get("counts") or {}).items():
                total[kind] = total.get(kind, 0) + int(n)
        return total


@dataclass
class AgentProcess:
    """``python -m edge_agent run --config FILE`` for one gateway."""

    gateway_id: str
    site: str
    workdir: Path
    mqtt_host: str
    mqtt_port: int
    filters: list[str]
    cloud_url: str
    cloud_token: str
    mqtt_protocol: str = "v5"
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None
    _log: Any = None
    _http: httpx.Client | None = None
    _http_port: int = 0

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.gateway_id

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.gateway_id}.toml"

    def write_config(self) -> Path:
        doc: dict[str, Any] = {
            "gateway_id": self.gateway_id,
            "site": self.site,
            "data_dir": str(self.data_dir.resolve()),
            "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port, "filters": list(self.filters),
                     "protocol": self.mqtt_protocol},
            "cloud": {"url": self.cloud_url, "token": self.cloud_token},
            "http": {"host": "127.0.0.1", "port": 0},
        }
        for section, values in self.extra.items():
            doc.setdefault(section, {}).update(values)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(doc))
        return self.config_path

    def start(self, timeout_s: float = 30.0) -> None:
        self.write_config()
        runtime = self.data_dir / "agent.runtime.json"
        runtime.unlink(missing_ok=True)
        self._log = open(self.workdir / f"{self.gateway_id}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _wait(self._ready, timeout_s, f"agent {self.gateway_id}")

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"agent {self.gateway_id} exited with {self._proc.returncode}")
        return self.status().get("mqtt_connected") is True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def http_port(self) -> int:
        runtime = json.loads((self.data_dir / "agent.runtime.json").read_text())
        return int(runtime["http_port"])

    def _client(self) -> httpx.Client:
        port = self.http_port()
        if self._http is None or self._http_port != port:
            if self._http is not None:
                self._http.close()
            self._http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2.0)
            self._http_port = port
        return self._http

    def status(self) -> dict[str, Any]:
        resp = self._client().get("/status")
        resp.raise_for_status()
        return dict(resp.json())

    def metric(self, name: str) -> float:
        """One unlabelled sample of the agent's ``/metrics`` (0.0 when absent)."""
        resp = self._client().get("/metrics")
        resp.raise_for_status()
        for line in resp.text.splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return float(value)
        return 0.0

    def kill9(self) -> None:
        """``kill -9``: no chance to commit, ack or flush anything."""
        _end(self._proc, self._log, signal.SIGKILL, 5.0)
        self._proc = self._log = None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code (0 on a graceful stop)."""
        rc = _end(self._proc, self._log, signal.SIGTERM, timeout_s)
        self._proc = self._log = None
        return rc
