"""A fleet of gateways syncing into two API replicas and a job worker on one PostgreSQL, one replica killed.

Each simulated gateway is the agent's real sync client (``edge_agent.sync.SyncWorker``: its own SQLite
outbox, its own token, gzip batches of up to ``cloud.batch_max_records`` = 1,000 records, backoff on
failure), hosted ``--gateways / --hosts`` to a process. Records are the cloud tests' realistic mix
(``cloud_testkit.mixed_records``: telemetry of 2-3 readings, scans, device status, alerts, forecasts).
Live gateways append ``--rate`` records a second to their outbox and sync every ``--interval`` seconds; the
first ``--backlog-gateways`` also start with a day's backlog (one record every ``86400 / --backlog``
seconds of the last 24 hours) to drain. Gateway ``i`` talks to replica ``i % 2`` (``edgehouse-cloud serve``
processes, no embedded worker or controller); an ``edgehouse-cloud worker`` runs beside them. At
``--kill-at`` of the run the second replica is SIGKILLed (requests in flight included) and started again
``--down-s`` later on the same port; its gateways back off and resend.

After the live traffic stops every outbox is drained, then the cloud's tables are checked against what the
gateways produced: ``lost`` counts records produced but not stored, ``duplicates`` rows stored more than
once (records by key, and readings beyond each stored telemetry record's own). ``records_per_s`` is the
records stored over the time from the first sync to the last outbox drained; ``p99_sync_ms`` the 99th
percentile of the answered ``POST /api/v1/sync`` calls as the gateways timed them.

    .venv/bin/python bench/fleet.py [--gateways 200] [--hosts 4] [--duration 60]

Last line: ``fleet: gateways=<n> replicas=<n> records_per_s=<n> p99_sync_ms=<x> lost=<n> duplicates=<n>``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "tests" / "cloud"))
from cloud_testkit import admin_headers, mixed_records
from served_cloud import ServedCloud

DAY_MS = 86_400_000
DEVICES = 20
#: The agent's own outbox statement (edge_agent.ingest_batch): what a gateway's ingest writes.
_INSERT_OUTBOX = "INSERT OR IGNORE INTO outbox (id, kind, created_ts, payload) VALUES (?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    gateway_id: str
    token: str
    url: str
    backlog: int  # records k < backlog are the day before the run, one every backlog_step_ms
    backlog_step_ms: int


@dataclass(frozen=True, slots=True)
class HostConfig:
    workdir: str
    rate: int
    interval_s: float
    duration_s: float
    drain_timeout_s: float
    t0_ms: int


def _records(plan: GatewayPlan, start: int, n: int, rate: int, t0_ms: int) -> list[dict[str, Any]]:
    """Records ``[start, start + n)`` of a gateway: the backlog in the past day, then live ones at ``rate``/s."""
    out = []
    if start < plan.backlog:
        m = min(n, plan.backlog - start)
        out += mixed_records(plan.gateway_id, start, m, devices=DEVICES, ts0=t0_ms - DAY_MS,
                             step_ms=plan.backlog_step_ms)
        start, n = start + m, n - m
    if n > 0:
        step = max(1, 1000 // rate)
        out += mixed_records(plan.gateway_id, start, n, devices=DEVICES, ts0=t0_ms - plan.backlog * step,
                             step_ms=step)
    return out


def _enqueue(conn: Any, records: list[dict[str, Any]], now_ms: int) -> None:
    with conn:
        conn.executemany(_INSERT_OUTBOX, [(r["id"], r["kind"], now_ms, json.dumps(r, separators=(",", ":")))
                                          for r in records])


def _host(plans: list[GatewayPlan], cfg: HostConfig, results: Any) -> None:
    """One gateway-host process: a store and a real SyncWorker per gateway, one producer for all."""
    import logging

    logging.basicConfig(level=logging.ERROR)  # the workers' retry warnings are counted, not printed
    from edge_agent.cloud_client import cloud_transport
    from edge_agent.config import CloudConfig
    from edge_agent.metrics import AgentMetrics
    from edge_agent.store import Store
    from edge_agent.sync import SyncWorker

    latencies: list[float] = []
    failures = Counter[str]()
    lock = threading.Lock()

    class TimedTransport(httpx.BaseTransport):
        """The agent's own transport to the cloud, its sync requests timed (answered ones, body read)
        and failures counted; handed to each SyncWorker as an operator would (``transport=``)."""

        def __init__(self, inner: httpx.BaseTransport) -> None:
            self._inner = inner

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if not request.url.path.endswith("/sync"):
                return self._inner.handle_request(request)
            start = time.perf_counter()
            try:
                resp = self._inner.handle_request(request)
                resp.read()
            except httpx.HTTPError as exc:
                with lock:
                    failures[type(exc).__name__] += 1
                raise
            with lock:
                if resp.status_code == 200:
                    latencies.append((time.perf_counter() - start) * 1000)
                else:
                    failures[f"http_{resp.status_code}"] += 1
            return resp

        def close(self) -> None:
            self._inner.close()

    stores, conns, workers, produced = {}, {}, {}, {}
    for plan in plans:
        store = Store(Path(cfg.workdir) / f"{plan.gateway_id}.db")
        store.open()
        conn = store.connect()
        if plan.backlog:
            for k in range(0, plan.backlog, 5000):
                _enqueue(conn, _records(plan, k, min(5000, plan.backlog - k), cfg.rate, cfg.t0_ms), cfg.t0_ms)
        stores[plan.gateway_id], conns[plan.gateway_id], produced[plan.gateway_id] = store, conn, plan.backlog
        config = CloudConfig(url=plan.url, token=plan.token, interval_s=cfg.interval_s, backoff_min_s=0.5,
                             backoff_max_s=4.0, request_timeout_s=60.0, shutdown_flush_s=0)
        workers[plan.gateway_id] = SyncWorker(config, plan.gateway_id, store, AgentMetrics(),
                                              transport=TimedTransport(cloud_transport(config)))
    results.put(("ready", os.getpid()))
    start = time.monotonic()
    for w in workers.values():
        w.start()
    tick = 0
    while time.monotonic() - start < cfg.duration_s:  # live traffic: rate records a second per gateway
        tick += 1
        for plan in plans:
            gw = plan.gateway_id
            _enqueue(conns[gw], _records(plan, produced[gw], cfg.rate, cfg.rate, cfg.t0_ms), int(time.time() * 1000))
            produced[gw] += cfg.rate
        time.sleep(max(0.0, start + tick - time.monotonic()))
    deadline = time.monotonic() + cfg.drain_timeout_s
    depth = {gw: 1 for gw in conns}
    while any(depth.values()) and time.monotonic() < deadline:
        for gw, conn in conns.items():
            depth[gw] = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        time.sleep(0.25)
    drained_at = time.time()
    rejected = sum(conn.execute("SELECT count(*) FROM sync_rejected").fetchone()[0] for conn in conns.values())
    for w in workers.values():
        w.stop(flush=False)
    for conn in conns.values():
        conn.close()
    results.put(("done", {"produced": produced, "latencies": latencies, "failures": dict(failures),
                          "undrained": sum(depth.values()), "rejected": rejected, "drained_at": drained_at}))


def _register(url: str, n: int) -> dict[str, str]:
    tokens = {}
    with httpx.Client(base_url=url, headers=admin_headers(), timeout=30) as http:
        for i in range(n):
            gw = f"gw-fleet-{i:04d}"
            resp = http.post("/api/v1/gateways", json={"gateway_id": gw, "site": f"site-{i % 25:02d}"})
            resp.raise_for_status()
            tokens[gw] = resp.json()["token"]
    return tokens


def _check(database_url: str, produced: dict[str, int], plans: dict[str, GatewayPlan], rate: int,
           t0_ms: int) -> tuple[int, int, int, int]:
    """(stored, lost, duplicates, readings the hourly rollup miscounts) of the cloud's tables against what
    each gateway produced."""
    from cloud.db import rollups
    from cloud.db.tables import RECORD_TABLES
    from cloud.services.partition_upkeep import advance_rollup

    engine = create_engine(database_url)
    try:
        # roll up every hour (the live ones too, as the upkeep will once they closed): the rollup then
        # counts every reading, the late ones from ingest and the others from the bulk pass
        advance_rollup(engine, int(time.time() * 1000) + rollups.GRACE_MS + rollups.HOUR_MS)
        with engine.connect() as conn:
            rows: Counter[tuple[str, str]] = Counter()
            for table in RECORD_TABLES.values():
                rows.update((gw, rid) for gw, rid in conn.execute(text(f"SELECT gateway_id, id FROM {table.name}")))
            readings = Counter(conn.execute(text("SELECT gateway_id, record_id FROM readings")).all())
            rolled = int(conn.execute(text("SELECT coalesce(sum(n), 0) FROM readings_hourly")).scalar_one())
    finally:
        engine.dispose()
    lost = duplicates = 0
    for gw, n in produced.items():
        for k in range(0, n, 5000):
            for r in _records(plans[gw], k, min(5000, n - k), rate, t0_ms):
                key = (gw, r["id"])
                lost += key not in rows
                if r["kind"] == "telemetry" and key in rows:
                    duplicates += max(0, readings[key] - len(r["msg"]["body"]["readings"]))
    duplicates += sum(c - 1 for c in rows.values())
    return len(rows), lost, duplicates, abs(rolled - sum(readings.values()))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=4, help="processes hosting the gateways")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of live traffic")
    parser.add_argument("--rate", type=int, default=10, help="records a second per live gateway")
    parser.add_argument("--interval", type=float, default=2.0, help="a live gateway's sync interval (s)")
    parser.add_argument("--backlog-gateways", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=43_200, help="records of a day's backlog")
    parser.add_argument("--kill-at", type=float, default=0.4, help="fraction of the run when replica 2 dies")
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()

    name = f"edgehouse_fleet_{secrets.token_hex(4)}"
    admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{args.pg_server}/{name}"
    procs: list[Any] = []
    replicas = [ServedCloud(url), ServedCloud(url)]
    try:
        with tempfile.TemporaryDirectory(prefix="eh-fleet-") as tmp:
            replicas[0].start()  # migrates the fresh database
            replicas[1].start()
            worker = subprocess.Popen([sys.executable, "-m", "cloud", "worker", "--queues", "route"],
                                      env=replicas[0].env, cwd=_ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
            procs.append(worker)
            tokens = _register(replicas[0].url, args.gateways)
            t0_ms = int(time.time() * 1000)
            plans = {gw: GatewayPlan(gw, tok, replicas[i % 2].url,
                                     args.backlog if i < args.backlog_gateways else 0,
                                     max(1, DAY_MS // max(1, args.backlog)))
                     for i, (gw, tok) in enumerate(tokens.items())}
            cfg = HostConfig(workdir=tmp, rate=args.rate, interval_s=args.interval, duration_s=args.duration,
                             drain_timeout_s=max(120.0, args.duration), t0_ms=t0_ms)
            ctx = mp.get_context("spawn")
            results = ctx.Queue()
            names = list(plans)
            groups = [[plans[gw] for gw in names[h::args.hosts]] for h in range(args.hosts)]
            hosts = [ctx.Process(target=_host, args=(g, cfg, results), daemon=True) for g in groups]
            for h in hosts:
                h.start()
            for _ in hosts:
                results.get(timeout=300)  # every host has its outboxes filled and its workers made
            started = time.time()
            print(f"{args.gateways} gateways in {args.hosts} processes, {args.backlog_gateways} with "
                  f"{args.backlog} backlog records, {args.rate} records/s live for {args.duration:.0f} s",
                  flush=True)
            time.sleep(args.duration * args.kill_at)
            replicas[1].kill()
            print(f"replica 2 killed at {time.time() - started:.1f} s", flush=True)
            time.sleep(args.down_s)
            replicas[1].start()
            print(f"replica 2 serving again at {time.time() - started:.1f} s", flush=True)
            reports = [results.get(timeout=args.duration + cfg.drain_timeout_s + 300)[1] for _ in hosts]
            for h in hosts:
                h.join(timeout=60)
        produced = {gw: n for rep in reports for gw, n in rep["produced"].items()}
        ended = max(rep["drained_at"] for rep in reports)
        latencies = [x for rep in reports for x in rep["latencies"]]
        failures = sum((Counter(rep["failures"]) for rep in reports), Counter[str]())
        if not latencies:
            raise RuntimeError("no sync request was timed: has the agent's sync client changed?")
        stored, lost, duplicates, rollup_off = _check(url, produced, plans, args.rate, t0_ms)
        rate = stored / (ended - started)
        p99 = _percentile(latencies, 0.99)
        print(f"produced {sum(produced.values())} records, stored {stored} in {ended - started:.1f} s; "
              f"{len(latencies)} syncs answered, p50 {_percentile(latencies, 0.5):.0f} ms; failed tries "
              f"{dict(failures)}; undrained {sum(r['undrained'] for r in reports)}, "
              f"rejected {sum(r['rejected'] for r in reports)}; readings rollup off by {rollup_off}")
        print(f"fleet: gateways={args.gateways} replicas={len(replicas)} records_per_s={rate:.0f} "
              f"p99_sync_ms={p99:.0f} lost={lost} duplicates={duplicates}")
    finally:
        for r in replicas:
            r.stop()
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
