"""``python -m cloud.routing.worker``: solve one request read from stdin, JSON lines on stdout.

The request is one JSON document (on the first line, or the whole of stdin). Output: any number of
``{"progress": [best_cost, fraction]}``, then ``{"plan": …}``; with ``"plot": true`` also
``{"plot_png": base64}`` (null without matplotlib). With ``"lifeline": true`` the worker keeps
stdin open and the solve ends when it closes (cloud.lifeline).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import traceback
from pathlib import Path

from cloud.lifeline import exit_when_stdin_closes
from cloud.routing.plot import plot_png
from cloud.routing.problem import Problem
from cloud.routing.service import solve


def main() -> int:
    request = json.loads(sys.stdin.readline() or "{}")
    if request.get("lifeline"):
        exit_when_stdin_closes()
    problem = Problem.model_validate(request["problem"])

    def progress(best: float | None, fraction: float) -> None:
        print(json.dumps({"progress": [best, fraction]}), flush=True)

    plan = solve(
        problem,
        request["time_limit_s"],
        request["engine"],
        request["seed"],
        progress,
        request.get("max_iterations"),
    )
    print(json.dumps({"plan": plan.model_dump(mode="json")}), flush=True)
    if request.get("plot"):
        png: str | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="route-plot-") as tmp:
                path = Path(tmp) / "plan.png"
                png = base64.b64encode(path.read_bytes()).decode() if plot_png(problem, plan, path) else None
        except Exception:  # noqa: BLE001 - a plot that fails must not fail the plan
            traceback.print_exc()
        print(json.dumps({"plot_png": png}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
