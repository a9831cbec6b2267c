"""Shared scenario helpers for the edge agent tests: configs, messages, a private broker, a fake cloud.

A uniquely named module (not `conftest`) so test files can import it whatever else is collected.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import AgentConfig
from edge_agent.inbound import Inbound
from edge_agent.output import GatewayOutput
from edge_agent.store import Store
from protocols import (
    AlertPayload,
    ForecastPayload,
    Reading,
    ScanBody,
    ScanMessage,
    StatusBody,
    StatusMessage,
    SyncBatch,
    TelemetryBody,
    TelemetryMessage,
    device_topic,
    encode,
)

# The shared helpers live in the repository's `tests` package: importable under `python -m
# pytest` (cwd on sys.path) but not under the bare `pytest` script unless the root is added.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)
from tests.helpers.mosquitto import Mosquitto, free_port  # noqa: F401 - re-exported to the test modules

SITE = "site-1"
GATEWAY = "gw-test"
BASE_TS = 1_700_000_000_000


# --------------------------------------------------------------------------- messages


def telemetry(
    seq: int, device: str = "dev-1", boot: str = "boot-a", ts: int | None = None, value: float = 4.5
) -> TelemetryMessage:
    return TelemetryMessage(
        msg_id=f"t-{device}-{boot}-{seq}",
        device_id=device,
        boot_id=boot,
        seq=seq,
        ts=BASE_TS + seq * 1000 if ts is None else ts,
        body=TelemetryBody(readings=(Reading(metric="temperature_c", value=value),)),
    )


def scan(
    seq: int,
    device: str = "scan-1",
    boot: str = "boot-a",
    ts: int | None = None,
    code_type: str = "rfid",
    tag: str | None = "tag-1",
    reader: str = "reader-1",
) -> ScanMessage:
    return ScanMessage(
        msg_id=f"s-{device}-{boot}-{seq}",
        device_id=device,
        boot_id=boot,
        seq=seq,
        ts=BASE_TS + seq * 1000 if ts is None else ts,
        body=ScanBody(
            code_type=code_type,
            sku="SKU-1",
            location="A-01",
            direction="pick",
            qty=1,  # type: ignore[arg-type]
            reader_id=reader,
            tag_id=tag if code_type == "rfid" else None,
        ),
    )


def status_msg(
    seq: int, device: str = "dev-1", boot: str = "boot-a", state: str = "online", ts: int | None = None
) -> StatusMessage:
    return StatusMessage(
        msg_id=f"st-{device}-{boot}-{seq}",
        device_id=device,
        boot_id=boot,
        seq=seq,
        ts=BASE_TS + seq * 1000 if ts is None else ts,
        body=StatusBody(state=state, fw_version="1.2.3"),  # type: ignore[arg-type]
    )


def inbound(
    msg: TelemetryMessage | ScanMessage | StatusMessage, mid: int = 1, topic: str | None = None
) -> Inbound:
    kind = {"edgehouse.telemetry": "telemetry", "edgehouse.scan": "scan", "edgehouse.status": "status"}[
        msg.schema_
    ]
    return Inbound(topic or device_topic(SITE, msg.device_id, kind), encode(msg), mid, 1)


# --------------------------------------------------------------------------- the store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A migrated agent database in the test's temp folder."""
    s = Store(tmp_path / "agent.db")
    s.open()
    return s


def storing(store: Store) -> Callable[[AlertPayload | ForecastPayload], bool]:
    """The agent's output without MQTT: store + outbox (what the workers are handed)."""
    return GatewayOutput(store, SITE, GATEWAY).emit


# --------------------------------------------------------------------------- config


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., AgentConfig]:
    def build(**sections: Any) -> AgentConfig:
        data: dict[str, Any] = {"gateway_id": GATEWAY, "site": SITE, "data_dir": str(tmp_path / "data")}
        data["http"] = {"port": 0}
        data["store"] = {"retention_interval_s": 3600}
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return AgentConfig.from_mapping(data)

    return build


def write_toml(path: Path, config: AgentConfig) -> Path:
    """Write a config back as TOML (only the scalar/list keys we use in tests)."""
    lines = [
        f'gateway_id = "{config.gateway_id}"',
        f'site = "{config.site}"',
        f'data_dir = "{config.data_dir}"',
    ]
    for section in ("mqtt", "ingest", "store", "cloud", "http"):
        model = getattr(config, section)
        lines.append(f"[{section}]")
        for key, value in model.model_dump(exclude_none=True).items():
            if hasattr(getattr(model, key), "get_secret_value"):
                value = getattr(model, key).get_secret_value()
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- private mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free port with the shipped config, persisting into tmp_path."""
    b = Mosquitto(persistence_dir=tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.cleanup()


# --------------------------------------------------------------------------- fake cloud


Responder = Callable[[SyncBatch, dict[str, str]], tuple[int, dict[str, Any] | str]]


@dataclass
class FakeCloud:
    """A real HTTP server answering ``POST /api/v1/sync``; ``responder`` decides each answer."""

    responder: Responder
    batches: list[SyncBatch] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    stored: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def ack_all(self, batch: SyncBatch, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        ids = [r.id for r in batch.records]
        stored = [i for i in ids if i not in self.stored]
        dups = [i for i in ids if i in self.stored]
        self.stored.update(ids)
        return 200, {
            "schema": "edgehouse.sync_ack",
            "batch_id": batch.batch_id,
            "stored": stored,
            "duplicates": dups,
        }


def _start_cloud(cloud: FakeCloud) -> None:
    class Handler(BaseHTTPRequestHandler):
        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # e.g. the model updater's desired models: none here
            self._not_found()

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/api/v1/sync":  # e.g. the model report
                self._not_found()
                return
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            batch = SyncBatch.model_validate_json(raw)
            headers = {k.lower(): v for k, v in self.headers.items()}
            cloud.batches.append(batch)
            cloud.headers.append(headers)
            status, body = cloud.responder(batch, headers)
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    cloud.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    cloud.server.daemon_threads = True
    threading.Thread(target=cloud.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def fake_cloud() -> Iterator[FakeCloud]:
    cloud = FakeCloud(responder=lambda b, h: (500, "unset"))
    cloud.responder = cloud.ack_all
    _start_cloud(cloud)
    try:
        yield cloud
    finally:
        assert cloud.server is not None
        cloud.server.shutdown()
        cloud.server.server_close()
