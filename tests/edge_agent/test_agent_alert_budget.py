"""edge_agent.alert_budget: ISA-18.2 flood detection, withheld alerts counted, the flood's clear,
through GatewayOutput into the store and the outbox, and picked up again after a restart."""

from __future__ import annotations

from typing import Any

import pytest
from agent_testkit import GATEWAY, SITE

from edge_agent.alert_budget import AlertBudget
from edge_agent.config import AgentConfig, AlertsConfig, ConfigError
from edge_agent.metrics import AgentMetrics
from edge_agent.output import GatewayOutput
from edge_agent.store import Store
from protocols import ALERT_FLOOD, AlertPayload, AlertRecord

CFG = AlertsConfig(flood_window_s=600, flood_alerts=10, flood_clear_alerts=5)
T0 = 1_800_000_000_000


def anomaly(device: str, state: str = "raised", ts: int = 0, metric: str = "temperature_c") -> AlertPayload:
    return AlertPayload(
        alert_id=f"anomaly:{device}:{metric}:{ts}:{state}", gateway_id=GATEWAY, kind="anomaly", state=state,
        ts=T0 + ts, message="m", device_id=device, metric=metric, score=0.9, threshold=0.55,
    )  # type: ignore[arg-type]


def system(n: int) -> AlertPayload:
    return AlertPayload(alert_id=f"quota.{n}", gateway_id=GATEWAY, kind="system", state="raised", ts=T0,
                        message="m", code="disk_quota")


def test_the_eleventh_alert_in_ten_minutes_becomes_one_flood_alert_and_the_rest_are_withheld() -> None:
    metrics = AgentMetrics()
    budget = AlertBudget(CFG, SITE, GATEWAY, metrics)
    verdicts = [budget.admit(anomaly(f"dev-{i % 4}", ts=i), T0 + i * 1000) for i in range(25)]
    assert [v.send for v in verdicts] == [True] * 10 + [False] * 15
    floods = [v.flood for v in verdicts if v.flood is not None]
    assert len(floods) == 1 and verdicts[10].flood is floods[0]
    flood = floods[0]
    assert flood.kind == "system" and flood.code == ALERT_FLOOD and flood.state == "raised"
    assert flood.severity == "critical" and flood.ts == T0 + 10_000
    assert flood.flood is not None
    assert (flood.flood.site, flood.flood.window_s, flood.flood.flood_limit, flood.flood.clear_limit) == (
        SITE, 600, 10, 5)
    assert flood.flood.alerts_in_window == 11 and flood.flood.suppressed == 1
    assert flood.flood.since_ts == T0 + 10_000
    assert (flood.window_start_ts, flood.window_end_ts) == (T0, T0 + 10_000)
    # the streams that drove it, with their share of the window's alerts
    assert {(d.device_id, d.alerts) for d in flood.drivers} == {("dev-0", 3), ("dev-1", 3), ("dev-2", 3),
                                                               ("dev-3", 2)}
    assert sum(d.contribution for d in flood.drivers) == pytest.approx(1.0)
    assert "11 alerts in 600 s" in flood.message and "dev-0/temperature_c (3)" in flood.message
    # counted, visible
    status = budget.status(T0 + 25_000)
    assert status.flood_active and status.in_window == 25 and status.withheld == 15
    assert status.withheld_in_flood == 15 and status.floods == 1 and status.last_24h == 11
    assert metrics.value("alerts_withheld_total", {"state": "raised"}) == 15
    assert metrics.value("alert_floods_total") == 1 and metrics.value("alert_flood_active") == 1


def test_the_flood_clears_once_the_window_calms_down_with_the_final_counts() -> None:
    budget = AlertBudget(CFG, SITE, GATEWAY)
    for i in range(25):  # 25 alerts, one a second
        budget.admit(anomaly(f"dev-{i % 4}", ts=i), T0 + i * 1000)
    assert budget.check(T0 + 30_000) is None  # still 25 in the window
    assert budget.check(T0 + 618_000) is None  # alerts 19..24 in the window: 6, over the clear limit
    cleared = budget.check(T0 + 619_000)  # 20..24 left: 5, at the clear limit
    assert cleared is not None and cleared.state == "cleared" and cleared.severity == "info"
    assert cleared.alert_id == f"{ALERT_FLOOD}.{GATEWAY}.{T0 + 10_000}.cleared"
    assert cleared.flood is not None and cleared.flood.suppressed == 15 and cleared.flood.alerts_in_window == 5
    assert (cleared.window_start_ts, cleared.window_end_ts) == (T0 + 10_000, T0 + 619_000)
    assert sum(d.alerts or 0 for d in cleared.drivers) == 25
    assert "15 alerts withheld" in cleared.message
    assert budget.check(T0 + 621_000) is None  # once
    status = budget.status(T0 + 619_000)
    assert not status.flood_active and status.withheld == 15 and status.floods == 1
    # alerts go out again
    assert budget.admit(anomaly("dev-9", ts=700), T0 + 700_000).send


def test_a_storm_that_goes_on_keeps_the_flood_up() -> None:
    budget = AlertBudget(CFG, SITE, GATEWAY)
    for i in range(11):
        budget.admit(anomaly(f"dev-{i}"), T0 + i)
    for k in range(1, 60):  # one alert every 50 s for 50 minutes: 12 per window, over the clear limit
        t = T0 + k * 50_000
        assert not budget.admit(anomaly("dev-x", ts=t), t).send
        assert budget.check(t) is None
    assert budget.floods == 1


def test_clears_are_withheld_only_for_streams_whose_raise_was_withheld() -> None:
    budget = AlertBudget(CFG, SITE, GATEWAY)
    for i in range(12):
        budget.admit(anomaly(f"dev-{i}", ts=i), T0 + i)
    # dev-0 .. dev-9 went out: their clears go out, even during the flood; dev-10, dev-11 did not
    assert budget.admit(anomaly("dev-3", "cleared", ts=50), T0 + 50).send
    assert not budget.admit(anomaly("dev-10", "cleared", ts=51), T0 + 51).send
    assert not budget.admit(anomaly("dev-11", "cleared", ts=52), T0 + 52).send
    assert budget.withheld == 4  # 2 raises + 2 clears
    assert budget.in_window(T0 + 60) == 12  # clears do not count as alerts
    cleared = budget.check(T0 + 700_000)
    assert cleared is not None and cleared.flood is not None and cleared.flood.suppressed == 4
    # a later raise of dev-10 goes out, and so does its clear
    assert budget.admit(anomaly("dev-10", ts=800_000), T0 + 800_000).send
    assert budget.admit(anomaly("dev-10", "cleared", ts=800_001), T0 + 800_001).send


def test_system_alerts_are_never_withheld_nor_counted_in_the_window() -> None:
    budget = AlertBudget(CFG, SITE, GATEWAY)
    for i in range(11):
        budget.admit(anomaly(f"dev-{i}"), T0 + i)
    assert budget.status(T0 + 20).flood_active
    assert all(budget.admit(system(n), T0 + 20 + n).send for n in range(30))
    assert budget.in_window(T0 + 100) == 11
    assert budget.last_24h(T0 + 100) == 10 + 1 + 30  # what went out: alerts, the flood alert, system alerts
    assert budget.last_24h(T0 + 86_400_000 + 100) == 0


def test_a_device_alert_counts_as_one_stream_of_the_device() -> None:
    budget = AlertBudget(AlertsConfig(flood_alerts=1, flood_clear_alerts=0), SITE, GATEWAY)
    device = AlertPayload(alert_id="anomaly:pump-1:device:1:raised", gateway_id=GATEWAY, kind="anomaly",
                          state="raised", ts=T0, message="m", device_id="pump-1", score=0.9, threshold=0.5,
                          drivers=({"device_id": "pump-1", "metric": "power_w", "contribution": 1.0},))  # type: ignore[arg-type]
    budget.admit(device, T0)
    verdict = budget.admit(anomaly("dev-1"), T0 + 1)
    assert verdict.flood is not None
    assert {(d.device_id, d.metric) for d in verdict.flood.drivers} == {("pump-1", "*"), ("dev-1", "temperature_c")}


def test_without_the_budget_every_alert_goes_out_and_is_still_counted() -> None:
    budget = AlertBudget(AlertsConfig(budget_enabled=False), SITE, GATEWAY)
    assert all(budget.admit(anomaly(f"dev-{i}"), T0 + i).send for i in range(40))
    status = budget.status(T0 + 100)
    assert status.in_window == 40 and not status.flood_active and status.withheld == 0 and status.last_24h == 40


@pytest.mark.parametrize(("alerts", "key", "fragment"), [
    ({"flood_alerts": 10, "flood_clear_alerts": 10}, "alerts.flood_clear_alerts", "must be below alerts.flood_alerts"),
    ({"flood_window_s": 0}, "alerts.flood_window_s", "greater than or equal to 1"),
    ({"flood_alerts": 0}, "alerts.flood_alerts", "greater than or equal to 1"),
    ({"daily_alerts": -1}, "alerts.daily_alerts", "greater than or equal to 1"),
    ({"check_interval_s": 0}, "alerts.check_interval_s", "greater than 0"),
    ({"flood_limit": 3}, "alerts.flood_limit", "unknown key"),
])
def test_bad_budget_config_fails_naming_the_key(tmp_path: Any, alerts: dict[str, Any], key: str,
                                                fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        AgentConfig.from_mapping({"gateway_id": GATEWAY, "site": SITE, "data_dir": str(tmp_path), "alerts": alerts})
    assert str(err.value).startswith(f"{key}: ") and fragment in str(err.value)


# --------------------------------------------------------------------------- through the output


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def _stored(store: Store) -> tuple[list[AlertPayload], list[AlertPayload]]:
    conn = store.connect()
    try:
        alerts = [AlertPayload.model_validate_json(p) for (p,) in conn.execute(
            "SELECT payload FROM alerts ORDER BY rowid")]
        outbox = [AlertRecord.model_validate_json(p).alert for (p,) in conn.execute(
            "SELECT payload FROM outbox WHERE kind = 'alert' ORDER BY rowid")]
    finally:
        conn.close()
    return alerts, outbox


def _output(store: Store, clock: _Clock, published: list[tuple[str, bytes]]) -> GatewayOutput:
    budget = AlertBudget(CFG, SITE, GATEWAY, AgentMetrics())
    return GatewayOutput(store, SITE, GATEWAY, lambda t, p: published.append((t, p)) or True, clock, budget)


def test_a_storm_through_the_output_stores_ten_alerts_and_one_flood_and_clears_it(store: Store) -> None:
    clock, published = _Clock(), []
    output = _output(store, clock, published)
    sent = []
    for i in range(30):
        clock.now = T0 + i * 1000
        sent.append(output.emit(anomaly(f"dev-{i}", ts=i)))
    assert sent == [True] * 10 + [False] * 20
    # a repeat of an alert that went out is not counted again
    assert not output.emit(anomaly("dev-0", ts=0))
    assert output.budget is not None and output.budget.status(clock.now).in_window == 30
    alerts, outbox = _stored(store)
    assert [a.code for a in alerts] == [None] * 10 + [ALERT_FLOOD]
    assert [a.alert_id for a in outbox] == [a.alert_id for a in alerts]
    assert len(published) == 11
    assert output.check_budget() is None
    clock.now = T0 + 30_000 + 600_000
    cleared = output.check_budget()
    assert cleared is not None and cleared.flood is not None and cleared.flood.suppressed == 20
    alerts, outbox = _stored(store)
    assert alerts[-1] == cleared and outbox[-1] == cleared and len(published) == 12


def test_an_open_flood_survives_a_restart_and_clears_one_window_later(store: Store) -> None:
    clock, published = _Clock(), []
    output = _output(store, clock, published)
    for i in range(14):
        clock.now = T0 + i
        output.emit(anomaly(f"dev-{i}"))
    # the agent restarts: a new budget, the flood alert in the store
    clock.now = T0 + 3_600_000
    again = _output(store, clock, published)
    again.restore_budget()
    assert again.budget is not None
    status = again.budget.status(clock.now)
    assert status.flood_active and status.flood_since_ts == T0 + 10 and status.withheld_in_flood == 1
    assert not again.emit(anomaly("dev-99", ts=5))  # still withheld
    assert again.check_budget() is None  # held for one window after the restart
    clock.now += 600_000
    cleared = again.check_budget()
    assert cleared is not None and cleared.alert_id == f"{ALERT_FLOOD}.{GATEWAY}.{T0 + 10}.cleared"
    assert cleared.flood is not None and cleared.flood.suppressed == 2
    # a third start finds the flood cleared: nothing to restore
    third = _output(store, clock, published)
    third.restore_budget()
    assert third.budget is not None and not third.budget.status(clock.now).flood_active
