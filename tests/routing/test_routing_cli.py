"""``routes solve`` writes the plan, GeoJSON and PNG and prints a summary."""

from __future__ import annotations

import json
from pathlib import Path

from routing_cases import small_problem
from typer.testing import CliRunner

from cloud.routing.cli import app
from cloud.routing.plan import Plan


def test_solve_writes_plan_geojson_and_png(tmp_path: Path) -> None:
    problem_file = tmp_path / "problem.json"
    problem_file.write_text(small_problem().model_dump_json())
    result = CliRunner().invoke(app, ["solve", str(problem_file), "--time-limit", "1", "--engine", "ortools"])
    assert result.exit_code == 0, result.output
    assert "total" in result.output
    plan = Plan.model_validate_json((tmp_path / "problem.plan.json").read_text())
    assert plan.status == "feasible"
    geo = json.loads((tmp_path / "problem.plan.geojson").read_text())
    assert len([f for f in geo["features"] if f["geometry"]["type"] == "LineString"]) == plan.vehicles_used
    assert (tmp_path / "problem.plan.png").stat().st_size > 1000


def test_invalid_problem_names_the_field(tmp_path: Path) -> None:
    data = json.loads(small_problem().model_dump_json())
    data["vehicles"][0]["start_depot"] = "atlantis"
    problem_file = tmp_path / "bad.json"
    problem_file.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["solve", str(problem_file)])
    assert result.exit_code == 2
    assert "vehicles[0].start_depot" in result.output
