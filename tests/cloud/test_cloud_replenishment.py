"""POST /api/v1/replenishment-plan: quantities from the latest synced P90 forecasts, routed and checked.

Forecasts are seeded through ``POST /api/v1/sync`` with a gateway token; every test runs on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from cloud_testkit import BASE_TS, admin_headers, batch, forecast_record, gz, register
from fastapi.testclient import TestClient

from cloud.routing.checker import check_plan
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem
from cloud.services.replenishment import order_quantity

URL = "/api/v1/replenishment-plan"
HOUR = 3600.0


@pytest.fixture
def planner(client: TestClient) -> dict[str, str]:
    resp = client.post("/api/v1/tokens", json={"role": "planner", "label": "ops"}, headers=admin_headers())
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def forecast(gateway_id: str, n: int, site: str, sku: str, origin: str, created: int,
             p90: list[float]) -> dict[str, Any]:
    """A forecast record with the given horizon (P50 at 80 % of P90)."""
    rec = forecast_record(gateway_id, n, sku=sku, site=site)
    rec["forecast"].update(origin=origin, created_ts=BASE_TS + created, p90=p90, p50=[0.8 * v for v in p90])
    return rec


def sync(client: TestClient, headers: dict[str, str], gateway_id: str, records: list[dict[str, Any]],
         batch_id: str = "batch-1") -> None:
    resp = client.post("/api/v1/sync", content=gz(batch(gateway_id, records, batch_id)),
                       headers={**headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.text


def store(site: str, lat: float, lon: float, on_hand: dict[str, float], **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"site": site, "location": {"lat": lat, "lon": lon},
                           "time_windows": [{"start": 7 * HOUR, "end": 16 * HOUR}], "service_time": 600,
                           "on_hand": on_hand}
    doc.update(over)
    return doc


def request_doc(stores: list[dict[str, Any]], over: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "depot": {"id": "dc", "location": {"lat": 52.40, "lon": 13.30},
                  "time_window": {"start": 6 * HOUR, "end": 18 * HOUR}},
        "fleet": {"count": 2, "capacity": [100, 100]},
        "lead_time_days": 3,
        "stores": stores,
        "dimensions": ["weight", "volume"],
        "units": {"SKU-A": {"weight": 2.0, "volume": 0.5}},
        "time_limit_s": 0.5,
        "engine": "ortools",
        "seed": 1,
    }
    doc.update(over or {})
    return doc


def fields(resp: Any) -> set[str]:
    return {e["field"] for e in resp.json()["detail"]}


def served(plan: Plan) -> set[str]:
    return {s.order_id for r in plan.routes for s in r.stops if s.kind == "order" and s.order_id}


def seed_forecasts(client: TestClient) -> None:
    gw_a, gw_b = register(client, "gw-a", "berlin"), register(client, "gw-b", "potsdam")
    sync(client, gw_a, "gw-a", [
        # berlin-1 / SKU-A: an older origin created last loses to the newest origin; within that
        # origin the later created_ts wins.
        forecast("gw-a", 1, "berlin-1", "SKU-A", "2026-11-20", 900, [100.0] * 7),
        forecast("gw-a", 2, "berlin-1", "SKU-A", "2026-11-24", 100, [5.0, 6.5, 8.0, 9.0]),
        forecast("gw-a", 3, "berlin-1", "SKU-A", "2026-11-24", 200, [4.0, 4.5, 5.25, 10.0]),
        forecast("gw-a", 4, "berlin-1", "SKU-B", "2026-11-24", 100, [1.0, 1.0, 1.0]),
        forecast("gw-a", 5, "spandau", "SKU-A", "2026-11-24", 100, [3.3, 3.3, 3.4, 7.0]),
        forecast("gw-a", 6, "spandau", "SKU-D", "2026-11-24", 100, [2.0, 2.0]),
    ])
    sync(client, gw_b, "gw-b", [
        forecast("gw-b", 1, "potsdam", "SKU-A", "2026-11-24", 100, [2.0, 2.0, 2.0, 2.0]),
        # another site's forecast of the same SKU never leaks into berlin-1
        forecast("gw-b", 2, "berlin-2", "SKU-B", "2026-11-25", 100, [50.0, 50.0, 50.0]),
    ])


def test_quantities_from_latest_p90_are_routed_and_checked(client: TestClient,
                                                           planner: dict[str, str]) -> None:
    seed_forecasts(client)
    stores = [
        store("berlin-1", 52.52, 13.40, {"SKU-A": 2, "SKU-B": 0.5, "SKU-C": 4}),
        store("potsdam", 52.39, 13.06, {"SKU-A": 10}),
        store("spandau", 52.53, 13.20, {"SKU-A": 0, "SKU-D": 1}),
    ]
    resp = client.post(URL, json=request_doc(stores), headers=planner)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    by_site = {s["site"]: s for s in body["stores"]}

    berlin = by_site["berlin-1"]
    lines = {line["sku"]: line for line in berlin["lines"]}
    # SKU-A: forecast f3 (origin 2026-11-24, created last): 4 + 4.5 + 5.25 = 13.75; minus 2 -> ceil 11.75 = 12
    assert lines["SKU-A"]["forecast_id"] == "f3" and lines["SKU-A"]["forecast_origin"] == "2026-11-24"
    assert lines["SKU-A"]["p90_over_lead_time"] == pytest.approx(13.75)
    assert lines["SKU-A"]["on_hand"] == 2 and lines["SKU-A"]["order_qty"] == 12
    # SKU-B: 1 + 1 + 1 = 3; minus 0.5 -> ceil 2.5 = 3 (berlin-2's forecast is not used)
    assert lines["SKU-B"]["forecast_id"] == "f4" and lines["SKU-B"]["order_qty"] == 3
    assert berlin["missing"] == [{"sku": "SKU-C", "reason": "no_forecast",
                                  "message": "no forecast synced for site 'berlin-1' and SKU 'SKU-C'"}]
    # weight 12 * 2 + 3 * 1, volume 12 * 0.5 + 3 * 1
    assert berlin["order_id"] == "berlin-1" and berlin["demand"] == [27.0, 9.0]

    potsdam = by_site["potsdam"]  # 2 + 2 + 2 = 6 <= 10 on hand: nothing to deliver
    assert potsdam["lines"][0]["order_qty"] == 0 and potsdam["order_id"] is None

    spandau = by_site["spandau"]  # 3.3 + 3.3 + 3.4 = 10 exactly, despite float noise
    assert [(line["sku"], line["order_qty"]) for line in spandau["lines"]] == [("SKU-A", 10)]
    assert [m["reason"] for m in spandau["missing"]] == ["horizon_shorter_than_lead_time"]
    assert spandau["demand"] == [20.0, 5.0]

    problem = Problem.model_validate(body["problem"])
    plan = Plan.model_validate(body["plan"])
    assert {o.id for o in problem.orders} == {"berlin-1", "spandau"}
    assert {o.id: o.demand for o in problem.orders} == {"berlin-1": (27.0, 9.0), "spandau": (20.0, 5.0)}
    assert plan.status == "feasible" and not plan.unserved and served(plan) == {"berlin-1", "spandau"}
    report = check_plan(problem, plan)
    assert report.ok, report.violations


def test_unservable_store_is_unserved_with_its_reason(client: TestClient, planner: dict[str, str]) -> None:
    seed_forecasts(client)
    stores = [store("berlin-1", 52.52, 13.40, {"SKU-A": 2, "SKU-B": 0.5}),
              store("spandau", 52.53, 13.20, {"SKU-A": 0})]
    vehicles = [{"id": "small", "start_depot": "dc", "end_depot": "dc", "capacity": [25],
                 "shift": {"start": 6 * HOUR, "end": 18 * HOUR}}]
    doc = request_doc(stores, {"fleet": None, "vehicles": vehicles, "dimensions": ["weight"]})
    resp = client.post(URL, json=doc, headers=admin_headers())
    assert resp.status_code == 200, resp.text
    plan = Plan.model_validate(resp.json()["plan"])
    # berlin-1 needs weight 27 > 25: no vehicle can carry it; spandau (20) is delivered
    assert [(u.order_id, u.reason) for u in plan.unserved] == [("berlin-1", "exceeds_capacity")]
    assert served(plan) == {"spandau"}
    assert check_plan(Problem.model_validate(resp.json()["problem"]), plan).ok


def test_nothing_needed_routes_nothing(client: TestClient, planner: dict[str, str]) -> None:
    seed_forecasts(client)
    stores = [store("potsdam", 52.39, 13.06, {"SKU-A": 10}), store("nowhere", 52.0, 13.0, {"SKU-A": 0})]
    resp = client.post(URL, json=request_doc(stores), headers=planner)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [s["order_id"] for s in body["stores"]] == [None, None]
    assert body["stores"][1]["missing"][0]["reason"] == "no_forecast"
    assert body["problem"]["orders"] == [] and body["plan"]["routes"] == [] and body["plan"]["unserved"] == []
    assert body["plan"]["status"] == "feasible"


def test_needs_a_planner_or_admin_token(client: TestClient, gw_headers: dict[str, str]) -> None:
    doc = request_doc([store("potsdam", 52.39, 13.06, {"SKU-A": 10})])
    assert client.post(URL, json=doc).status_code == 401
    resp = client.post(URL, json=doc, headers=gw_headers)
    assert resp.status_code == 403 and fields(resp) == {"authorization"}
    assert client.post(URL, json=doc, headers=admin_headers()).status_code == 200


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"engine": "gurobi"}, "engine"),
        ({"lead_time_days": 0}, "lead_time_days"),
        ({"lead_time_days": 29}, "lead_time_days"),
        ({"time_limit_s": 31}, "time_limit_s"),
        ({"stores": [{"site": "s1", "on_hand": {"SKU-A": 1}}]}, "stores.0.location"),
        ({"stores": [store("s1", 95.0, 13.0, {"SKU-A": 1})]}, "stores.0.location.lat"),
        ({"stores": [store("s1", 52.0, 13.0, {}, skus=["not a sku"])]}, "stores.0.skus.0"),
        ({"stores": [store("s1", 52.0, 13.0, {"SKU-A": -1})]}, "stores.0.on_hand.SKU-A"),
        ({"stores": [store("s1", 52.0, 13.0, {"SKU-A": 1}, time_windows=[{"start": 9, "end": 1}])]},
         "stores.0.time_windows.0"),
        ({"stores": [store("s1", 52.0, 13.0, {"SKU-A": 1}), store("s1", 52.1, 13.1, {"SKU-A": 1})]},
         "stores.1.site"),
        ({"stores": []}, "stores"),
        ({"fleet": {"count": 2, "capacity": [100]}}, "fleet.capacity"),
        ({"fleet": None}, "vehicles"),
        ({"vehicles": [{"id": "v", "start_depot": "dc"}]}, "vehicles"),
        ({"fleet": None, "vehicles": [{"id": "v", "start_depot": "elsewhere"}]}, "vehicles.0.start_depot"),
        ({"fleet": None, "vehicles": [{"id": "v", "start_depot": "dc", "shift": {"start": 0, "end": 3600}}]},
         "vehicles.0.shift"),
        ({"depot": {"location": {"lat": 52.4, "lon": 13.3}}}, "depot.time_window"),
        ({"units": {"SKU-A": {"weight": -1}}}, "units.SKU-A.weight"),
        ({"dimensions": ["weight", "weight"]}, "dimensions"),
    ],
)
def test_bad_request_answers_422_naming_the_field(client: TestClient, planner: dict[str, str],
                                                  over: dict[str, Any], field: str) -> None:
    doc = request_doc([store("potsdam", 52.39, 13.06, {"SKU-A": 10})], over)
    resp = client.post(URL, json=doc, headers=planner)
    assert resp.status_code == 422, resp.text
    assert field in fields(resp), resp.json()


def test_order_quantity_rounds_up_and_floors_at_zero() -> None:
    assert order_quantity(13.75, 2) == 12
    assert order_quantity(3.3 + 3.3 + 3.4, 0) == 10
    assert order_quantity(6.0, 10.0) == 0
    assert order_quantity(6.0, 6.0) == 0
    assert order_quantity(6.01, 6.0) == 1
