"""Replenishment planning for planners: delivery orders from the latest forecasts, routed in one call.

See :mod:`cloud.services.replenishment` for how quantities are computed (P90 over the lead time
minus stock on hand, rounded up). Validation errors answer 422 naming the request field at fault
(``stores.2.location``, ``lead_time_days``, ``vehicles.0.start_depot``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import Engine as Database

from cloud.api.routes import PlannerDep, SolverDep, located_error
from cloud.deps import EngineDep
from cloud.errors import ErrorBody
from cloud.routing.problem import Problem
from cloud.services import replenishment as service
from cloud.services import route_jobs as jobs
from cloud.services.replenishment import ReplenishmentPlan, ReplenishmentRequest, StorePlan
from cloud.services.route_jobs import JOB_MAX_TIME_LIMIT_S, RouteJobInfo

router = APIRouter(prefix="/api/v1", tags=["replenishment"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422, 429)}
TimeLimit = Annotated[float | None, Query(gt=0, le=JOB_MAX_TIME_LIMIT_S,
                                          description="the job's solve time; default the request's time_limit_s")]

RequestBody = Annotated[dict[str, Any],
                        Body(description="a ReplenishmentRequest (cloud.services.replenishment)")]


def _validated(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([located_error(e) for e in exc.errors(include_url=False)])


def _problem(engine: Database, body: dict[str, Any]) -> tuple[ReplenishmentRequest, tuple[StorePlan, ...], Problem]:
    try:
        request = ReplenishmentRequest.model_validate(body)
    except ValidationError as exc:
        raise _validated(exc) from exc
    stores = service.plan_stores(engine, request)
    try:
        problem = service.build_problem(request, stores)
    except ValidationError as exc:
        raise _validated(exc) from exc
    return request, stores, problem


@router.post("/replenishment-jobs", status_code=202, response_model=RouteJobInfo, responses=_ERRORS)
def replenishment_job(body: RequestBody, planner: PlannerDep, engine: EngineDep, response: Response,
                      time_limit_s: TimeLimit = None) -> RouteJobInfo:
    """The same orders from the latest forecasts, routed by a route job (progress, best cost, cancel)."""
    request, _stores, problem = _problem(engine, body)
    info = jobs.submit(engine, problem, time_limit_s or request.time_limit_s, request.engine, request.seed,
                       created_by=planner.label)
    response.headers["Location"] = f"{router.prefix}/route-jobs/{info.id}"
    return info


@router.post("/replenishment-plan", response_model=ReplenishmentPlan, responses=_ERRORS)
def replenishment_plan(body: RequestBody, _planner: PlannerDep, engine: EngineDep,
                       solver: SolverDep) -> ReplenishmentPlan:
    """Order quantities per store and SKU from the latest forecasts, and the delivery routes."""
    request, stores, problem = _problem(engine, body)
    plan = solver.solve_now(problem, request.time_limit_s, request.engine, request.seed)
    return ReplenishmentPlan(lead_time_days=request.lead_time_days, dimensions=request.dimensions,
                             stores=stores, problem=problem, plan=plan)
