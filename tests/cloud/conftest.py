"""Fixtures: every test using ``client`` runs against SQLite and against a throwaway PostgreSQL database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloud_testkit import make_settings, register
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, inspect, text

from cloud.app import create_app
from cloud.db import rollups
from cloud.db.tables import metadata
from cloud.settings import CloudSettings
from tests.helpers.postgres import fresh_database


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_database() as url:
        yield url


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            names = [f'"{t.name}"' for t in metadata.sorted_tables if t.name in existing]
            if names:
                conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
            if rollups.rollup_watermark.name in existing:  # as migration 0012 left it
                rollups.start_watermark(conn, int(time.time() * 1000))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cloud.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    _empty_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> CloudSettings:
    return make_settings(database_url)


@pytest.fixture
def client(settings: CloudSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def engine(client: TestClient) -> Engine:
    """The running app's engine, to check what is stored."""
    eng = client.app.state.cloud.engine  # type: ignore[attr-defined]
    assert eng is not None
    return eng


@pytest.fixture
def gw_headers(client: TestClient) -> dict[str, str]:
    return register(client)
