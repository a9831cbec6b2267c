"""The hourly rollup of the readings: coarse readings requests answered from it exactly, late readings kept
at ingest (retries add nothing), recent ones rolled up off the ingest path past the watermark (answered from
the readings meanwhile, rolled up exactly once), trimmed with retention. Both databases."""

from __future__ import annotations

import threading
import time
from typing import Any

from cloud_testkit import BASE_TS, admin_headers, batch, gz, register, telemetry_record
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from cloud.db import partitions, rollups
from cloud.services.partition_upkeep import advance_rollup, compact_rollup, upkeep
from cloud.services.timeseries import rollup_width

MIN = 60_000
STEP = 7 * MIN  # one message every 7 minutes: hours hold 8 or 9 readings, never aligned


def _records(gateway_id: str, n: int, t0: int, offset: float = 0.0) -> list[dict[str, Any]]:
    out = []
    for seq in range(n):
        rec = telemetry_record("cold-1", seq, temp=round(4.0 + (seq * 37 % 11) / 10 + offset, 2))
        rec["msg"]["ts"] = t0 + seq * STEP
        if seq == n // 3:
            rec["msg"]["body"]["readings"][0]["value"] = 9.5 + offset  # a spike one reading long
        out.append(rec)
    return out


def _sync(client: TestClient, headers: dict[str, str], gateway_id: str, records: list[dict[str, Any]],
          batch_id: str) -> dict[str, Any]:
    resp = client.post("/api/v1/sync", content=gz(batch(gateway_id, records, batch_id)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _expected(samples: list[tuple[int, float]], from_ts: int, to_ts: int, width: int) -> list[dict[str, Any]]:
    """The answer computed here from the readings: buckets on multiples of ``width``."""
    buckets: dict[int, list[float]] = {}
    for ts, value in samples:
        if from_ts <= ts < to_ts:
            buckets.setdefault(ts // width, []).append(value)
    return [{"ts": max(from_ts, b * width), "min": min(v), "max": max(v), "mean": sum(v) / len(v), "count": len(v)}
            for b, v in sorted(buckets.items())]


def _get(client: TestClient, **params: Any) -> Any:
    resp = client.get("/api/v1/devices/cold-1/readings", headers=admin_headers(),
                      params={"metric": "temperature_c", **params})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _same(points: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(p["ts"], p["min"], p["max"], p["count"]) for p in points] == [
        (e["ts"], e["min"], e["max"], e["count"]) for e in expected]
    assert all(abs(p["mean"] - e["mean"]) < 1e-9 for p, e in zip(points, expected, strict=True))


def _samples(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(r["msg"]["ts"], r["msg"]["body"]["readings"][0]["value"]) for r in records]


def test_coarse_requests_are_answered_from_the_rollup_exactly(client: TestClient, engine: Engine) -> None:
    h1, h2 = register(client, "gw-a"), register(client, "gw-b")
    t0 = BASE_TS + 13 * MIN + 5_000
    a, b = _records("gw-a", 600, t0), _records("gw-b", 300, t0 + 3 * MIN, offset=1.0)  # the same device id
    _sync(client, h1, "gw-a", a[:400:2], "a1")
    _sync(client, h1, "gw-a", a, "a2")  # overlaps a1 (not counted twice) and shares its hours
    _sync(client, h2, "gw-b", b, "b1")
    assert _sync(client, h1, "gw-a", a[:400:2], "a1-retry")["stored"] == []
    from_ts, to_ts = t0 + 29 * MIN, t0 + 600 * STEP - 41 * MIN  # neither on an hour
    _check_answers(client, a, b, from_ts, to_ts)  # partial rows: a1 and a2 share hours
    partial = _rollup_rows(engine)
    assert compact_rollup(engine) > 0 and compact_rollup(engine) == 0
    n_rollup, n_rows, n_partial = _rollup_rows(engine)
    with engine.connect() as conn:
        n_readings = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
    assert n_rollup == partial[0] == n_readings == 2 * (600 + 300)
    assert n_partial == 0 < n_rows < partial[1] and n_rows < n_readings / 4
    _check_answers(client, a, b, from_ts, to_ts)  # compacted: the same answers
    # within one hour or finer: the readings answer, buckets from `from` as before
    fine = _get(client, **{"from": from_ts, "to": from_ts + 10 * rollups.HOUR_MS, "max_points": 100})
    assert fine["bucket_ms"] == 6 * MIN and fine["points"][0]["ts"] >= from_ts


def _rollup_rows(engine: Engine) -> tuple[int, int, int]:
    """(readings counted, rows, partial rows) of the rollup."""
    with engine.connect() as conn:
        n, rows, partial = conn.execute(text(
            "SELECT sum(n), count(*), sum(CASE WHEN compacted THEN 0 ELSE 1 END) FROM readings_hourly")).one()
    return int(n), int(rows), int(partial)


def _check_answers(client: TestClient, a: list[dict[str, Any]], b: list[dict[str, Any]], from_ts: int,
                   to_ts: int) -> None:
    for max_points in (7, 20, 50):
        width = rollup_width(from_ts, to_ts, max_points)
        assert width % rollups.HOUR_MS == 0
        both = _get(client, **{"from": from_ts, "to": to_ts, "max_points": max_points})
        assert both["bucket_ms"] == width and 0 < len(both["points"]) <= max_points
        _same(both["points"], _expected(_samples(a) + _samples(b), from_ts, to_ts, width))
        one = _get(client, **{"from": from_ts, "to": to_ts, "max_points": max_points, "gateway_id": "gw-b"})
        _same(one["points"], _expected(_samples(b), from_ts, to_ts, width))
        assert max(p["max"] for p in both["points"]) == 10.5  # gw-b's spike survives a bucket of hours


def test_the_rollup_loses_exactly_what_retention_removes(client: TestClient, engine: Engine) -> None:
    headers = register(client, "gw-a")
    now = partitions.week_start(BASE_TS) + 40 * partitions.DAY_MS + 5 * MIN
    t0 = now - 20 * partitions.DAY_MS
    upkeep(engine, retention_days=0, now_ms=t0)  # the weeks existed when the data came
    records = _records("gw-a", 4 * 24 * 60 // 7 * 4, t0)  # 16 days, one reading of each metric every 7 minutes
    for i in range(0, len(records), 1000):
        _sync(client, headers, "gw-a", records[i:i + 1000], f"b{i}")
    compact_rollup(engine)
    late = [dict(r, id=r["id"].replace(":b1:", ":b2:"), msg={**r["msg"], "boot_id": "b2"})
            for r in _records("gw-a", 30, t0 + 3 * MIN)]  # another boot's messages in the oldest hours
    _sync(client, headers, "gw-a", late, "late")  # partial rows left there, not compacted
    upkeep(engine, retention_days=10.3, now_ms=now)  # a cutoff inside an hour, inside a week
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT ts, value FROM readings WHERE metric = 'temperature_c'")).all()
        per_series = dict(conn.execute(text("SELECT metric, sum(n) FROM readings_hourly GROUP BY metric")).all())
        n_readings = dict(conn.execute(text("SELECT metric, count(*) FROM readings GROUP BY metric")).all())
    assert 0 < len(kept) < len(records) and per_series == n_readings
    width = rollup_width(t0, now, 30)
    out = _get(client, **{"from": t0, "to": now, "max_points": 30})
    _same(out["points"], _expected([(int(ts), float(v)) for ts, v in kept], t0, now, width))


def test_recent_readings_are_answered_at_once_and_rolled_up_once_off_the_ingest_path(client: TestClient,
                                                                                      engine: Engine) -> None:
    headers = register(client, "gw-a")
    with engine.connect() as conn:
        watermark = rollups.watermark(conn)
    now = int(time.time() * 1000)
    t0 = watermark - 2 * rollups.HOUR_MS + 5 * MIN  # two hours before the watermark, then live up to now
    records = _records("gw-a", (now - t0) // STEP, t0)
    _sync(client, headers, "gw-a", records, "live")
    n_late = 2 * sum(1 for r in records if r["msg"]["ts"] < watermark)  # two readings a message
    assert 0 < n_late and _rollup_rows(engine)[0] == n_late  # only the late ones at ingest
    from_ts, to_ts = t0 + 29 * MIN, now
    _check_live(client, records, from_ts, to_ts)  # right after the sync: the new readings are in

    later = now + rollups.GRACE_MS + rollups.HOUR_MS  # every hour of the records closed
    with engine.begin() as conn:  # a pass that stops after closing the hours: not rolled up yet
        rollups.lock_for_advance(conn)
        assert rollups.close_hours(conn, later)
    _check_live(client, records, from_ts, to_ts)
    # another boot's messages for hours closed now arrive: late, counted at ingest (a retry adds nothing)
    again = [dict(r, id=r["id"].replace(":b1:", ":b2:"), msg={**r["msg"], "boot_id": "b2"})
             for r in _records("gw-a", 20, t0 + 3 * rollups.HOUR_MS + MIN, offset=2.0)]
    _sync(client, headers, "gw-a", again, "late")
    assert _sync(client, headers, "gw-a", again, "late-retry")["stored"] == []
    _check_live(client, records + again, from_ts, to_ts)

    assert advance_rollup(engine, later) > 0
    assert advance_rollup(engine, later) == 0  # a rerun finds nothing due and counts nothing twice
    with engine.connect() as conn:
        assert rollups.watermark(conn) > records[-1]["msg"]["ts"]
        n_readings = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
    assert _rollup_rows(engine)[0] == n_readings == 2 * (len(records) + len(again))
    _check_live(client, records + again, from_ts, to_ts)  # rolled up: the same answers

    # and after it: late again, counted at ingest
    third = [dict(r, id=r["id"].replace(":b1:", ":b3:"), msg={**r["msg"], "boot_id": "b3"})
             for r in _records("gw-a", 10, t0 + 4 * rollups.HOUR_MS + MIN, offset=3.0)]
    _sync(client, headers, "gw-a", third, "later")
    assert _rollup_rows(engine)[0] == 2 * (len(records) + len(again) + len(third))
    _check_live(client, records + again + third, from_ts, to_ts)


def _check_live(client: TestClient, records: list[dict[str, Any]], from_ts: int, to_ts: int) -> None:
    for max_points in (2, 3, 7):  # buckets of an hour or more: the rollup path
        width = rollup_width(from_ts, to_ts, max_points)
        out = _get(client, **{"from": from_ts, "to": to_ts, "max_points": max_points})
        assert out["bucket_ms"] == width and out["points"]
        _same(out["points"], _expected(_samples(records), from_ts, to_ts, width))


def test_rollup_passes_while_batches_sync_count_every_reading_exactly_once(client: TestClient,
                                                                           engine: Engine) -> None:
    """Batches of recent and late readings keep coming while the upkeep closes and rolls up hour after hour
    (and compacts): at the end the rollup counts every reading once and the answers are exact."""
    headers = register(client, "gw-a")
    now = int(time.time() * 1000)
    t0 = now - 8 * rollups.HOUR_MS
    stop, passes, errors = threading.Event(), [0], []

    def upkeep_passes() -> None:
        try:
            while not stop.is_set():  # "now" runs ahead an hour a pass: every pass closes an hour
                advance_rollup(engine, now + rollups.GRACE_MS - 8 * rollups.HOUR_MS + passes[0] * rollups.HOUR_MS)
                compact_rollup(engine)
                passes[0] += 1
                stop.wait(0.05)  # hours close while the batches come, not all before the first
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    sent: list[dict[str, Any]] = []
    worker = threading.Thread(target=upkeep_passes)
    worker.start()
    try:
        for b in range(8):  # each boot's messages spread over all 8 hours: some late, some not
            boot = [dict(r, id=r["id"].replace(":b1:", f":k{b}:"), msg={**r["msg"], "boot_id": f"k{b}"})
                    for r in _records("gw-a", 60, t0 + b * MIN, offset=b / 10)]
            _sync(client, headers, "gw-a", boot, f"k{b}")
            sent += boot
    finally:
        stop.set()
        worker.join()
    assert not errors and passes[0] > 0
    advance_rollup(engine, now + rollups.GRACE_MS + rollups.HOUR_MS)
    with engine.connect() as conn:
        n_readings = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
    assert _rollup_rows(engine)[0] == n_readings == 2 * len(sent)
    _check_live(client, sent, t0 + 7 * MIN, now)


_COUNTED_AND_STORED = ("SELECT (SELECT coalesce(sum(n), 0) FROM readings_hourly), "
                       "(SELECT count(*) FROM readings)")


def test_a_trim_racing_with_late_batches_counts_every_reading_exactly_once(client: TestClient,
                                                                           engine: Engine) -> None:
    """Retention passes trim the rollup (the hour cut by the boundary recomputed) over and over while late
    batches append partial rows in that hour: no batch is counted twice or lost, in any snapshot (a batch's
    readings and partial rows commit together, so one statement must see the two agree) nor at the end."""
    headers = register(client, "gw-a")
    with engine.connect() as conn:
        watermark = rollups.watermark(conn)
    t0 = watermark - 10 * rollups.HOUR_MS + 13 * MIN  # every reading late: counted at ingest
    boundary = rollups.hour_of(t0) + rollups.HOUR_MS + 25 * MIN  # inside the second hour
    first = _records("gw-a", 40, t0)
    _sync(client, headers, "gw-a", first, "first")
    stop, passes, errors, seen = threading.Event(), [0], [], []

    def retention_passes() -> None:
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    partitions.delete_before(conn, "readings", boundary)
                    rollups.trim(conn, boundary)
                with engine.connect() as conn:  # one snapshot
                    seen.append(tuple(conn.execute(text(_COUNTED_AND_STORED)).one()))
                passes[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    sent = [r for r in first if r["msg"]["ts"] >= boundary]
    worker = threading.Thread(target=retention_passes)
    worker.start()
    try:
        for b in range(40):  # a few readings each in the cut hour and the next, all kept
            boot = [dict(r, id=r["id"].replace(":b1:", f":k{b}:"), msg={**r["msg"], "boot_id": f"k{b}"})
                    for r in _records("gw-a", 6, boundary + b * 1_000 + MIN, offset=b / 10)]
            _sync(client, headers, "gw-a", boot, f"k{b}")
            sent += boot
    finally:
        stop.set()
        worker.join()
    assert not errors and passes[0] > 0
    assert [s for s in seen if s[0] != s[1]] == []
    with engine.connect() as conn:
        per_hour = dict(conn.execute(text(
            "SELECT hour_ts, sum(n) FROM readings_hourly WHERE metric = 'temperature_c' GROUP BY hour_ts")).all())
        raw = dict(conn.execute(text(
            "SELECT ts - ts % 3600000, count(*) FROM readings WHERE metric = 'temperature_c' "
            "GROUP BY ts - ts % 3600000")).all())
    assert per_hour == raw and sum(raw.values()) == len(sent)
    from_ts, to_ts = rollups.hour_of(t0), watermark
    width = rollup_width(from_ts, to_ts, 3)
    out = _get(client, **{"from": from_ts, "to": to_ts, "max_points": 3})
    assert out["bucket_ms"] == width >= rollups.HOUR_MS
    _same(out["points"], _expected(_samples(sent), from_ts, to_ts, width))
