"""Gateway ingest throughput: the agent on a sustained QoS 1 stream vs a bare paho subscriber.

    python bench/ingest.py [--count 60000] [--rate 20000] [--publishers 2] [--mix warehouse|sensors]
                           [--models]

A private Mosquitto (the shipped config) receives a realistic simulated stream (every device
kind, 24 devices) from several publisher clients at QoS 1. The publishers and the broker are
pinned to the first core, the consumer under test to the last one. A consumer is pinned at
spawn time (it inherits the mask of the thread that starts it), so every one of its threads
runs there; pinning a running process with ``sched_setaffinity(pid)`` would move only its main
thread and leave the paho and ingest threads competing with the broker.

By default the agent runs the backbone alone (its models switched off); ``--models`` runs it
as it ships, with the anomaly scorer and the demand forecaster on, and reports whether scoring
kept up (readings scored, messages skipped, catch-up time):

1. a bare paho subscriber that only counts (auto-ack) takes the stream: the ceiling;
2. the same stream (same seed) goes to the edge agent, which decodes, validates,
   de-duplicates, commits to SQLite and only then acknowledges;
3. capacity: the agent is stopped, the stream is queued at the broker in its persistent
   session, and the agent is started again and drains the backlog on its core alone.

Rates are measured from the first to the last message received. ``lost`` is what the ground
truth expected minus what the agent stored (over runs 2 and 3). RSS is the agent's peak
(VmHWM). No cloud runs: the outbox just grows.

Last line: ``ingest: msgs_per_s=<n> raw_paho_msgs_per_s=<n> ratio=<r> rss_mb=<m> lost=<k>``
(``msgs_per_s`` from run 2, the live stream), with ``--models`` also ``scored_readings_per_s=<n>``:
the anomaly scorer's readings per second on the agent's one core while ingest takes what it needs
of that core first (at the default offered load ingest saturates it, so this is the scorer's share
of an overloaded core, the rest skipped as ``models.queue_size`` allows; the scorer's own speed is
``bench/nab.py``'s us/reading).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import _stack
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgehouse_cli.broker import MosquittoBroker, free_port
from edgehouse_cli.stack import AgentProcess
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner
from firmware_sim.truth import Summary

PUB_CORE, CONSUMER_CORE = {0}, {(os.cpu_count() or 1) - 1}


@contextlib.contextmanager
def _on_consumer_core() -> Iterator[None]:
    """Run the block with this thread on the consumer core: what it spawns inherits the mask."""
    os.sched_setaffinity(0, CONSUMER_CORE)
    try:
        yield
    finally:
        os.sched_setaffinity(0, PUB_CORE)


def _publish(fleet, broker, args, seed_offset: int = 0, truth: Path | None = None) -> SimRunner:  # type: ignore[no-untyped-def]
    runner = SimRunner(fleet, broker.host, broker.port, ground_truth_path=truth, faults=FaultConfig(),
                       count=args.count, rate=args.rate, publishers=args.publishers,
                       client_prefix=f"pub{seed_offset}")
    runner.start()
    return runner


def raw_paho(fleet, broker, args, progress: Progress) -> float:  # type: ignore[no-untyped-def]
    """msgs/s of a subscriber process that only counts (auto-ack, QoS 1), on the consumer core."""
    with _on_consumer_core():
        sub = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_raw_sub.py")), broker.host,
                                str(broker.port), str(10**9)], stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    task = progress.add_task("bare paho subscriber", total=args.count)
    runner = _publish(fleet, broker, args)
    while not runner.done:
        progress.update(task, completed=runner.stats().published)
        time.sleep(0.2)
    runner.join()
    progress.update(task, completed=args.count)
    _received, rate = sub.stdout.readline().split()
    sub.wait()
    return float(rate)


class _Watch:
    """Polls the agent's /status: its message count over time, and its peak RSS.

    The rate is measured between the first poll that saw the count above ``base`` and the last
    poll at which it still grew, so it is not diluted by idle time on either side.
    """

    def __init__(self, agent: AgentProcess, base: int | None = None) -> None:
        self.agent = agent
        self.base = int(agent.status()["messages_in"]) if base is None else base
        self.n = self.base
        self.t_first = self.t_last = 0.0
        self.n_first = self.n_last = 0
        self.peak_rss = 0.0

    def poll(self) -> int:
        n = int(self.agent.status()["messages_in"])
        now = time.perf_counter()
        if n > self.n:
            if not self.t_first:
                self.t_first, self.n_first = now, n
            self.t_last, self.n_last = now, n
        self.n = n
        assert self.agent.pid is not None
        self.peak_rss = max(self.peak_rss, _stack.rss_mb(self.agent.pid)[1])
        return n - self.base

    @property
    def rate(self) -> float:
        span = self.t_last - self.t_first
        return (self.n_last - self.n_first) / span if span > 0 else 0.0


def _start_agent(agent: AgentProcess) -> None:
    with _on_consumer_core():
        agent.start()
    assert agent.pid is not None
    assert os.sched_getaffinity(agent.pid) == CONSUMER_CORE


def _drain(watch: _Watch, target: int, progress: Progress, task: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and watch.poll() < target:
        progress.update(task, completed=watch.n - watch.base)
        time.sleep(0.02)
    progress.update(task, completed=watch.n - watch.base)
    if watch.n - watch.base < target:
        raise SystemExit(f"agent received {watch.n - watch.base} of {target} messages in {timeout_s} s")


def scoring_report(agent: AgentProcess, watch: _Watch, progress: Progress) -> float:
    """Whether anomaly scoring kept up with the live stream: skipped messages, catch-up time; returns
    the scorer's throughput on the agent's one core, shared with ingest (readings scored per second
    from the first message to the last score)."""
    prefix = "edgehouse_agent_inference_"
    # The backlog gauge is set at the end of each scoring pass, so "done" is: backlog 0 and no
    # new score for a second; the catch-up time is when the last score landed.
    deadline = time.monotonic() + 120
    scored, changed = -1.0, time.perf_counter()
    while time.monotonic() < deadline:
        now_scored = agent.metric(f"{prefix}scored_readings_total")
        if now_scored != scored:
            scored, changed = now_scored, time.perf_counter()
        elif agent.metric(f"{prefix}backlog_messages") == 0 and time.perf_counter() - changed > 1.0:
            break
        watch.poll()
        time.sleep(0.1)
    caught_up_s = max(0.0, changed - watch.t_last)
    span = changed - watch.t_first
    per_s = scored / span if span > 0 else 0.0
    telemetry = int(agent.status()["stored"]["telemetry"])
    progress.console.print(
        f"anomaly scoring, live stream: {telemetry:,} telemetry messages stored, "
        f"{agent.metric(prefix + 'scored_readings_total'):,.0f} readings "
        f"scored, {agent.metric(prefix + 'dropped_messages_total'):,.0f} messages skipped (more than "
        f"models.queue_size behind), backlog cleared {caught_up_s:.1f} s after the last message arrived; "
        f"{per_s:,.0f} readings scored per second on the agent's one core, shared with ingest"
    )
    progress.console.print(
        f"device scoring (multichannel messages, joint per device): "
        f"{agent.metric('edgehouse_agent_device_scored_messages_total'):,.0f} messages scored, "
        f"{agent.metric('edgehouse_agent_device_dropped_messages_total'):,.0f} skipped"
    )
    return per_s


def agent_runs(fleet, backlog_fleet, broker, workdir: Path, args, progress: Progress) -> tuple[float, float, float, int, float]:  # type: ignore[no-untyped-def]
    gw = fleet.gateway_ids[0]
    agent = AgentProcess(
        gateway_id=gw, site=fleet.site_of(gw), workdir=workdir, mqtt_host=broker.host, mqtt_port=broker.port,
        filters=fleet.topic_filters(gw), cloud_url=f"http://127.0.0.1:{free_port()}", cloud_token="bench-token",
        extra={} if args.models else {"models": {"enabled": False, "forecast_enabled": False}},
    )
    _start_agent(agent)
    # run 2: the live stream
    watch = _Watch(agent)
    task = progress.add_task("edge agent, live stream", total=args.count)
    runner = _publish(fleet, broker, args, seed_offset=1, truth=workdir / "truth-live.jsonl")
    summaries: list[Summary] = []
    while not runner.done:
        watch.poll()
        progress.update(task, completed=watch.n - watch.base)
        time.sleep(0.02)
    live_summary = runner.join()
    assert live_summary is not None
    summaries.append(live_summary)
    _drain(watch, live_summary.published, progress, task)
    live_rate, peak = watch.rate, watch.peak_rss
    scored_per_s = scoring_report(agent, watch, progress) if args.models else 0.0
    # run 3: backlog queued at the broker while the agent is down, then drained
    agent.stop()
    task = progress.add_task("queue at the broker (agent down)", total=args.count)
    runner = _publish(backlog_fleet, broker, args, seed_offset=2, truth=workdir / "truth-backlog.jsonl")
    while not runner.done:
        progress.update(task, completed=runner.stats().published)
        time.sleep(0.2)
    backlog_summary = runner.join()
    assert backlog_summary is not None
    summaries.append(backlog_summary)
    _start_agent(agent)
    watch = _Watch(agent, base=0)  # counters start with the process; the backlog flows at once
    task = progress.add_task("edge agent, draining the backlog", total=backlog_summary.published)
    _drain(watch, backlog_summary.published, progress, task)
    drain_rate, peak = watch.rate, max(peak, watch.peak_rss)
    agent.stop()
    with sqlite3.connect(f"file:{agent.data_dir / 'agent.db'}?mode=ro", uri=True) as db:
        stored = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("telemetry", "scans"))
    expected = sum(s.expected_stored.telemetry + s.expected_stored.scan for s in summaries)
    return live_rate, drain_rate, peak, expected - stored, scored_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=60_000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="offered load, msgs/s over all publishers")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--mix", choices=("warehouse", "sensors"), default="warehouse",
                    help="warehouse: every device kind (mostly RFID reads); sensors: telemetry only, "
                         "every message scored by the anomaly model")
    ap.add_argument("--models", action="store_true",
                    help="run the anomaly and demand models as the agent ships them (default: off, "
                         "the backbone alone)")
    args = ap.parse_args()
    console = Console()
    os.sched_setaffinity(0, PUB_CORE)  # the publishers, and the broker started below, share core 0
    # Two fleets with different seeds, so the three runs publish different messages (no dedup across runs).
    fleets = [_stack.bench_fleet(seed=s, sensors_only=args.mix == "sensors") for s in (1, 2, 3)]
    with tempfile.TemporaryDirectory(prefix="eh-bench-ingest-") as tmp:
        broker = MosquittoBroker(data_dir=Path(tmp) / "broker")
        broker.start()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
                          TimeElapsedColumn(), console=console) as progress:
                raw = raw_paho(fleets[0], broker, args, progress)
                live, drain, rss, lost, scored_per_s = agent_runs(fleets[1], fleets[2], broker, Path(tmp) / "agent",
                                                    args, progress)
        finally:
            broker.stop()
    console.print(f"{args.count:,} messages per run, QoS 1, offered {args.rate:,.0f} msgs/s from "
                  f"{args.publishers} publishers (core 0 with the broker; consumer on core {CONSUMER_CORE}); "
                  f"{args.mix} mix, models {'on' if args.models else 'off'}")
    console.print(f"agent capacity, draining a {args.count:,}-message backlog on one core: {drain:,.0f} msgs/s")
    print(f"ingest: msgs_per_s={live:.0f} raw_paho_msgs_per_s={raw:.0f} ratio={live / raw:.2f} "
          f"rss_mb={rss:.1f} lost={lost}" + (f" scored_readings_per_s={scored_per_s:.0f}" if args.models else ""))


if __name__ == "__main__":
    main()
