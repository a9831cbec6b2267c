"""The console on PostgreSQL, where its queries differ most: fleet status/sort/paging, alarm filters and
actions (bulk acknowledge, shelve), the downsampled stream, demand, and a route plan."""

from __future__ import annotations

import httpx
import pytest
from conftest import Console
from playwright.sync_api import expect

pytestmark = pytest.mark.postgres
GW = "gw-berlin-1"


def _ref(device: str) -> str:
    return f"{GW}/alert:anomaly:{device}:temperature_c:r"


def test_fleet_on_postgres(pg_console: Console) -> None:
    page = pg_console.page("operator")
    page.goto(pg_console.url + "/console/fleet?sort=outbox_depth&desc=true&limit=2")
    expect(page.locator("#fleet tbody tr")).to_have_count(2)
    expect(page.locator("#fleet tbody tr").first).to_contain_text("gw-berlin-1")
    expect(page.locator("p.pager")).to_contain_text("1–2 of 3")
    page.locator("a.chip-link", has_text="offline").click()
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    page.goto(pg_console.url + "/console/fleet?rejected=true&q=HAMB")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)


def test_alarms_on_postgres(pg_console: Console) -> None:
    page = pg_console.page("operator")
    page.goto(pg_console.url + "/console/alerts?severity=critical&state=active")
    expect(page.locator("#alarm-summary")).to_contain_text("6 alarms")
    expect(page.locator("[data-flood-site=berlin]")).to_be_visible()
    page.check("input[data-select-all]")
    page.click("button[data-action=ack-selected]")
    expect(page.locator("#toast")).to_contain_text("6 acknowledged")
    expect(page.locator("button[data-action=ack]")).to_have_count(0)
    listed = httpx.get(pg_console.url + "/api/v1/alarms", params={"ack": "unacked"},
                       headers=pg_console.headers("operator")).json()
    assert listed["total"] == 13  # berlin's warning and cleared ones, hamburg's 11 (info)
    page.locator(f"button[data-action=shelve][data-alarm='{_ref('cold-2')}']").click()
    page.fill("#shelve-dialog input[name=reason]", "maintenance")
    page.click("#shelve-dialog button[data-confirm]")
    expect(page.locator(f"button[data-action=unshelve][data-alarm='{_ref('cold-2')}']")).to_be_visible()
    page.goto(pg_console.url + "/console/alerts?shelved=only")
    expect(page.locator("table.alarms tbody tr")).to_have_count(1)
    expect(page.locator("table.alarms tbody")).to_contain_text("shelved")


def test_streams_demand_and_route_plan_on_postgres(pg_console: Console) -> None:
    page = pg_console.page("admin")
    with page.expect_response(lambda r: "/readings?" in r.url) as info:
        page.goto(pg_console.url + "/console/streams?device_id=cold-1&metric=temperature_c")
    assert 0 < len(info.value.json()["points"]) <= 2000
    expect(page.locator("select[name=device_id] option")).to_have_text(["ambient-1", "cold-1", "dock-9"])
    expect(page.locator("#stream-summary")).to_contain_text("360 readings")
    expect(page.locator("#stream-chart svg [data-alert]")).to_have_count(2)
    page.goto(pg_console.url + "/console/demand?site=berlin&sku=SKU-1")
    expect(page.locator("#demand-summary")).to_contain_text("days of picks")
    page.goto(pg_console.url + f"/console/routes/{pg_console.seeded.done_job}")
    expect(page.locator("#job-status")).to_have_text("done")
    expect(page.locator("#unserved tbody")).to_contain_text("exceeds_capacity")
    expect(page.locator("#timeline svg")).to_be_visible()
    assert not page.js_errors  # type: ignore[attr-defined]
