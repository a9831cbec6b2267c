"""The operator's tools (``edgehouse-agent db …``, ``edgehouse-agent dead-letters …``): exports
and queries of a real store, and dead-letter replay through the live decoding and dedup: each
message that decodes now is stored and synced exactly once, on a stopped and on a running agent."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from agent_testkit import BASE_TS, SITE, FakeCloud, inbound, scan, telemetry, write_toml
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from edge_agent.app import Agent
from edge_agent.cli import app
from edge_agent.clock import now_ms
from edge_agent.config import AgentConfig
from edge_agent.inbound import Inbound
from edge_agent.ingest_batch import BatchWriter
from edge_agent.store import Store
from edge_agent.store.stock_output import PositionQueue
from edge_agent.tools import dead_letters as dl
from edge_agent.tools.timespec import parse_time
from protocols import device_topic, encode, record_id
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
WRONG_SITE = "site-typo"
LIVE = 2000


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def quiet(make_config: Any, **extra: Any) -> AgentConfig:
    return make_config(models={"enabled": False, "forecast_enabled": False}, **extra)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(str(db), timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def misconfigured_gateway(cfg: AgentConfig, messages: list[Inbound]) -> None:
    """The same store written by the gateway while its ``site`` was mistyped: every device
    message of the real site became a dead letter ("site … is not this gateway's site")."""
    store = Store(cfg.db_path)
    store.open()
    conn = store.connect()
    try:
        # received now: the running agent's retention keeps dead letters for 30 days
        result = BatchWriter(conn, WRONG_SITE, 2000, 4096).write(messages, now_ms())
        assert result.dead_letters == len(messages)
    finally:
        conn.close()


# ------------------------------------------------------------------------------ db commands


def test_export_datasets_in_every_format_with_time_filters(make_config: Any, tmp_path: Path) -> None:
    cfg = quiet(make_config)
    store = Store(cfg.db_path)
    store.open()
    conn = store.connect()
    writer = BatchWriter(conn, SITE, 2000, 4096)
    writer.write([inbound(telemetry(i), mid=i) for i in range(10)], BASE_TS)
    writer.write([inbound(scan(i, code_type="barcode"), mid=i) for i in range(4)], BASE_TS)
    writer.write([Inbound(device_topic(SITE, "dev-1", "telemetry"), b"\xff\x00not json", 1, 1)], BASE_TS)
    conn.close()
    config = write_toml(tmp_path / "agent.toml", cfg)

    out = cli("db", "export", "readings", "-c", str(config), "-f", "csv").stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["seq"]) for r in table] == list(range(10))
    assert {r["metric"] for r in table} == {"temperature_c"} and float(table[0]["value"]) == 4.5

    since, until = str(BASE_TS + 3000), str(BASE_TS + 7000)  # seq 3..6 (device clock)
    out = cli(
        "db", "export", "readings", "-c", str(config), "-f", "ndjson", "--since", since, "--until", until
    )
    assert [json.loads(line)["seq"] for line in out.stdout.splitlines()] == [3, 4, 5, 6]

    scans = json.loads(cli("db", "export", "scans", "--db", str(cfg.db_path), "-f", "json").stdout)
    assert [s["seq"] for s in scans] == [0, 1, 2, 3] and scans[0]["direction"] == "pick"

    letters = json.loads(cli("db", "export", "dead-letters", "-c", str(config), "-f", "json").stdout)
    assert len(letters) == 1 and letters[0]["payload"]["$base64"] is True  # not UTF-8: base64
    target = tmp_path / "letters.csv"
    cli("db", "export", "dead-letters", "-c", str(config), "-o", str(target), "--since", "2000-01-01")
    assert next(iter(csv.DictReader(target.open())))["payload"].startswith("base64:")
    none = cli("db", "export", "alerts", "-c", str(config), "-f", "json", "--since", "1h").stdout
    assert json.loads(none) == []

    bad = CliRunner().invoke(app, ["db", "export", "nonsense", "-c", str(config)])
    assert bad.exit_code == 1 and "nothing to export called 'nonsense'" in bad.output
    bad = CliRunner().invoke(app, ["db", "export", "scans", "-c", str(config), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_tables_and_read_only_query(make_config: Any, tmp_path: Path) -> None:
    cfg = quiet(make_config)
    store = Store(cfg.db_path)
    store.open()
    conn = store.connect()
    BatchWriter(conn, SITE, 2000, 4096).write([inbound(telemetry(i), mid=i) for i in range(3)], BASE_TS)
    conn.close()
    config = str(write_toml(tmp_path / "agent.toml", cfg))

    listed = {t["name"]: t["rows"] for t in json.loads(cli("db", "tables", "-c", config, "--json").stdout)}
    assert listed["telemetry"] == 3 and listed["outbox"] == 3 and "dead_letters" in listed

    out = cli(
        "db",
        "query",
        "SELECT seq FROM telemetry WHERE seq >= :low",
        "-p",
        "low=1",
        "-c",
        config,
        "-f",
        "json",
    )
    assert json.loads(out.stdout) == [{"seq": 1}, {"seq": 2}]
    refused = CliRunner().invoke(app, ["db", "query", "DELETE FROM telemetry", "-c", config])
    assert refused.exit_code == 1 and "readonly" in refused.output
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM telemetry") == [(3,)]
    missing = CliRunner().invoke(app, ["db", "tables", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 1 and "no agent database" in missing.output
    assert not (tmp_path / "nope.db").exists()  # never created by a tool


def test_time_filters_read_ms_seconds_iso_and_durations() -> None:
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("1700000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    assert parse_time("90m", now=1_700_000_000_000) == 1_700_000_000_000 - 90 * 60_000


# ---------------------------------------------------------------------------- dead letters


def test_replay_stores_each_fixed_message_once_and_keeps_the_rest(make_config: Any, tmp_path: Path) -> None:
    cfg = quiet(make_config)
    good = [inbound(telemetry(i), mid=i) for i in range(6)] + [
        inbound(scan(i, code_type="barcode")) for i in range(3)
    ]
    twice = inbound(telemetry(2), mid=99)  # the same message delivered twice: two letters, one record
    broken = Inbound(device_topic(SITE, "dev-1", "telemetry"), b'{"schema": "edgehouse.telemetry"', 7, 1)
    misconfigured_gateway(cfg, [*good, twice, broken])
    # Live ingest already stored one of them after the site was fixed (e.g. a redelivery).
    conn = Store(cfg.db_path).connect()
    BatchWriter(conn, SITE, 2000, 4096).write([inbound(telemetry(0))], BASE_TS)
    conn.close()
    config = str(write_toml(tmp_path / "agent.toml", cfg))

    listed = json.loads(cli("dead-letters", "list", "-c", config, "--json").stdout)
    assert len(listed) == 11 and all("not this gateway's site" in x["reason"] for x in listed)
    assert (
        len(json.loads(cli("dead-letters", "list", "-c", config, "--json", "--device", "scan-1").stdout)) == 3
    )
    shown = json.loads(cli("dead-letters", "show", str(listed[0]["id"]), "-c", config, "--json").stdout)
    assert shown["decodes_now"] is True and shown["payload"].startswith("{")

    dry = json.loads(cli("dead-letters", "replay", "-c", config, "--dry-run", "--json").stdout)
    assert dry["decoded"] == 10 and dry["still_failing"] == 1 and dry["stored"] == {}
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM dead_letters") == [(11,)]

    report = json.loads(cli("dead-letters", "replay", "-c", config, "--json").stdout)
    assert report["stored"] == {"telemetry": 5, "scan": 3, "device_status": 0}
    assert report["duplicates"] == 2 and report["still_failing"] == 1  # seq 0 (stored live) and seq 2 twice
    assert rows(cfg.db_path, "SELECT COUNT(*), COUNT(DISTINCT seq) FROM telemetry") == [(6, 6)]
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM scans") == [(3,)]
    outbox = Counter(r[0] for r in rows(cfg.db_path, "SELECT id FROM outbox"))
    device = [k for k in outbox if k.split(":")[0] in ("telemetry", "scan", "device_status")]
    assert len(device) == 9 and set(outbox.values()) == {1}
    # the replayed picks moved their position at zero stock: one stock-out alert; the running agent's
    # stock worker queues the position (one record for its newest version)
    assert [k.split(":")[0] for k in outbox if k not in device] == ["alert"]
    assert len(PositionQueue(SITE, cfg.gateway_id).queue(Store(cfg.db_path).connect(), BASE_TS)) == 1
    outbox = Counter(r[0] for r in rows(cfg.db_path, "SELECT id FROM outbox"))
    assert record_id("telemetry", "dev-1", "boot-a", 5) in outbox
    kept = rows(cfg.db_path, "SELECT reason FROM dead_letters")
    assert len(kept) == 1 and "not this gateway's site" in kept[0][0]  # kept with its reason
    again = json.loads(cli("dead-letters", "replay", "-c", config, "--json").stdout)
    assert again["selected"] == 1 and again["decoded"] == 0 and again["stored"] == {}
    assert Counter(r[0] for r in rows(cfg.db_path, "SELECT id FROM outbox")) == outbox


def test_truncated_letters_stay_and_filters_select(make_config: Any, tmp_path: Path) -> None:
    cfg = quiet(make_config)
    store = Store(cfg.db_path)
    store.open()
    conn = store.connect()
    long_msg = inbound(telemetry(1))
    BatchWriter(conn, WRONG_SITE, 2000, 40).write([long_msg, inbound(telemetry(2, device="dev-2"))], BASE_TS)
    conn.close()
    config = str(write_toml(tmp_path / "agent.toml", cfg))
    out = cli("dead-letters", "replay", "-c", config, "--device", "dev-1")
    assert "selected=1 decoded=0 stored=0" in out.stdout and "truncated to 40 of" in out.stdout
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM telemetry") == [(0,)]
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM dead_letters") == [(2,)]


def test_replay_on_a_running_agent_stores_and_syncs_each_message_exactly_once(
    make_config: Any, broker: Mosquitto, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    cfg = quiet(
        make_config,
        mqtt={"port": broker.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5},
        cloud={"url": fake_cloud.url, "token": "t", "interval_s": 0.2},
    )
    letters = [inbound(telemetry(i, device="dev-old"), mid=i) for i in range(600)]
    misconfigured_gateway(cfg, [*letters, Inbound(device_topic(SITE, "dev-old", "telemetry"), b"{", 1, 1)])
    config = write_toml(tmp_path / "agent.toml", cfg)

    agent = Agent(cfg)
    agent.start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub", protocol=paho.MQTTv5)
    try:
        assert agent.mqtt.wait_connected(10)
        pub.max_inflight_messages_set(200)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        topic = device_topic(SITE, "dev-live", "telemetry")
        infos: list[paho.MQTTMessageInfo] = []

        def live_traffic() -> None:  # paced, so that it goes on while the replay runs
            for i in range(LIVE):
                infos.append(pub.publish(topic, encode(telemetry(i, device="dev-live")), qos=1))
                if i % 20 == 0:
                    time.sleep(0.01)

        traffic = threading.Thread(target=live_traffic)
        traffic.start()
        # The replay runs as the operator runs it: its own process, while live messages arrive.
        replay = subprocess.run(  # noqa: PLW1510 (the return code is asserted)
            [sys.executable, "-m", "edge_agent", "dead-letters", "replay", "-c", str(config), "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr[-3000:]
        report = json.loads(replay.stdout)
        assert report["stored"]["telemetry"] == 600 and report["still_failing"] == 1
        traffic.join()
        for info in infos:
            info.wait_for_publish(10)
        assert wait_for(lambda: rows(cfg.db_path, "SELECT COUNT(*) FROM telemetry") == [(LIVE + 600,)], 30)
        assert wait_for(lambda: len(fake_cloud.stored) == LIVE + 600, 30)
        assert agent.status().dead_letters == 0  # the live messages dead-lettered nothing
    finally:
        pub.loop_stop()
        pub.disconnect()
        agent.stop()
    posted = Counter(r.id for b in fake_cloud.batches for r in b.records)
    replayed = {record_id("telemetry", "dev-old", "boot-a", i) for i in range(600)}
    assert replayed <= set(posted) and all(posted[i] == 1 for i in replayed)  # synced exactly once
    assert rows(cfg.db_path, "SELECT COUNT(DISTINCT device_id || seq) FROM telemetry") == [(LIVE + 600,)]
    assert rows(cfg.db_path, "SELECT COUNT(*) FROM dead_letters") == [(1,)]
    assert rows(cfg.db_path, "PRAGMA integrity_check") == [("ok",)]


def test_replay_selection_sql_matches_topic_levels_exactly() -> None:
    where, args = dl.Selection(device="dev_1").where()
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, topic TEXT, reason TEXT, received_ts INT)"
    )
    topics = [
        "edgehouse/v1/s/dev_1/telemetry",
        "edgehouse/v1/s/devX1/telemetry",
        "edgehouse/v1/s/dev_12/scan",
    ]
    conn.executemany(
        "INSERT INTO dead_letters (topic, reason, received_ts) VALUES (?, 'r', 0)", [(t,) for t in topics]
    )
    assert conn.execute(f"SELECT topic FROM dead_letters WHERE {where}", args).fetchall() == [(topics[0],)]


def test_every_operator_command_and_option_is_documented() -> None:
    from edge_agent.tools.cli import db_app, dead_letters_app

    readme = (REPO / "edge_agent" / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Operator tools", 1)[1].split("\n## ", 1)[0]
    for group, sub in (("db", db_app), ("dead-letters", dead_letters_app)):
        for command in sub.registered_commands:
            assert f"edgehouse-agent {group} {command.name}" in section, command.name
        result = CliRunner().invoke(app, [group, "--help"])
        assert result.exit_code == 0
    for option in (
        "--since",
        "--until",
        "--format",
        "--output",
        "--limit",
        "--time-column",
        "--device",
        "--topic",
        "--reason",
        "--dry-run",
        "--json",
        "--db",
        "-p",
    ):
        assert option in section, option
