"""Route planning API: synchronous solves, background jobs (progress, results, cancel) and access rules.

Route jobs are rows of the database, solved by the app's embedded worker: SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from cloud_testkit import admin_headers
from fastapi.testclient import TestClient

from cloud.routing.checker import check_plan
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem
from tests.helpers.waiting import patience

HOUR = 3600.0
LONG_S = 60.0  # a job that would outlive the test unless cancelling really stops it


@pytest.fixture
def planner(client: TestClient) -> dict[str, str]:
    resp = client.post("/api/v1/tokens", json={"role": "planner", "label": "ops"}, headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def problem_doc(**over: Any) -> dict[str, Any]:
    """Two vehicles, five orders on a plane; one coordinate unit per minute."""
    doc: dict[str, Any] = {
        "name": "api-small",
        "depots": [{"id": "d", "location": {"x": 0, "y": 0}}],
        "vehicles": [
            {"id": f"v{k}", "start_depot": "d", "end_depot": "d", "capacity": [100],
             "shift": {"start": 0, "end": 8 * HOUR}}
            for k in (1, 2)
        ],
        "orders": [
            {"id": f"o{i}", "location": {"x": x, "y": y}, "demand": [30], "service_time": 300}
            for i, (x, y) in enumerate([(10, 0), (20, 0), (0, 10), (0, 20), (-10, 0)])
        ],
        "travel": {"kind": "euclidean", "speed": 1 / 60, "decimals": 0, "rounding": "round"},
    }
    doc.update(over)
    return doc


def wait_for(client: TestClient, job_id: str, headers: dict[str, str], statuses: set[str],
             timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Poll the job until its status is one of ``statuses``; returns every answer seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + patience(timeout_s)
    while time.monotonic() < deadline:
        resp = client.get(f"/api/v1/route-jobs/{job_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        seen.append(resp.json())
        if seen[-1]["status"] in statuses:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {statuses}: last {seen[-1] if seen else None}")


def fields(resp: Any) -> set[str]:
    return {e["field"] for e in resp.json()["detail"]}


def test_planning_needs_a_planner_or_admin_token(client: TestClient, gw_headers: dict[str, str]) -> None:
    assert client.post("/api/v1/routes", json=problem_doc()).status_code == 401
    assert client.post("/api/v1/route-jobs", json=problem_doc()).status_code == 401
    assert client.get("/api/v1/route-jobs/nope").status_code == 401
    for method, url in (("POST", "/api/v1/routes"), ("POST", "/api/v1/route-jobs"),
                        ("GET", "/api/v1/route-jobs/nope"), ("DELETE", "/api/v1/route-jobs/nope")):
        resp = client.request(method, url, json=problem_doc(), headers=gw_headers)
        assert resp.status_code == 403, (method, url, resp.text)
        assert fields(resp) == {"authorization"}
    admin = client.post("/api/v1/routes?time_limit_s=0.5&engine=ortools", json=problem_doc(), headers=admin_headers())
    assert admin.status_code == 200, admin.text


def test_sync_solve_returns_a_checked_plan(client: TestClient, planner: dict[str, str]) -> None:
    resp = client.post("/api/v1/routes?time_limit_s=0.5&engine=ortools&seed=3", json=problem_doc(), headers=planner)
    assert resp.status_code == 200, resp.text
    plan = Plan.model_validate(resp.json())
    assert plan.status == "feasible" and plan.seed == 3 and plan.time_limit_s == 0.5
    assert check_plan(Problem.model_validate(problem_doc()), plan).ok


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"orders": [{"id": "o1", "location": {"x": 1, "y": 1}, "skills": ["crane"]}]}, "orders.0.skills"),
        ({"orders": [{"id": "o1", "location": {"x": 1, "y": 1}, "priority": 0}]}, "orders.0.priority"),
        ({"orders": [{"id": "o1", "location": {"x": 1, "y": 1}, "time_windows": [{"start": 200, "end": 100}]}]},
         "orders.0.time_windows.0"),
        ({"vehicles": [{"id": "v1", "start_depot": "nowhere"}]}, "vehicles.0.start_depot"),
        ({"travel": {"kind": "matrix", "distances_m": [[0, 1]], "durations_s": [[0]]}}, "travel.distances_m.0"),
        ({"depots": []}, "depots"),
    ],
)
def test_bad_problem_answers_422_naming_the_field(client: TestClient, planner: dict[str, str],
                                                  over: dict[str, Any], field: str) -> None:
    for url in ("/api/v1/routes", "/api/v1/route-jobs"):
        resp = client.post(url, json=problem_doc(**over), headers=planner)
        assert resp.status_code == 422, resp.text
        assert field in fields(resp), resp.json()


def test_bad_parameters_answer_422(client: TestClient, planner: dict[str, str]) -> None:
    cases = {"engine=gurobi": "engine", "time_limit_s=31": "time_limit_s", "time_limit_s=0": "time_limit_s",
             "seed=-1": "seed"}
    for query, field in cases.items():
        resp = client.post(f"/api/v1/routes?{query}", json=problem_doc(), headers=planner)
        assert resp.status_code == 422 and fields(resp) == {field}, (query, resp.text)
    resp = client.post("/api/v1/route-jobs?time_limit_s=601", json=problem_doc(), headers=planner)
    assert resp.status_code == 422 and fields(resp) == {"time_limit_s"}


def test_job_runs_to_done_with_progress_and_results(client: TestClient, planner: dict[str, str]) -> None:
    resp = client.post("/api/v1/route-jobs?time_limit_s=1&engine=ortools", json=problem_doc(), headers=planner)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["status"] in ("queued", "running") and resp.headers["location"] == f"/api/v1/route-jobs/{job['id']}"
    seen = wait_for(client, job["id"], planner, {"done", "failed", "cancelled"})
    final = seen[-1]
    assert final["status"] == "done" and final["error"] is None, final
    assert final["progress"] == 1.0 and final["best_cost"] is not None
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)

    plan = Plan.model_validate(client.get(f"/api/v1/route-jobs/{job['id']}/result", headers=planner).json())
    assert check_plan(Problem.model_validate(problem_doc()), plan).ok
    assert final["best_cost"] == pytest.approx(plan.total_cost)

    geo = client.get(f"/api/v1/route-jobs/{job['id']}/result.geojson", headers=planner)
    assert geo.status_code == 200 and geo.headers["content-type"] == "application/geo+json"
    lines = [f for f in geo.json()["features"] if f["geometry"]["type"] == "LineString"]
    assert geo.json()["type"] == "FeatureCollection" and len(lines) == len(plan.routes)

    png = client.get(f"/api/v1/route-jobs/{job['id']}/plot.png", headers=planner)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    again = client.delete(f"/api/v1/route-jobs/{job['id']}", headers=planner)
    assert again.status_code == 409


def test_cancel_stops_the_solve(client: TestClient, planner: dict[str, str]) -> None:
    """Cancel two long jobs that hold both pool workers; a third job then runs at once."""
    long_ids = []
    for seed in (1, 2):
        resp = client.post(f"/api/v1/route-jobs?time_limit_s={LONG_S}&engine=ortools&seed={seed}",
                           json=problem_doc(), headers=planner)
        assert resp.status_code == 202, resp.text
        long_ids.append(resp.json()["id"])
    for job_id in long_ids:
        wait_for(client, job_id, planner, {"running"})
        assert client.get(f"/api/v1/route-jobs/{job_id}/result", headers=planner).status_code == 409

    started = time.monotonic()
    for job_id in long_ids:
        resp = client.delete(f"/api/v1/route-jobs/{job_id}", headers=planner)
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
        assert client.delete(f"/api/v1/route-jobs/{job_id}", headers=planner).json()["status"] == "cancelled"
    short = client.post("/api/v1/route-jobs?time_limit_s=0.5&engine=ortools", json=problem_doc(), headers=planner)
    assert wait_for(client, short.json()["id"], planner, {"done", "failed"})[-1]["status"] == "done"
    assert time.monotonic() - started < LONG_S / 3
    for job_id in long_ids:
        assert client.get(f"/api/v1/route-jobs/{job_id}", headers=planner).json()["status"] == "cancelled"
        assert client.get(f"/api/v1/route-jobs/{job_id}/plot.png", headers=planner).status_code == 409


def test_unknown_job_is_404(client: TestClient, planner: dict[str, str]) -> None:
    for method, suffix in (("GET", ""), ("GET", "/result"), ("GET", "/result.geojson"), ("GET", "/plot.png"),
                           ("DELETE", "")):
        resp = client.request(method, f"/api/v1/route-jobs/no-such-job{suffix}", headers=planner)
        assert resp.status_code == 404, (method, suffix, resp.text)
        assert fields(resp) == {"id"}


def test_matrix_problem_has_no_geojson(client: TestClient, planner: dict[str, str]) -> None:
    doc = problem_doc(
        depots=[{"id": "d", "location": {"index": 0}}],
        orders=[{"id": "o1", "location": {"index": 1}}],
        travel={"kind": "matrix", "distances_m": [[0, 1000], [1000, 0]], "durations_s": [[0, 60], [60, 0]]},
    )
    job = client.post("/api/v1/route-jobs?time_limit_s=0.5&engine=ortools", json=doc, headers=planner).json()
    assert wait_for(client, job["id"], planner, {"done", "failed"})[-1]["status"] == "done"
    resp = client.get(f"/api/v1/route-jobs/{job['id']}/result.geojson", headers=planner)
    assert resp.status_code == 409 and fields(resp) == {"travel"}


def test_job_list_names_each_problem_and_its_size(client: TestClient, planner: dict[str, str]) -> None:
    """The list reads a problem's name and counts in the database (the problem itself is not loaded)."""
    doc = problem_doc(name="list-me")
    doc["vehicles"].append({**doc["vehicles"][0], "id": "v3"})
    first = client.post("/api/v1/route-jobs", params={"time_limit_s": 1}, json=doc, headers=planner)
    assert first.status_code == 202, first.text
    unnamed = problem_doc()
    del unnamed["name"]
    second = client.post("/api/v1/route-jobs", params={"time_limit_s": 1}, json=unnamed, headers=planner)
    assert second.status_code == 202, second.text
    listed = {j["id"]: j for j in client.get("/api/v1/route-jobs", headers=planner).json()}
    mine = listed[first.json()["id"]]
    assert (mine["problem_name"], mine["orders"], mine["vehicles"]) == ("list-me", len(doc["orders"]), 3)
    assert listed[second.json()["id"]]["problem_name"] == "problem"  # the default name
