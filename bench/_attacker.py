"""A man in the middle between one gateway agent and the cloud, for the model-update attacks.

Everything is forwarded to the real cloud (sync posts, reports, desired state, artifacts) until
an attack is armed: then the agent's ``GET …/models/desired`` gets the attacker's document and
artifact downloads named in it get the attacker's bytes (``Range`` honoured, so a resuming
downloader sees a consistent file). Disarmed, it is a plain proxy again.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_FORWARD_REQ = ("authorization", "content-type", "content-encoding", "if-none-match", "range", "accept-encoding")
_FORWARD_RESP = ("etag", "content-type", "content-range", "accept-ranges", "content-encoding", "www-authenticate")


@dataclass
class Attack:
    desired: dict[str, Any]
    artifacts: dict[str, bytes] = field(default_factory=dict)


class Attacker:
    """``start()`` / ``stop()``; ``arm(attack)`` / ``disarm()``; ``url`` is what the agent talks to."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._attack: Attack | None = None
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=upstream, timeout=30.0)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="attacker", daemon=True)
        self.served_attacks = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def arm(self, attack: Attack) -> None:
        with self._lock:
            self._attack = attack

    def disarm(self) -> None:
        with self._lock:
            self._attack = None

    def _current(self) -> Attack | None:
        with self._lock:
            return self._attack

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forged(self) -> bool:
                attack = attacker._current()
                if attack is None or self.command != "GET":
                    return False
                path = self.path.split("?", 1)[0]
                if path.endswith("/models/desired"):
                    body = json.dumps(attack.desired).encode()
                    attacker.served_attacks += 1
                    self._send(200, body, {"Content-Type": "application/json", "ETag": f'"forged-{id(attack)}"'})
                    return True
                data = attack.artifacts.get(path)
                if data is None:
                    return False
                start, end = 0, len(data) - 1
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start = int(first or 0)
                    end = min(int(last), end) if last else end
                if start > end:
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return True
                headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
                if rng:
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206 if rng else 200, data[start : end + 1], headers)
                return True

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() in _FORWARD_REQ}
                try:
                    resp = attacker._client.request(self.command, self.path, content=body, headers=headers)
                except httpx.HTTPError:
                    self._send(502, b"", {})
                    return
                out = {k: v for k, v in resp.headers.items() if k.lower() in _FORWARD_RESP}
                out.pop("content-encoding", None)  # httpx already decoded the body
                self._send(resp.status_code, resp.content, out)

            def do_GET(self) -> None:
                if not self._forged():
                    self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_PUT(self) -> None:
                self._forward()

        return Handler
