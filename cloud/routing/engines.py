"""The routing engines behind one protocol, and the registry :func:`cloud.routing.service.solve` uses.

An engine takes a compiled problem and returns an :class:`EngineResult`; ``unsupported`` names the
first feature of the problem it cannot model (None when it can). Each adapter imports its solver
only when it solves, so choosing an engine costs nothing until then (and OR-Tools is imported in
one adapter module, ``ortools_engine``). A new engine is one class here and one entry in
:data:`ENGINES`; ``auto`` (OR-Tools secures a plan, PyVRP improves it) is composed in the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, Protocol, get_args

from cloud.routing.compiled import Compiled
from cloud.routing.diagnose import IMPOSSIBLE, reason_for
from cloud.routing.engine import EngineResult, Progress

#: What a caller may ask for: a registered engine, or ``auto``.
EngineName = Literal["auto", "ortools", "pyvrp"]
AUTO: Final = "auto"


class RoutingEngine(Protocol):
    name: str

    def unsupported(self, c: Compiled) -> str | None: ...

    def solve(self, c: Compiled, limit_s: float, seed: int, progress: Progress,
              max_iterations: int | None) -> EngineResult: ...


class OrToolsEngine:
    """OR-Tools routing: the full model (breaks, skills, pickup-delivery, several windows)."""

    name = "ortools"

    def unsupported(self, c: Compiled) -> str | None:
        return None

    def solve(self, c: Compiled, limit_s: float, seed: int, progress: Progress,
              max_iterations: int | None) -> EngineResult:
        from cloud.routing.ortools_engine import solve_ortools

        return solve_ortools(c, limit_s, progress=progress, solution_limit=max_iterations, seed=seed)


class PyVrpEngine:
    """PyVRP's iterated local search, for the problems it models."""

    name = "pyvrp"

    def unsupported(self, c: Compiled) -> str | None:
        from cloud.routing.pyvrp_engine import unsupported_reason

        return unsupported_reason(c)

    def solve(self, c: Compiled, limit_s: float, seed: int, progress: Progress,
              max_iterations: int | None) -> EngineResult:
        from cloud.routing.pyvrp_engine import solve_pyvrp

        # PyVRP must serve every required order to call a solution feasible: leave out the ones
        # no vehicle can serve even alone (they stay unserved, with their reason).
        skip = frozenset(i for i in range(len(c.orders)) if reason_for(c, i) in IMPOSSIBLE)
        return solve_pyvrp(c, limit_s, seed=seed, progress=progress, max_iterations=max_iterations, skip=skip)


ENGINES: Final[Mapping[str, RoutingEngine]] = {e.name: e for e in (OrToolsEngine(), PyVrpEngine())}
#: Every name a caller may give, ``auto`` first (CLI help, API enum, validation).
ENGINE_NAMES: Final[tuple[str, ...]] = (AUTO, *ENGINES)

if set(get_args(EngineName)) != set(ENGINE_NAMES):  # the API's enum must list exactly the registry
    raise RuntimeError(f"EngineName {get_args(EngineName)} differs from the registry {ENGINE_NAMES}")


def engine_named(name: str) -> RoutingEngine:
    """The registered engine ``name``; ValueError naming the choices otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine: unknown engine {name!r}; choose {', '.join(ENGINE_NAMES)}") from None
