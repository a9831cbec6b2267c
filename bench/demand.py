"""28-day demand forecasts at the two origins of /work/shared/data/demand/BASELINES.md:
int8 model, its float32 twin, and the `ses` and `ma28` baselines, in one run. The models run as
the gateway runs them: `DemandForecaster` with the post-processing in their manifest.

    python bench/demand.py [--data FILE] [--model models/default/demand.tflite]

The model must have been trained on rows before origin B (checked against its manifest's
training window), so no test row reaches training, scaling or model selection.
Last line: demand: rmsse_int8=<x> rmsse_float=<x> rmsse_ses=<x> rmsse_ma28=<x> ratio_vs_best_baseline=<r>
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

from models.demand import DemandForecaster
from models.demand_eval import DemandPanel, ma_forecast, mase, read_panel, rmsse, ses_forecast, wape
from models.runtime import default_model_path, load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "demand" / "pasta_sales_shared.csv"
HORIZON = 28

Method = Callable[[DemandPanel, int, int], tuple[np.ndarray, np.ndarray | None]]


def _model_method(fc: DemandForecaster) -> Method:
    def run(panel: DemandPanel, origin: int, s: int) -> tuple[np.ndarray, np.ndarray | None]:
        f = fc.forecast(
            panel.qty[:origin, s],
            panel.dates[origin],
            panel.promo[origin : origin + HORIZON, s],
            panel.promo[:origin, s],
            panel.dates[origin : origin + HORIZON],
        )
        return np.asarray(f.mean), np.asarray(f.p90)

    return run


def _baseline(fn: Callable[[np.ndarray, int], np.ndarray]) -> Method:
    return lambda panel, origin, s: (fn(panel.qty[:origin, s], HORIZON), None)


def evaluate(panel: DemandPanel, origin: int, method: Method) -> dict[str, float]:
    r, m, coverage = [], [], []
    actual_all, fc_all = [], []
    for s in range(panel.qty.shape[1]):
        hist, actual = panel.qty[:origin, s], panel.qty[origin : origin + HORIZON, s]
        mean, p90 = method(panel, origin, s)
        r.append(rmsse(hist, actual, mean))
        m.append(mase(hist, actual, mean))
        actual_all.append(actual)
        fc_all.append(mean)
        if p90 is not None:
            coverage.append(float(np.mean(actual <= p90)))
    out = {
        "rmsse": float(np.mean(r)),
        "mase": float(np.mean(m)),
        "wape": wape(np.concatenate(actual_all), np.concatenate(fc_all)),
    }
    if coverage:
        out["p90_coverage"] = float(np.mean(coverage))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=default_model_path("demand"))
    parser.add_argument("--float-model", type=Path, default=None, help="default: <model>_float.tflite")
    args = parser.parse_args()
    float_path = args.float_model or args.model.with_name(args.model.stem + "_float.tflite")

    panel = read_panel(args.data.resolve())
    n = panel.qty.shape[0]
    origins = {"A": n - HORIZON, "B": n - 2 * HORIZON}
    int8 = DemandForecaster(load_model(args.model))
    flt = DemandForecaster(load_model(float_path))
    for fc in (int8, flt):
        window = fc.model.manifest.training_window
        if window is None or date.fromisoformat(window[1]) >= panel.dates[origins["B"]]:
            raise SystemExit(
                f"{fc.model.path}: trained on rows at or after origin B ({window}); retrain with --holdout-rows 56"
            )
    methods: dict[str, Method] = {
        "int8": _model_method(int8),
        "float": _model_method(flt),
        "ses": _baseline(ses_forecast),
        "ma28": _baseline(ma_forecast),
    }
    mean_rmsse: dict[str, float] = {}
    print(
        f"{'method':8s} {'origin':6s} {'test window':23s} {'RMSSE':>7s} {'MASE':>7s} {'WAPE':>7s} {'P90cov':>7s}"
    )
    for name, method in methods.items():
        per_origin = []
        for label, o in origins.items():
            res = evaluate(panel, o, method)
            per_origin.append(res["rmsse"])
            cov = f"{res['p90_coverage']:7.3f}" if "p90_coverage" in res else "      -"
            span = f"{panel.dates[o]}..{panel.dates[o + HORIZON - 1]}"
            print(
                f"{name:8s} {label:6s} {span:23s} {res['rmsse']:7.3f} {res['mase']:7.3f} {res['wape']:7.3f} {cov}"
            )
        mean_rmsse[name] = float(np.mean(per_origin))
    best = min(mean_rmsse["ses"], mean_rmsse["ma28"])
    print(f"int8 vs float RMSSE: {100 * (mean_rmsse['int8'] / mean_rmsse['float'] - 1):+.2f} %")
    print(
        f"demand: rmsse_int8={mean_rmsse['int8']:.4f} rmsse_float={mean_rmsse['float']:.4f} "
        f"rmsse_ses={mean_rmsse['ses']:.4f} rmsse_ma28={mean_rmsse['ma28']:.4f} "
        f"ratio_vs_best_baseline={mean_rmsse['int8'] / best:.4f}"
    )


if __name__ == "__main__":
    main()
