"""Per-row detection quality of the joint device score on multichannel runs, vs per-channel scoring.

    python bench/multichannel.py [--data DIR] [--seeds 1001,1002,1003,1004] [--write DIR] [--threshold X]

``--data DIR``: one CSV per run (a time column, numeric channels, a 0/1 ``anomaly`` column; the
first 400 rows normal, used only as that run's warm-up). Without it: simulated pump runs
(``firmware_sim`` pump, one run per seed and fault kind: cavitation, valve closure, rotor
imbalance; seeds 1001-1004 by default, held out: the design and threshold were chosen on seeds 1-8).

Each run is one device streamed in row order through a fresh ``models.device_anomaly.DeviceScorer``
(the shipped int8 model, the shipped threshold); a row alarms when its score >= the threshold.
Rows after the warm-up are counted over all runs together: F1, FAR (alarmed normal rows / normal
rows) and MAR (missed anomalous rows / anomalous rows). The per-channel baseline in the same run:
every channel through the shipped per-stream ``AnomalyScorer``, row score = max over channels, at
its own shipped threshold.

Last line: multichannel: files=<n> f1=<x> far_pct=<x> mar_pct=<x>
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mc_runs import HELD_OUT_SEEDS, WARMUP, Run, load_dir, sim_runs

from models.anomaly import AnomalyScorer
from models.device_anomaly import DeviceScorer, DeviceScorerConfig
from models.runtime import default_model_path, load_model


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        self.tp += int(np.sum(pred & truth))
        self.fp += int(np.sum(pred & ~truth))
        self.fn += int(np.sum(~pred & truth))
        self.tn += int(np.sum(~pred & ~truth))

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    @property
    def far_pct(self) -> float:
        return 100.0 * self.fp / max(1, self.fp + self.tn)

    @property
    def mar_pct(self) -> float:
        return 100.0 * self.fn / max(1, self.fn + self.tp)


def device_scores(run: Run, model_path: Path, threshold: float | None) -> tuple[np.ndarray, float, float]:
    """Row scores of the joint device scorer, its threshold and µs per message."""
    model = load_model(model_path)
    scorer = DeviceScorer(model)
    if threshold is not None:
        scorer = DeviceScorer(model, DeviceScorerConfig(threshold=threshold))
    out = np.zeros(len(run.values))
    started = time.perf_counter()
    for i, row in enumerate(run.values):
        r = scorer.score(run.name, dict(zip(run.channels, row.tolist(), strict=True)))
        out[i] = 0.0 if r is None else r.score
    us = 1e6 * (time.perf_counter() - started) / max(1, len(run.values))
    return out, scorer.config.threshold, us


def channel_scores(run: Run, model_path: Path) -> tuple[np.ndarray, float]:
    """Row score = max over the channels of the shipped per-stream scorer."""
    scorer = AnomalyScorer(load_model(model_path))
    out = np.zeros(len(run.values))
    for i, (ts, row) in enumerate(zip(run.ts_ms.tolist(), run.values.tolist(), strict=True)):
        out[i] = max(scorer.score(f"{run.name}/{ch}", ts, v).score for ch, v in zip(run.channels, row, strict=True))
    return out, scorer.config.threshold


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="folder of CSV runs (default: simulated pumps)")
    parser.add_argument("--seeds", default=",".join(map(str, HELD_OUT_SEEDS)), help="simulator seeds")
    parser.add_argument("--write", type=Path, default=None, help="also write the runs as CSV files here")
    parser.add_argument("--threshold", type=float, default=None, help="override the shipped device threshold")
    parser.add_argument("--model", type=Path, default=default_model_path("device_anomaly"))
    parser.add_argument("--channel-model", type=Path, default=default_model_path("anomaly"))
    parser.add_argument("--no-baseline", action="store_true", help="skip the per-channel baseline")
    args = parser.parse_args(argv)
    if args.data is not None:
        runs, source = load_dir(args.data), str(args.data)
    else:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
        runs, source = sim_runs(seeds), f"simulated pumps, seeds {seeds}"
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for run in runs:
            run.to_csv(args.write / f"{run.name}.csv")
    joint, base = Counts(), Counts()
    per_kind: dict[str, Counts] = defaultdict(Counts)
    threshold = base_threshold = float("nan")
    costs = []
    print(f"{source}: {len(runs)} runs")
    print(f"{'run':34s} {'rows':>6s} {'anom':>5s}  {'joint f1':>8s} {'per-ch f1':>9s}")
    for run in runs:
        scores, threshold, us = device_scores(run, args.model, args.threshold)
        costs.append(us)
        truth = run.labels[WARMUP:]
        pred = scores[WARMUP:] >= threshold
        joint.add(pred, truth)
        one = Counts()
        one.add(pred, truth)
        per_kind[run.kind].add(pred, truth)
        line = f"{run.name:34s} {len(truth):6d} {int(truth.sum()):5d}  {one.f1:8.3f}"
        if not args.no_baseline:
            cscores, base_threshold = channel_scores(run, args.channel_model)
            b = Counts()
            b.add(cscores[WARMUP:] >= base_threshold, truth)
            base.add(cscores[WARMUP:] >= base_threshold, truth)
            line += f" {b.f1:9.3f}"
        print(line, flush=True)
    for kind, c in sorted(per_kind.items()):
        print(f"kind {kind}: f1={c.f1:.3f} far_pct={c.far_pct:.2f} mar_pct={c.mar_pct:.2f}")
    print(f"device scorer: {np.mean(costs):.0f} µs per message (mean over runs)")
    if not args.no_baseline:
        print(
            f"per-channel baseline: f1={base.f1:.3f} far_pct={base.far_pct:.2f} mar_pct={base.mar_pct:.2f} "
            f"(threshold {base_threshold:.2f}, row score = max over channels)"
        )
    print(f"joint threshold {threshold:.3f}")
    print(f"multichannel: files={len(runs)} f1={joint.f1:.3f} far_pct={joint.far_pct:.2f} mar_pct={joint.mar_pct:.2f}")


if __name__ == "__main__":
    main()
