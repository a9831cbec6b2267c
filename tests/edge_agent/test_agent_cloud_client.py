"""The cloud client's TLS: an ``http://`` cloud loads no trust store until a TLS handshake needs one."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import httpx
import pytest

from edge_agent.cloud_client import DeferredTrust, cloud_client, cloud_tls
from edge_agent.config import CloudConfig


def _cas(ctx: ssl.SSLContext) -> int:
    return ctx.cert_store_stats()["x509_ca"]


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.headers["Authorization"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_http() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_cloud_loads_no_trust_store(plain_http: str) -> None:
    config = CloudConfig(url=plain_http, token="t0k")
    tls = cloud_tls(config)
    assert isinstance(tls, DeferredTrust) and not tls.loaded and _cas(tls) == 0
    with cloud_client(config) as client:
        response = client.get("/x")
    assert response.status_code == 200 and response.text == "Bearer t0k"


def test_deferred_trust_loads_what_httpx_would_at_the_first_handshake(tmp_path: Path) -> None:
    tls = cloud_tls(CloudConfig(url="http://cloud.example:8000", token="t"))
    assert isinstance(tls, DeferredTrust)
    assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname  # fails closed, as before
    tls.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="proxy.example")
    assert tls.loaded and _cas(tls) == _cas(httpx.create_ssl_context()) > 0  # SSL_CERT_FILE, else certifi
    # cloud.ca_file, when set, is what gets loaded (and only it)
    ca = tmp_path / "ca.pem"
    ca.write_text(
        Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
    )
    own = cloud_tls(CloudConfig(url="http://cloud.example:8000", token="t", ca_file=ca))
    assert isinstance(own, DeferredTrust)
    own.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="proxy.example")
    assert _cas(own) == 1


def test_https_cloud_verifies_as_before(tmp_path: Path) -> None:
    assert cloud_tls(CloudConfig(url="https://cloud.example", token="t")) is True
    ca = tmp_path / "ca.pem"
    assert cloud_tls(CloudConfig(url="https://cloud.example", token="t", ca_file=ca)) == str(ca)
