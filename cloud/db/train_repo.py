"""Queries of retraining: rows of ``train_jobs`` and the training data read from the record tables.

The caller owns the transaction. Claiming, leases and recovery of the jobs are ``cloud.jobs.queue``'s.
Timestamps are milliseconds since the epoch; ranges are ``[from_ts, to_ts)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from sqlalchemy import Connection, Row, Select, func, select, update

from cloud.db.job_tables import train_job_artifacts, train_jobs
from cloud.db.tables import gateways, readings, scans

DAY_MS: Final = 86_400_000

# train jobs ----------------------------------------------------------------------------------


def insert_job(conn: Connection, *, task: str, scope: str, params: Mapping[str, Any], created_by: str,
               now: int) -> int:
    """A queued job; its job_id."""
    key = conn.execute(
        train_jobs.insert().values(
            task=task, scope=scope, state="queued", progress=0.0, message="queued", log=[], params=dict(params),
            created_by=created_by, created_ts=now,
        )
    ).inserted_primary_key
    assert key is not None
    return int(key[0])


def get_job(conn: Connection, job_id: int) -> Row[Any] | None:
    return conn.execute(select(train_jobs).where(train_jobs.c.job_id == job_id)).first()


def list_jobs(conn: Connection, task: str | None, state: str | None, limit: int) -> list[Row[Any]]:
    """At most ``limit`` jobs, newest first, optionally of one task and/or in one state."""
    stmt = select(train_jobs).order_by(train_jobs.c.job_id.desc()).limit(limit)
    if task is not None:
        stmt = stmt.where(train_jobs.c.task == task)
    if state is not None:
        stmt = stmt.where(train_jobs.c.state == state)
    return list(conn.execute(stmt))


def count_in_state(conn: Connection, state: str) -> int:
    return int(conn.execute(select(func.count()).select_from(train_jobs)
                            .where(train_jobs.c.state == state)).scalar_one())


def transition(conn: Connection, job_id: int, from_states: Iterable[str], **values: Any) -> bool:
    """Set ``values`` if the job is in one of ``from_states``; whether it was."""
    result = conn.execute(
        update(train_jobs)
        .where(train_jobs.c.job_id == job_id, train_jobs.c.state.in_(list(from_states)))
        .values(**values)
    )
    return bool(result.rowcount)


def candidate_artifact(conn: Connection, task: str, candidate_version: int, name: str) -> bytes | None:
    """The artifact ``name`` that the succeeded job which produced that candidate stored, None without one."""
    data = conn.execute(
        select(train_job_artifacts.c.data)
        .join(train_jobs, train_jobs.c.job_id == train_job_artifacts.c.job_id)
        .where(train_jobs.c.task == task, train_jobs.c.candidate_version == candidate_version,
               train_jobs.c.state == "succeeded", train_job_artifacts.c.name == name)
    ).scalar()
    return None if data is None else bytes(data)


def replace_artifacts(conn: Connection, job_id: int, files: list[tuple[str, bytes]], now: int) -> None:
    """The job's artifacts become exactly ``files`` (name, data)."""
    conn.execute(train_job_artifacts.delete().where(train_job_artifacts.c.job_id == job_id))
    for name, data in files:
        conn.execute(train_job_artifacts.insert().values(job_id=job_id, name=name, size_bytes=len(data), data=data,
                                                         created_ts=now))


def site_has_gateway(conn: Connection, site: str) -> bool:
    """Whether a gateway is registered at ``site``."""
    return conn.execute(select(gateways.c.gateway_id).where(gateways.c.site == site).limit(1)).first() is not None


# training data -------------------------------------------------------------------------------


def _in_range(stmt: Select[tuple[object, ...]], ts: object, from_ts: int | None, to_ts: int | None
              ) -> Select[tuple[object, ...]]:
    if from_ts is not None:
        stmt = stmt.where(ts >= from_ts)  # type: ignore[operator]
    if to_ts is not None:
        stmt = stmt.where(ts < to_ts)  # type: ignore[operator]
    return stmt


def reading_rows(conn: Connection, site: str | None, from_ts: int | None, to_ts: int | None
                 ) -> Iterator[Row[Any]]:
    """Rows (device_id, metric, ts, value) of the scope's readings, ordered by series then ts, streamed."""
    stmt = select(readings.c.device_id, readings.c.metric, readings.c.ts, readings.c.value)
    if site is not None:
        stmt = (
            stmt.join(gateways, gateways.c.gateway_id == readings.c.gateway_id)
            .where(gateways.c.site == site)
        )
    stmt = _in_range(stmt, readings.c.ts, from_ts, to_ts)
    stmt = stmt.order_by(readings.c.device_id, readings.c.metric, readings.c.ts, readings.c.gateway_id,
                         readings.c.record_id)
    yield from conn.execution_options(yield_per=10_000).execute(stmt)


def daily_unit_rows(conn: Connection, direction: str, site: str | None, from_ts: int | None, to_ts: int | None
                    ) -> list[tuple[str, str, int, float]]:
    """(site, sku, UTC day number, units) of the ``direction`` scans, one row per (site, sku, day)."""
    day = (scans.c.ts // DAY_MS).label("day")  # integer division on both backends (ts >= 0)
    stmt = (
        select(gateways.c.site, scans.c.sku, day, func.sum(scans.c.qty))
        .join(gateways, gateways.c.gateway_id == scans.c.gateway_id)
        .where(scans.c.direction == direction)
    )
    if site is not None:
        stmt = stmt.where(gateways.c.site == site)
    stmt = _in_range(stmt, scans.c.ts, from_ts, to_ts).group_by(gateways.c.site, scans.c.sku, day)
    return [(row_site, sku, d, units) for row_site, sku, d, units in conn.execute(stmt)]
