"""VRP benchmark: every instance of a set, one at a time, gap to the best known distance.

    python bench/vrp.py --set solomon --budget 10 [--engine auto|ortools|pyvrp] [--data DIR]
                        [--peers] [--instances R101,C101]

Objective: total distance with the instance's fleet (no vehicle cost). Reference values come
from bks.csv (see its SOURCES.md): Solomon uses the distance-only DIMACS values (distances and
times truncated to one decimal, the convention our reader applies); where none exists (C204)
the older double-precision distance-only value is used. Gehring-Homberger has only the
hierarchical (fewest vehicles first) values, so distance-only gaps there can be negative.
CVRPLIB X uses nint-rounded distances and an unlimited fleet. Every plan is verified by the
independent checker; an instance counts as solved only if all orders are served and it passes.
Last line:
``vrp: set=<s> engine=<e> budget_s=<b> instances=<n> solved=<n> mean_gap_pct=<x> pyvrp_mean_gap_pct=<x> vroom_mean_gap_pct=<x>``
"""

from __future__ import annotations

import csv
import math
import sys
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.routing.checker import check_plan
from cloud.routing.compiled import Compiled, compile_problem
from cloud.routing.instances import read_vrplib
from cloud.routing.service import solve

DEFAULT_DATA = Path("/work/shared/data/vrp")
SETS = {"solomon": "solomon", "gh200": "gh200", "x": "x"}
PREFERENCE = {
    "solomon": [("distance_only", "dimacs_trunc1"), ("distance_only_lit", "exact_euclid")],
    "gh200": [("hierarchical", "exact_euclid")],
    "x": [("distance_only", "nint_euclid")],
}


# Peers (bench-only, never imported by the package): PyVRP's and VROOM's own default solves on
# exactly our integer matrix, windows, service times and fleet; distances recomputed from their routes.
INF = 2**53


def _route_distance(c: Compiled, routes: list[list[int]]) -> int:
    """Sum of matrix distances of depot -> orders -> depot (order indices, first vehicle's depot)."""
    depot_start, depot_end = c.vehicles[0].start, c.vehicles[0].end
    total = 0
    for route in routes:
        nodes = (
            [depot_start] + [c.orders[i].node for i in route] + ([depot_end] if depot_end is not None else [])
        )
        total += int(sum(c.matrix.distance[a, b] for a, b in pairwise(nodes)))
    return total


def pyvrp_default(c: Compiled, budget_s: float, seed: int) -> tuple[bool, float]:
    """(all orders served and feasible, distance in problem units)."""
    import pyvrp
    from pyvrp.stop import MaxRuntime

    m = c.matrix
    nodes = [c.vehicles[0].start] + [o.node for o in c.orders]
    veh = c.vehicles[0]
    data = pyvrp.ProblemData(
        [pyvrp.Location(0, 0) for _ in nodes],
        [
            pyvrp.Client(
                location=k + 1,
                delivery=list(o.demand),
                service_duration=o.service,
                tw_early=o.windows[0][0] if o.windows else 0,
                tw_late=o.windows[0][1] if o.windows else INF,
            )
            for k, o in enumerate(c.orders)
        ],
        [pyvrp.Depot(location=0)],
        [
            pyvrp.VehicleType(
                num_available=len(c.vehicles),
                capacity=list(veh.capacity),
                tw_early=veh.shift[0],
                tw_late=veh.shift[1],
            )
        ],
        [np.ascontiguousarray(m.distance[np.ix_(nodes, nodes)])],
        [np.ascontiguousarray(m.duration[np.ix_(nodes, nodes)])],
    )
    result = pyvrp.solve(data, stop=MaxRuntime(budget_s), seed=seed, collect_stats=False, display=False)
    best = result.best
    routes = [[int(a.idx) for a in r if a.is_client()] for r in best.routes()]
    ok = best.is_feasible() and sum(len(r) for r in routes) == len(c.orders)
    return ok, m.to_units(_route_distance(c, routes))


def vroom_default(c: Compiled, budget_s: float) -> tuple[bool, float]:
    """VROOM at exploration level 5, one thread; costs are travel durations (= distances here)."""
    import vroom

    m = c.matrix
    nodes = [c.vehicles[0].start] + [o.node for o in c.orders]
    problem = vroom.Input()
    problem.set_durations_matrix("car", m.duration[np.ix_(nodes, nodes)].astype(np.uint32))
    problem.set_distances_matrix("car", m.distance[np.ix_(nodes, nodes)].astype(np.uint32))
    for k, veh in enumerate(c.vehicles):
        problem.add_vehicle(
            vroom.Vehicle(
                id=k + 1,
                start=0,
                end=0 if veh.end is not None else None,
                capacity=list(veh.capacity),
                time_window=vroom.TimeWindow(veh.shift[0], veh.shift[1]),
            )
        )
    for k, o in enumerate(c.orders):
        windows = [vroom.TimeWindow(a, b) for a, b in o.windows] or None
        kwargs = {"time_windows": windows} if windows else {}
        problem.add_job(
            vroom.Job(id=k + 1, location=k + 1, default_service=o.service, delivery=list(o.demand), **kwargs)
        )
    solution = problem.solve(exploration_level=5, nb_threads=1, timeout=timedelta(seconds=budget_s))
    frame = solution.routes
    routes: dict[int, list[int]] = {}
    for row in frame.itertuples():
        if row.type == "job":
            routes.setdefault(int(row.vehicle_id), []).append(int(row.id) - 1)
    served = sum(len(r) for r in routes.values())
    return served == len(c.orders), m.to_units(_route_distance(c, list(routes.values())))


def best_known(data: Path, set_name: str) -> dict[str, float]:
    rows = list(csv.DictReader((data / "bks.csv").open()))
    out: dict[str, float] = {}
    for objective, convention in reversed(PREFERENCE[set_name]):
        for r in rows:
            if r["objective"] == objective and r["convention"] == convention:
                out[r["instance"]] = float(r["distance"])
    return out


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "na"


def main(
    set_name: Annotated[str, typer.Option("--set", help="solomon, gh200 or x")] = "solomon",
    budget: Annotated[float, typer.Option(help="seconds per instance")] = 10.0,
    engine: Annotated[str, typer.Option(help="auto, ortools or pyvrp")] = "auto",
    data: Annotated[Path, typer.Option(help="folder with the sets and bks.csv")] = DEFAULT_DATA,
    peers: Annotated[
        bool, typer.Option("--peers", help="also run PyVRP's and VROOM's default solves")
    ] = False,
    instances: Annotated[str, typer.Option(help="comma-separated subset, e.g. R101,C101")] = "",
    seed: Annotated[int, typer.Option()] = 1,
) -> None:
    if set_name not in SETS:
        raise typer.BadParameter("choose solomon, gh200 or x", param_hint="--set")
    console = Console(stderr=True)
    bks = best_known(data, set_name)
    files = sorted((data / SETS[set_name]).glob("*.vrp"))
    if instances:
        wanted = {n.strip() for n in instances.split(",")}
        files = [f for f in files if f.stem in wanted]
    gaps: list[float] = []
    peer_gaps: dict[str, list[float]] = {"pyvrp": [], "vroom": []}
    solved = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("vrp", total=len(files))
        for path in files:
            name = path.stem
            bar.update(task, description=name)
            problem = read_vrplib(path)
            ref = bks.get(name, math.nan)
            plan = solve(problem, budget, engine, seed)  # type: ignore[arg-type]
            ok = plan.status == "feasible" and not plan.unserved and check_plan(problem, plan).ok
            line = f"{name}: engine={plan.engine} ok={ok} distance={plan.total_distance:.1f} vehicles={plan.vehicles_used} bks={ref:g}"
            if ok:
                solved += 1
                gaps.append(100 * (plan.total_distance / ref - 1))
                line += f" gap={gaps[-1]:.2f}%"
            if peers:
                c = compile_problem(problem)
                for peer, (pok, dist) in (
                    ("pyvrp", pyvrp_default(c, budget, seed)),
                    ("vroom", vroom_default(c, budget)),
                ):
                    if pok:
                        peer_gaps[peer].append(100 * (dist / ref - 1))
                        line += f" {peer}={dist:.1f}({peer_gaps[peer][-1]:.2f}%)"
                    else:
                        line += f" {peer}=fail"
            console.print(line)
            bar.advance(task)
    pv = _mean(peer_gaps["pyvrp"]) if peers else "na"
    vr = _mean(peer_gaps["vroom"]) if peers else "na"
    print(
        f"vrp: set={set_name} engine={engine} budget_s={budget:g} instances={len(files)} solved={solved} "
        f"mean_gap_pct={_mean(gaps)} pyvrp_mean_gap_pct={pv} vroom_mean_gap_pct={vr}"
    )


if __name__ == "__main__":
    typer.run(main)
