"""edge_agent.forecasting: daily per-SKU forecasts, a bad model, the accuracy of stored forecasts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agent_testkit import GATEWAY, SITE, inbound, scan, storing

from edge_agent.config import ModelsConfig
from edge_agent.forecasting import ForecastWorker, forecast_accuracy
from edge_agent.ingest_batch import BatchWriter
from edge_agent.metrics import AgentMetrics
from edge_agent.store import Store
from protocols import ForecastRecord
from tests.helpers.waiting import wait_for

ORIGIN = date(2024, 3, 1)


ORIGIN_MS = (ORIGIN - date(1970, 1, 1)).days * 86_400_000


def write_scans(store: Store, sku_days: dict[str, int]) -> None:
    """Per SKU, one pick a day (qty 3 on weekdays, 8 on Saturdays) for the last ``days`` days."""
    msgs = []
    seq = 0
    for sku, days in sku_days.items():
        for d in range(days, 0, -1):
            ts = ORIGIN_MS - d * 86_400_000 + 9 * 3_600_000
            base = scan(seq, ts=ts, code_type="barcode", tag=None)
            qty = 8 if datetime.fromtimestamp(ts / 1000, UTC).weekday() == 5 else 3
            msgs.append(
                inbound(
                    base.model_copy(update={"body": base.body.model_copy(update={"sku": sku, "qty": qty})})
                )
            )
            seq += 1
    conn = store.connect()
    try:
        BatchWriter(conn, SITE, 2000, 4096).write(msgs, 1)
    finally:
        conn.close()


def forecasts(store: Store) -> list[Any]:
    conn = store.connect()
    try:
        rows = conn.execute("SELECT payload FROM outbox WHERE kind = 'forecast' ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return [ForecastRecord.model_validate_json(payload).forecast for (payload,) in rows]


def test_daily_forecast_per_sku_with_enough_history_once_per_origin(store: Store) -> None:
    write_scans(store, {"SKU-A": 90, "SKU-B": 40, "SKU-NEW": 10})
    metrics = AgentMetrics()

    worker = ForecastWorker(
        ModelsConfig(), GATEWAY, SITE, store, metrics, storing(store), today=lambda: ORIGIN
    )
    worker.start()
    try:
        assert wait_for(lambda: len(forecasts(store)) == 2)
    finally:
        worker.stop()
    fcs = {f.sku: f for f in forecasts(store)}
    assert set(fcs) == {"SKU-A", "SKU-B"}  # SKU-NEW: 10 days < forecast_min_history_days
    a = fcs["SKU-A"]
    assert a.origin == "2024-03-01" and a.forecast_id == "demand:SKU-A:2024-03-01" and a.model_version >= 1
    assert len(a.p50) == len(a.p90) == 28 and all(hi >= lo >= 0 for lo, hi in zip(a.p50, a.p90))
    assert 1.0 < sum(a.p50) / 28 < 10.0  # about 3.7 units a day were picked
    assert metrics.value("model_loaded", {"task": "demand"}) == 1
    assert worker.run_once(ORIGIN) == 0  # the same origin again: nothing new stored


def test_bad_demand_model_leaves_forecasts_off(store: Store, tmp_path: Path) -> None:
    metrics = AgentMetrics()
    cfg = ModelsConfig(demand_model=tmp_path / "missing.tflite")
    worker = ForecastWorker(cfg, GATEWAY, SITE, store, metrics, lambda f: True)
    worker.start()
    assert not worker.running and not worker.should_run and worker.error is not None
    assert metrics.value("model_loaded", {"task": "demand"}) == 0
    worker.stop()


def test_forecast_accuracy_counts_elapsed_days_only(tmp_path: Path) -> None:
    from agent_testkit import inbound, scan

    from edge_agent.ingest_batch import BatchWriter

    store = Store(tmp_path / "a.db")
    store.open()
    day0 = (date(2024, 3, 1) - date(1970, 1, 1)).days * 86_400_000
    msgs = []
    for i, qty in enumerate((4, 6)):  # 4 units on Mar 1, 6 on Mar 2
        base = scan(i, ts=day0 + i * 86_400_000 + 3_600_000, code_type="barcode", tag=None)
        body = base.body.model_copy(update={"sku": "SKU-A", "qty": qty})
        msgs.append(inbound(base.model_copy(update={"body": body})))
    conn = store.connect()
    try:
        BatchWriter(conn, SITE, 2000, 4096).write(msgs, 1)
        err, actual = forecast_accuracy(
            conn, "pick", [("SKU-A", date(2024, 3, 1), (5.0, 5.0, 5.0))], date(2024, 3, 3)
        )
    finally:
        conn.close()
    assert (err, actual) == (2.0, 10.0)  # |5-4| + |5-6|; Mar 3 has not ended
