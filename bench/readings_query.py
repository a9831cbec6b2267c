"""One metric of one device over a year in 1,000 points, from a PostgreSQL readings table of ``--rows`` readings.

The table is filled in the database itself, week partition by week partition (each one ``INSERT … SELECT``
over ``generate_series``: devices x 3 metrics x one reading a minute for the last 372 days, sorted by the
index's key so the index grows at its right edge), through the schema the migrations build
(``readings`` partitioned by week, index ``(device_id, metric, ts) INCLUDE (value)``); the hourly
rollup is then computed per week with ``cloud.db.rollups.rebuild``, which is what migration 0010 does to
an existing table (the upkeep keeps it from then on; the hours from its watermark, set 6 hours before the
hour of the migration by migration 0012, are read from the readings). The fill runs with
``synchronous_commit = off`` (its own session only). Queries go through the API (in-process ``TestClient``, admin token): a random device and
metric, a year window ending a random number of minutes before now, ``max_points=1000``; the first few
warm the cache and are not counted. The same windows read from the readings alone
(``use_rollup=False``, buckets of ``ceil(year / 1000)``) are timed too, for comparison.

    .venv/bin/python bench/readings_query.py [--rows 100000000] [--queries 50] [--keep DBNAME]

``--keep NAME`` fills database NAME on the first run and reuses it on the next ones (drop it yourself);
without it a throwaway database is filled and dropped. Last line:
``readings_query: rows=<n> p50_ms=<x> p99_ms=<x> points=<n>``.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cloud"))
from cloud_testkit import admin_headers, make_settings

from cloud.app import create_app
from cloud.db import partitions, rollups
from cloud.db.engine import build_engine
from cloud.db.migrate import migrate
from cloud.services.timeseries import downsampled_readings

MINUTE_MS = 60_000
YEAR_MS = 365 * partitions.DAY_MS
#: What the fill covers: a year, and the week before now that the query windows end in.
SPAN_MS = YEAR_MS + 7 * partitions.DAY_MS
#: Metric, base value, daily swing (the fill's series; the readings API checks metric names).
METRICS = (("temperature_c", 4.0, 1.5), ("power_w", 850.0, 90.0), ("humidity_pct", 45.0, 10.0))
GATEWAYS = 8


def _fill(url: str, rows: int, end_ts: int) -> tuple[int, float]:
    """Fill the readings and the rollup; (rows stored, seconds)."""
    start_ts = end_ts - SPAN_MS
    devices = -(-rows // (len(METRICS) * (SPAN_MS // MINUTE_MS)))
    engine = build_engine(url)
    started = time.perf_counter()
    try:
        migrate(engine)
        with engine.begin() as conn:
            partitions.ensure_weeks(conn, "readings", start_ts, end_ts + partitions.WEEK_MS)
            weeks = [w for w in partitions.weeks(conn, "readings") if w.end_ts > start_ts and w.start_ts < end_ts]
        metrics = ", ".join(f"('{m}', {base}, {swing})" for m, base, swing in METRICS)
        for i, week in enumerate(weeks):
            lo, hi = max(week.start_ts, start_ts), min(week.end_ts, end_ts)
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL synchronous_commit = off"))
                conn.execute(text("SET LOCAL work_mem = '256MB'"))
                conn.execute(text(
                    f'INSERT INTO "{week.name}" (gateway_id, record_id, metric, device_id, ts, value) '
                    "SELECT dd.gw, 'telemetry:' || dd.dev || ':b1:' || (t / 60000), m.metric, dd.dev, t, "
                    "floor((m.base + m.swing * sin(t / 13750987.08) + random()) * 100) / 100 "
                    f"FROM (SELECT 'dev-' || lpad(d::text, 4, '0') AS dev, 'gw-rq-' || (d % {GATEWAYS}) AS gw "
                    f"FROM generate_series(0, {devices - 1}) AS d) AS dd "
                    f"CROSS JOIN (VALUES {metrics}) AS m(metric, base, swing) "
                    f"CROSS JOIN generate_series({lo}::int8, {hi - 1}::int8, {MINUTE_MS}::int8) AS t "
                    "ORDER BY 4, 3, 5"))
                rollups.rebuild(conn, week.start_ts, week.end_ts)
            print(f"  week {i + 1}/{len(weeks)} filled ({time.perf_counter() - started:.0f} s)", flush=True)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE readings"))
            conn.execute(text("ANALYZE readings_hourly"))
            n = int(conn.execute(text("SELECT sum(n) FROM readings_hourly")).scalar_one())
    finally:
        engine.dispose()
    return n, time.perf_counter() - started


def _windows(n: int, end_ts: int, devices: int, seed: int) -> list[tuple[str, str, int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        to = end_ts - rng.randrange(0, 7 * 24 * 60) * MINUTE_MS - rng.randrange(MINUTE_MS)
        out.append((f"dev-{rng.randrange(devices):04d}", rng.choice(METRICS)[0], to - YEAR_MS, to))
    return out


def _pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--raw-queries", type=int, default=10, help="the same windows read from the readings")
    parser.add_argument("--keep", default=None, help="database to fill once and reuse")
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = args.keep or f"edgehouse_rq_{secrets.token_hex(4)}"
    url = f"{args.pg_server}/{name}"
    admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        probe = create_engine(url)
        with probe.connect() as conn:
            filled = None
            if conn.execute(text("SELECT to_regclass('readings_hourly') IS NOT NULL")).scalar_one():
                filled = conn.execute(text("SELECT coalesce(sum(n), 0), max(hour_ts) FROM readings_hourly")).one()
        if filled is not None and filled[0] >= args.rows:
            rows, end_ts = int(filled[0]), int(filled[1]) + rollups.HOUR_MS
            print(f"reusing {name}: {rows:,} readings")
        else:
            end_ts = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
            print(f"filling {name} with about {args.rows:,} readings", flush=True)
            rows, took = _fill(url, args.rows, end_ts)
            print(f"filled {rows:,} readings in {took:.0f} s ({rows / took:,.0f} rows/s, rollup included)")
        with probe.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
                                     "WHERE c.relname LIKE 'readings%' AND c.relkind = 'r'")).scalar_one()
        probe.dispose()
        devices = -(-rows // (len(METRICS) * (SPAN_MS // MINUTE_MS)))
        windows = _windows(args.warm + args.queries, end_ts, devices, seed=13)
        times, points = [], []
        with TestClient(create_app(make_settings(url, embedded_worker=False,
                                                 embedded_rollout_controller=False))) as client:
            for i, (device, metric, lo, hi) in enumerate(windows):
                started = time.perf_counter()
                resp = client.get(f"/api/v1/devices/{device}/readings", headers=admin_headers(),
                                  params={"metric": metric, "from": lo, "to": hi, "max_points": 1000})
                took = (time.perf_counter() - started) * 1000
                if resp.status_code != 200:
                    raise RuntimeError(f"{resp.status_code}: {resp.text[:300]}")
                if i >= args.warm:
                    times.append(took)
                    points.append(len(resp.json()["points"]))
            engine = client.app.state.cloud.engine  # type: ignore[attr-defined]
            raw = []
            for device, metric, lo, hi in windows[args.warm:args.warm + args.raw_queries]:
                started = time.perf_counter()
                downsampled_readings(engine, device, metric, lo, hi, 1000, use_rollup=False)
                raw.append((time.perf_counter() - started) * 1000)
        print(f"tables readings + readings_hourly: {size}; {devices} devices x {len(METRICS)} metrics, "
              f"one reading a minute")
        if raw:
            print(f"from the readings alone (no rollup), {len(raw)} windows: p50 {statistics.median(raw):.0f} ms, "
                  f"max {max(raw):.0f} ms")
        print(f"readings_query: rows={rows} p50_ms={statistics.median(times):.1f} p99_ms={_pctl(times, 0.99):.1f} "
              f"points={min(points)}")
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
