"""The one place an HTTP client to the cloud is built (base URL, gateway token, TLS, timeouts)."""

from __future__ import annotations

import httpx

from edge_agent import __version__
from edge_agent.config import CloudConfig


def cloud_client(config: CloudConfig, timeout_s: float | None = None) -> httpx.Client:
    """An ``httpx.Client`` for ``config.url`` sending ``Authorization: Bearer <token>``."""
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
        verify=str(config.ca_file) if config.ca_file else True,
        headers={
            "Authorization": f"Bearer {config.token.get_secret_value()}",
            "User-Agent": f"edgehouse-agent/{__version__}",
        },
    )
