"""Schemathesis against the cloud's own OpenAPI: no server error, every response as documented.

Every operation of ``create_app`` (on SQLite, served by uvicorn) gets a fixed-seed, bounded set of
generated requests — valid and invalid ones — each sent as an admin, a planner and a gateway.
Work a request may start is kept small (route solves of at most 0.2 s, one queued training job),
so the run fits the default test budget; ``FUZZ_EXAMPLES`` raises the count for a longer run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cloud_testkit import (
    ADMIN_TOKEN,
    alert_record,
    batch,
    forecast_record,
    gz,
    make_settings,
    scan_record,
    telemetry_record,
)
from hypothesis import HealthCheck, settings
from live_cloud import LiveCloud

from cloud.app import create_app

#: Generated requests per operation (each sent once per role); the slow suite may raise it.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
#: The longest route solve a generated request may ask for.
MAX_SOLVE_S = 0.2


def _openapi() -> dict[str, Any]:
    app = create_app(make_settings("sqlite:////nonexistent/only-for-the-schema.db"))
    return app.openapi()


schema = schemathesis.openapi.from_dict(_openapi())


class FuzzCloud:
    def __init__(self, cloud: LiveCloud, headers: dict[str, dict[str, str]]) -> None:
        self.cloud = cloud
        self.headers = headers
        self.requests = 0
        self.statuses: dict[int, int] = {}

    @property
    def url(self) -> str:
        return self.cloud.url


def _seed(url: str) -> dict[str, dict[str, str]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=url, headers=admin, timeout=30) as c:
        tokens = {}
        for gw, site in (("gw-a", "berlin"), ("gw-b", "hamburg")):
            resp = c.post("/api/v1/gateways", json={"gateway_id": gw, "site": site})
            resp.raise_for_status()
            tokens[gw] = resp.json()["token"]
        planner = c.post("/api/v1/tokens", json={"role": "planner", "label": "fuzz"})
        planner.raise_for_status()
        records = [telemetry_record("cold-1", n) for n in range(5)] + [scan_record("reader-1", n) for n in range(3)]
        records += [alert_record("gw-a", 1), forecast_record("gw-a", 1)]
        resp = c.post("/api/v1/sync", content=gz(batch("gw-a", records)),
                      headers={"Authorization": f"Bearer {tokens['gw-a']}", "Content-Encoding": "gzip",
                               "Content-Type": "application/json"})
        resp.raise_for_status()
    return {"admin": admin, "planner": {"Authorization": f"Bearer {planner.json()['token']}"},
            "gateway": {"Authorization": f"Bearer {tokens['gw-a']}"}}


@pytest.fixture(scope="module")
def fuzz_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzCloud]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    settings_ = make_settings(f"sqlite:///{root / 'cloud.db'}", train_workdir=root / "train",
                              max_queued_train_jobs=1, rollout_tick_s=3600)
    with LiveCloud(settings_) as cloud:
        fuzz = FuzzCloud(cloud, _seed(cloud.url))
        yield fuzz
    print(f"\nschemathesis: requests={fuzz.requests} statuses={dict(sorted(fuzz.statuses.items()))}")


def _bound_work(case: Any) -> None:
    """Keep what a generated request may start small (it is still a valid request)."""
    if isinstance(case.query, dict) and "time_limit_s" in case.query:
        value = case.query["time_limit_s"]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_SOLVE_S:
            case.query["time_limit_s"] = MAX_SOLVE_S
    if isinstance(case.body, dict) and "time_limit_s" in case.body:
        value = case.body["time_limit_s"]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_SOLVE_S:
            case.body["time_limit_s"] = MAX_SOLVE_S


#: Schema-valid requests the service refuses on purpose (a record id that does not match its content,
#: a weak token, an unknown cursor, cross-field rules) are not failures: the OpenAPI cannot express
#: those rules. Every other check runs: no 5xx, documented status codes, content types, headers and
#: response bodies, and schema-invalid requests refused.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_as_every_role(case: Any, fuzz_cloud: FuzzCloud) -> None:
    _bound_work(case)
    for headers in fuzz_cloud.headers.values():
        resp = case.call_and_validate(base_url=fuzz_cloud.url, headers=headers, timeout=60, excluded_checks=EXCLUDED)
        fuzz_cloud.requests += 1
        fuzz_cloud.statuses[resp.status_code] = fuzz_cloud.statuses.get(resp.status_code, 0) + 1
