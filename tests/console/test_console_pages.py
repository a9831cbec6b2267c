"""Each console page renders the real data of a running cloud (seeded through its API), in headless Chromium.

Fleet (status, filters, sort, server pagination), a gateway's page, Streams (downsampled on the server,
alerts marked with score and expected vs observed), Demand (P50/P90 bands against picks), Alerts (states,
filters, flood per site), Routes (job list, a plan's map, timeline, loads, unserved with reasons,
downloads), Models and a rollout. Each test saves its page for the README (see conftest ``shot``).
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from collections.abc import Callable

import httpx
from conftest import Console
from playwright.sync_api import Page, Route, expect


def _open(console: Console, role: str, path: str) -> Page:
    page = console.page(role)
    resp = page.goto(console.url + path)
    assert resp is not None and resp.status == 200, path
    return page


def test_fleet_lists_every_gateway_with_its_health(console: Console, shot: Callable[[Page, str], None]) -> None:
    page = _open(console, "operator", "/console/fleet")
    rows = page.locator("#fleet tbody tr")
    expect(rows).to_have_count(3)
    berlin = rows.filter(has_text="gw-berlin-1")
    expect(berlin).to_contain_text("online")
    expect(berlin).to_contain_text("1,234")  # outbox depth from the model report
    expect(berlin).to_contain_text("0.3.0")
    expect(berlin).to_contain_text("anomaly v1")
    expect(rows.filter(has_text="gw-hamburg-1")).to_contain_text("anomaly v7: bad_signature")
    expect(rows.filter(has_text="gw-munich-1")).to_contain_text("offline")
    shot(page, "fleet")
    assert not page.js_errors  # type: ignore[attr-defined]


def test_fleet_filters_sorts_and_pages_on_the_server(console: Console) -> None:
    page = _open(console, "operator", "/console/fleet")
    page.locator("a.chip-link", has_text="offline").click()
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    expect(page.locator("#fleet tbody")).to_contain_text("gw-munich-1")
    assert "status=offline" in page.url

    page.goto(console.url + "/console/fleet")
    page.select_option("select[name=site]", "hamburg")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    expect(page.locator("#fleet tbody")).to_contain_text("gw-hamburg-1")

    page.goto(console.url + "/console/fleet")
    page.check("input[name=rejected]")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    expect(page.locator("#fleet tbody")).to_contain_text("gw-hamburg-1")

    page.goto(console.url + "/console/fleet")
    page.locator("#fleet thead a", has_text="Outbox").click()  # ascending, then descending
    page.locator("#fleet thead a", has_text="Outbox").click()
    assert "sort=outbox_depth" in page.url and "desc=true" in page.url
    expect(page.locator("#fleet tbody tr").first).to_contain_text("gw-berlin-1")

    page.goto(console.url + "/console/fleet?limit=2")
    expect(page.locator("#fleet tbody tr")).to_have_count(2)
    expect(page.locator("p.pager")).to_contain_text("1–2 of 3")
    page.locator("p.pager a[rel=next]").click()
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    expect(page.locator("p.pager")).to_contain_text("3–3 of 3")


def test_a_query_parameter_given_twice_is_refused(console: Console) -> None:
    cookies = {"edgehouse_console": console.token("operator")}
    for path in ("/console/fleet?site=berlin&site=munich", "/console/alerts?state=active&state=cleared"):
        resp = httpx.get(console.url + path, cookies=cookies)
        assert resp.status_code == 422, (path, resp.text)
        assert resp.json()["detail"][0]["field"] in ("site", "state")


def test_gateway_page_shows_devices_alerts_and_model_report(console: Console,
                                                            shot: Callable[[Page, str], None]) -> None:
    page = _open(console, "operator", "/console/fleet")
    page.locator("#fleet a", has_text="gw-berlin-1").click()
    expect(page.locator("h1")).to_have_text("Gateway gw-berlin-1")
    devices = page.locator("#devices tbody")
    expect(devices).to_contain_text("cold-1")
    expect(devices.locator("a", has_text="temperature_c").first).to_be_visible()
    expect(page.locator("table.alarms tbody tr").first).to_be_visible()
    expect(page.locator("main")).to_contain_text("1,234")
    expect(page.locator("main")).to_contain_text("anomaly")
    shot(page, "gateway")
    page.locator("#devices a", has_text="temperature_c").first.click()
    expect(page.locator("h1")).to_have_text("Streams")


def test_streams_are_downsampled_on_the_server_with_alerts_marked(console: Console,
                                                                  shot: Callable[[Page, str], None]) -> None:
    page = console.page("operator")
    with page.expect_response(lambda r: "/readings?" in r.url) as info:
        page.goto(console.url + "/console/streams?device_id=cold-1&metric=temperature_c")
    series = info.value.json()
    assert 0 < len(series["points"]) <= 2000
    expect(page.locator("select[name=device_id] option")).to_have_text(["ambient-1", "cold-1", "dock-9"])
    assert sum(p["count"] for p in series["points"]) == 360
    summary = page.locator("#stream-summary")
    expect(summary).to_contain_text("360 readings")
    assert int(summary.get_attribute("data-points") or 0) == len(series["points"])
    chart = page.locator("#stream-chart svg")
    expect(chart.locator("[data-alert]")).to_have_count(2)  # the two raised alerts of cold-1 in the last day
    expect(chart.locator("circle title", has_text="expected 4.1")).to_have_count(2)
    expect(chart.locator("circle title", has_text="observed 9.5")).to_have_count(1)
    expect(page.locator("#score-chart svg line title", has_text="score 0.93")).to_have_count(2)
    shot(page, "streams")
    # a whole year still sends at most max_points buckets
    with page.expect_response(lambda r: "/readings?" in r.url) as info:
        page.locator("button[data-range]", has_text="1 year").click()
    assert len(info.value.json()["points"]) <= 2000
    expect(summary).to_contain_text("360 readings")
    assert not page.js_errors  # type: ignore[attr-defined]


def test_demand_draws_forecast_bands_against_the_picks(console: Console, shot: Callable[[Page, str], None]) -> None:
    page = _open(console, "planner", "/console/demand?site=berlin&sku=SKU-1")
    summary = page.locator("#demand-summary")
    expect(summary).to_contain_text("berlin · SKU-1")
    expect(summary).to_contain_text("days of picks")
    chart = page.locator("#demand-chart svg")
    expect(chart.locator("polygon")).to_have_count(1)  # the P50..P90 band
    picked = chart.locator("circle[data-pick] title", has_text=re.compile(r": [1-9][0-9]* picked"))
    expect(picked).to_have_count(20)  # 20 past days with picks (the other days draw at 0)
    shot(page, "demand")
    assert not page.js_errors  # type: ignore[attr-defined]


def test_alerts_show_isa_states_filters_and_flood_per_site(console: Console,
                                                           shot: Callable[[Page, str], None]) -> None:
    page = _open(console, "operator", "/console/alerts")
    expect(page.locator("#alarm-summary")).to_contain_text("19 alarms")
    expect(page.locator("[data-flood-site=berlin]")).to_have_text("berlin 6")  # 6 in the last 10 minutes
    expect(page.locator("[data-flood-site=hamburg]")).to_have_text("hamburg 11 FLOOD")
    expect(page.locator("[data-flood-site=hamburg]")).to_have_class("chip bad")
    expect(page.locator("table.alarms")).to_contain_text("cleared · unacknowledged")  # r1 was cleared
    expect(page.locator("table.alarms")).to_contain_text("expected")  # the alert's own fields are listed
    shot(page, "alerts")
    page.select_option("select[name=severity]", "warning")
    page.click("form.filters button[type=submit]")
    expect(page.locator("table.alarms tbody tr")).to_have_count(1)
    expect(page.locator("table.alarms tbody")).to_contain_text("7.7")
    page.goto(console.url + "/console/alerts?state=cleared")
    expect(page.locator("table.alarms tbody tr")).to_have_count(1)
    page.goto(console.url + "/console/alerts?site=munich")
    expect(page.locator("table.alarms tbody tr")).to_have_count(0)
    page.goto(console.url + "/console/alerts?kind=anomaly&limit=5")
    expect(page.locator("table.alarms tbody tr")).to_have_count(5)
    expect(page.locator("p.pager")).to_contain_text("of 19")
    page.goto(console.url + "/console/alerts?site=berlin")
    expect(page.locator("#alarm-summary")).to_contain_text("8 alarms")


def test_route_plan_map_timeline_loads_unserved_and_downloads(console: Console,
                                                              shot: Callable[[Page, str], None]) -> None:
    job = console.seeded.done_job
    page = _open(console, "planner", "/console/routes")
    expect(page.locator("#jobs tbody")).to_contain_text("console-small")
    shot(page, "routes")
    page.locator("#jobs a", has_text=job).click()
    expect(page.locator("#job-status")).to_have_text("done")
    expect(page.locator("canvas#route-map")).to_be_visible()
    page.wait_for_function("() => document.getElementById('route-map').dataset.drawn === '1'")  # fetched after paint
    # the map is drawn from coordinates alone (no tile server): the canvas has pixels
    drawn = page.evaluate("""() => { const c = document.getElementById('route-map');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
    assert drawn > 1000
    timeline = page.locator("#timeline svg")
    expect(timeline).to_be_visible()
    expect(timeline).to_contain_text("van-1")
    expect(timeline.locator("rect title", has_text=" window ")).to_have_count(12)  # each served order's window
    expect(timeline.locator("rect title", has_text="travel ")).not_to_have_count(0)
    expect(page.locator("#loads tbody tr")).to_have_count(2)
    unserved = page.locator("#unserved tbody")
    expect(unserved).to_contain_text("store-big")
    expect(unserved).to_contain_text("exceeds_capacity")
    shot(page, "route-plan")
    with page.expect_download() as dl:
        page.locator("a", has_text="plan JSON").click()
    plan = json.loads(dl.value.path().read_text())
    assert {u["order_id"] for u in plan["unserved"]} == {"store-big"}
    with page.expect_download() as dl:
        page.locator("a", has_text="GeoJSON").click()
    geo = json.loads(dl.value.path().read_text())
    assert geo["type"] == "FeatureCollection" and geo["features"]
    with page.expect_download() as dl:
        page.locator("a", has_text="PNG (server plot)").click()
    assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as dl:
        page.locator("button[data-action=map-png]").click()
    assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not page.js_errors  # type: ignore[attr-defined]


def test_models_and_rollout_pages_show_registry_gates_and_events(console: Console,
                                                                 shot: Callable[[Page, str], None]) -> None:
    page = _open(console, "admin", "/console/models")
    expect(page.locator("#registry tbody")).to_contain_text("anomaly")
    expect(page.locator("#registry tbody")).to_contain_text("promoted")
    expect(page.locator("#registry tbody")).to_contain_text("val_loss 0.5")  # the candidate's metrics
    rid = console.seeded.rollout_id
    expect(page.locator("#rollouts tbody")).to_contain_text(f"#{rid}")
    shot(page, "models")
    page.locator("#rollouts a", has_text=f"#{rid}").click()
    expect(page.locator("h1")).to_have_text(f"Rollout #{rid}")
    expect(page.locator("#stages tbody tr").first).to_be_visible()
    expect(page.locator("#events tbody tr").first).to_be_visible()
    shot(page, "rollout")


def test_nothing_loads_from_anywhere_but_the_cloud(console: Console) -> None:
    """Every page works offline: each request a page makes goes to the cloud that served it."""
    page = console.page("admin")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    s = console.seeded
    for path in ("/console/fleet", "/console/gateways/gw-berlin-1", "/console/alerts",
                 f"/console/alarms/gw-berlin-1/{s.alarm_ids[0]}", "/console/streams", "/console/demand",
                 "/console/routes", f"/console/routes/{s.done_job}", "/console/models",
                 f"/console/rollouts/{s.rollout_id}"):
        page.goto(console.url + path)
        # the pages that fetch their data after the first paint: until those requests are done
        page.wait_for_load_state("networkidle" if path.startswith(("/console/streams", "/console/demand",
                                                                   f"/console/routes/{s.done_job}")) else "load")
    assert len(requested) > 20
    assert [u for u in requested if not u.startswith(console.url + "/")] == []
    assert not page.js_errors  # type: ignore[attr-defined]


def _png(size: int = 256) -> bytes:
    """A plain light-grey PNG tile."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xdd\xdd\xdd" * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_configured_tile_server_draws_under_the_routes(console: Console) -> None:
    """CONSOLE_TILE_URL: web-mercator tiles under the plan (served here by the browser's own route)."""
    state = console.cloud.app.state.cloud
    plain = state.settings
    state.settings = plain.model_copy(update={"console_tile_url": "https://tiles.example/{z}/{x}/{y}.png"})
    try:
        page = console.page("planner")
        tiles: list[str] = []

        def serve(route: Route) -> None:
            tiles.append(route.request.url)
            route.fulfill(body=_png(), content_type="image/png", headers={"Access-Control-Allow-Origin": "*"})

        page.route("https://tiles.example/**", serve)
        page.goto(console.url + f"/console/routes/{console.seeded.done_job}")
        page.wait_for_function("() => document.getElementById('route-map').dataset.drawn === '1'")
    finally:
        state.settings = plain
    assert tiles
    z, x, y = (int(v) for v in re.findall(r"/(\d+)/(\d+)/(\d+)\.png$", tiles[0])[0])
    n = 2 ** z  # Berlin (52.52 N, 13.40 E) lies in the middle of the tiles asked for
    lat = math.radians(52.52)
    assert 10 <= z <= 16 and abs(x - (13.40 + 180) / 360 * n) < 4
    assert abs(y - (1 - math.log(math.tan(lat) + 1 / math.cos(lat)) / math.pi) / 2 * n) < 4
    with page.expect_download() as dl:
        page.locator("button[data-action=map-png]").click()  # the canvas is not tainted: it still exports
    assert dl.value.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
