"""Against a private Mosquitto: every published message arrives, and the truth file agrees."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sim_fleets import mixed
from typer.testing import CliRunner

from firmware_sim.cli import app
from firmware_sim.emission import Emission
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner
from firmware_sim.truth import read_truth
from tests.helpers.mosquitto import Mosquitto, free_port
from tests.helpers.waiting import patience

DEMO = Path(__file__).resolve().parents[2] / "firmware_sim" / "fleets" / "demo.toml"


class Collector:
    """A QoS 1 subscriber to every device topic that keeps each payload."""

    def __init__(self, host: str, port: int) -> None:
        self.payloads: list[bytes] = []
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-collector")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._ready.set()
        self._client.on_message = lambda c, u, m: self.payloads.append(m.payload)
        self._client.connect(host, port)
        self._client.loop_start()
        assert self._ready.wait(10), "subscription not acknowledged"

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe("edgehouse/v1/#", qos=1)

    def wait_for(self, n: int, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + patience(timeout_s)
        while len(self.payloads) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything extra would show up now
        return len(self.payloads)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture()
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def test_accelerated_run_with_every_fault_delivers_every_message(broker: Mosquitto, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port)
    published: list[Emission] = []
    faults = FaultConfig(duplicates=0.03, reorder=0.03, late=0.03, malformed=0.03, reboots=0.01, clock_skew=0.01,
                         disconnects=0.01, disconnect_s=(30.0, 120.0))
    runner = SimRunner(mixed(seed=21), broker.host, broker.port, tmp_path / "truth.jsonl", faults,
                       duration_s=2.5, speed=3600.0, on_publish=published.append)
    runner.start()
    summary = runner.join(60)
    assert summary is not None
    sub.wait_for(summary.published + summary.wills)
    sub.close()
    assert summary.published == len(published) > 500
    assert summary.wills > 0 and summary.malformed > 0 and summary.duplicates > 0
    sent, got = Counter(e.payload for e in published), Counter(sub.payloads)
    assert not sent - got, "messages published but never delivered"
    extra = got - sent
    assert sum(extra.values()) == summary.wills  # the broker's last wills, nothing else
    for payload in extra:
        assert json.loads(payload)["body"] == {**json.loads(payload)["body"], "state": "offline",
                                               "reason": "connection lost"}
    _, on_disk = read_truth(tmp_path / "truth.jsonl")
    assert on_disk == summary
    assert runner.stats().state == "done"


def test_rate_mode_count_and_qos1_flow(broker: Mosquitto) -> None:
    sub = Collector(broker.host, broker.port)
    runner = SimRunner(mixed(seed=4), broker.host, broker.port, None, FaultConfig(duplicates=0.01), count=3000,
                       rate=4000, publishers=3)
    runner.start()
    summary = runner.join(60)
    assert summary is not None
    stats = runner.stats()
    assert 3000 <= summary.published < 3000 + 50  # + held messages and offline statuses
    assert stats.in_flight == 0
    assert 0.5 < stats.elapsed_s < 20
    assert sub.wait_for(summary.published) == summary.published
    sub.close()


def test_stop_flushes_and_broker_down_fails_fast(broker: Mosquitto) -> None:
    runner = SimRunner(mixed(seed=9), broker.host, broker.port, speed=600.0)
    runner.start()
    deadline = time.monotonic() + 20
    while runner.stats().published < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    summary = runner.join(30)
    assert summary is not None and summary.unique.status >= 2 * 6  # births and goodbyes
    dead = SimRunner(mixed(seed=9), "127.0.0.1", free_port(), duration_s=5, connect_timeout_s=0.5)
    dead.start()
    with pytest.raises(RuntimeError, match="cannot reach MQTT broker"):
        dead.join(30)
    assert dead.stats().state == "failed"


def test_cli_run_against_the_broker(broker: Mosquitto, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    res = CliRunner().invoke(
        app,
        ["run", "--fleet", str(DEMO), "--broker", broker.url, "--count", "500", "--rate", "2000", "--truth",
         str(truth), "--faults", "none", "--quiet"],
    )
    assert res.exit_code == 0, res.output
    _, summary = read_truth(truth)
    assert summary.published >= 500 and summary.duplicates == 0
    assert json.loads(res.stdout.strip().splitlines()[-1])["published"] == summary.published


def test_survives_a_broker_restart(broker: Mosquitto) -> None:
    runner = SimRunner(mixed(seed=13), broker.host, broker.port, duration_s=4.0, speed=1200.0, ack_timeout_s=20)
    runner.start()
    time.sleep(1.0)
    broker.restart(down_s=0.5)
    sub = Collector(broker.host, broker.port)
    summary = runner.join(60)
    assert summary is not None
    stats = runner.stats()
    assert stats.state == "done" and stats.in_flight == 0
    assert len(sub.payloads) > 50  # traffic resumed after the restart
    sub.close()


def test_private_broker_helper_keeps_port_and_retained_state(tmp_path: Path) -> None:
    with Mosquitto(persistence_dir=tmp_path / "db") as b:
        port = b.port
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-retainer")
        pub.connect(b.host, b.port)
        pub.loop_start()
        pub.publish("edgehouse/v1/s1/d1/status", b"kept", qos=1, retain=True).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        b.restart()
        assert b.port == port and b.running
        sub = Collector(b.host, b.port)
        assert sub.wait_for(1, timeout_s=5) == 1 and sub.payloads == [b"kept"]
        sub.close()
    assert not b.running
