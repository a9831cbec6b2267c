"""Delivery route planning for planners: synchronous solves of small problems, background jobs for big ones.

The request body is the routing ``Problem`` JSON; ``time_limit_s``, ``engine`` and ``seed`` are
query parameters. A problem that fails validation answers 422 with the path of the field at fault
(``orders.3.time_windows.0``), in the usual error format.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from cloud.auth import Principal, require_role
from cloud.deps import EngineDep, get_route_solver
from cloud.errors import ErrorBody
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem
from cloud.routing.service import Engine
from cloud.services import route_jobs as jobs
from cloud.services.route_jobs import (
    JOB_MAX_TIME_LIMIT_S,
    SYNC_MAX_TIME_LIMIT_S,
    RouteJobInfo,
    RouteJobSummary,
    RouteSolver,
)

router = APIRouter(prefix="/api/v1", tags=["routes"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 429)}

#: A leading ``path: `` in a problem validator's message, e.g. ``orders[3].time_windows[0]: ...``.
_MESSAGE_PATH: Final = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*): (.+)$", re.DOTALL)
_PATH_PART: Final = re.compile(r"[A-Za-z_]\w*|\d+")
_TRAVEL_KINDS: Final = frozenset({"haversine", "euclidean", "matrix"})

PlannerDep = Annotated[Principal, Depends(require_role("admin", "planner"))]
ProblemBody = Annotated[dict[str, Any], Body(description="the routing Problem (cloud.routing.problem.Problem)")]
EngineQuery = Annotated[Engine, Query(description="auto (OR-Tools, then PyVRP), ortools or pyvrp")]
SeedQuery = Annotated[int, Query(ge=0, le=2**31 - 1)]
JobId = Annotated[str, Path(min_length=1, max_length=64)]


SolverDep = Annotated[RouteSolver, Depends(get_route_solver)]


def located_error(err: Any) -> dict[str, Any]:
    """One pydantic error on a planner request (routing problem, replenishment request), its location completed from the message's leading path."""
    loc = [p for i, p in enumerate(err["loc"]) if not (i == 1 and err["loc"][0] == "travel" and p in _TRAVEL_KINDS)]
    message = str(err["msg"]).removeprefix("Value error, ")
    match = _MESSAGE_PATH.match(message)
    if match is not None:
        loc += [int(p) if p.isdigit() else p for p in _PATH_PART.findall(match.group(1))]
        message = match.group(2)
    return {"loc": ("body", *loc), "msg": message, "type": err["type"]}


def parse_problem(body: dict[str, Any]) -> Problem:
    try:
        return Problem.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError([located_error(e) for e in exc.errors(include_url=False)]) from exc


@router.post("/routes", response_model=Plan, responses=_ERRORS)
def solve_routes(
    body: ProblemBody,
    _planner: PlannerDep,
    solver: SolverDep,
    time_limit_s: Annotated[float, Query(gt=0, le=SYNC_MAX_TIME_LIMIT_S)] = 10.0,
    engine: EngineQuery = "auto",
    seed: SeedQuery = 0,
) -> Plan:
    """Solve a small problem within the request (at most 30 s); use route jobs for bigger ones."""
    return solver.solve_now(parse_problem(body), time_limit_s, engine, seed)


@router.post("/route-jobs", status_code=202, response_model=RouteJobInfo, responses=_ERRORS)
def create_route_job(
    body: ProblemBody,
    planner: PlannerDep,
    db: EngineDep,
    response: Response,
    time_limit_s: Annotated[float, Query(gt=0, le=JOB_MAX_TIME_LIMIT_S)] = 60.0,
    engine: EngineQuery = "auto",
    seed: SeedQuery = 0,
) -> RouteJobInfo:
    """Queue a solve (any worker takes it); poll ``GET /api/v1/route-jobs/{id}`` for its status and progress."""
    info = jobs.submit(db, parse_problem(body), time_limit_s, engine, seed, created_by=planner.label)
    response.headers["Location"] = f"{router.prefix}/route-jobs/{info.id}"
    return info


@router.get("/route-jobs", response_model=list[RouteJobSummary], responses=_ERRORS)
def list_route_jobs(_planner: PlannerDep, db: EngineDep,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RouteJobSummary]:
    """The newest jobs first, with their problem's name, orders and vehicles."""
    return jobs.list_jobs(db, limit)


@router.get("/route-jobs/{job_id}/problem", response_model=Problem, responses=_ERRORS)
def get_route_job_problem(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> Problem:
    """The problem the job solves (locations, time windows, vehicles: what the console draws)."""
    return jobs.problem(db, job_id)


@router.get("/route-jobs/{job_id}", response_model=RouteJobInfo, responses=_ERRORS)
def get_route_job(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> RouteJobInfo:
    """Status (queued, running, done, failed, cancelled), progress fraction, best cost so far, error."""
    return jobs.get(db, job_id)


@router.delete("/route-jobs/{job_id}", response_model=RouteJobInfo, responses=_ERRORS)
def cancel_route_job(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> RouteJobInfo:
    """Cancel a queued or running job; its solver process is stopped. 409 once it is done or failed."""
    return jobs.cancel(db, job_id)


@router.get("/route-jobs/{job_id}/result", response_model=Plan, responses=_ERRORS)
def get_route_job_result(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> Plan:
    """The plan of a finished job (409 while it is not done)."""
    return jobs.result(db, job_id)


@router.get("/route-jobs/{job_id}/result.geojson", responses=_ERRORS)
def get_route_job_geojson(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> Response:
    """The plan as a GeoJSON FeatureCollection: a LineString per route, a Point per unserved order."""
    return Response(json.dumps(jobs.geojson(db, job_id)), media_type="application/geo+json")


@router.get("/route-jobs/{job_id}/plot.png", responses={**_ERRORS, 200: {"content": {"image/png": {}}}},
            response_class=Response)
def get_route_job_plot(job_id: JobId, _planner: PlannerDep, db: EngineDep) -> Response:
    """The routes drawn as a PNG."""
    return Response(jobs.plot(db, job_id), media_type="image/png")
