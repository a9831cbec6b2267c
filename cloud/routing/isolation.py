"""Run a solve in a fresh interpreter when OR-Tools routing is unsafe in this one.

OR-Tools routing crashes the process when TensorFlow was imported before
``ortools.constraint_solver.pywrapcp`` (or-tools #2047/#3230; the README explains it). ``sys.modules``
keeps import order, so we can tell whether this process is in that state; if it is, the solve
runs in ``python -m cloud.routing.worker`` and streams progress back as JSON lines.
"""

from __future__ import annotations

import json
import subprocess
import sys

from cloud.routing.engine import Progress
from cloud.routing.plan import Plan
from cloud.routing.problem import Problem

PYWRAPCP = "ortools.constraint_solver.pywrapcp"


def ortools_unsafe_here(modules: list[str] | None = None) -> bool:
    """True when TensorFlow was imported before pywrapcp (or pywrapcp is not imported yet)."""
    names = list(sys.modules) if modules is None else modules
    if "tensorflow" not in names:
        return False
    if PYWRAPCP not in names:
        return True
    return names.index("tensorflow") < names.index(PYWRAPCP)


def solve_in_subprocess(
    problem: Problem,
    time_limit_s: float,
    engine: str,
    seed: int,
    progress: Progress | None,
    max_iterations: int | None,
) -> Plan:
    request = {
        "problem": problem.model_dump(mode="json"),
        "time_limit_s": time_limit_s,
        "engine": engine,
        "seed": seed,
        "max_iterations": max_iterations,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloud.routing.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(request))
    proc.stdin.close()
    plan: Plan | None = None
    for line in proc.stdout:
        message = json.loads(line)
        if "progress" in message and progress is not None:
            best, fraction = message["progress"]
            progress(best, fraction)
        elif "plan" in message:
            plan = Plan.model_validate(message["plan"])
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    if proc.wait() != 0 or plan is None:
        raise RuntimeError(f"routing worker failed (exit {proc.returncode}): {stderr[-2000:]}")
    return plan
