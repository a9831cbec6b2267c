"""``edgehouse routes solve problem.json``: solve with a progress bar, print a summary, write the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.routing.checker import check_plan
from cloud.routing.engines import AUTO, ENGINE_NAMES
from cloud.routing.plan import Plan
from cloud.routing.plot import has_coordinates, plot_png, to_geojson
from cloud.routing.problem import Problem
from cloud.routing.service import Engine, solve

app = typer.Typer(help="Delivery route planning.", no_args_is_help=True)


@app.callback()
def routes() -> None:
    """Delivery route planning (OR-Tools and PyVRP engines)."""


def _summary(plan: Plan) -> Table:
    table = Table(title=f"{plan.problem}: {plan.status} ({plan.engine}, {plan.solve_time_s:.1f} s)")
    for col in ("vehicle", "stops", "distance", "duration h", "cost"):
        table.add_column(col, justify="right" if col != "vehicle" else "left")
    for r in plan.routes:
        stops = sum(1 for s in r.stops if s.kind == "order")
        table.add_row(
            r.vehicle_id, str(stops), f"{r.distance:.1f}", f"{r.duration / 3600:.2f}", f"{r.cost:.2f}"
        )
    table.add_section()
    table.add_row(
        f"total ({plan.vehicles_used} used)",
        str(sum(1 for r in plan.routes for s in r.stops if s.kind == "order")),
        f"{plan.total_distance:.1f}",
        f"{plan.total_duration / 3600:.2f}",
        f"{plan.total_cost:.2f}",
    )
    return table


@app.command("solve")
def solve_cmd(
    problem_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="problem JSON")],
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.01, help="seconds")] = 10.0,
    engine: Annotated[str, typer.Option("--engine", help=f"one of: {', '.join(ENGINE_NAMES)}")] = AUTO,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="plan JSON path (default: <problem>.plan.json)")
    ] = None,
) -> None:
    """Solve a routing problem and write the plan (JSON, GeoJSON and a PNG when possible)."""
    console = Console()
    if engine not in ENGINE_NAMES:
        raise typer.BadParameter(f"choose {', '.join(ENGINE_NAMES)}", param_hint="--engine")
    try:
        problem = Problem.model_validate_json(problem_file.read_text())
    except ValidationError as exc:
        console.print(f"[red]invalid problem:[/red]\n{exc}")
        raise typer.Exit(2) from exc
    eng: Engine = engine  # type: ignore[assignment]
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("solving", total=1.0)

        def on_progress(best: float | None, fraction: float) -> None:
            label = "solving" if best is None else f"best cost {best:,.2f}"
            bar.update(task, completed=fraction, description=label)

        plan = solve(problem, time_limit, eng, seed, on_progress)
    console.print(_summary(plan))
    for u in plan.unserved:
        console.print(f"unserved {u.order_id}: {u.reason}")
    report = check_plan(problem, plan)
    if not report.ok:
        console.print(f"[red]checker: {len(report.violations)} violations[/red]: {report.violations[:5]}")
    target = out or problem_file.with_suffix(".plan.json")
    target.write_text(plan.model_dump_json(indent=2))
    written = [str(target)]
    if has_coordinates(problem):
        geo = target.with_suffix(".geojson")
        geo.write_text(json.dumps(to_geojson(problem, plan)))
        written.append(str(geo))
        png = target.with_suffix(".png")
        if plot_png(problem, plan, png):
            written.append(str(png))
    console.print("wrote " + ", ".join(written))
    if plan.status == "no_solution":
        raise typer.Exit(1)
