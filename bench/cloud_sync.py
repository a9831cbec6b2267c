"""Throughput of ``POST /api/v1/sync`` (gzip batches of a gateway's ordinary records) on SQLite and PostgreSQL.

Runs the app in-process (FastAPI TestClient, no network) so the figure is the API + validation +
storage cost. Records are realistic (``cloud_testkit.mixed_records``: per 200 records 170 telemetry
messages of 2-3 readings, 24 scans, 2 status messages, 3 alerts, 1 forecast; 200 devices of each kind),
live traffic of the last hour (a record a second, or more often for more records; the rows land in the current
week's partitions, and inside the hourly rollup's grace period, so none is late), in
batches of the agent's default size (1,000 records); a record counts once however many readings it holds.
Batches are built and compressed before timing. PostgreSQL gets a throwaway database on ``--pg-server``
that is dropped afterwards.

Each figure is the median of ``--repeats`` fresh runs storing every batch once, in one of two modes:

* **1 client**: one gateway posting its batches back to back, each waiting for its ack (API and database
  never work at once: their CPU times add up).
* **N clients**: N gateways, each with its own token and its own batches, posting at once from N threads
  into the same app process (as one API worker serving several gateways). Each batch still commits in its
  own transaction under its gateway's row lock; the API's Python work and the database's can overlap, so
  with a core free for each the rate is bounded by the busier of the two rather than their sum (on this
  shared 2-core machine it was not faster: ``cloud/README.md``).

The last line reports ``--clients`` gateways at once (default 1, the figure this benchmark always reported);
with ``--clients N`` above 1, PostgreSQL is measured with 1 client too and both are printed. SQLite uses
``--sqlite-clients`` (default 1: a SQLite database takes one writer at a time, so more clients only queue on
its lock inside the one process). CPU per batch is printed too: the bench process (the app, SQLite itself,
and the TestClient that posts) and, for PostgreSQL, the backends of the benchmark database
(``/proc/<pid>/schedstat``, PostgreSQL on this host); it depends less on what else runs on the machine than
records/s does (on a shared VM it still grows with the load).

    .venv/bin/python bench/cloud_sync.py [--batches 20] [--batch-size 1000] [--clients 1] [--sqlite-clients 1]
                                         [--encoding json|columnar]

``--encoding columnar`` measures, after the JSON batches, the same batches in the columnar encoding
(``protocols.columnar``, gzip: what the agent sends to a cloud that advertises it) and prints both.

Then PostgreSQL as the cloud is deployed (``--served W``, default 2; 0 skips it): ``edgehouse-cloud serve
--workers W`` (uvicorn worker processes, real HTTP on loopback) with ``--served-clients`` gateways (default 2)
posting ``--served-batches`` batches each (default 60) at once over keep-alive connections (``http.client``
threads in the bench process, each waiting for its ack; each gateway's first 3 batches warm the server up,
untimed). CPU per batch is then the serving processes' (``/proc/<pid>/stat``) and the database's; the posting
threads are the bench's own and are not counted, though they share the machine's two cores.

Last line: ``cloud_sync: sqlite_records_per_s=<n> postgres_records_per_s=<n> postgres_in_process_records_per_s=<n>``
(JSON): SQLite in-process with ``--sqlite-clients``; PostgreSQL as deployed (``--served``; in-process with
``--clients`` where ``--served 0``), and in-process with ``--clients`` (the figure this line gave before the
served mode, comparable with earlier runs); with
``columnar_sqlite_records_per_s=<n> columnar_postgres_records_per_s=<n>`` added for ``--encoding columnar``.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cloud"))
# The record builders are shared with the cloud tests.
from cloud_testkit import (
    GATEWAY_ID,
    admin_headers,
    batch,
    gz,
    make_settings,
    mixed_records,
    register,
)
from served_cloud import ServedCloud

from cloud.app import create_app
from cloud.db.migrate import schema_migrations
from cloud.db.tables import metadata
from protocols import SyncBatchHeader
from protocols.columnar import CONTENT_TYPE, encode

DEVICES = 200


@dataclass(frozen=True, slots=True)
class Run:
    records_per_s: float
    app_cpu_ms: float  # per batch, the bench process
    db_cpu_ms: float | None  # per batch, PostgreSQL's backends of the benchmark database


def _columnar(doc: dict[str, Any]) -> bytes:
    """The batch as the agent sends it to a cloud that takes the columnar encoding (gzip: zstd is not installed)."""
    header = SyncBatchHeader.model_validate({k: v for k, v in doc.items() if k != "records"})
    return gzip.compress(encode(header, (json.dumps(r) for r in doc["records"])), compresslevel=5)


#: The span of a gateway's batches: live traffic, inside the rollup's grace period (``cloud.db.rollups.GRACE_MS``:
#: older readings are late and pay for their partial rollup rows at ingest, which live traffic never does).
LIVE_SPAN_MS = 3_600_000


def gateway_batches(gateway_id: str, batches: int, batch_size: int, encoding: str = "json") -> list[bytes]:
    """The batches of a gateway's last hour (a record a second, or more often where more records are asked
    for, the last one now): live traffic, stored in the current weeks' partitions on PostgreSQL."""
    n = batches * batch_size
    step_ms = max(1, min(1000, LIVE_SPAN_MS // n))
    ts0 = int(time.time() * 1000) - n * step_ms
    docs = [batch(gateway_id, mixed_records(gateway_id, b * batch_size, batch_size, devices=DEVICES, ts0=ts0,
                                            step_ms=step_ms), f"bench-{b}") for b in range(batches)]
    return [_columnar(doc) if encoding == "columnar" else gz(doc) for doc in docs]


def _post_all(client: TestClient, headers: dict[str, str], payloads: list[bytes], batch_size: int) -> None:
    for body in payloads:
        resp = client.post("/api/v1/sync", content=body, headers=headers)
        if resp.status_code != 200 or len(resp.json()["stored"]) != batch_size:
            raise RuntimeError(f"unexpected answer {resp.status_code}: {resp.text[:300]}")


def measure(database_url: str, payloads: dict[str, list[bytes]], batch_size: int, repeats: int,
            db_cpu: Callable[[], float | None], content_type: str = "application/json") -> Run:
    """Median over ``repeats`` fresh runs of every gateway in ``payloads`` posting its batches at once."""
    runs = []
    n_batches = sum(len(p) for p in payloads.values())
    for _ in range(repeats):
        with TestClient(create_app(make_settings(database_url))) as client:
            headers = {gw: {**register(client, gw), "Content-Encoding": "gzip", "Content-Type": content_type}
                       for gw in payloads}
            db0, cpu0, start = db_cpu(), time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(len(payloads)) as pool:
                for done in [pool.submit(_post_all, client, headers[gw], p, batch_size) for gw, p in payloads.items()]:
                    done.result()
            wall, cpu, db1 = time.perf_counter() - start, time.process_time() - cpu0, db_cpu()
            runs.append(Run(n_batches * batch_size / wall, 1000 * cpu / n_batches,
                            None if db0 is None or db1 is None else (db1 - db0) / n_batches))
        _reset(database_url)
    return sorted(runs, key=lambda r: r.records_per_s)[len(runs) // 2]


def _post_http(port: int, headers: dict[str, str], payloads: list[bytes], batch_size: int) -> None:
    """One gateway posting its batches back to back over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        for body in payloads:
            conn.request("POST", "/api/v1/sync", body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200 or len(json.loads(answer)["stored"]) != batch_size:
                raise RuntimeError(f"unexpected answer {resp.status}: {answer[:300]!r}")
    finally:
        conn.close()


def _cpu_ms(pids: list[int]) -> float:
    """CPU (user + system) used so far by the processes ``pids``."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return 1000 * total / os.sysconf("SC_CLK_TCK")


def measure_served(database_url: str, payloads: dict[str, list[bytes]], batch_size: int, repeats: int,
                   db_cpu: Callable[[], float | None], workers: int, content_type: str = "application/json",
                   warmup: int = 3) -> Run:
    """Median over ``repeats`` fresh runs of ``edgehouse-cloud serve --workers`` taking every gateway's batches
    at once over HTTP; CPU per batch is the serving processes'. Each gateway's first ``warmup`` batches are
    posted before the timing starts: a served API is warm (its processes' connections open, each new
    PostgreSQL backend's catalog caches filled, some 50 ms of CPU each)."""
    runs = []
    n_batches = sum(len(p) - warmup for p in payloads.values())
    for _ in range(repeats):
        with ServedCloud(database_url, workers=workers) as cloud:
            pids = [cloud.proc.pid, *cloud.worker_pids()] if cloud.proc is not None else []
            tokens = {}
            for gw in payloads:
                conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=60)
                conn.request("POST", "/api/v1/gateways", body=json.dumps({"gateway_id": gw, "site": "berlin"}),
                             headers={**admin_headers(), "Content-Type": "application/json"})
                resp = conn.getresponse()
                tokens[gw] = json.loads(resp.read())["token"]
                conn.close()
            headers = {gw: {"Authorization": f"Bearer {tok}", "Content-Encoding": "gzip", "Content-Type": content_type}
                       for gw, tok in tokens.items()}
            with ThreadPoolExecutor(len(payloads)) as pool:
                for done in [pool.submit(_post_http, cloud.port, headers[gw], p[:warmup], batch_size)
                             for gw, p in payloads.items()]:
                    done.result()
            db0, cpu0, start = db_cpu(), _cpu_ms(pids), time.perf_counter()
            with ThreadPoolExecutor(len(payloads)) as pool:
                for done in [pool.submit(_post_http, cloud.port, headers[gw], p[warmup:], batch_size)
                             for gw, p in payloads.items()]:
                    done.result()
            wall, cpu, db1 = time.perf_counter() - start, _cpu_ms(pids) - cpu0, db_cpu()
            runs.append(Run(n_batches * batch_size / wall, cpu / n_batches,
                            None if db0 is None or db1 is None else (db1 - db0) / n_batches))
        _reset(database_url)
    return sorted(runs, key=lambda r: r.records_per_s)[len(runs) // 2]


def _reset(database_url: str) -> None:
    """Drop the benchmark's tables (and the migration record) so the next run starts empty."""
    engine = create_engine(database_url)
    try:
        metadata.drop_all(engine)
        schema_migrations.drop(engine, checkfirst=True)
    finally:
        engine.dispose()


def _backend_cpu(admin_url: str, database: str) -> Callable[[], float | None]:
    """CPU ms used so far by the PostgreSQL backends connected to ``database`` (None where unreadable)."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    seen: dict[int, float] = {}  # the latest reading of every backend met, gone ones included

    def total() -> float | None:
        with admin.connect() as conn:
            pids = [int(r[0]) for r in conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                                    {"d": database})]
        try:
            for pid in pids:
                seen[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6
        except (OSError, ValueError, IndexError):
            return None
        return sum(seen.values())

    return total


def _line(name: str, clients: int, run: Run) -> str:
    db = "" if run.db_cpu_ms is None else f", PostgreSQL backends {run.db_cpu_ms:.1f} ms"
    return (f"{name} {clients} client{'s' if clients > 1 else ''}: {run.records_per_s:,.0f} records/s; "
            f"CPU per batch: bench process {run.app_cpu_ms:.1f} ms{db}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per gateway")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1,
                        help="gateways posting at once to PostgreSQL (the last line's figure)")
    parser.add_argument("--sqlite-clients", type=int, default=1, help="gateways posting at once to SQLite")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--served", type=int, default=2, metavar="W",
                        help="also measure PostgreSQL behind `edgehouse-cloud serve --workers W` over HTTP (0: not)")
    parser.add_argument("--served-clients", type=int, default=2, help="gateways posting at once in --served")
    parser.add_argument("--served-batches", type=int, default=60, help="batches per gateway in --served")
    parser.add_argument("--encoding", choices=("json", "columnar"), default="json",
                        help="columnar: measure the columnar encoding (gzip) too, after JSON")
    args = parser.parse_args()
    most = max(args.clients, args.sqlite_clients, args.served_clients if args.served else 1)
    gateways = [GATEWAY_ID, *(f"gw-bench-{i}" for i in range(1, most))]
    encodings = ["json", "columnar"] if args.encoding == "columnar" else ["json"]
    payloads = {(enc, gw): gateway_batches(gw, args.batches, args.batch_size, enc) for enc in encodings
                for gw in gateways}
    for enc in encodings:
        size = sum(len(p) for p in payloads[enc, GATEWAY_ID]) / args.batches
        print(f"{enc}: {args.batches} gzip batches of {args.batch_size} per gateway ({size / 1024:.0f} KiB each), "
              f"median of {args.repeats}")

    def modes(url: str, db_cpu: Callable[[], float | None], name: str, counts: list[int]) -> dict[str, Run]:
        runs = {}
        for enc in encodings:
            for clients in counts:  # the last one is the figure
                runs[enc] = measure(url, {gw: payloads[enc, gw] for gw in gateways[:clients]}, args.batch_size,
                                    args.repeats, db_cpu, CONTENT_TYPE if enc == "columnar" else "application/json")
                print(_line(f"{name} {enc}" if len(encodings) > 1 else name, clients, runs[enc]), flush=True)
        return runs

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = modes(f"sqlite:///{tmp}/bench.db", lambda: None, "sqlite", [args.sqlite_clients])

    name = f"edgehouse_bench_{secrets.token_hex(4)}"
    admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
    served: Run | None = None
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            pg_url, pg_cpu = f"{args.pg_server}/{name}", _backend_cpu(f"{args.pg_server}/postgres", name)
            pg = modes(pg_url, pg_cpu, "postgres", sorted({1, args.clients}))
            if args.served:
                served = measure_served(pg_url, {gw: gateway_batches(gw, args.served_batches, args.batch_size)
                                                 for gw in gateways[:args.served_clients]},
                                        args.batch_size, args.repeats, pg_cpu, args.served)
                print(_line(f"postgres served --workers {args.served},", args.served_clients, served)
                      .replace("bench process", "serving processes"), flush=True)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    columnar = (f" columnar_sqlite_records_per_s={sqlite['columnar'].records_per_s:.0f}"
                f" columnar_postgres_records_per_s={pg['columnar'].records_per_s:.0f}") if "columnar" in pg else ""
    in_process = pg["json"].records_per_s
    postgres = served.records_per_s if served is not None else in_process
    print(f"cloud_sync: sqlite_records_per_s={sqlite['json'].records_per_s:.0f} "
          f"postgres_records_per_s={postgres:.0f} postgres_in_process_records_per_s={in_process:.0f}{columnar}")


if __name__ == "__main__":
    main()
