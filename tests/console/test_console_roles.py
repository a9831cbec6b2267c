"""Role boundaries hold in the browser and in the API behind it: an operator sees no admin or planner
buttons and the API refuses those actions anyway; a planner cannot manage alarms; gateway tokens get
nothing (no log-in, no page, no console API call); without a cookie every page asks to log in."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from conftest import Console
from playwright.sync_api import Page, expect

from cloud.auth import CONSOLE_COOKIE

GW = "gw-berlin-1"


def test_operator_sees_no_admin_or_planner_buttons_and_the_api_refuses(console: Console) -> None:
    page = console.page("operator")
    page.goto(console.url + "/console/fleet")
    nav = page.locator("header nav")
    expect(nav.locator("a")).to_have_text(["Fleet", "Alerts", "Streams", "Demand"])
    for path in ("/console/models", f"/console/rollouts/{console.seeded.rollout_id}", "/console/routes",
                 f"/console/routes/{console.seeded.done_job}", f"/console/routes/{console.seeded.done_job}/plan.json",
                 f"/console/routes/{console.seeded.done_job}/view.json"):
        resp = page.goto(console.url + path)
        assert resp is not None and resp.status == 403, path
        expect(page.locator("main")).to_contain_text("The operator role cannot open this page")
        expect(page.locator("button[data-action=rollout], button[data-action=cancel-job]")).to_have_count(0)
    rid = console.seeded.rollout_id
    h = console.headers("operator")
    for method, path in (("POST", f"/api/v1/rollouts/{rid}/pause"), ("POST", f"/api/v1/rollouts/{rid}/abort"),
                         ("GET", "/api/v1/route-jobs"), ("DELETE", f"/api/v1/route-jobs/{console.seeded.done_job}"),
                         ("POST", "/api/v1/tokens")):
        resp = httpx.request(method, console.url + path, headers=h, json={})
        assert resp.status_code == 403, (method, path, resp.text)
    assert httpx.get(console.url + f"/api/v1/rollouts/{rid}", headers=console.headers("admin")).json()["state"] \
        in ("running", "paused")


def test_planner_cannot_manage_alarms(console: Console) -> None:
    page = console.page("planner")
    page.goto(console.url + "/console/alerts")
    expect(page.locator("table.alarms tbody tr").first).to_be_visible()
    expect(page.locator("[data-action=ack], [data-action=shelve], [data-action=ack-selected]")).to_have_count(0)
    expect(page.locator("input[name=alarm]")).to_have_count(0)
    page.goto(console.url + f"/console/alarms/{GW}/alert:anomaly:cold-7:temperature_c:r")
    expect(page.locator("form[data-form=comment]")).to_have_count(0)
    resp = page.goto(console.url + "/console/models")
    assert resp is not None and resp.status == 403
    base = f"/api/v1/alarms/{GW}/alert:anomaly:cold-7:temperature_c:r"
    h = console.headers("planner")
    assert httpx.post(console.url + f"{base}/ack", headers=h).status_code == 403
    assert httpx.post(console.url + f"{base}/shelve", headers=h,
                      json={"duration_s": 600, "reason": "x"}).status_code == 403
    assert httpx.post(console.url + f"{base}/comments", headers=h, json={"text": "x"}).status_code == 403
    assert not httpx.get(console.url + base, headers=console.headers("admin")).json()["acked"]


def test_gateway_tokens_get_nothing(console: Console) -> None:
    token = console.seeded.gateway_tokens[GW]
    page = console.page(None)
    page.goto(console.url + "/console/fleet")
    expect(page.locator("h1")).to_have_text("Edgehouse console")  # the log-in page
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("gateway tokens cannot log in")
    assert "/console/login" in page.url
    # a gateway token put into the cookie by hand is no better
    context = console.browser.new_context()
    console.contexts.append(context)
    context.add_cookies([{"name": CONSOLE_COOKIE, "value": token, "url": console.url}])
    sneaky = context.new_page()
    for path in ("/console/fleet", "/console/alerts", "/console/streams", "/console/models"):
        sneaky.goto(console.url + path)
        assert "/console/login" in sneaky.url, path
    h = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/alarms", "/api/v1/fleet", "/api/v1/route-jobs", "/api/v1/rollouts"):
        assert httpx.get(console.url + path, headers=h).status_code == 403, path
    assert httpx.post(console.url + f"/api/v1/alarms/{GW}/alert:anomaly:cold-7:temperature_c:r/ack",
                      headers=h).status_code == 403


def test_log_in_with_a_token_and_out_again(console: Console, shot: Callable[[Page, str], None]) -> None:
    page = console.page(None)
    page.goto(console.url + "/console/alerts?severity=warning")
    assert "/console/login" in page.url
    shot(page, "login")
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_contain_text("unknown token")
    page.fill("input[name=token]", console.token("operator"))
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Alerts")
    assert page.url.endswith("/console/alerts?severity=warning")  # back where they wanted to go
    page.locator("header button", has_text="Log out").click()
    expect(page.locator("h1")).to_have_text("Edgehouse console")
    page.goto(console.url + "/console/fleet")
    assert "/console/login" in page.url
