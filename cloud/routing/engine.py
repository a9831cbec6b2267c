"""What every engine returns, and the progress callback type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloud.routing.schedule import RouteSolution

# progress(best_cost_so_far, fraction_of_time_used); best cost in currency units, None before
# the first solution.
Progress = Callable[[float | None, float], None]


@dataclass(frozen=True)
class EngineResult:
    engine: str
    found: bool
    routes: tuple[RouteSolution, ...]
    dropped: tuple[int, ...]  # order indices left unserved
    solve_time_s: float
