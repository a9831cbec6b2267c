"""Routing keeps working in a process that imported TensorFlow first (it then solves in a worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from routing_cases import small_problem

from cloud.routing.checker import check_plan
from cloud.routing.isolation import PYWRAPCP, ortools_unsafe_here, solve_in_subprocess

ROOT = Path(__file__).resolve().parents[2]


def test_unsafe_only_when_tensorflow_came_first() -> None:
    assert not ortools_unsafe_here(["numpy", PYWRAPCP])
    assert not ortools_unsafe_here([PYWRAPCP, "tensorflow"])
    assert ortools_unsafe_here(["tensorflow", PYWRAPCP])
    assert ortools_unsafe_here(["tensorflow"])


def test_worker_subprocess_solves_and_streams_progress() -> None:
    problem = small_problem()
    seen: list[tuple[float | None, float]] = []
    plan = solve_in_subprocess(problem, 1.0, "ortools", 0, lambda b, f: seen.append((b, f)), None)
    assert plan.status == "feasible" and check_plan(problem, plan).ok
    assert seen and seen[-1][1] == 1.0


def test_tensorflow_then_routing_in_one_process() -> None:
    """Imports TensorFlow first when it is installed, then routing, and solves (never skipped)."""
    script = textwrap.dedent(
        """
        import importlib.util, sys
        sys.path[:0] = [sys.argv[1], sys.argv[2]]
        has_tf = importlib.util.find_spec("tensorflow") is not None
        if has_tf:
            import tensorflow  # noqa: F401  (first, the order that crashes OR-Tools routing)
        from routing_cases import small_problem
        from cloud.routing.checker import check_plan
        from cloud.routing.isolation import ortools_unsafe_here
        from cloud.routing.service import solve
        problem = small_problem()
        plan = solve(problem, 1.0, "ortools")
        assert check_plan(problem, plan).ok, plan
        print(plan.status, "tensorflow" if has_tf else "no-tensorflow", ortools_unsafe_here())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    status, tf, unsafe = out.stdout.split()[-3:]
    assert status == "feasible"
    assert unsafe == ("True" if tf == "tensorflow" else "False")
