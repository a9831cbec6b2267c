"""Bad links, against a real local HTTP server that misbehaves: timeouts, resets mid-body, 5xx, 429 with
Retry-After, a captive portal's 200 HTML page. Every case retries, nothing leaves the outbox without a valid
ack, and ``/healthz`` says why sync is stuck; once the link behaves, everything drains."""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agent_testkit import GATEWAY, SITE, inbound, telemetry

from edge_agent.config import AgentConfig
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.status import StatusProbe
from edge_agent.store import Store
from edge_agent.store import outbox as ob
from edge_agent.sync import Outcome, SyncWorker


class BadLink:
    """A raw-socket HTTP/1.1 server; ``mode`` decides how it treats the next request."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            file = conn.makefile("rb")
            while True:
                head = self._read_head(file)
                if head is None:
                    return
                self.requests += 1
                length = int(head.get("content-length", "0"))
                mode = self.mode
                if mode == "reset":  # read part of the body, then RST
                    file.read(min(length, 100))
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                body = file.read(length)
                if mode == "timeout":
                    time.sleep(1.0)
                    return
                if mode == "503":
                    self._answer(conn, 503, b'{"detail": []}', "application/json")
                elif mode == "429":
                    self._answer(conn, 429, b"slow down", "text/plain", {"Retry-After": "7"})
                elif mode == "portal":
                    self._answer(conn, 200, b"<html><body>Please accept the terms</body></html>", "text/html")
                else:
                    doc = json.loads(gzip.decompress(body))
                    ack = {"schema": "edgehouse.sync_ack", "batch_id": doc["batch_id"],
                           "stored": [r["id"] for r in doc["records"]]}
                    self._answer(conn, 200, json.dumps(ack).encode(), "application/json")

    @staticmethod
    def _read_head(file: Any) -> dict[str, str] | None:
        line = file.readline()
        if not line:
            return None
        headers = {}
        while (line := file.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        return headers

    @staticmethod
    def _answer(conn: socket.socket, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
        conn.sendall(head.encode() + b"\r\n" + body)


@pytest.fixture
def link() -> Iterator[BadLink]:
    server = BadLink()
    yield server
    server.close()


def make_worker(make_config: Any, store: Store, link: BadLink) -> tuple[SyncWorker, AgentMetrics]:
    cfg: AgentConfig = make_config(cloud={"url": link.url, "token": "tok", "request_timeout_s": 0.3,
                                          "connect_timeout_s": 0.3, "batch_max_records": 20})
    metrics = AgentMetrics()
    return SyncWorker(cfg.cloud, GATEWAY, store, metrics), metrics


@pytest.mark.parametrize(("mode", "reason", "why"), [
    ("timeout", "network", "cloud unreachable: ReadTimeout"),
    ("reset", "network", "cloud unreachable:"),
    ("503", "server", "cloud answered HTTP 503"),
    ("429", "throttled", "cloud answered HTTP 429 (Retry-After 7)"),
    ("portal", "bad_ack", "cloud answered 200 with text/html, not a sync ack"),
])
def test_a_bad_link_keeps_everything_retries_and_says_why(
    make_config: Any, store: Store, link: BadLink, mode: str, reason: str, why: str
) -> None:
    BatchWriter(store.connect(), SITE, 2000, 4096).write([inbound(telemetry(i)) for i in range(50)], 1)
    w, metrics = make_worker(make_config, store, link)
    probe = StatusProbe(GATEWAY, store, metrics, mqtt_connected=lambda: True, intake_paused=lambda: False,
                        sync=w.wire_status, cache_s=0.0)
    conn = store.connect()
    link.mode = mode
    with httpx.Client(base_url=link.url, timeout=0.3) as client:
        for attempt in range(3):
            result = w.run_once(conn, client)
            assert result.outcome is Outcome.RETRY
            assert ob.depth(conn) == 50  # nothing deleted without a valid ack
            assert (w.problem() is None) == (attempt < 2)
        if mode == "429":
            assert result.retry_after_s == 7.0
        assert metrics.value("sync_failures_total", {"reason": reason}) == 3
        problem = w.problem()
        assert problem is not None and why in problem and "3 failed rounds" in problem
        assert any(why in r for r in probe.health())  # /healthz
        link.mode = "ok"
        while w.run_once(conn, client).outcome is Outcome.SENT:
            pass
    assert ob.depth(conn) == 0 and w.problem() is None and probe.health() == []
    assert metrics.value("synced_records_total") == 50
    assert metrics.value("sync_bytes_sent_total") > 3 * 100  # the failed tries counted against the cap too
