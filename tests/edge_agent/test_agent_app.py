"""edge_agent.app: the composed agent without a broker (unhealthy, stops promptly), a failed start."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from agent_testkit import free_port

from edge_agent.app import Agent


def test_agent_without_broker_is_unhealthy_and_stops_promptly(make_config: Any) -> None:
    cfg = make_config(mqtt={"port": free_port(), "reconnect_min_s": 0.05, "reconnect_max_s": 0.2})
    agent = Agent(cfg)
    agent.start()
    try:
        assert agent.http is not None
        response = httpx.get(f"http://127.0.0.1:{agent.http.port}/healthz")
        reasons = response.json()["reasons"]
        assert (
            response.status_code == 503 and len(reasons) == 1 and reasons[0].startswith("mqtt not connected")
        )
        assert httpx.get(f"http://127.0.0.1:{agent.http.port}/nope").status_code == 404
        time.sleep(0.5)
        assert agent.metrics.value("mqtt_connect_failures_total") >= 2  # retrying with backoff
    finally:
        started = time.monotonic()
        agent.stop()
    assert time.monotonic() - started < 5
    assert not cfg.runtime_path.exists()


def test_failed_start_stops_what_was_started(make_config: Any) -> None:
    import socket
    import threading

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = Agent(make_config(http={"port": port}, mqtt={"port": free_port()}))
        before = {t.name for t in threading.enumerate()}
        with pytest.raises(OSError):
            agent.start()
    leftover = {t.name for t in threading.enumerate()} - before
    assert not {n for n in leftover if n.startswith("edge-")}, leftover
