"""Gateway ingest throughput: the agent on a sustained QoS 1 stream vs a bare paho subscriber.

    python bench/ingest.py [--count 60000] [--rate 12000] [--publishers 4]

A private Mosquitto (the shipped config) receives a realistic simulated stream from several
publisher clients at QoS 1. First a bare paho subscriber that only counts (auto-ack) takes
the stream: the ceiling. Then the same stream (same seed) goes to the edge agent, pinned to
one core, which decodes, validates, de-duplicates, commits to SQLite and only then acks.
Both rates are measured from the first to the last message received. ``lost`` is what the
ground truth expected minus what the agent stored. No cloud runs: the outbox just grows.

Last line: ``ingest: msgs_per_s=<n> raw_paho_msgs_per_s=<n> ratio=<r> rss_mb=<m> lost=<k>``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import _stack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgehouse_cli.broker import MosquittoBroker, free_port
from edgehouse_cli.stack import AgentProcess
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner


def _publish(fleet, broker, count: int, rate: float, publishers: int, truth: Path | None = None):  # type: ignore[no-untyped-def]
    runner = SimRunner(fleet, broker.host, broker.port, ground_truth_path=truth, faults=FaultConfig(),
                       count=count, rate=rate, publishers=publishers)
    runner.start()
    return runner


def raw_paho(fleet, broker, count: int, rate: float, publishers: int, progress: Progress) -> float:  # type: ignore[no-untyped-def]
    """msgs/s of a subscriber that only counts what it receives (auto-ack, QoS 1)."""
    received = 0
    first = last = 0.0
    lock = threading.Lock()

    def on_message(client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal received, first, last
        with lock:
            now = time.perf_counter()
            if received == 0:
                first = now
            received += 1
            last = now

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("edgehouse/v1/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    task = progress.add_task("bare paho subscriber", total=count)
    runner = _publish(fleet, broker, count, rate, publishers)
    summary = runner.join()
    assert summary is not None
    target = summary.published
    _stack.wait_until(lambda: (progress.update(task, completed=received) or received >= target), 60)
    sub.disconnect()
    sub.loop_stop()
    return (received - 1) / (last - first) if last > first else 0.0


def agent_run(fleet, broker, workdir: Path, count: int, rate: float, publishers: int,  # type: ignore[no-untyped-def]
              progress: Progress) -> tuple[float, float, int, int]:
    gw = fleet.gateway_ids[0]
    agent = AgentProcess(
        gateway_id=gw, site=fleet.site_of(gw), workdir=workdir, mqtt_host=broker.host, mqtt_port=broker.port,
        filters=fleet.topic_filters(gw), cloud_url=f"http://127.0.0.1:{free_port()}", cloud_token="bench-token",
    )
    agent.start()
    assert agent.pid is not None
    os.sched_setaffinity(agent.pid, {os.cpu_count() - 1 if os.cpu_count() else 0})
    task = progress.add_task("edge agent (1 core)", total=count)
    first = last = 0.0
    stored = 0
    runner = _publish(fleet, broker, count, rate, publishers, truth=workdir / "truth.jsonl")
    summary = None
    peak = 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        st = agent.status()
        now = time.perf_counter()
        n = int(st["messages_in"])
        if n and not first:
            first = now
        if n > stored:
            last = now
        stored = n
        peak = max(peak, _stack.rss_mb(agent.pid)[1])
        progress.update(task, completed=n)
        if summary is None and runner.done:
            summary = runner.join()
        if summary is not None and n >= summary.published:
            break
        time.sleep(0.02)
    assert summary is not None, "the simulator did not finish"
    st = agent.status()
    kept = int(st["stored"]["telemetry"]) + int(st["stored"]["scan"])
    expected = summary.expected_stored.telemetry + summary.expected_stored.scan
    rate_out = (stored - 1) / (last - first) if last > first else 0.0
    agent.stop()
    return rate_out, peak, expected - kept, summary.published


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=60_000)
    ap.add_argument("--rate", type=float, default=12_000.0, help="offered load, msgs/s over all publishers")
    ap.add_argument("--publishers", type=int, default=4)
    args = ap.parse_args()
    console = Console()
    fleet = _stack.bench_fleet()
    with tempfile.TemporaryDirectory(prefix="eh-bench-ingest-") as tmp:
        broker = MosquittoBroker(data_dir=Path(tmp) / "broker")
        broker.start()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
                          TimeElapsedColumn(), console=console) as progress:
                raw = raw_paho(fleet, broker, args.count, args.rate, args.publishers, progress)
                agent_rate, rss, lost, sent = agent_run(fleet, broker, Path(tmp) / "agent", args.count, args.rate,
                                                        args.publishers, progress)
        finally:
            broker.stop()
    console.print(f"offered {args.rate:,.0f} msgs/s from {args.publishers} publishers, {sent:,} messages, QoS 1")
    print(f"ingest: msgs_per_s={agent_rate:.0f} raw_paho_msgs_per_s={raw:.0f} ratio={agent_rate / raw:.2f} "
          f"rss_mb={rss:.1f} lost={lost}")


if __name__ == "__main__":
    main()
