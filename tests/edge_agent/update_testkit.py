"""Scenario helpers for the model-update tests: a small cloud speaking the model-update contract,
signed releases over the shipped models, and an agent wired to both.

The cloud here is a test double (the real one lives in ``cloud/``, never imported by agent tests):
``GET desired`` with ETag / ``If-None-Match`` -> 304, artifacts with ``Range`` -> 206, reports and
sync batches recorded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from agent_testkit import GATEWAY, SITE, inbound, telemetry

from edge_agent.app import Agent
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from models.runtime import default_model_path
from protocols import (
    ARTIFACT_PATH,
    DESIRED_PATH,
    REPORT_PATH,
    ArtifactRef,
    DesiredModel,
    DesiredModels,
    KeyRotation,
    ModelRelease,
    ModelReport,
    SignedKeyRotation,
    SignedRelease,
    SyncBatch,
)
from protocols.signing import Signer, generate_private_key_pem
from tests.helpers.waiting import wait_for

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


# --------------------------------------------------------------------------- models and releases


def shipped(task: str = "anomaly", variant: str = "") -> tuple[bytes, dict[str, Any]]:
    path = default_model_path(task, variant)
    return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


def anomaly_v2() -> bytes:
    """The shipped int8 anomaly model with one byte of its description changed: same length, loads."""
    data, _ = shipped()
    out = data.replace(b"MLIR Converted.", b"MLIR Converted!")
    assert out != data and len(out) == len(data)
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(
    data: bytes, version: int, base: dict[str, Any] | None = None, **changes: Any
) -> dict[str, Any]:
    m = dict(base if base is not None else shipped()[1])
    m.update(sha256=sha(data), size_bytes=len(data), version=version, **changes)
    return m


def make_release(
    signer: Signer | None,
    data: bytes,
    metadata_version: int,
    model_version: int,
    *,
    task: str = "anomaly",
    manifest: dict[str, Any] | None = None,
    expires_ts: int | None = None,
    created_ts: int | None = None,
    rollback: bool = False,
    min_agent_version: str = "0.1.0",
) -> SignedRelease:
    man = manifest if manifest is not None else manifest_for(data, model_version)
    rel = ModelRelease(
        task=task,  # type: ignore[arg-type]
        name=str(man.get("name", task)),
        metadata_version=metadata_version,
        model_version=model_version,
        created_ts=created_ts if created_ts is not None else NOW_MS - DAY_MS,
        expires_ts=expires_ts if expires_ts is not None else NOW_MS + 30 * DAY_MS,
        artifact=ArtifactRef(sha256=sha(data), length=len(data)),
        min_agent_version=min_agent_version,
        rollback=rollback,
        manifest=man,
    )
    if signer is None:
        return SignedRelease(signed=rel, signatures=())
    return signer.sign_release(rel)


def desired_model(doc: SignedRelease, mode: str = "active", rollout_id: int | None = None) -> DesiredModel:
    return DesiredModel(
        task=doc.signed.task,
        release=doc,
        artifact_path=ARTIFACT_PATH.format(sha256=doc.signed.artifact.sha256),
        mode=mode,  # type: ignore[arg-type]
        rollout_id=rollout_id,
    )


def desired(*models: DesiredModel, rotations: tuple[SignedKeyRotation, ...] = ()) -> dict[str, Any]:
    doc = DesiredModels(gateway_id=GATEWAY, generated_ts=NOW_MS, models=models, key_rotations=rotations)
    return json.loads(doc.model_dump_json(by_alias=True))


def rotation(
    signer: Signer, version: int, add: tuple[Signer, ...] = (), revoke: tuple[str, ...] = ()
) -> SignedKeyRotation:
    return signer.sign_rotation(
        KeyRotation(
            rotation_version=version, created_ts=NOW_MS, add=tuple(s.public_key for s in add), revoke=revoke
        )
    )


def new_signer() -> Signer:
    return Signer(generate_private_key_pem())


def public_b64(signer: Signer) -> str:
    return base64.b64encode(signer.public_raw).decode()


# --------------------------------------------------------------------------- the cloud double


@dataclass
class ModelCloud:
    """``desired`` (a JSON object or None for 404), ``artifacts`` (URL path -> bytes) and faults."""

    desired: dict[str, Any] | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)
    #: URL path -> bytes after which the next response is cut (connection closed mid-body), once.
    drop_after: dict[str, int] = field(default_factory=dict)
    #: URL path -> HTTP status answered instead (e.g. 503), until removed.
    fail_with: dict[str, int] = field(default_factory=dict)
    #: After a cut (``drop_after``), answer this status for that path until removed from ``fail_with``.
    fail_after_cut: int | None = None
    desired_gets: int = 0
    not_modified: int = 0
    artifact_requests: list[tuple[str, str | None]] = field(default_factory=list)
    reports: list[ModelReport] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_artifact(self, data: bytes) -> str:
        path = ARTIFACT_PATH.format(sha256=sha(data))
        self.artifacts[path] = data
        return path

    def serve(self, *models: DesiredModel, rotations: tuple[SignedKeyRotation, ...] = ()) -> None:
        self.desired = desired(*models, rotations=rotations)


def _handler(cloud: ModelCloud) -> type[BaseHTTPRequestHandler]:
    desired_path = DESIRED_PATH.format(gateway_id=GATEWAY)
    report_path = REPORT_PATH.format(gateway_id=GATEWAY)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            cloud.auth.append(self.headers.get("Authorization", ""))
            if self.path == desired_path:
                cloud.desired_gets += 1
                if cloud.desired is None:
                    self._send(404, b"{}")
                    return
                body = json.dumps(cloud.desired).encode()
                etag = f'"{sha(body)[:20]}"'
                if self.headers.get("If-None-Match") == etag:
                    cloud.not_modified += 1
                    self._send(304, headers={"ETag": etag})
                    return
                self._send(200, body, {"ETag": etag, "Content-Type": "application/json"})
                return
            data = cloud.artifacts.get(self.path)
            rng = self.headers.get("Range")
            cloud.artifact_requests.append((self.path, rng))
            if self.path in cloud.fail_with:
                self._send(cloud.fail_with[self.path], b"unavailable")
                return
            if data is None:
                self._send(404, b"not found")
                return
            start = 0
            if rng:
                m = re.match(r"^bytes=(\d+)-$", rng)
                assert m is not None, rng
                start = int(m.group(1))
                if start >= len(data):
                    self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
                    return
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            cut = cloud.drop_after.pop(self.path, None)
            if cut is not None and cut < len(body):
                if cloud.fail_after_cut is not None:
                    cloud.fail_with[self.path] = cloud.fail_after_cut
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the peer sees the body end early
                return
            self.wfile.write(body)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == report_path:
                cloud.reports.append(ModelReport.model_validate_json(raw))
                self._send(204)
                return
            if self.path == "/api/v1/sync":
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                batch = SyncBatch.model_validate_json(raw)
                ack = {
                    "schema": "edgehouse.sync_ack",
                    "batch_id": batch.batch_id,
                    "stored": [r.id for r in batch.records],
                }
                self._send(200, json.dumps(ack).encode(), {"Content-Type": "application/json"})
                return
            self._send(404, b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def model_cloud() -> Iterator[ModelCloud]:
    cloud = ModelCloud()
    cloud.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(cloud))
    cloud.server.daemon_threads = True
    threading.Thread(target=cloud.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield cloud
    finally:
        cloud.server.shutdown()
        cloud.server.server_close()


@pytest.fixture
def signer() -> Signer:
    return new_signer()


# --------------------------------------------------------------------------- agents


def update_sections(cloud: ModelCloud, signer: Signer, mqtt_port: int, **updates: Any) -> dict[str, Any]:
    return {
        "mqtt": {"port": mqtt_port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5},
        "cloud": {
            "url": cloud.url,
            "token": "gw-token",
            "backoff_min_s": 0.01,
            "backoff_max_s": 0.05,
            "interval_s": 60,
        },
        "updates": {
            "trusted_keys": [public_b64(signer)],
            "poll_interval_s": 3600,
            "report_interval_s": 3600,
            "chunk_bytes": 1024,
            "download_retries": 2,
            "min_free_bytes": 0,
            **updates,
        },
    }




def checked(agent: Agent, timeout: float = 20.0) -> None:
    """Ask for a check now and wait until it (download and install included) is done."""
    before = agent.updater.checks
    assert agent.updater.check_now()
    assert wait_for(lambda: agent.updater.checks > before, timeout), "the check did not finish"


def started(agent: Agent) -> Agent:
    agent.start()
    assert wait_for(lambda: agent.updater.checks >= 1), "the first check did not finish"
    return agent


def write_telemetry(store: Store, start_seq: int, values: list[float], device: str = "dev-1") -> int:
    """Commit ``values`` as telemetry (one transaction); the number of readings stored."""
    conn = store.connect()
    try:
        writer = BatchWriter(conn, SITE, 2000, 4096)
        msgs = [
            inbound(telemetry(start_seq + i, device=device, value=round(v, 3)), start_seq + i + 1)
            for i, v in enumerate(values)
        ]
        result = writer.write(msgs, 1)
    finally:
        conn.close()
    return result.stored["telemetry"]


def stored_readings(store: Store) -> int:
    conn = store.connect()
    try:
        (n,) = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    finally:
        conn.close()
    return int(n)
