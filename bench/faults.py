"""Crash, outage and broker-restart scenario at scale: nothing lost, nothing stored twice.

    python bench/faults.py [--count 100000] [--rate 3000] [--kill-every 2.5]

Two gateway agents ingest a simulated stream (with duplicates, reordering and malformed
messages injected) from a private Mosquitto (shipped config) and sync to the cloud. While
the stream flows, agents are ``kill -9``'d at random moments and restarted, the cloud is
stopped for a while and started again, and the broker is restarted once. At the end the
cloud's counts are compared with the simulator's ground truth.

Last line: ``faults: kills=<n> sent=<n> in_cloud=<n> lost=<n> duplicates=<n>``
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import _stack
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgehouse_cli.broker import MosquittoBroker
from edgehouse_cli.stack import AgentProcess, CloudProcess
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import SimRunner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=3_000.0)
    ap.add_argument("--kill-every", type=float, default=2.5, help="mean seconds between kill -9s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="keep the stores, logs and ground truth here")
    args = ap.parse_args()
    console = Console()
    rng = random.Random(args.seed)
    fleet = _stack.bench_fleet(gateways=2, per_kind=3, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="eh-bench-faults-") as tmp_s:
        tmp = args.keep or Path(tmp_s)
        broker = MosquittoBroker(data_dir=tmp / "broker")
        cloud = CloudProcess(workdir=tmp / "cloud")
        agents: list[AgentProcess] = []
        broker.start()
        cloud.start()
        try:
            for gw in fleet.gateway_ids:
                agent = AgentProcess(
                    gateway_id=gw, site=fleet.site_of(gw), workdir=tmp / "agents", mqtt_host=broker.host,
                    mqtt_port=broker.port, filters=fleet.topic_filters(gw), cloud_url=cloud.url,
                    cloud_token=cloud.register_gateway(gw, fleet.site_of(gw)),
                )
                agent.start()
                agents.append(agent)
            faults = FaultConfig().with_overrides("duplicates=0.02,reorder=0.02,malformed=0.005")
            runner = SimRunner(fleet, broker.host, broker.port, ground_truth_path=tmp / "truth.jsonl",
                               faults=faults, count=args.count, rate=args.rate)
            kills = 0
            outage_done = restart_done = False
            runner.start()
            t0 = time.monotonic()
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
                          TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("publishing under faults", total=args.count)
                next_kill = t0 + rng.expovariate(1 / args.kill_every)
                while not runner.done:
                    now = time.monotonic()
                    progress.update(task, completed=runner.stats().published)
                    frac = runner.stats().published / args.count
                    if now >= next_kill:
                        victim = rng.choice(agents)
                        victim.kill9()
                        kills += 1
                        time.sleep(rng.uniform(0.0, 1.0))
                        victim.start()
                        next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every)
                    if not outage_done and frac > 0.3:
                        progress.console.print("cloud outage: stopping the cloud for 5 s")
                        cloud.stop()
                        time.sleep(5.0)
                        cloud.start()
                        outage_done = True
                    if not restart_done and frac > 0.6:
                        progress.console.print("broker restart")
                        broker.stop()
                        time.sleep(1.0)
                        broker.start()
                        restart_done = True
                    time.sleep(0.1)
                summary = runner.join()
                assert summary is not None
                exp = summary.expected_stored.telemetry + summary.expected_stored.scan
                drain = progress.add_task("draining to the cloud", total=exp)

                def drained() -> bool:
                    counts = cloud.counts()
                    n = counts.get("telemetry", 0) + counts.get("scan", 0)
                    progress.update(drain, completed=n)
                    return n >= exp and all(a.status()["outbox_depth"] == 0 for a in agents)

                _stack.wait_until(drained, 300, interval_s=0.5)
            counts = cloud.counts()
            in_cloud = counts.get("telemetry", 0) + counts.get("scan", 0)
            rcs = [a.stop() for a in agents]
        finally:
            for a in agents:
                a.stop()
            cloud.stop()
            broker.stop()
    exp_t, exp_s = summary.expected_stored.telemetry, summary.expected_stored.scan
    console.print(f"cloud telemetry {counts.get('telemetry', 0):,} (expected {exp_t:,}), "
                  f"scans {counts.get('scan', 0):,} (expected {exp_s:,})")
    console.print(f"published {summary.published:,} (incl. {summary.duplicates:,} duplicates, "
                  f"{summary.malformed:,} malformed); expected unique {exp:,}; agents' exit codes {rcs}; "
                  f"{time.monotonic() - t0:.0f} s")
    print(f"faults: kills={kills} sent={exp} in_cloud={in_cloud} lost={max(0, exp - in_cloud)} "
          f"duplicates={max(0, in_cloud - exp)}")


if __name__ == "__main__":
    main()
