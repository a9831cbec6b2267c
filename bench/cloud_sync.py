"""Throughput of ``POST /api/v1/sync`` (gzip batches of a gateway's ordinary records) on SQLite and PostgreSQL.

Runs the app in-process (FastAPI TestClient, no network) so the figure is the API + validation +
storage cost. Records are realistic (``cloud_testkit.mixed_records``: per 200 records 170 telemetry
messages of 2-3 readings, 24 scans, 2 status messages, 3 alerts, 1 forecast), in batches of the agent's
default size (1,000 records); a record counts once however many readings it holds. Batches are built and
compressed before timing. PostgreSQL gets a throwaway database on ``--pg-server`` that is dropped afterwards.

    .venv/bin/python bench/cloud_sync.py [--batches 20] [--batch-size 1000]

Last line: ``cloud_sync: sqlite_records_per_s=<n> postgres_records_per_s=<n>``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cloud"))
# The record builders are shared with the cloud tests.
from cloud_testkit import (
    GATEWAY_ID,
    batch,
    gz,
    make_settings,
    mixed_records,
    register,
)

from cloud.app import create_app
from cloud.db.migrate import schema_migrations
from cloud.db.tables import metadata

DEVICES = 200


def _payloads(batches: int, batch_size: int) -> list[bytes]:
    return [gz(batch(GATEWAY_ID, mixed_records(GATEWAY_ID, b * batch_size, batch_size, devices=DEVICES),
                     f"bench-{b}")) for b in range(batches)]


def measure(database_url: str, payloads: list[bytes], batch_size: int, repeats: int) -> float:
    """Median records/s over ``repeats`` fresh runs (each storing every payload once)."""
    rates = []
    for _ in range(repeats):
        with TestClient(create_app(make_settings(database_url))) as client:
            headers = {**register(client), "Content-Encoding": "gzip"}
            start = time.perf_counter()
            for body in payloads:
                resp = client.post("/api/v1/sync", content=body, headers=headers)
                if resp.status_code != 200 or len(resp.json()["stored"]) != batch_size:
                    raise RuntimeError(f"unexpected answer {resp.status_code}: {resp.text[:300]}")
            rates.append(len(payloads) * batch_size / (time.perf_counter() - start))
        _reset(database_url)
    return statistics.median(rates)


def _reset(database_url: str) -> None:
    """Drop the benchmark's tables (and the migration record) so the next run starts empty."""
    engine = create_engine(database_url)
    try:
        metadata.drop_all(engine)
        schema_migrations.drop(engine, checkfirst=True)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    payloads = _payloads(args.batches, args.batch_size)
    n = args.batches * args.batch_size
    print(f"{n} records in {args.batches} gzip batches of {args.batch_size}, median of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate = measure(f"sqlite:///{tmp}/bench.db", payloads, args.batch_size, args.repeats)
    print(f"sqlite: {sqlite_rate:,.0f} records/s")

    name = f"edgehouse_bench_{secrets.token_hex(4)}"
    admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            pg_rate = measure(f"{args.pg_server}/{name}", payloads, args.batch_size, args.repeats)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    print(f"postgres: {pg_rate:,.0f} records/s")
    print(f"cloud_sync: sqlite_records_per_s={sqlite_rate:.0f} postgres_records_per_s={pg_rate:.0f}")


if __name__ == "__main__":
    main()
