"""The console's buttons do what they say, checked in the API afterwards: acknowledge one and many, shelve
with a reason (and the alarm returns by itself), comment, the audit trail; start a route job from an
uploaded problem and cancel it; a replenishment plan from the latest forecasts; pause and resume a
rollout behind its confirmation step. Each test works on alarms no other test touches."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from conftest import Console
from model_testkit import candidate_body
from playwright.sync_api import Dialog, Page, expect
from seed import small_problem
from sqlalchemy import update

from cloud.db.alarm_tables import alarms

GW = "gw-berlin-1"


def _ref(device: str) -> str:
    return f"{GW}/alert:anomaly:{device}:temperature_c:r"


def _api(console: Console, role: str, path: str) -> Any:
    resp = httpx.get(console.url + path, headers=console.headers(role))
    resp.raise_for_status()
    return resp.json()


def _alarm(console: Console, device: str) -> Any:
    return _api(console, "admin", f"/api/v1/alarms/{GW}/alert:anomaly:{device}:temperature_c:r")


def test_acknowledge_one_alarm(console: Console) -> None:
    page = console.page("operator")
    page.goto(console.url + "/console/alerts")
    page.locator(f"button[data-action=ack][data-alarm='{_ref('cold-2')}']").click()
    expect(page.locator(f"button[data-action=ack][data-alarm='{_ref('cold-2')}']")).to_have_count(0)  # reloaded
    alarm = _alarm(console, "cold-2")
    assert alarm["acked"] and alarm["isa_state"] == "ack_active"
    assert alarm["acked_by"].startswith("operator")
    assert [e["action"] for e in alarm["events"]] == ["ack"]


def test_acknowledge_selected_alarms_at_once(console: Console) -> None:
    page = console.page("operator")
    page.goto(console.url + "/console/alerts")
    for device in ("cold-3", "cold-4"):
        page.check(f"input[name=alarm][value='{_ref(device)}']")
    page.click("button[data-action=ack-selected]")
    expect(page.locator("#toast")).to_contain_text("2 acknowledged")
    expect(page.locator(f"button[data-action=ack][data-alarm='{_ref('cold-4')}']")).to_have_count(0)
    assert _alarm(console, "cold-3")["acked"] and _alarm(console, "cold-4")["acked"]
    assert not _alarm(console, "cold-7")["acked"]  # not selected


def test_shelve_with_a_reason_and_it_returns_by_itself(console: Console) -> None:
    page = console.page("operator")
    page.goto(console.url + "/console/alerts")
    page.locator(f"button[data-action=shelve][data-alarm='{_ref('cold-5')}']").click()
    dialog = page.locator("#shelve-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("select[name=duration_s]").select_option("900")
    dialog.locator("input[name=reason]").fill("sensor being replaced")
    dialog.locator("button[data-confirm]").click()
    expect(page.locator(f"button[data-action=unshelve][data-alarm='{_ref('cold-5')}']")).to_be_visible()
    alarm = _alarm(console, "cold-5")
    assert alarm["shelved"] and alarm["shelve_reason"] == "sensor being replaced"
    assert 890_000 <= alarm["shelved_until"] - int(time.time() * 1000) <= 900_000
    page.goto(console.url + "/console/alerts?shelved=only")
    expect(page.locator("table.alarms tbody tr")).to_have_count(1)
    # the 15 minutes pass (the stored end moved into the past): the alarm is back without anyone unshelving it
    engine = console.cloud.app.state.cloud.engine
    with engine.begin() as conn:
        conn.execute(update(alarms).where(alarms.c.gateway_id == GW,
                                          alarms.c.id == "alert:anomaly:cold-5:temperature_c:r")
                     .values(shelved_until=int(time.time() * 1000) - 1))
    page.goto(console.url + "/console/alerts?shelved=only")
    expect(page.locator("table.alarms tbody tr")).to_have_count(0)
    page.goto(console.url + "/console/alerts")
    expect(page.locator(f"button[data-action=shelve][data-alarm='{_ref('cold-5')}']")).to_be_visible()
    alarm = _alarm(console, "cold-5")
    assert not alarm["shelved"] and [e["action"] for e in alarm["events"]] == ["shelve"]


def test_comment_and_audit_trail_on_the_alarm_page(console: Console, shot: Callable[[Page, str], None]) -> None:
    page = console.page("operator")
    page.goto(console.url + "/console/alerts")
    page.locator(f"a[href='/console/alarms/{_ref('cold-6')}']").click()
    expect(page.locator("h1")).to_contain_text("alert:anomaly:cold-6")
    page.fill("form[data-form=comment] input[name=text]", "technician on the way")
    page.click("form[data-form=comment] button[type=submit]")
    expect(page.locator("#events tbody")).to_contain_text("technician on the way")
    page.locator("button[data-action=ack]").click()
    expect(page.locator("#events tbody tr")).to_have_count(2)
    events = page.locator("#events tbody")
    expect(events).to_contain_text("comment")
    expect(events).to_contain_text("ack")
    expect(events).to_contain_text("operator")
    shot(page, "alarm")
    alarm = _alarm(console, "cold-6")
    assert [(e["action"], e["text"]) for e in alarm["events"]] == [("comment", "technician on the way"),
                                                                    ("ack", None)]


def test_start_a_route_job_from_an_uploaded_problem_and_cancel_it(console: Console, tmp_path: Any) -> None:
    problem = small_problem("console-cancel", orders=60, oversized=False)
    for k in range(3, 7):
        problem["vehicles"].append({**problem["vehicles"][0], "id": f"van-{k}"})
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem))
    page = console.page("planner")
    page.goto(console.url + "/console/routes")
    form = page.locator("form[data-form=route-job]")
    form.locator("input[type=file]").set_input_files(str(path))
    form.locator("input[name=time_limit_s]").fill("120")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/console/routes/*")
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#job-status")).to_have_text("running", timeout=30_000)
    expect(page.locator("#job-cost")).not_to_have_text("-", timeout=30_000)  # best cost so far, live
    dialogs: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    page.click("button[data-action=cancel-job]")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=30_000)
    assert dialogs and "Cancel this route job" in dialogs[0]
    assert _api(console, "planner", f"/api/v1/route-jobs/{job_id}")["status"] == "cancelled"


def test_build_a_replenishment_plan_from_the_latest_forecasts(console: Console) -> None:
    request = {"depot": {"location": {"lat": 52.52, "lon": 13.40}, "time_window": {"start": 21600, "end": 64800}},
               "fleet": {"count": 1, "capacity": [500]}, "lead_time_days": 3, "time_limit_s": 1,
               "stores": [{"site": "berlin", "location": {"lat": 52.50, "lon": 13.45}, "on_hand": {"SKU-1": 5}}]}
    page = console.page("planner")
    page.goto(console.url + "/console/routes")
    form = page.locator("form[data-form=replenishment-job]")
    form.locator("textarea").fill(json.dumps(request))
    form.locator("input[name=time_limit_s]").fill("1")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/console/routes/*")
    expect(page.locator("#job-status")).to_have_text("done", timeout=60_000)
    expect(page.locator("#loads tbody tr")).to_have_count(1)
    job_id = page.url.rsplit("/", 1)[1]
    plan = _api(console, "planner", f"/api/v1/route-jobs/{job_id}/result")
    served = [s["order_id"] for r in plan["routes"] for s in r["stops"] if s["kind"] == "order"]
    assert len(served) == 1 and not plan["unserved"]


def test_a_bad_upload_is_refused_naming_the_field(console: Console) -> None:
    page = console.page("planner")
    page.goto(console.url + "/console/routes")
    form = page.locator("form[data-form=route-job]")
    bad = small_problem("bad")
    bad["orders"][0]["demand"] = [-1]
    form.locator("textarea").fill(json.dumps(bad))
    form.locator("button[type=submit]").click()
    expect(page.locator("#toast .bad")).to_contain_text("422")
    expect(page.locator("#toast .bad")).to_contain_text("orders.0.demand")
    assert page.url.endswith("/console/routes")


def test_pause_and_resume_a_rollout_behind_a_confirmation(console: Console) -> None:
    rid = console.seeded.rollout_id
    page = console.page("admin")
    page.goto(console.url + f"/console/rollouts/{rid}")
    expect(page.locator("#rollout-state")).to_have_text("running")
    page.click("button[data-op=pause]")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-title]")).to_have_text(f"Pause rollout #{rid}?")
    dialog.locator("button[value=cancel]").click()  # changed their mind: nothing happens
    expect(dialog).to_be_hidden()
    assert _api(console, "admin", f"/api/v1/rollouts/{rid}")["state"] == "running"
    page.click("button[data-op=pause]")
    dialog.locator("input[name=reason]").fill("night shift, look tomorrow")
    dialog.locator("button[data-confirm]").click()
    expect(page.locator("#rollout-state")).to_have_text("paused")
    status = _api(console, "admin", f"/api/v1/rollouts/{rid}")
    assert status["state"] == "paused"
    assert any(e["reason"] == "night shift, look tomorrow" for e in status["events"])
    expect(page.locator("#events tbody")).to_contain_text("night shift, look tomorrow")
    page.click("button[data-op=resume]")
    dialog.locator("button[data-confirm]").click()
    expect(page.locator("#rollout-state")).to_have_text("running")
    assert _api(console, "admin", f"/api/v1/rollouts/{rid}")["state"] == "running"


def test_abort_a_rollout_after_confirming_it(console: Console) -> None:
    admin = console.headers("admin")
    with httpx.Client(base_url=console.url, headers=admin, timeout=30) as c:
        v = c.post("/api/v1/models/demand/versions", json=candidate_body("demand", 77))
        v.raise_for_status()
        version = v.json()["model_version"]
        c.post(f"/api/v1/models/demand/versions/{version}/promote").raise_for_status()
        created = c.post("/api/v1/rollouts", json={"task": "demand", "model_version": version})
        created.raise_for_status()
        rid = created.json()["rollout_id"]
    page = console.page("admin")
    page.goto(console.url + "/console/models")
    page.locator("#rollouts a", has_text=f"#{rid}").click()
    expect(page.locator("button[data-op=abort]")).to_have_class("danger")
    page.click("button[data-op=abort]")
    dialog = page.locator("#confirm-dialog")
    expect(dialog.locator("[data-what]")).to_contain_text("Stop for good")
    dialog.locator("input[name=reason]").fill("wrong candidate")
    dialog.locator("button[data-confirm]").click()
    expect(page.locator("#rollout-state")).to_have_text("aborted")
    expect(page.locator("button[data-op]")).to_have_count(0)  # nothing left to do with an aborted rollout
    status = _api(console, "admin", f"/api/v1/rollouts/{rid}")
    assert status["state"] == "aborted" and any(e["reason"] == "wrong candidate" for e in status["events"])
