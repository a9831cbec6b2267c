"""Named migrations: they build exactly the schema of cloud/db/tables.py, 0001 is the previous release's
schema, a database made and filled by the previous release's own code (e60cd69, from git) is stamped and
upgraded with every row intact and keeps working, concurrent migrators apply each migration once, and the
CLI and start-up settings behave. SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cloud_testkit import ADMIN_TOKEN, admin_headers, make_settings
from fastapi.testclient import TestClient
from release_kit import (
    PREVIOUS_RELEASE,
    checkout_release,
    contents_of,
    run_release,
    schema_of,
    scratch_database,
)
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.cli import app as cli_app
from cloud.db import migrate as migrations
from cloud.db.engine import build_engine
from cloud.db.tables import metadata
from cloud.services.training_data import reading_series

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
GZ = {"Content-Encoding": "gzip", "Content-Type": "application/json"}

#: Run by the previous release's code: register gateways, issue tokens, sync every kind of record
#: through its API, put a gateway in a group, queue a retraining job. Prints what the test needs.
_FILL_WITH_PREVIOUS_RELEASE = r'''
import gzip, json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from pydantic import SecretStr
from cloud.app import create_app
from cloud.db.engine import build_engine
from cloud.services import train_job_store
from cloud.settings import CloudSettings
from protocols import record_id

url, workdir, token = sys.argv[1:4]
ADMIN = {"Authorization": f"Bearer {token}"}
T0 = 1_790_000_000_000

def telemetry(dev, seq, temp):
    return {"kind": "telemetry", "id": record_id("telemetry", dev, "b1", seq), "received_ts": T0 + seq * 1000 + 5,
            "msg": {"schema": "edgehouse.telemetry", "v": 1, "msg_id": f"m-{dev}-{seq}", "device_id": dev,
                    "boot_id": "b1", "seq": seq, "ts": T0 + seq * 1000,
                    "body": {"readings": [{"metric": "temperature_c", "value": temp},
                                          {"metric": "humidity_pct", "value": 50.0 + seq}]}}}

def scan(dev, seq, sku):
    return {"kind": "scan", "id": record_id("scan", dev, "b1", seq), "received_ts": T0 + seq,
            "msg": {"schema": "edgehouse.scan", "v": 1, "msg_id": f"s-{dev}-{seq}", "device_id": dev, "boot_id": "b1",
                    "seq": seq, "ts": T0 + seq * 60_000,
                    "body": {"code_type": "barcode", "sku": sku, "location": "A-01", "direction": "pick", "qty": 2,
                             "reader_id": dev}}}

def status(dev, seq):
    return {"kind": "device_status", "id": record_id("device_status", dev, "b1", seq), "received_ts": T0 + seq,
            "msg": {"schema": "edgehouse.status", "v": 1, "msg_id": f"st-{dev}-{seq}", "device_id": dev,
                    "boot_id": "b1", "seq": seq, "ts": T0 + seq,
                    "body": {"state": "online", "fw_version": "1.2.3", "uptime_s": 12.5}}}

def alert(gw, n):
    return {"kind": "alert", "id": f"alert:{gw}-a{n}",
            "alert": {"schema": "edgehouse.alert", "v": 1, "alert_id": f"{gw}-a{n}", "gateway_id": gw,
                      "kind": "anomaly", "state": "raised", "severity": "critical", "ts": T0 + n,
                      "message": "temperature drift", "device_id": "cold-1", "metric": "temperature_c",
                      "score": 0.97, "threshold": 0.8, "expected": 4.0, "observed": 9.5}}

def forecast(gw, n, site):
    return {"kind": "forecast", "id": f"forecast:{gw}-f{n}",
            "forecast": {"schema": "edgehouse.forecast", "v": 1, "forecast_id": f"{gw}-f{n}", "gateway_id": gw,
                         "site": site, "sku": f"SKU-{n}", "origin": "2026-11-24", "created_ts": T0 + n,
                         "p50": [3.0, 4.0, 5.0], "p90": [5.0, 6.5, 8.0], "model_version": 3}}

settings = CloudSettings(admin_token=SecretStr(token), database_url=url, train_workdir=Path(workdir) / "train")
out = {"tokens": {}, "batches": {}}
with TestClient(create_app(settings)) as c:
    for gw, site, dev in (("gw-a", "berlin", "cold-1"), ("gw-b", "hamburg", "cold-9")):
        r = c.post("/api/v1/gateways", json={"gateway_id": gw, "site": site}, headers=ADMIN)
        assert r.status_code == 201, r.text
        out["tokens"][gw] = r.json()["token"]
        records = ([telemetry(dev, s, 4.0 + s / 10) for s in range(40)] + [scan(f"rd-{gw}", s, f"SKU-{s % 3}") for s in range(12)]
                   + [status(dev, s) for s in range(3)] + [alert(gw, n) for n in range(4)]
                   + [forecast(gw, n, site) for n in range(2)])
        doc = {"schema": "edgehouse.sync_batch", "v": 1, "gateway_id": gw, "batch_id": f"{gw}-1", "sent_ts": T0,
               "agent_version": "0.1.0", "records": records}
        r = c.post("/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()),
                   headers={"Authorization": f"Bearer {out['tokens'][gw]}", "Content-Encoding": "gzip",
                            "Content-Type": "application/json"})
        assert r.status_code == 200 and len(r.json()["stored"]) == len(records), r.text
        out["batches"][gw] = doc
    r = c.post("/api/v1/tokens", json={"role": "planner", "label": "ops"}, headers=ADMIN)
    out["planner"] = r.json()["token"]
    r = c.put("/api/v1/gateways/gw-a/group", json={"group": "canary"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    out["gateways"] = c.get("/api/v1/gateways", headers=ADMIN).json()
    out["alerts"] = c.get("/api/v1/alerts?limit=100", headers=ADMIN).json()
engine = build_engine(url, pool_size=1)
out["train_job"] = train_job_store.insert(engine, "anomaly", "fleet", {"epochs": 1, "seed": 7}, "admin")
engine.dispose()
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checkout_release(PREVIOUS_RELEASE, tmp_path_factory.mktemp("release") / PREVIOUS_RELEASE)


def _schema_from_tables_py(url: str) -> dict[str, Any]:
    engine = build_engine(url, pool_size=1)
    try:
        metadata.create_all(engine)
        return schema_of(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_build_exactly_the_schema_of_tables_py(backend: str, tmp_path: Path) -> None:
    with scratch_database(backend, tmp_path) as migrated_url, scratch_database(backend, tmp_path) as direct_url:
        engine = build_engine(migrated_url, pool_size=1)
        try:
            applied = migrations.migrate(engine)
            assert applied == [m.name for m in migrations.discover()]
            assert migrations.migrate(engine) == [] and migrations.pending(engine) == []
            migrated = schema_of(engine)
        finally:
            engine.dispose()
        assert migrated == _schema_from_tables_py(direct_url)


@pytest.mark.parametrize("backend", BACKENDS)
def test_initial_migration_is_the_schema_the_previous_release_created(backend: str, tmp_path: Path,
                                                                      previous_release: Path) -> None:
    with scratch_database(backend, tmp_path) as old_url, scratch_database(backend, tmp_path) as new_url:
        run_release(previous_release, "import sys; from cloud.db.engine import build_engine, create_tables; "
                                      "e = build_engine(sys.argv[1]); create_tables(e); e.dispose()", old_url)
        old = build_engine(old_url, pool_size=1)
        new = build_engine(new_url, pool_size=1)
        try:
            initial = tuple(m for m in migrations.discover() if m.name == migrations.INITIAL)
            migrations.migrate(new, initial)
            assert schema_of(new) == schema_of(old)
        finally:
            old.dispose()
            new.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_database_of_the_previous_release_is_stamped_and_upgraded_with_its_data(
        backend: str, tmp_path: Path, previous_release: Path) -> None:
    with scratch_database(backend, tmp_path) as url, scratch_database(backend, tmp_path) as direct_url:
        made = json.loads(run_release(previous_release, _FILL_WITH_PREVIOUS_RELEASE, url, str(tmp_path), ADMIN_TOKEN))
        engine = build_engine(url, pool_size=1)
        try:
            before = contents_of(engine)
            assert sum(len(rows) for rows in before.values()) > 280  # records, readings, registry, tokens, job
            assert migrations.pending(engine) == [m.name for m in migrations.discover()]
            started = time.perf_counter()
            applied = migrations.migrate(engine)
            took = time.perf_counter() - started
            states = {s.name: s.state for s in migrations.status(engine)}
            after = contents_of(engine)
            assert schema_of(engine) == _schema_from_tables_py(direct_url)
        finally:
            engine.dispose()
        print(f"upgrade of a {PREVIOUS_RELEASE} database ({backend}): {took * 1000:.0f} ms")
        assert applied == [m.name for m in migrations.discover()]
        assert states[migrations.INITIAL] == "stamped" and set(states.values()) == {"stamped", "applied"}
        _assert_rows_intact(before, after)

        with TestClient(create_app(make_settings(url, train_workdir=tmp_path / "train"))) as client:
            _assert_the_upgraded_cloud_works(client, made)


def _assert_rows_intact(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]) -> None:
    """Every row of every old table is still there with the same values (new columns aside)."""
    assert set(before) <= set(after)
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        kept = [{k: v for k, v in row.items() if k in rows[0]} for row in after[table]] if rows else []
        assert sorted(map(_canonical, kept)) == sorted(map(_canonical, rows)), table
    telemetry_gateway = {r["id"]: r["gateway_id"] for r in after["telemetry"]}
    assert after["readings"] and all(r["gateway_id"] == telemetry_gateway[r["record_id"]] for r in after["readings"])


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _assert_the_upgraded_cloud_works(client: TestClient, made: dict[str, Any]) -> None:
    admin = admin_headers()
    assert client.get("/api/v1/gateways", headers=admin).json() == made["gateways"]
    assert client.get("/api/v1/alerts?limit=100", headers=admin).json()["items"] == made["alerts"]["items"]
    engine: Engine = client.app.state.cloud.engine  # type: ignore[attr-defined]
    series = {(s.device_id, s.metric): s for s in reading_series(engine)}
    assert len(series[("cold-1", "temperature_c")]) == 40
    assert series[("cold-9", "humidity_pct")].values.tolist() == [50.0 + s for s in range(40)]
    job = client.get(f"/api/v1/models/jobs/{made['train_job']}", headers=admin)
    assert job.status_code == 200 and job.json()["task"] == "anomaly"
    planner = {"Authorization": f"Bearer {made['planner']}"}
    assert client.get("/api/v1/route-jobs/none", headers=planner).status_code == 404  # the old token still works
    for gw, doc in made["batches"].items():  # the old gateway tokens work, and everything is already stored
        headers = {"Authorization": f"Bearer {made['tokens'][gw]}", **GZ}
        resp = client.post("/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()), headers=headers)
        assert resp.status_code == 200, resp.text
        ack = resp.json()
        assert ack["stored"] == [] and ack.get("rejected", []) == []
        assert sorted(ack["duplicates"]) == sorted(r["id"] for r in doc["records"])
    # gw-b relays gw-a's device: under the new key it is gw-b's own record, gw-a's stays as it was
    doc = {**made["batches"]["gw-a"], "gateway_id": "gw-b", "batch_id": "gw-b-2",
           "records": made["batches"]["gw-a"]["records"][:5]}
    headers = {"Authorization": f"Bearer {made['tokens']['gw-b']}", **GZ}
    resp = client.post("/api/v1/sync", content=gzip.compress(json.dumps(doc).encode()), headers=headers)
    assert resp.status_code == 200 and len(resp.json()["stored"]) == 5, resp.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_migrators_apply_each_migration_once(backend: str, tmp_path: Path) -> None:
    with scratch_database(backend, tmp_path) as url:
        engines = [build_engine(url, pool_size=1) for _ in range(4)]
        results: list[list[str]] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(engines))

        def run(engine: Engine) -> None:
            try:
                barrier.wait()
                results.append(migrations.migrate(engine))
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert not errors, errors
            names = [m.name for m in migrations.discover()]
            assert sorted(n for r in results for n in r) == sorted(names)  # each applied by exactly one
            with engines[0].connect() as conn:
                recorded = conn.execute(text("SELECT name FROM schema_migrations ORDER BY name")).scalars().all()
            assert recorded == names
        finally:
            for e in engines:
                e.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_foreign_schema_is_refused_naming_the_table(backend: str, tmp_path: Path) -> None:
    with scratch_database(backend, tmp_path) as url:
        engine = build_engine(url, pool_size=1)
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE gateways (gateway_id VARCHAR(64) PRIMARY KEY, region TEXT)"))
            with pytest.raises(migrations.MigrationError, match="table gateways is not the one release e60cd69"):
                migrations.migrate(engine)
            assert migrations.pending(engine) == [m.name for m in migrations.discover()]  # nothing changed
            with engine.connect() as conn:
                assert conn.execute(text("SELECT COUNT(*) FROM gateways")).scalar() == 0
        finally:
            engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_migrate_and_status_and_start_up_without_migrating(backend: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with scratch_database(backend, tmp_path) as url:
        monkeypatch.setenv("EDGEHOUSE_CLOUD_DATABASE_URL", url)
        monkeypatch.setenv("EDGEHOUSE_CLOUD_ADMIN_TOKEN", ADMIN_TOKEN)
        runner = CliRunner()
        names = [m.name for m in migrations.discover()]
        shown = runner.invoke(cli_app, ["migrate", "--status"])
        assert shown.exit_code == 0, shown.output
        assert [line.split()[:2] for line in shown.stdout.splitlines()] == [[n, "pending"] for n in names]

        settings = make_settings(url, migrate_on_start=False)
        with pytest.raises(migrations.SchemaOutdated, match="run `edgehouse-cloud migrate`"), \
                TestClient(create_app(settings)):
            pass
        monkeypatch.setenv("EDGEHOUSE_CLOUD_MIGRATE_ON_START", "false")
        refused = runner.invoke(cli_app, ["gateway", "list"])
        assert refused.exit_code == 1 and "lacks the migrations 0001_initial" in refused.stderr

        done = runner.invoke(cli_app, ["migrate"])
        assert done.exit_code == 0, done.output
        assert done.stdout.startswith(f"applied {len(names)} migrations in ")
        assert [line.split()[1] for line in done.stdout.splitlines()[1:]] == ["applied"] * len(names)
        assert runner.invoke(cli_app, ["migrate"]).stdout.startswith("the schema is up to date")
        assert runner.invoke(cli_app, ["gateway", "list"]).exit_code == 0
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
