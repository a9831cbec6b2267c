"""Run one claimed route job: solve in a ``python -m cloud.routing.worker`` child, store plan, GeoJSON, plot.

The solve runs in its own interpreter (OR-Tools never meets TensorFlow, and terminating the child
really stops the solve); it streams ``{"progress": [best, fraction]}`` lines, then ``{"plan": …}``
and, for problems with coordinates, ``{"plot_png": base64 | null}``. The worker writes progress and
best cost into the job row while it runs and stores every result in the row, so any API replica
serves them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from cloud.jobs.child import Child
from cloud.jobs.queue import finish, give_back
from cloud.jobs.supervise import JobContext, supervise
from cloud.routing.plan import Plan
from cloud.routing.plot import has_coordinates, to_geojson
from cloud.routing.problem import Problem

log = logging.getLogger(__name__)

#: A solve still running this long after its time limit (plus start-up) is stopped and fails.
OVERRUN_S: Final = 120.0


@dataclass
class _Seen:
    progress: float = 0.0
    best_cost: float | None = None
    plan: Plan | None = None
    plot_png: bytes | None = None


def run_route_job(ctx: JobContext, row: Any, python: str = sys.executable) -> None:
    problem = Problem.model_validate(row.problem)
    coordinates = has_coordinates(problem)
    request = {"problem": row.problem, "time_limit_s": float(row.time_limit_s), "engine": row.engine,
               "seed": int(row.seed), "max_iterations": None, "plot": coordinates, "lifeline": True}
    seen = _Seen()

    def on_line(line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # a library printed to stdout, or the line was cut by a termination
        if not isinstance(message, dict):
            return
        if "progress" in message:
            best, fraction = message["progress"]
            seen.best_cost = float(best) if best is not None else seen.best_cost
            seen.progress = max(seen.progress, min(1.0, float(fraction)))
        elif "plan" in message:
            try:
                seen.plan = Plan.model_validate(message["plan"])
            except ValidationError:
                log.exception("route job %s: the worker sent an invalid plan", ctx.job_id)
        elif message.get("plot_png"):
            try:
                seen.plot_png = base64.b64decode(message["plot_png"], validate=True)
            except (binascii.Error, ValueError):
                log.warning("route job %s: the worker sent an undecodable plot", ctx.job_id)

    child = Child([python, "-m", "cloud.routing.worker"], json.dumps(request))
    try:
        outcome, code = supervise(ctx, child, on_line, lambda: {"progress": seen.progress, "best_cost": seen.best_cost},
                                  timeout_s=float(row.time_limit_s) + OVERRUN_S)
        stderr = child.stderr_tail()
    finally:
        child.close()
    q, job_id, worker = ctx.queue, ctx.job_id, ctx.worker
    if outcome == "stopped":
        give_back(ctx.engine, q, job_id, worker)
        log.info("route job %s queued again: this worker stopped", job_id)
    elif outcome in ("cancelled", "lost"):
        log.info("route job %s stopped: %s", job_id, outcome)
    elif outcome == "timed_out":
        finish(ctx.engine, q, job_id, worker, "failed",
               error=f"the solver ran {OVERRUN_S:g} s past its time limit of {row.time_limit_s:g} s and was stopped")
    elif code != 0 or seen.plan is None:
        finish(ctx.engine, q, job_id, worker, "failed", error=f"routing worker failed (exit {code}): {stderr}")
    else:
        plan = seen.plan
        best = plan.total_cost if plan.status != "no_solution" else seen.best_cost
        finish(ctx.engine, q, job_id, worker, "done", progress=1.0, best_cost=best, plan=plan.model_dump(mode="json"),
               geojson=to_geojson(problem, plan) if coordinates else None, plot_png=seen.plot_png)
