"""The routing service: ``solve(problem, ...)`` is what the API, the CLI and the benches call."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cloud.routing.compiled import Compiled, compile_problem
from cloud.routing.diagnose import unserved_list
from cloud.routing.engine import EngineResult, Progress
from cloud.routing.engines import AUTO, ENGINES, EngineName, RoutingEngine, engine_named
from cloud.routing.isolation import ortools_unsafe_here, solve_in_subprocess
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem
from cloud.routing.schedule import build_plan

Engine = EngineName  # the name callers import from here
AUTO_ORTOOLS_SHARE = 0.1  # auto: OR-Tools secures a plan first, PyVRP improves in the rest
AUTO_MIN_RACE_S = 1.0  # below this, auto runs OR-Tools alone
PROGRESS_INTERVAL_S = 0.1  # at most this often without an improvement


@dataclass
class _Reporter:
    """Forwards monotone (best cost, fraction of the whole request) progress to the caller."""

    sink: Progress | None
    offset: float = 0.0
    share: float = 1.0
    best: float | None = None
    last_sent: float = 0.0

    def slice(self, offset: float, share: float) -> _Reporter:
        self.offset, self.share = offset, share
        return self

    def __call__(self, cost: float | None, fraction: float) -> None:
        improved = cost is not None and (self.best is None or cost < self.best)
        if improved:
            self.best = cost
        now = time.perf_counter()
        if self.sink is not None and (
            improved or now - self.last_sent >= PROGRESS_INTERVAL_S or fraction >= 1.0
        ):
            self.last_sent = now
            self.sink(self.best, min(1.0, self.offset + self.share * fraction))


def _to_plan(c: Compiled, r: EngineResult, engine: str, limit: float, seed: int, elapsed: float) -> Plan:
    if not r.found:
        unserved = unserved_list(c, list(range(len(c.orders))), "time_limit_no_solution")
        return build_plan(
            c,
            [],
            unserved,
            engine=engine,
            solve_time_s=elapsed,
            time_limit_s=limit,
            seed=seed,
            no_solution=True,
        )
    unserved = unserved_list(c, list(r.dropped))
    return build_plan(
        c, list(r.routes), unserved, engine=engine, solve_time_s=elapsed, time_limit_s=limit, seed=seed
    )


def plan_rank(c: Compiled, plan: Plan) -> tuple[int, int, float]:
    """Smaller is better: has a solution, then required orders served, then total cost."""
    index = c.problem.order_index()
    missing = sum(1 for u in plan.unserved if c.orders[index[u.order_id]].required)
    return (1 if plan.status == "no_solution" else 0, missing, plan.total_cost)


def _run(engine: RoutingEngine, c: Compiled, limit: float, seed: int, report: _Reporter,
         max_iterations: int | None, t0: float, label: str | None = None, limit_reported: float | None = None
         ) -> Plan:
    r = engine.solve(c, limit, seed, report, max_iterations)
    return _to_plan(c, r, label or engine.name, limit_reported or limit, seed, time.perf_counter() - t0)


def _auto(
    c: Compiled, limit: float, seed: int, report: _Reporter, max_iterations: int | None, t0: float
) -> Plan:
    """OR-Tools secures a plan in a share of the time, PyVRP improves in the rest; the better plan wins."""
    first_engine, second_engine = ENGINES["ortools"], ENGINES["pyvrp"]
    if second_engine.unsupported(c) is not None or limit < AUTO_MIN_RACE_S:
        return _run(first_engine, c, limit, seed, report, max_iterations, t0, label=f"{AUTO}:{first_engine.name}")
    first = first_engine.solve(c, limit * AUTO_ORTOOLS_SHARE, seed, report.slice(0.0, AUTO_ORTOOLS_SHARE),
                               max_iterations)
    rest = max(0.05, limit - (time.perf_counter() - t0))
    second = second_engine.solve(c, rest, seed, report.slice(1.0 - rest / limit, rest / limit), max_iterations)
    elapsed = time.perf_counter() - t0
    plans = [_to_plan(c, r, f"{AUTO}:{r.engine}", limit, seed, elapsed) for r in (first, second) if r.found]
    if not plans:
        return _to_plan(c, first, AUTO, limit, seed, elapsed)
    return min(plans, key=lambda p: plan_rank(c, p))


def solve(
    problem: Problem,
    time_limit_s: float = 10.0,
    engine: Engine = "auto",
    seed: int = 0,
    progress: Progress | None = None,
    max_iterations: int | None = None,
) -> Plan:
    """Solve within ``time_limit_s``; always returns a Plan (status ``no_solution`` if none was found).

    ``max_iterations`` (solutions for OR-Tools, iterations for PyVRP) makes the result
    reproducible across machines; with only a time limit, a seed fixes the search but not how
    far it gets.
    """
    if time_limit_s <= 0:
        raise ValueError("time_limit_s: must be positive")
    chosen = None if engine == AUTO else engine_named(engine)  # ValueError naming the choices
    if not problem.orders:  # nothing to route: the empty plan is feasible and optimal
        return Plan(problem=problem.name, status="feasible", engine=engine, time_limit_s=time_limit_s, seed=seed)
    if ortools_unsafe_here():
        return solve_in_subprocess(problem, time_limit_s, engine, seed, progress, max_iterations)
    t0 = time.perf_counter()
    c = compile_problem(problem)
    report = _Reporter(progress)
    limit = max(0.01, time_limit_s - (time.perf_counter() - t0))
    if chosen is None:
        plan = _auto(c, limit, seed, report, max_iterations, t0)
    else:
        plan = _run(chosen, c, limit, seed, report, max_iterations, t0, limit_reported=time_limit_s)
    report.slice(0.0, 1.0)(None, 1.0)
    return plan.model_copy(update={"time_limit_s": time_limit_s})
