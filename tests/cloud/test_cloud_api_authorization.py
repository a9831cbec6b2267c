"""Authorization matrix generated from the OpenAPI: every route × every kind of caller.

Each route's policy is written once in :data:`POLICY`; a route of the OpenAPI without an entry (or an
entry without a route) fails the test, so a new route cannot ship without deciding who may call it.
Callers: no token, an unknown token, a gateway token on its own gateway id and on another's, a
planner and the admin. A refused caller gets 401 (no or unknown token) or 403 (wrong role, another
gateway's id); an admitted one gets anything else (200, 404 for a missing id, 422 for the empty body
sent here: authorization is decided before the body is looked at).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import pytest
from cloud_testkit import admin_headers, register
from fastapi.testclient import TestClient

Policy = Literal["public", "any", "admin", "reader", "planner", "operator", "any_own", "gateway_or_admin",
                 "own_or_admin", "gateway"]

#: Who may call each route: public (anyone), any (any valid token), admin, reader (admin, planner or
#: operator), planner (admin or planner), operator (admin or operator), any_own (any role, a gateway only
#: on its own {gateway_id}), gateway_or_admin, own_or_admin (a gateway only its own {gateway_id}),
#: gateway (gateway tokens only).
POLICY: Final[dict[tuple[str, str], Policy]] = {
    ("GET", "/healthz"): "public",
    ("POST", "/api/v1/sync"): "gateway",
    ("GET", "/api/v1/gateways"): "admin",
    ("POST", "/api/v1/gateways"): "admin",
    ("GET", "/api/v1/gateways/{gateway_id}"): "any_own",
    ("PUT", "/api/v1/gateways/{gateway_id}/group"): "admin",
    ("GET", "/api/v1/gateways/{gateway_id}/models/desired"): "own_or_admin",
    ("POST", "/api/v1/gateways/{gateway_id}/models/report"): "own_or_admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("GET", "/api/v1/alerts"): "reader",
    ("GET", "/api/v1/forecasts"): "reader",
    ("GET", "/api/v1/stock"): "reader",
    ("GET", "/api/v1/devices/{device_id}/readings"): "reader",
    ("GET", "/api/v1/sites/{site}/demand"): "reader",
    ("GET", "/api/v1/models"): "admin",
    ("GET", "/api/v1/models/artifacts/{sha256}"): "gateway_or_admin",
    ("GET", "/api/v1/models/jobs"): "admin",
    ("GET", "/api/v1/models/jobs/{job_id}"): "admin",
    ("DELETE", "/api/v1/models/jobs/{job_id}"): "admin",
    ("GET", "/api/v1/models/keys"): "admin",
    ("POST", "/api/v1/models/keys/rotations"): "admin",
    ("POST", "/api/v1/models/releases"): "admin",
    ("GET", "/api/v1/models/signing-requests"): "admin",
    ("POST", "/api/v1/models/train"): "admin",
    ("GET", "/api/v1/models/{task}/releases/{metadata_version}"): "admin",
    ("POST", "/api/v1/models/{task}/versions"): "admin",
    ("GET", "/api/v1/models/{task}/versions/{version}"): "admin",
    ("POST", "/api/v1/models/{task}/versions/{version}/promote"): "admin",
    ("POST", "/api/v1/replenishment-plan"): "planner",
    ("GET", "/api/v1/rollouts"): "admin",
    ("POST", "/api/v1/rollouts"): "admin",
    ("GET", "/api/v1/rollouts/{rollout_id}"): "admin",
    ("POST", "/api/v1/rollouts/{rollout_id}/abort"): "admin",
    ("POST", "/api/v1/rollouts/{rollout_id}/pause"): "admin",
    ("POST", "/api/v1/rollouts/{rollout_id}/resume"): "admin",
    ("POST", "/api/v1/rollouts/{rollout_id}/rollback"): "admin",
    ("POST", "/api/v1/routes"): "planner",
    ("POST", "/api/v1/route-jobs"): "planner",
    ("GET", "/api/v1/route-jobs/{job_id}"): "planner",
    ("DELETE", "/api/v1/route-jobs/{job_id}"): "planner",
    ("GET", "/api/v1/route-jobs/{job_id}/result"): "planner",
    ("GET", "/api/v1/route-jobs/{job_id}/result.geojson"): "planner",
    ("GET", "/api/v1/route-jobs/{job_id}/plot.png"): "planner",
    ("GET", "/api/v1/me"): "any",
    ("GET", "/api/v1/route-jobs"): "planner",
    ("GET", "/api/v1/route-jobs/{job_id}/problem"): "planner",
    ("POST", "/api/v1/replenishment-jobs"): "planner",
    ("GET", "/api/v1/fleet"): "reader",
    ("GET", "/api/v1/fleet/{gateway_id}"): "reader",
    ("GET", "/api/v1/alarms"): "reader",
    ("GET", "/api/v1/alarms/flood"): "reader",
    ("POST", "/api/v1/alarms/ack"): "operator",
    ("GET", "/api/v1/alarms/{gateway_id}/{alarm_id}"): "reader",
    ("POST", "/api/v1/alarms/{gateway_id}/{alarm_id}/ack"): "operator",
    ("POST", "/api/v1/alarms/{gateway_id}/{alarm_id}/shelve"): "operator",
    ("POST", "/api/v1/alarms/{gateway_id}/{alarm_id}/unshelve"): "operator",
    ("POST", "/api/v1/alarms/{gateway_id}/{alarm_id}/comments"): "operator",
}

CALLERS: Final = ("none", "wrong", "gateway_own", "gateway_other", "planner", "operator", "admin")
#: Values for path parameters; {gateway_id} is the calling gateway's own or the other one's.
PATH_VALUES: Final = {"task": "anomaly", "version": "1", "metadata_version": "1", "rollout_id": "1",
                      "job_id": "1", "sha256": "0" * 64, "device_id": "cold-1", "site": "berlin",
                      "alarm_id": "alert:a1"}


def _admitted(policy: Policy, caller: str) -> bool:
    if policy == "public":
        return True
    role = {"gateway_own": "gateway", "gateway_other": "gateway"}.get(caller, caller)
    humans = {"admin", "planner", "operator"}
    roles = {"any": humans | {"gateway"}, "admin": {"admin"}, "reader": humans, "planner": {"admin", "planner"},
             "operator": {"admin", "operator"},
             "any_own": humans | {"gateway"}, "gateway_or_admin": {"admin", "gateway"},
             "own_or_admin": {"admin", "gateway"}, "gateway": {"gateway"}}[policy]
    if role not in roles:
        return False
    return not (caller == "gateway_other" and policy in ("any_own", "own_or_admin"))


def _expected_refusal(policy: Policy, caller: str) -> int | None:
    """401/403 when ``caller`` must be refused, None when it is admitted."""
    if _admitted(policy, caller):
        return None
    return 401 if caller in ("none", "wrong") else 403


def _operations(client: TestClient) -> set[tuple[str, str]]:
    paths: dict[str, dict[str, Any]] = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_route_has_a_policy(client: TestClient) -> None:
    ops = _operations(client)
    assert sorted(ops - POLICY.keys()) == [], "routes without an entry in POLICY: decide who may call them"
    assert sorted(POLICY.keys() - ops) == [], "POLICY names routes the API does not have"


def test_authorization_matrix(client: TestClient) -> None:
    own = register(client, "gw-own", "berlin")
    register(client, "gw-other", "hamburg")
    planner = client.post("/api/v1/tokens", json={"role": "planner", "label": "matrix"}, headers=admin_headers())
    assert planner.status_code == 201
    operator = client.post("/api/v1/tokens", json={"role": "operator", "label": "matrix"}, headers=admin_headers())
    assert operator.status_code == 201
    headers = {"none": {}, "wrong": {"Authorization": "Bearer not-a-token-anybody-was-given-0123"},
               "gateway_own": own, "gateway_other": own, "planner": {"Authorization": f"Bearer {planner.json()['token']}"},
               "operator": {"Authorization": f"Bearer {operator.json()['token']}"},
               "admin": admin_headers()}
    checked = 0
    wrong: list[str] = []
    for (method, path), policy in sorted(POLICY.items()):
        for caller in CALLERS:
            values = {**PATH_VALUES, "gateway_id": "gw-other" if caller == "gateway_other" else "gw-own"}
            url = re.sub(r"\{(\w+)\}", lambda m, v=values: v[m.group(1)], path)
            body = {"json": {}} if method in ("POST", "PUT") else {}
            resp = client.request(method, url, headers=headers[caller], **body)
            checked += 1
            refusal = _expected_refusal(policy, caller)
            if refusal is None:
                ok = resp.status_code not in (401, 403) and resp.status_code < 500
            else:
                ok = resp.status_code == refusal
            if not ok:
                wrong.append(f"{method} {url} as {caller}: {resp.status_code} (expected "
                             f"{refusal or 'admitted'}) {resp.text[:120]}")
    assert wrong == []
    assert checked == len(POLICY) * len(CALLERS)


@pytest.mark.parametrize("body", [b"\xff\xfe{", b"{not json"], ids=["not-utf8", "not-json"])
def test_a_body_that_is_not_json_is_answered_after_the_role_check(client: TestClient, body: bytes) -> None:
    gw = register(client, "gw-1")
    ct = {"Content-Type": "application/json"}
    assert client.post("/api/v1/models/train", content=body, headers={**gw, **ct}).status_code == 403
    assert client.post("/api/v1/models/train", content=body, headers=ct).status_code == 401
    resp = client.post("/api/v1/models/train", content=body, headers={**admin_headers(), **ct})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "body"
    assert "not valid JSON" in resp.json()["detail"][0]["message"]


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    resp = client.options("/api/v1/gateways", headers=admin_headers())
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, POST"
    resp = client.delete("/api/v1/rollouts/1/abort", headers=admin_headers())
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
