"""Metrics and status over HTTP: ``/metrics``, ``/healthz``, ``/status`` on a ThreadingHTTPServer.

While it listens, ``{data_dir}/agent.runtime.json`` says where (:mod:`edge_agent.runtime`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_agent import runtime
from edge_agent.metrics import AgentMetrics
from edge_agent.status import StatusProbe

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/metrics":
                self._send(200, generate_latest(self.server.metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                reasons = self.server.probe.health()
                body = {"ok": not reasons, "reasons": reasons}
                self._send_json(200 if not reasons else 503, body)
            elif path == "/status":
                self._send(200, self.server.probe.snapshot().model_dump_json().encode(), "application/json")
            else:
                self._send_json(
                    404, {"error": f"no such path {path!r}", "paths": ["/metrics", "/healthz", "/status"]}
                )
        except Exception as exc:
            log.exception("error serving %s", path)
            self._send_json(500, {"error": str(exc)})

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], metrics: AgentMetrics, probe: StatusProbe) -> None:
        self.metrics = metrics
        self.probe = probe
        super().__init__(address, _Handler)


class StatusServer:
    """Bind in :meth:`start` (port 0 = ephemeral; :attr:`port` is the bound one), close in :meth:`stop`.

    With ``runtime_path``, the bound address and this pid are written there after the bind and
    the file is removed at stop (``edgehouse-agent status`` finds the agent through it).
    """

    name = "http"

    def __init__(
        self,
        host: str,
        port: int,
        metrics: AgentMetrics,
        probe: StatusProbe,
        runtime_path: Path | None = None,
        gateway_id: str | None = None,
    ) -> None:
        self._address = (host, port)
        self._metrics = metrics
        self._probe = probe
        self._runtime_path = runtime_path
        self._gateway_id = gateway_id
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("status server already started")
        self._server = _Server(self._address, self._metrics, self._probe)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.25}, name="edge-http", daemon=True
        )
        self._thread.start()
        log.info("status HTTP on http://%s:%d", self.host, self.port)
        if self._runtime_path is not None:
            info = runtime.RuntimeInfo(
                pid=os.getpid(),
                http_port=self.port,
                http_host=self.host,
                gateway_id=self._gateway_id,
                started_ts=time.time(),
            )
            runtime.write(self._runtime_path, info)

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("status server not started")
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("status server not started")
        return int(self._server.server_address[1])

    def stop(self) -> None:
        started = self._server is not None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if started and self._runtime_path is not None:
            runtime.remove(self._runtime_path, os.getpid())
