"""Route planning for the API: bounded synchronous solves, and route jobs kept in the ``route_jobs`` table.

A job is a row: the API inserts it (queued), any worker (cloud.jobs) claims and solves it and stores
progress, best cost, plan, GeoJSON and plot in the row, and any API replica reads them or cancels it.
The API holds no job state of its own; :class:`RouteSolver` only bounds the synchronous solves this
process runs at once.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, func, select

from cloud.clock import now_ms
from cloud.db.engine import reader
from cloud.db.job_tables import route_jobs
from cloud.jobs.queue import ROUTE
from cloud.jobs.queue import cancel as cancel_job
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem
from cloud.routing.service import Engine as SolverEngine
from cloud.routing.service import solve
from cloud.services.errors import Conflict, NotFound, ServiceError

SYNC_MAX_TIME_LIMIT_S: Final = 30.0
JOB_MAX_TIME_LIMIT_S: Final = 600.0
DEFAULT_SYNC_SOLVES: Final = 2
#: Jobs queued or running at once; more are refused with 429 (checked per request: a soft bound).
MAX_ACTIVE_JOBS: Final = 64
#: How long a synchronous solve waits for a free slot before it is refused with 429.
SYNC_SLOT_WAIT_S: Final = 5.0

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class TooBusy(ServiceError):
    status_code = 429


class Unavailable(ServiceError):
    status_code = 501


class RouteJobInfo(BaseModel):
    """What a caller sees of a job."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: JobStatus
    progress: float
    best_cost: float | None
    error: str | None
    engine: SolverEngine
    time_limit_s: float
    seed: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    #: Times a worker took the job (more than 1 after a worker died while solving it).
    attempts: int = 0


class RouteJobSummary(RouteJobInfo):
    """A job in a list: its info and what it solves."""

    problem_name: str
    orders: int
    vehicles: int
    created_by: str


class RouteSolver:
    """At most ``slots`` synchronous solves in this process at once (no job state)."""

    def __init__(self, slots: int = DEFAULT_SYNC_SOLVES) -> None:
        if slots < 1:
            raise ValueError("slots: must be at least 1")
        self._slots = threading.BoundedSemaphore(slots)

    def solve_now(self, problem: Problem, time_limit_s: float, engine: SolverEngine, seed: int) -> Plan:
        if not 0 < time_limit_s <= SYNC_MAX_TIME_LIMIT_S:
            raise ServiceError(f"must be in (0, {SYNC_MAX_TIME_LIMIT_S:g}] seconds", field="time_limit_s")
        if not self._slots.acquire(timeout=SYNC_SLOT_WAIT_S):
            raise TooBusy("too many synchronous solves running; retry later or submit a route job")
        try:
            return solve(problem, time_limit_s, engine, seed)
        finally:
            self._slots.release()


_INFO_COLUMNS: Final = [route_jobs.c[name] for name in (
    "job_id", "state", "progress", "best_cost", "error", "engine", "time_limit_s", "seed", "created_ts", "started_ts",
    "finished_ts", "attempts")]


def _info(row: Any) -> RouteJobInfo:
    def seconds(ms: int | None) -> float | None:
        return None if ms is None else ms / 1000

    return RouteJobInfo(
        id=row.job_id, status=row.state, progress=float(row.progress), best_cost=row.best_cost, error=row.error,
        engine=row.engine, time_limit_s=float(row.time_limit_s), seed=int(row.seed), created_at=row.created_ts / 1000,
        started_at=seconds(row.started_ts), finished_at=seconds(row.finished_ts), attempts=int(row.attempts),
    )


def submit(db: Engine, problem: Problem, time_limit_s: float, engine: SolverEngine, seed: int,
           created_by: str = "api") -> RouteJobInfo:
    if not 0 < time_limit_s <= JOB_MAX_TIME_LIMIT_S:
        raise ServiceError(f"must be in (0, {JOB_MAX_TIME_LIMIT_S:g}] seconds", field="time_limit_s")
    with reader(db) as conn:
        active = conn.execute(select(func.count()).select_from(route_jobs)
                              .where(route_jobs.c.state.in_(["queued", "running"]))).scalar_one()
    if active >= MAX_ACTIVE_JOBS:
        raise TooBusy(f"{active} route jobs are queued or running; retry later")
    job_id = secrets.token_hex(12)
    with db.begin() as conn:
        conn.execute(route_jobs.insert().values(
            job_id=job_id, state="queued", engine=engine, time_limit_s=time_limit_s, seed=seed,
            problem=problem.model_dump(mode="json"), progress=0.0, created_by=created_by, created_ts=now_ms()))
    return get(db, job_id)


def get(db: Engine, job_id: str) -> RouteJobInfo:
    with reader(db) as conn:
        row = conn.execute(select(*_INFO_COLUMNS).where(route_jobs.c.job_id == job_id)).first()
    if row is None:
        raise NotFound(f"no route job {job_id!r}", field="id")
    return _info(row)


def _problem_facts(db: Engine) -> list[Any]:
    """The problem's name and its numbers of orders and vehicles, read by the database (a problem of
    1,000 orders is large: the job list never loads it)."""
    doc = route_jobs.c.problem
    if db.dialect.name == "sqlite":
        return [func.json_extract(doc, "$.name").label("problem_name"),
                func.json_array_length(doc, "$.orders").label("n_orders"),
                func.json_array_length(doc, "$.vehicles").label("n_vehicles")]
    return [doc.op("->>")("name").label("problem_name"),
            func.json_array_length(doc.op("->")("orders")).label("n_orders"),
            func.json_array_length(doc.op("->")("vehicles")).label("n_vehicles")]


def list_jobs(db: Engine, limit: int = 50) -> list[RouteJobSummary]:
    """The newest jobs first, with their problem's name and size (the console's job list)."""
    with reader(db) as conn:
        rows = conn.execute(select(*_INFO_COLUMNS, *_problem_facts(db), route_jobs.c.created_by)
                            .order_by(route_jobs.c.created_ts.desc(), route_jobs.c.job_id).limit(limit)).all()
    return [RouteJobSummary(**_info(r).model_dump(), problem_name=str(r.problem_name or "problem"),
                            orders=int(r.n_orders or 0), vehicles=int(r.n_vehicles or 0), created_by=r.created_by)
            for r in rows]


def problem(db: Engine, job_id: str) -> Problem:
    """The problem a job solves (as submitted, validated)."""
    with reader(db) as conn:
        row = conn.execute(select(route_jobs.c.problem).where(route_jobs.c.job_id == job_id)).first()
    if row is None:
        raise NotFound(f"no route job {job_id!r}", field="id")
    return Problem.model_validate(row.problem)


def cancel(db: Engine, job_id: str) -> RouteJobInfo:
    """Cancel a queued or running job (its worker stops the solver process); 409 once it has finished."""
    before = cancel_job(db, ROUTE, job_id)
    if before is None:
        raise NotFound(f"no route job {job_id!r}", field="id")
    if before in ("done", "failed"):
        raise Conflict(f"job is already {before}", field="id")
    return get(db, job_id)


def _finished(db: Engine, job_id: str, *columns: Any) -> Any:
    with reader(db) as conn:
        row = conn.execute(select(route_jobs.c.state, route_jobs.c.problem, *columns)
                           .where(route_jobs.c.job_id == job_id)).first()
    if row is None:
        raise NotFound(f"no route job {job_id!r}", field="id")
    if row.state != "done":
        raise Conflict(f"job is {row.state}: no result", field="id")
    return row


def result(db: Engine, job_id: str) -> Plan:
    return Plan.model_validate(_finished(db, job_id, route_jobs.c.plan).plan)


def _require_coordinates(problem: dict[str, Any]) -> None:
    if problem.get("travel", {}).get("kind") == "matrix":  # as cloud.routing.plot.has_coordinates
        raise Conflict("the problem uses matrix travel: its locations have no coordinates", field="travel")


def geojson(db: Engine, job_id: str) -> dict[str, Any]:
    row = _finished(db, job_id, route_jobs.c.geojson)
    _require_coordinates(row.problem)
    return dict(row.geojson)


def plot(db: Engine, job_id: str) -> bytes:
    row = _finished(db, job_id, route_jobs.c.plot_png)
    _require_coordinates(row.problem)
    if row.plot_png is None:
        raise Unavailable("plots need matplotlib, which is not installed where the job was solved")
    return bytes(row.plot_png)
