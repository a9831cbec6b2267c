"""Bad input gets a clear 4xx naming the field: integers past the API's range, loose types, bodies."""

from __future__ import annotations

import pytest
from cloud_testkit import GATEWAY_ID, admin_headers, batch, gz, telemetry_record
from fastapi.testclient import TestClient


@pytest.mark.parametrize("url", [
    "/api/v1/alerts?since=9223372036854775808", "/api/v1/forecasts?since=9223372036854775808",
    "/api/v1/rollouts/9223372036854775808", "/api/v1/models/jobs/" + "9" * 25,
    "/api/v1/models/anomaly/releases/9223372036854775808", "/api/v1/models/anomaly/versions/9007199254740992",
])
def test_integers_past_the_api_range_are_422_naming_the_parameter(client: TestClient, url: str) -> None:
    resp = client.get(url, headers=admin_headers())
    assert resp.status_code == 422, resp.text
    name = {"since": "since", "rollouts": "rollout_id", "jobs": "job_id", "releases": "metadata_version",
            "versions": "version"}
    expected = next(v for k, v in name.items() if k in url)
    assert resp.json()["detail"][0]["field"] == expected
    for action in ("abort", "pause", "resume", "rollback"):
        resp = client.post(f"/api/v1/rollouts/18446744073709551617/{action}", headers=admin_headers())
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "rollout_id"
    assert client.delete("/api/v1/models/jobs/" + "9" * 25, headers=admin_headers()).status_code == 422


def test_train_request_is_strict(client: TestClient) -> None:
    resp = client.post("/api/v1/models/train", json={"task": "anomaly", "epochs": True, "data_from_ts": False},
                       headers=admin_headers())
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["detail"]} == {"epochs", "data_from_ts"}


def test_an_invalid_record_gets_one_error(client: TestClient, gw_headers: dict) -> None:
    bad = telemetry_record("cold-1", 1)
    bad["msg"]["body"]["readings"][0]["value"] = 999.0
    resp = client.post("/api/v1/sync", content=gz(batch(GATEWAY_ID, [bad])),
                       headers={**gw_headers, "Content-Encoding": "gzip"})
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["detail"]] == ["records.0.msg.body.readings.0"]


def test_an_unknown_query_parameter_is_422_naming_it(client: TestClient, gw_headers: dict) -> None:
    resp = client.get("/api/v1/alerts?gateway=gw-a", headers=admin_headers())
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["field"] == "gateway"
    assert "gateway_id" in resp.json()["detail"][0]["message"]
    assert client.get("/api/v1/alerts?gateway_id=gw-a&limit=5", headers=admin_headers()).status_code == 200
    # the role check still comes first
    assert client.get("/api/v1/models/jobs?bogus=1", headers=gw_headers).status_code == 403
    assert client.get("/api/v1/models/jobs?bogus=1").status_code == 401


def test_a_query_parameter_given_twice_is_422_naming_it(client: TestClient, gw_headers: dict) -> None:
    resp = client.get("/api/v1/alarms/flood?site=a&site=b", headers=admin_headers())
    assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "site"
    assert client.get("/api/v1/alarms/flood?site=a&site=b", headers=gw_headers).status_code == 403
