"""Time to upgrade a database of release e60cd69 (schema 0001_initial) to the current schema, SQLite and PostgreSQL.

Fills the frozen 0001 tables directly (``--messages`` telemetry messages with two readings each, a tenth
as many scans, alerts and forecasts, over 20 gateways), then times ``cloud.db.migrate.migrate`` for the
remaining migrations (0002 re-keys every record table: SQLite copies them, PostgreSQL alters them in place)
and checks that every row is still there. PostgreSQL gets a throwaway database on ``--pg-server``.

    .venv/bin/python bench/cloud_migrate.py [--messages 200000]

Last line: ``cloud_migrate: rows=<n> sqlite_s=<x> postgres_s=<x>``.
"""

from __future__ import annotations

import argparse
import importlib
import secrets
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text

from cloud.db import migrate as migrations
from cloud.db.engine import build_engine

T0 = 1_790_000_000_000
CHUNK = 20_000
initial = importlib.import_module("cloud.db.migrations.0001_initial")


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fill(engine: Engine, messages: int) -> int:
    t = initial.metadata.tables
    with engine.begin() as conn:
        for g in range(20):
            conn.execute(t["gateways"].insert().values(gateway_id=f"gw-{g}", site=f"site-{g % 4}", created_ts=T0))

    def envelope(kind: str, n: int) -> dict[str, Any]:
        dev = f"dev-{n % 500}"
        return {"id": f"{kind}:{dev}:b1:{n}", "gateway_id": f"gw-{n % 20}", "device_id": dev, "boot_id": "b1",
                "seq": n, "msg_id": f"m{n}", "ts": T0 + n * 1000, "received_ts": T0 + n * 1000 + 5,
                "stored_ts": T0 + n * 1000 + 9}

    tables: list[tuple[str, Iterator[dict[str, Any]]]] = [
        ("telemetry", ({**envelope("telemetry", n), "n_readings": 2} for n in range(messages))),
        ("readings", ({"record_id": f"telemetry:dev-{n % 500}:b1:{n}", "metric": m, "device_id": f"dev-{n % 500}",
                       "ts": T0 + n * 1000, "value": 4.0 + n % 7} for n in range(messages) for m in ("t", "h"))),
        ("scans", ({**envelope("scan", n), "code_type": "barcode", "sku": f"SKU-{n % 50}", "location": "A-01",
                    "direction": "pick", "qty": 1, "reader_id": "r1", "tag_id": None} for n in range(messages // 10))),
        ("alerts", ({"id": f"alert:a{n}", "gateway_id": f"gw-{n % 20}", "alert_id": f"a{n}", "kind": "anomaly",
                     "state": "raised", "severity": "warning", "device_id": "dev-1", "ts": T0 + n, "stored_ts": T0,
                     "payload": {"n": n}} for n in range(messages // 10))),
        ("forecasts", ({"id": f"forecast:f{n}", "gateway_id": f"gw-{n % 20}", "forecast_id": f"f{n}",
                        "site": "site-0", "sku": f"SKU-{n % 50}", "origin": "2026-11-24", "created_ts": T0 + n,
                        "model_version": 1, "stored_ts": T0, "payload": {"n": n}} for n in range(messages // 10))),
    ]
    total = 0
    for name, rows in tables:
        for chunk in _chunks(rows):
            with engine.begin() as conn:
                conn.execute(t[name].insert(), chunk)
            total += len(chunk)
    return total


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(int(conn.execute(select(func.count()).select_from(initial.metadata.tables[name])).scalar_one())
                   for name in ("telemetry", "readings", "scans", "alerts", "forecasts"))


def measure(url: str, messages: int) -> tuple[int, float]:
    engine = build_engine(url, pool_size=1)
    try:
        migrations.migrate(engine, tuple(m for m in migrations.discover() if m.name == migrations.INITIAL))
        rows = _fill(engine, messages)
        started = time.perf_counter()
        applied = migrations.migrate(engine)
        took = time.perf_counter() - started
        if _count(engine) != rows or not applied:
            raise RuntimeError("rows lost in the upgrade")
        return rows, took
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, sqlite_s = measure(f"sqlite:///{tmp}/bench.db", args.messages)
    print(f"sqlite: {rows} rows upgraded in {sqlite_s:.2f} s ({rows / sqlite_s:,.0f} rows/s)")
    name = f"edgehouse_bench_{secrets.token_hex(4)}"
    admin = create_engine(f"{args.pg_server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            rows, pg_s = measure(f"{args.pg_server}/{name}", args.messages)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    print(f"postgres: {rows} rows upgraded in {pg_s:.2f} s ({rows / pg_s:,.0f} rows/s)")
    print(f"cloud_migrate: rows={rows} sqlite_s={sqlite_s:.2f} postgres_s={pg_s:.2f}")


if __name__ == "__main__":
    main()
