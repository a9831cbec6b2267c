"""Gateways and tokens: registration, provisioning with a given token, listing, roles."""

from __future__ import annotations

from cloud_testkit import ADMIN_TOKEN, GATEWAY_ID, admin_headers, gz, register, telemetry_batch
from fastapi.testclient import TestClient
from sqlalchemy import create_engine


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_register_list_and_show(client: TestClient) -> None:
    resp = client.post("/api/v1/gateways", json={"gateway_id": GATEWAY_ID, "site": "berlin"},
                       headers=admin_headers())
    assert resp.status_code == 201
    body = resp.json()
    assert body["gateway_id"] == GATEWAY_ID and body["site"] == "berlin" and len(body["token"]) >= 40
    listing = client.get("/api/v1/gateways", headers=admin_headers()).json()
    assert [g["gateway_id"] for g in listing] == [GATEWAY_ID]
    assert listing[0]["last_seen_ts"] is None
    assert listing[0]["counts"] == {"telemetry": 0, "scan": 0, "device_status": 0, "alert": 0, "forecast": 0}
    assert "token" not in listing[0]
    own = client.get(f"/api/v1/gateways/{GATEWAY_ID}", headers=bearer(body["token"]))
    assert own.status_code == 200 and own.json()["site"] == "berlin"


def test_listing_shows_last_seen_and_counts(client: TestClient) -> None:
    heads = {gw: register(client, gw) for gw in ("gw-a", "gw-b")}
    client.post("/api/v1/sync", content=gz(telemetry_batch("gw-a", 0, 7)),
                headers={**heads["gw-a"], "Content-Encoding": "gzip"})
    listing = {g["gateway_id"]: g for g in client.get("/api/v1/gateways", headers=admin_headers()).json()}
    assert listing["gw-a"]["counts"]["telemetry"] == 7 and listing["gw-a"]["last_seen_ts"] is not None
    assert listing["gw-b"]["counts"]["telemetry"] == 0 and listing["gw-b"]["last_seen_ts"] is None


def test_duplicate_gateway_and_reused_token_are_409(client: TestClient) -> None:
    given = "provisioned-" + "x7Kp2Qm9Lr4Tz8Wv"
    ok = client.post("/api/v1/gateways", json={"gateway_id": "gw-1", "site": "s", "token": given},
                     headers=admin_headers())
    assert ok.status_code == 201 and ok.json()["token"] == given
    again = client.post("/api/v1/gateways", json={"gateway_id": "gw-1", "site": "s"}, headers=admin_headers())
    assert again.status_code == 409 and again.json()["detail"][0]["field"] == "gateway_id"
    reused = client.post("/api/v1/gateways", json={"gateway_id": "gw-2", "site": "s", "token": given},
                         headers=admin_headers())
    assert reused.status_code == 409 and reused.json()["detail"][0]["field"] == "token"
    admin_as_gateway = client.post("/api/v1/gateways", json={"gateway_id": "gw-3", "site": "s", "token": ADMIN_TOKEN},
                                   headers=admin_headers())
    assert admin_as_gateway.status_code == 409 and "reserved" in admin_as_gateway.json()["detail"][0]["message"]
    # the failed registrations left nothing behind
    assert [g["gateway_id"] for g in client.get("/api/v1/gateways", headers=admin_headers()).json()] == ["gw-1"]
    sync = client.post("/api/v1/sync", json=telemetry_batch("gw-1", 0, 1), headers=bearer(given))
    assert sync.status_code == 200


def test_registration_is_validated(client: TestClient) -> None:
    resp = client.post("/api/v1/gateways", json={"gateway_id": "bad/id", "site": "s", "token": "short"},
                       headers=admin_headers())
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["detail"]} == {"gateway_id", "token"}


def test_roles(client: TestClient) -> None:
    gw = register(client)
    planner = client.post("/api/v1/tokens", json={"role": "planner", "label": "ops"}, headers=admin_headers())
    assert planner.status_code == 201 and planner.json()["role"] == "planner"
    p = bearer(planner.json()["token"])
    assert client.get("/api/v1/alerts", headers=p).status_code == 200
    assert client.get(f"/api/v1/gateways/{GATEWAY_ID}", headers=p).status_code == 200
    for headers in (p, gw):
        assert client.get("/api/v1/gateways", headers=headers).status_code == 403
        assert client.post("/api/v1/tokens", json={"role": "admin"}, headers=headers).status_code == 403
        assert client.post("/api/v1/gateways", json={"gateway_id": "g", "site": "s"},
                           headers=headers).status_code == 403
    assert client.get("/api/v1/alerts", headers=gw).status_code == 403
    register(client, "gw-other")
    assert client.get("/api/v1/gateways/gw-other", headers=gw).status_code == 403
    assert client.get("/api/v1/gateways", headers={}).status_code == 401
    second_admin = client.post("/api/v1/tokens", json={"role": "admin"}, headers=admin_headers()).json()["token"]
    assert client.get("/api/v1/gateways", headers=bearer(second_admin)).status_code == 200


def test_gateway_tokens_need_a_registered_gateway(client: TestClient) -> None:
    no_id = client.post("/api/v1/tokens", json={"role": "gateway"}, headers=admin_headers())
    assert no_id.status_code == 400 and no_id.json()["detail"][0]["field"] == "gateway_id"
    unknown = client.post("/api/v1/tokens", json={"role": "gateway", "gateway_id": "gw-x"}, headers=admin_headers())
    assert unknown.status_code == 404
    register(client, "gw-x")
    extra = client.post("/api/v1/tokens", json={"role": "gateway", "gateway_id": "gw-x"}, headers=admin_headers())
    assert extra.status_code == 201
    assert client.post("/api/v1/sync", json=telemetry_batch("gw-x", 0, 1),
                       headers=bearer(extra.json()["token"])).status_code == 200
    bad_role = client.post("/api/v1/tokens", json={"role": "root"}, headers=admin_headers())
    assert bad_role.status_code == 422 and bad_role.json()["detail"][0]["field"] == "role"


def test_unknown_gateway_is_404(client: TestClient) -> None:
    resp = client.get("/api/v1/gateways/gw-missing", headers=admin_headers())
    assert resp.status_code == 404 and resp.json()["detail"][0]["field"] == "gateway_id"


def test_health_and_docs(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/sync", "/api/v1/gateways", "/api/v1/gateways/{gateway_id}", "/api/v1/tokens",
            "/api/v1/alerts", "/api/v1/forecasts", "/healthz"} <= set(paths)


def test_unreachable_database_is_503(client: TestClient) -> None:
    state = client.app.state.cloud  # type: ignore[attr-defined]
    working = state.engine
    state.engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    try:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        listing = client.get("/api/v1/gateways", headers=admin_headers())
        assert listing.status_code == 503 and listing.headers["retry-after"] == "5"
        assert listing.json()["detail"][0]["message"] == "database unavailable, retry later"
    finally:
        state.engine.dispose()
        state.engine = working


def test_supplied_tokens_follow_the_weak_token_rule(client: TestClient) -> None:
    """Outside development, a supplied secret must be as strong as the admin token has to be."""
    for token in ("x" * 20, "changeme" * 3, "admin-admin-admin-admin"):
        resp = client.post("/api/v1/gateways", json={"gateway_id": "gw-z", "site": "s", "token": token},
                           headers=admin_headers())
        assert resp.status_code == 422, token
        assert resp.json()["detail"][0]["field"] == "token"
        resp = client.post("/api/v1/tokens", json={"role": "planner", "token": token}, headers=admin_headers())
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "token"
    assert client.get("/api/v1/gateways", headers=admin_headers()).json() == []
