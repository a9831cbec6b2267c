"""Small components: backoff, the MQTT callbacks' guarantees, the agent without a broker."""

from __future__ import annotations

import queue
import random
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from agent_testkit import free_port

from edge_agent.app import Agent
from edge_agent.backoff import Backoff
from edge_agent.inbound import Inbound
from edge_agent.metrics import AgentMetrics
from edge_agent.mqtt import MqttLink


def test_backoff_grows_with_jitter_caps_and_resets() -> None:
    b = Backoff(1.0, 8.0, random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next_delay() <= 1.0
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


class _ExplodingQueue(queue.Queue[Inbound]):
    def put(self, item: Inbound, block: bool = True, timeout: float | None = None) -> None:
        raise RuntimeError("boom")


def _message(topic: str = "edgehouse/v1/site-1/dev-1/telemetry", qos: int = 1, mid: int = 7) -> Any:
    return SimpleNamespace(topic=topic, payload=b"{}", mid=mid, qos=qos)


def test_on_message_never_raises_and_respects_closed_intake(make_config: Any) -> None:
    link = MqttLink(make_config(), _ExplodingQueue(), AgentMetrics())
    link._on_message(link._client, None, _message())  # logged, not raised
    inbox: queue.Queue[Inbound] = queue.Queue(maxsize=1)
    metrics = AgentMetrics()
    link = MqttLink(make_config(), inbox, metrics)
    link._on_message(link._client, None, _message(mid=1))
    assert inbox.get_nowait() == Inbound("edgehouse/v1/site-1/dev-1/telemetry", b"{}", 1, 1, 0)
    link._on_message(link._client, None, _message(qos=0))
    link._on_message(link._client, None, _message(qos=0))  # queue full: QoS 0 dropped and counted
    assert metrics.value("queue_overflow_total") == 1
    inbox.get_nowait()
    link.close_intake()
    link._on_message(link._client, None, _message(mid=2))
    assert inbox.empty()


def test_acks_only_for_the_connection_that_delivered(make_config: Any) -> None:
    link = MqttLink(make_config(), queue.Queue(), AgentMetrics())
    sent: list[tuple[int, int]] = []
    link._client.ack = lambda mid, qos: sent.append((mid, qos)) or 0  # type: ignore[method-assign]
    link._connection = 2
    link.ack(Inbound("t", b"", 5, 1, 1))  # delivered before a reconnect: the broker redelivers it
    link.ack(Inbound("t", b"", 6, 0, 2))  # QoS 0: nothing to acknowledge
    link.ack(Inbound("t", b"", 7, 1, 2))
    assert sent == [(7, 1)]


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


def test_shipped_broker_config_keeps_messages_for_a_slow_or_absent_agent() -> None:
    from edge_agent.broker import shipped_config

    options = {}
    for line in shipped_config().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            options[key] = value
    assert options["max_queued_messages"] == "0"  # the default 1000 drops QoS 1 messages
    assert int(options["max_queued_bytes"]) > 0
    assert options["persistence"] == "true"
    assert options["listener"] == "1883 127.0.0.1"
    assert {"persistent_client_expiration", "autosave_interval", "max_inflight_messages"} <= options.keys()


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
