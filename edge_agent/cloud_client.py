"""The one place an HTTP client to the cloud is built (base URL, gateway token, TLS, timeouts)."""

from __future__ import annotations

import os
import ssl
import sys
import threading
from typing import Any, Self

import httpx

from edge_agent import __version__
from edge_agent.config import CloudConfig


class DeferredTrust(ssl.SSLContext):
    """A TLS client context that loads its trust store on its first TLS handshake.

    Loading certifi's bundle costs the process about 1.5 MB of memory per context, and a
    client to an ``http://`` cloud never opens TLS (every request goes to a path under
    ``cloud.url``): only a proxy reached over https (from the environment) would. Until then
    nothing is loaded; then exactly what httpx loads for ``verify=True`` (or ``ca_file``).
    """

    def __new__(cls, ca_file: str | None = None) -> Self:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, ca_file: str | None = None) -> None:
        super().__init__()
        self._ca_file = ca_file
        self._loaded = False
        self._lock = threading.Lock()
        keylog = os.environ.get("SSLKEYLOGFILE")  # as ssl.create_default_context does
        if keylog and not sys.flags.ignore_environment:
            self.keylog_filename = keylog

    @property
    def loaded(self) -> bool:
        return self._loaded

    def _load_trust(self) -> None:
        with self._lock:
            if self._loaded:
                return
            if self._ca_file is not None:
                self.load_verify_locations(cafile=self._ca_file)
            elif os.environ.get("SSL_CERT_FILE"):  # httpx's order for verify=True (trust_env)
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._loaded = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_trust()
        return super().wrap_bio(*args, **kwargs)


def cloud_tls(config: CloudConfig) -> ssl.SSLContext | str | bool:
    """httpx's ``verify`` for the cloud: ``ca_file`` or the default trust store; for an ``http://``
    cloud the same, loaded only if a TLS connection is ever made (:class:`DeferredTrust`)."""
    ca_file = str(config.ca_file) if config.ca_file else None
    if config.url is not None and config.url.startswith("http://"):
        return DeferredTrust(ca_file)
    return ca_file if ca_file is not None else True


def cloud_transport(config: CloudConfig) -> httpx.HTTPTransport:
    """The transport :func:`cloud_client` uses by default (TLS as :func:`cloud_tls` says), for a
    ``transport`` that wraps it."""
    return httpx.HTTPTransport(verify=cloud_tls(config))


def cloud_client(
    config: CloudConfig, timeout_s: float | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An ``httpx.Client`` for ``config.url`` sending ``Authorization: Bearer <token>``.

    ``transport``: what sends the requests (e.g. one that wraps :func:`cloud_transport` to time or
    count them); None: httpx's own, verifying TLS as :func:`cloud_tls` says.
    """
    if config.url is None or config.token is None:
        raise ValueError("cloud.url and cloud.token are needed to talk to the cloud")
    timeout = (
        httpx.Timeout(timeout_s)
        if timeout_s is not None
        else httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s)
    )
    return httpx.Client(
        base_url=config.url.rstrip("/"),
        timeout=timeout,
        verify=cloud_tls(config),
        transport=transport,
        headers={
            "Authorization": f"Bearer {config.token.get_secret_value()}",
            "User-Agent": f"edgehouse-agent/{__version__}",
        },
    )
