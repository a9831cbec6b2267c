"""The API process's cache of stored tokens found (``cloud.auth.PrincipalCache``, setting ``auth_cache_s``):
a gateway's second request runs no token query; unknown tokens are never kept; entries expire and are bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from cloud_testkit import GATEWAY_ID, batch, make_settings, register, telemetry_record
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from cloud.app import create_app
from cloud.auth import Principal, PrincipalCache


def _token_queries(engine: Engine) -> list[str]:
    seen: list[str] = []

    def watch(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM api_tokens" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", watch)
    return seen


@pytest.fixture
def cached_client(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, auth_cache_s=30))) as c:
        yield c


def test_a_gateway_token_is_looked_up_once(cached_client: TestClient) -> None:
    headers = register(cached_client, GATEWAY_ID)
    queries = _token_queries(cached_client.app.state.cloud.engine)  # type: ignore[attr-defined]
    for seq in range(3):
        resp = cached_client.post("/api/v1/sync", json=batch(GATEWAY_ID, [telemetry_record(seq=seq)], f"b{seq}"),
                                  headers=headers)
        assert resp.status_code == 200, resp.text
    assert len(queries) == 1


def test_an_unknown_token_is_not_kept(cached_client: TestClient) -> None:
    queries = _token_queries(cached_client.app.state.cloud.engine)  # type: ignore[attr-defined]
    for _ in range(2):
        resp = cached_client.get("/api/v1/gateways", headers={"Authorization": "Bearer not-a-token-at-all"})
        assert resp.status_code == 401
    assert len(queries) == 2


def test_no_cache_when_switched_off(database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, auth_cache_s=0))) as c:
        headers = register(c, GATEWAY_ID)
        assert c.app.state.cloud.principals is None  # type: ignore[attr-defined]
        queries = _token_queries(c.app.state.cloud.engine)  # type: ignore[attr-defined]
        for seq in range(2):
            resp = c.post("/api/v1/sync", json=batch(GATEWAY_ID, [telemetry_record(seq=seq)], f"b{seq}"),
                          headers=headers)
            assert resp.status_code == 200, resp.text
        assert len(queries) == 2


def test_entries_expire_and_are_bounded() -> None:
    p = Principal(role="gateway", gateway_id="gw-1", token_id=1)
    cache = PrincipalCache(ttl_s=0.05, max_entries=2)
    cache.put("a", p)
    assert cache.get("a") == p
    time.sleep(0.06)
    assert cache.get("a") is None
    for key in ("a", "b", "c"):
        cache.put(key, p)
    assert cache.get("a") is None and cache.get("b") == p and cache.get("c") == p
