"""``python -m cloud.routing.worker``: solve one request from stdin, JSON lines on stdout."""

from __future__ import annotations

import json
import sys

from cloud.routing.problem import Problem
from cloud.routing.service import solve


def main() -> int:
    request = json.loads(sys.stdin.read())
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
