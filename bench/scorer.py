"""Cost of the whole anomaly scorer per reading (features, LiteRT call, every surprise test, drift,
state), this checkout against an earlier revision measured in the same run.

    python bench/scorer.py [--baseline e60cd69] [--rounds 7] [--data ../shared/data/nab] [--cpu N]

Each round streams every series of ``--data`` through ``AnomalyScorer`` (as ``bench/nab.py`` does)
in a fresh process, once with this checkout's code and once with the baseline's (a temporary
``git worktree`` of ``--baseline`` with its own ``models/default``), one after the other. Each
process is pinned to one CPU (``--cpu``, default the last one) and timed by its own CPU time
(``time.process_time``), so time it spends descheduled on a busy machine does not count; the
rounds alternate so a change in the machine's speed hits both. Prints every round and the
medians; the ratio is the baseline's median over this checkout's (2.0 = twice as fast).

Then the scorer's state per stream, this checkout's and the baseline's: the allocations
``tracemalloc`` traces (numpy's buffers included) for ``--memory-streams`` (default 8) synthetic
1-minute streams of 2,200 readings each (enough to fill every window a stream keeps), per stream:
a gateway keeps this for every stream it scores.

Last line: scorer: us_per_reading=<x> readings_per_s=<n> baseline=<rev> baseline_us_per_reading=<x> ratio=<r> rounds=<n> state_kib_per_stream=<x> baseline_state_kib_per_stream=<x>
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "nab"
#: The revision issue 11 was filed against (its "today": 59 us per reading on the NAB path).
DEFAULT_BASELINE = "e60cd69"


def child(data: Path) -> None:
    """Stream the corpus through the scorer of whatever ``models`` is first on the path; print
    CPU microseconds per reading (only the scoring loop is timed, not reading the files)."""
    from models.anomaly import AnomalyScorer, AnomalyScorerConfig
    from models.nab_data import read_corpus
    from models.runtime import default_model_path, load_model

    model = load_model(default_model_path("anomaly"))
    defaults = model.manifest.anomaly_defaults
    scorer = AnomalyScorer(model, AnomalyScorerConfig(threshold=defaults.threshold) if defaults else None)
    series = [(s.name, s.ts_ms.tolist(), s.values.tolist()) for s in read_corpus(data)]
    rows = 0
    started = time.process_time()
    for name, ts, values in series:
        score = scorer.score
        for t, v in zip(ts, values, strict=True):
            score(name, t, v)
        scorer.forget(name)
        rows += len(ts)
    print(f"{1e6 * (time.process_time() - started) / rows:.3f} {rows}")


def child_memory(streams: int, readings: int = 2_200) -> None:
    """Print the scorer's state per stream in KiB: allocations traced by ``tracemalloc`` (numpy's
    buffers included) after ``streams`` synthetic 1-minute streams of ``readings`` each, minus the
    scorer before them; deterministic, unlike RSS."""
    import gc
    import random
    import tracemalloc

    from models.anomaly import AnomalyScorer
    from models.runtime import default_model_path, load_model

    scorer = AnomalyScorer(load_model(default_model_path("anomaly")))
    rng = random.Random(7)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for s in range(streams):
        for i in range(readings):
            t = i * 60_000
            scorer.score(f"s{s}", t, 10.0 + 3.0 * math.sin(2 * math.pi * t / 86_400_000) + rng.gauss(0.0, 0.3))
    gc.collect()
    print(f"{(tracemalloc.get_traced_memory()[0] - before) / streams / 1024:.1f}")


def _memory(tree: Path, streams: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-memory", str(streams)],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    return float(out[-1])


def _run(tree: Path, data: Path, cpu: int) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(tree)}

    def pin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})

    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(data)],
        cwd=tree, env=env, capture_output=True, text=True, check=True, preexec_fn=pin,
    ).stdout.split()
    return float(out[-2]), int(out[-1])


def _worktree(rev: str, into: Path) -> Path:
    tree = into / "baseline"
    try:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), rev],
            check=True, capture_output=True, text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise SystemExit(f"--baseline {rev!r}: cannot check it out with git worktree: {detail.strip()}") from exc
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin each run to (default: the last one)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-streams", type=int, default=8, help="streams the state per stream is measured on")
    parser.add_argument("--child-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.child_memory is not None:
        child_memory(args.child_memory)
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.memory_streams < 1:
        parser.error("--memory-streams must be at least 1")
    data = args.data.resolve()
    if not data.is_dir():
        parser.error(f"--data {data}: not a folder")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    cpu = cpus[-1] if args.cpu is None else args.cpu
    if cpu not in cpus:
        parser.error(f"--cpu {cpu}: not one of this process's CPUs {cpus}")

    from rich.progress import Progress

    ours: list[float] = []
    theirs: list[float] = []
    rows = 0
    with tempfile.TemporaryDirectory(prefix="edgehouse-scorer-") as tmp:
        base = _worktree(args.baseline, Path(tmp))
        try:
            with Progress(transient=True) as progress:
                task = progress.add_task("scoring the corpus, alternately", total=2 * args.rounds)
                for r in range(args.rounds):
                    us, rows = _run(REPO, data, cpu)
                    ours.append(us)
                    progress.advance(task)
                    their_us, _ = _run(base, data, cpu)
                    theirs.append(their_us)
                    progress.advance(task)
                    progress.console.print(
                        f"round {r + 1}: this checkout {us:.1f} us/reading, {args.baseline} {their_us:.1f} "
                        f"(ratio {their_us / us:.2f})"
                    )
                progress.update(task, description="state per stream")
                kb, base_kb = _memory(REPO, args.memory_streams), _memory(base, args.memory_streams)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False,
                           capture_output=True)
    mine, base_us = statistics.median(ours), statistics.median(theirs)
    ratios = sorted(t / o for t, o in zip(theirs, ours, strict=True))
    print(f"{rows} readings per run, CPU {cpu}; per-round ratios {ratios[0]:.2f}-{ratios[-1]:.2f} "
          f"(median {statistics.median(ratios):.2f})")
    print(f"scorer state per stream ({args.memory_streams} 1-minute streams, 2,200 readings each, traced allocations): "
          f"this checkout {kb:.1f} KiB, {args.baseline} {base_kb:.1f} KiB")
    print(
        f"scorer: us_per_reading={mine:.1f} readings_per_s={1e6 / mine:.0f} baseline={args.baseline} "
        f"baseline_us_per_reading={base_us:.1f} ratio={base_us / mine:.2f} rounds={args.rounds} "
        f"state_kib_per_stream={kb:.1f} baseline_state_kib_per_stream={base_kb:.1f}"
    )


if __name__ == "__main__":
    main()
