"""Queries over the ``route_jobs`` rows the API reads and inserts (claims and leases are ``cloud.jobs.queue``'s).

The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

from sqlalchemy import Connection, Row, func, select

from cloud.db.job_tables import route_jobs

#: The columns of a job's status (its results are read on their own: they can be large).
_INFO_COLUMNS: Final = [route_jobs.c[name] for name in (
    "job_id", "state", "progress", "best_cost", "error", "engine", "time_limit_s", "seed", "created_ts", "started_ts",
    "finished_ts", "attempts")]
Result = Literal["plan", "geojson", "plot_png"]


def count_in_states(conn: Connection, states: Sequence[str]) -> int:
    return int(conn.execute(select(func.count()).select_from(route_jobs)
                            .where(route_jobs.c.state.in_(list(states)))).scalar_one())


def insert(conn: Connection, *, job_id: str, engine: str, time_limit_s: float, seed: int, problem: dict[str, Any],
           created_by: str, now: int) -> None:
    """A queued job."""
    conn.execute(route_jobs.insert().values(
        job_id=job_id, state="queued", engine=engine, time_limit_s=time_limit_s, seed=seed, problem=problem,
        progress=0.0, created_by=created_by, created_ts=now))


def info(conn: Connection, job_id: str) -> Row[Any] | None:
    """The job's status columns."""
    return conn.execute(select(*_INFO_COLUMNS).where(route_jobs.c.job_id == job_id)).first()


def _problem_facts(conn: Connection) -> list[Any]:
    """The problem's name and its numbers of orders and vehicles, read by the database (a problem of
    1,000 orders is large: the job list never loads it)."""
    doc = route_jobs.c.problem
    if conn.dialect.name == "sqlite":
        return [func.json_extract(doc, "$.name").label("problem_name"),
                func.json_array_length(doc, "$.orders").label("n_orders"),
                func.json_array_length(doc, "$.vehicles").label("n_vehicles")]
    return [doc.op("->>")("name").label("problem_name"),
            func.json_array_length(doc.op("->")("orders")).label("n_orders"),
            func.json_array_length(doc.op("->")("vehicles")).label("n_vehicles")]


def newest(conn: Connection, limit: int) -> list[Row[Any]]:
    """The status columns, ``problem_name``, ``n_orders``, ``n_vehicles`` and ``created_by`` of the newest
    ``limit`` jobs, newest first."""
    return list(conn.execute(select(*_INFO_COLUMNS, *_problem_facts(conn), route_jobs.c.created_by)
                             .order_by(route_jobs.c.created_ts.desc(), route_jobs.c.job_id).limit(limit)).all())


def problem(conn: Connection, job_id: str) -> Any | None:
    """The problem the job was submitted with (JSON), None when there is no such job."""
    row = conn.execute(select(route_jobs.c.problem).where(route_jobs.c.job_id == job_id)).first()
    return None if row is None else row.problem


def with_result(conn: Connection, job_id: str, result: Result) -> Row[Any] | None:
    """``state``, ``problem`` and the ``result`` column of the job."""
    return conn.execute(select(route_jobs.c.state, route_jobs.c.problem, route_jobs.c[result])
                        .where(route_jobs.c.job_id == job_id)).first()
