"""Large routing bench: a seeded 1,000-order city problem with time windows and 50 vehicles.

    python bench/vrp_large.py [--orders 1000] [--vehicles 50] [--budget 60] [--engine auto] [--seed 1]

Prints one line per run and exits non-zero when no feasible plan (checked independently)
was returned within the budget. Last line:
``vrp_large: orders=<n> vehicles=<n> engine=<e> budget_s=<b> wall_s=<x> status=<s> served=<n> checker=<ok|fail> distance_km=<x> vehicles_used=<n>``
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.routing.checker import check_plan
from cloud.routing.problem import (
    Depot,
    HaversineTravel,
    Location,
    Order,
    Problem,
    TimeWindow,
    Vehicle,
)
from cloud.routing.service import solve

HOUR = 3600.0


def city_problem(orders: int, vehicles: int, seed: int) -> Problem:
    """Orders scattered around one depot (radius about 25 km), 2-hour windows in a 07:00-19:00 day."""
    rng = random.Random(seed)
    depot = Location(lat=52.52, lon=13.40)
    fleet = tuple(
        Vehicle(
            id=f"truck{k:02d}",
            start_depot="dc",
            end_depot="dc",
            capacity=(2500.0, 18.0, 12.0),
            shift=TimeWindow(start=7 * HOUR, end=19 * HOUR),
            fixed_cost=50.0,
            cost_per_km=0.6,
            cost_per_hour=25.0,
        )
        for k in range(vehicles)
    )
    items = []
    for i in range(orders):
        start = rng.choice([8, 10, 12, 14, 16]) * HOUR
        items.append(
            Order(
                id=f"o{i:04d}",
                location=Location(lat=52.52 + rng.uniform(-0.22, 0.22), lon=13.40 + rng.uniform(-0.35, 0.35)),
                demand=(
                    round(rng.uniform(20, 120), 1),
                    round(rng.uniform(0.1, 0.8), 2),
                    float(rng.randint(0, 1)),
                ),
                time_windows=(TimeWindow(start=start, end=start + 2 * HOUR),),
                service_time=float(rng.choice([180, 300, 420])),
            )
        )
    return Problem(
        name=f"city{orders}",
        dimensions=("weight_kg", "volume_m3", "pallets"),
        depots=(Depot(id="dc", location=depot),),
        vehicles=fleet,
        orders=tuple(items),
        travel=HaversineTravel(speed_kmh=35.0, detour_factor=1.3),
    )


def main(
    orders: Annotated[int, typer.Option()] = 1000,
    vehicles: Annotated[int, typer.Option()] = 50,
    budget: Annotated[float, typer.Option(help="seconds")] = 60.0,
    engine: Annotated[str, typer.Option()] = "auto",
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    console = Console()
    problem = city_problem(orders, vehicles, seed)
    t0 = time.perf_counter()
    first: list[float] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("solving", total=1.0)

        def on_progress(best: float | None, fraction: float) -> None:
            if best is not None and not first:
                first.append(time.perf_counter() - t0)
            bar.update(
                task, completed=fraction, description="solving" if best is None else f"best {best:,.0f}"
            )

        plan = solve(problem, budget, engine, seed, on_progress)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    report = check_plan(problem, plan)
    served = orders - len(plan.unserved)
    console.print(f"first solution after {first[0]:.1f} s" if first else "no progress reported")
    if not report.ok:
        console.print(report.violations[:10])
    print(
        f"vrp_large: orders={orders} vehicles={vehicles} engine={plan.engine} budget_s={budget:g} "
        f"wall_s={wall:.1f} status={plan.status} served={served} checker={'ok' if report.ok else 'fail'} "
        f"distance_km={plan.total_distance:.1f} vehicles_used={plan.vehicles_used}"
    )
    if plan.status == "no_solution" or not report.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
