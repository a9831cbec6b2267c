"""``python -m cloud.train_worker --spec FILE``: one retraining job in its own process.

Reads the job spec (cloud.services.train_spec.TrainJobSpec), pulls the scope's data from the cloud
store, holds the most recent part back, trains a candidate on the rest (TensorFlow, imported here
and never in the API process), evaluates candidate and deployed model on the held-back part, and
writes ``result.json`` into the job's directory. Progress goes to stdout as JSON lines
``{"progress": 0.42, "message": "..."}``. A job that cannot run (not enough data) prints
``{"error": "..."}`` and exits with status 3; anything else that goes wrong exits non-zero with a
traceback on stderr. With ``--lifeline`` it also exits when its stdin closes (cloud.lifeline).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence, Sized
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

from cloud.db.engine import build_engine
from cloud.lifeline import exit_when_stdin_closes
from cloud.services.train_spec import (
    EXIT_REFUSED,
    MAX_SPLITS,
    RESULT_FILE,
    SplitRange,
    TrainJobSpec,
    TrainResult,
    TrainTask,
)
from cloud.services.training_data import (
    DAY_MS,
    ReadingSeries,
    day_start_ms,
    demand_panel,
    device_runs,
    head_rows,
    parse_scope,
    reading_series,
    split_runs,
    split_series,
)
from models.manifest import manifest_path_for, read_manifest

Report = Callable[[float, str], None]
#: Readings of the training part that warm the causal state before the held-back ones are scored.
CONTEXT_READINGS = 2100


class NotEnoughData(Exception):
    """The scope's data cannot train and evaluate a candidate; the message says what is missing."""


def _report(fraction: float, message: str) -> None:
    print(json.dumps({"progress": round(min(max(fraction, 0.0), 1.0), 4), "message": message}), flush=True)


def _within(report: Report, lo: float, hi: float) -> Callable[[str, float], None]:
    """A training progress callback (message, 0..1) mapped into [lo, hi] of the job."""
    return lambda message, fraction: report(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date().isoformat()


def _next_version(spec: TrainJobSpec) -> int:
    if spec.deployed_version is not None:
        return spec.deployed_version + 1
    return read_manifest(manifest_path_for(spec.deployed_model)).version + 1


def _tail(s: ReadingSeries, n: int) -> ReadingSeries:
    return ReadingSeries(s.device_id, s.metric, s.ts_ms[-n:], s.values[-n:])


class _Part(Sized, Protocol):
    def span(self) -> tuple[int, int]: ...


class _Split(Protocol):
    @property
    def train(self) -> _Part: ...

    @property
    def holdout(self) -> _Part: ...


_S = TypeVar("_S", bound=_Split)


def _usable(spec: TrainJobSpec, splits: list[_S], lengths: list[int], task: str, what: str, unit: str,
            one: str) -> list[_S]:
    """The splits long enough on both sides of the cut; :class:`NotEnoughData` saying why when too few are."""
    usable = [s for s in splits if len(s.train) >= spec.min_readings and len(s.holdout) >= spec.min_holdout_readings]
    if len(usable) < spec.min_series:
        raise NotEnoughData(
            f"not enough data for {task} retrain of {spec.scope}: {len(usable)} of {len(lengths)} {what} "
            f"have >= {spec.min_readings} {unit} before the hold-out (the last {spec.holdout_fraction:.0%} of "
            f"their time span) and >= {spec.min_holdout_readings} in it; need {spec.min_series} "
            f"(the longest {one} has {max(lengths, default=0)} {unit})"
        )
    return usable


def run_anomaly(spec: TrainJobSpec, report: Report) -> TrainResult:
    from models.training.retrain import AnomalyRetrainConfig, evaluate_anomaly, retrain_anomaly

    site = parse_scope(spec.scope)
    engine = build_engine(spec.database_url, pool_size=1)
    try:
        series = reading_series(engine, site, spec.data_from_ts, spec.data_to_ts)
    finally:
        engine.dispose()
    report(0.02, f"read {len(series)} series, {sum(len(s) for s in series)} readings of {spec.scope}")
    usable = _usable(spec, split_series(series, spec.holdout_fraction), [len(s) for s in series],
                     "an anomaly", "reading series", "readings", "series")
    train = [s.train for s in usable]
    data_from = min(s.span()[0] for s in train)
    data_to = max(s.span()[1] for s in train)
    cfg = AnomalyRetrainConfig(
        seed=spec.seed, epochs=spec.epochs, synthetic_share=spec.synthetic_share,
        mixed_precision=spec.mixed_precision, version=_next_version(spec),
    )
    fit = retrain_anomaly(
        cfg, train, spec.deployed_model, spec.out_dir, _within(report, 0.05, 0.8),
        parent_keras=spec.parent_keras, source=f"synced readings of {spec.scope}",
        training_window=(_iso(data_from), _iso(data_to)),
    )
    report(0.82, f"evaluating candidate and deployed model on the held-back readings of {len(usable)} series")
    scores = evaluate_anomaly(
        spec.out_dir / "anomaly.tflite", spec.deployed_model, [s.holdout for s in usable],
        context=[_tail(s.train, CONTEXT_READINGS) for s in usable],
    )
    return _series_result(spec, "anomaly", fit, scores, data_from, data_to, usable,
                          lambda s: f"{s.train.device_id}/{s.train.metric}")


def run_device(spec: TrainJobSpec, report: Report) -> TrainResult:
    """The device (multichannel) model on the scope's multichannel devices: each device's channels
    joined per message, the last part of each run held back; candidate vs deployed on it."""
    from models.training.device_retrain import DeviceRetrainConfig, retrain_device
    from models.training.evaluate import evaluate_device

    site = parse_scope(spec.scope)
    engine = build_engine(spec.database_url, pool_size=1)
    try:
        runs = device_runs(reading_series(engine, site, spec.data_from_ts, spec.data_to_ts))
    finally:
        engine.dispose()
    report(0.02, f"read {len(runs)} multichannel devices, {sum(len(r) for r in runs)} messages of {spec.scope}")
    usable = _usable(spec, split_runs(runs, spec.holdout_fraction), [len(r) for r in runs], "a device_anomaly",
                     "multichannel devices (3 or more channels with varying values, reported in one message)",
                     "messages", "run")
    train = [s.train for s in usable]
    data_from = min(r.span()[0] for r in train)
    data_to = max(r.span()[1] for r in train)
    cfg = DeviceRetrainConfig(seed=spec.seed, epochs=spec.epochs, synthetic_share=spec.synthetic_share,
                              version=_next_version(spec))
    fit = retrain_device(
        cfg, [r.values for r in train], spec.deployed_model, spec.out_dir, _within(report, 0.05, 0.8),
        parent_keras=spec.parent_keras, source=f"synced multichannel telemetry of {spec.scope}",
        training_window=(_iso(data_from), _iso(data_to)),
    )
    report(0.82, f"evaluating candidate and deployed model on the held-back messages of {len(usable)} devices")
    scores = evaluate_device(spec.out_dir / "device_anomaly.tflite", spec.deployed_model,
                             [s.holdout.values for s in usable], [s.train.values for s in usable], cfg.warmup)
    return _series_result(spec, "device_anomaly", fit, scores, data_from, data_to, usable,
                          lambda s: f"{s.train.device_id}/{'+'.join(s.train.channels)}"[:200])


def _series_result(spec: TrainJobSpec, task: TrainTask, fit: dict[str, float], scores: dict[str, dict[str, float]],
                   data_from: int, data_to: int, usable: list[_S], name: Callable[[_S], str]) -> TrainResult:
    """The result of a job trained on per-series (or per-device) splits: the quality gate, the hold-out's span."""
    from models.training.evaluate import quality_gate

    gate = quality_gate(task, scores["candidate"], scores["deployed"], spec.gate_tolerance)
    return TrainResult(
        task=task, scope=spec.scope, metrics=_flat(fit, scores), candidate=scores["candidate"],
        deployed=scores["deployed"], gate_passed=gate.passed, gate_reason=gate.reason,
        data_from_ts=data_from, data_to_ts=data_to,
        holdout_from_ts=min(s.holdout.span()[0] for s in usable),
        holdout_to_ts=max(s.holdout.span()[1] for s in usable),
        series_used=len(usable),
        splits=[SplitRange(series=name(s), train=s.train.span(), holdout=s.holdout.span())
                for s in usable[:MAX_SPLITS]],
        tflite=spec.out_dir / f"{task}.tflite", keras=spec.out_dir / f"{task}.keras",
    )


def run_demand(spec: TrainJobSpec, report: Report) -> TrainResult:
    from models.training.retrain import DemandRetrainConfig, evaluate_demand, quality_gate, retrain_demand

    site = parse_scope(spec.scope)
    deployed = read_manifest(manifest_path_for(spec.deployed_model))
    features = deployed.demand_features
    if features is None:
        raise ValueError(f"{spec.deployed_model} is not a demand model")
    engine = build_engine(spec.database_url, pool_size=1)
    try:
        panel = demand_panel(engine, spec.demand_direction, site, spec.data_from_ts, spec.data_to_ts)
    finally:
        engine.dispose()
    rows = 0 if panel is None else panel.qty.shape[0]
    need = spec.demand_min_history + 2 * features.horizon + spec.holdout_days
    if panel is None or rows < need:
        raise NotEnoughData(
            f"not enough data for a demand retrain of {spec.scope}: {rows} days of '{spec.demand_direction}' scans, "
            f"need at least {need} (min_history {spec.demand_min_history} + {features.horizon} training + "
            f"{features.horizon} validation + {spec.holdout_days} held back)"
        )
    origin = rows - spec.holdout_days
    report(0.02, f"read {panel.qty.shape[1]} series x {rows} days of {spec.scope}; holding back the last "
                 f"{spec.holdout_days} days")
    cfg = DemandRetrainConfig(
        seed=spec.seed, epochs=spec.epochs, min_history=spec.demand_min_history, features=features,
        mixed_precision=spec.mixed_precision, version=_next_version(spec),
    )
    fit = retrain_demand(cfg, head_rows(panel, origin), spec.out_dir, _within(report, 0.05, 0.8),
                         source=f"synced '{spec.demand_direction}' scans of {spec.scope}")
    report(0.82, f"evaluating candidate and deployed model on the last {spec.holdout_days} days")
    scores = evaluate_demand(spec.out_dir / "demand.tflite", spec.deployed_model, panel, origin)
    gate = quality_gate("demand", scores["candidate"], scores["deployed"], spec.gate_tolerance)
    first, cut, last = day_start_ms(panel.dates[0]), day_start_ms(panel.dates[origin]), day_start_ms(panel.dates[-1])
    return TrainResult(
        task="demand", scope=spec.scope, metrics=_flat(fit, scores), candidate=scores["candidate"],
        deployed=scores["deployed"], gate_passed=gate.passed, gate_reason=gate.reason,
        data_from_ts=first, data_to_ts=cut - 1, holdout_from_ts=cut, holdout_to_ts=last + DAY_MS - 1,
        series_used=panel.qty.shape[1],
        splits=[SplitRange(series=sku, train=(first, cut - 1), holdout=(cut, last + DAY_MS - 1))
                for sku in panel.skus[:MAX_SPLITS]],
        tflite=spec.out_dir / "demand.tflite",
    )


def _flat(fit: dict[str, float], scores: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {f"fit_{k}": float(v) for k, v in fit.items()}
    for who, metrics in scores.items():
        out |= {f"{who}_{k}": float(v) for k, v in metrics.items()}
    return out


def run(spec: TrainJobSpec, report: Report) -> TrainResult:
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    runner = {"anomaly": run_anomaly, "demand": run_demand, "device_anomaly": run_device}[spec.task]
    result = runner(spec, report)
    (spec.out_dir / RESULT_FILE).write_text(result.model_dump_json(indent=2), encoding="utf-8")
    report(1.0, f"done: {result.gate_reason}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud.train_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="the job's spec.json")
    parser.add_argument("--lifeline", action="store_true",
                        help="exit when stdin closes (the worker that started this process died)")
    args = parser.parse_args(argv)
    if args.lifeline:
        exit_when_stdin_closes()
    spec = TrainJobSpec.model_validate_json(args.spec.read_text(encoding="utf-8"))
    try:
        run(spec, _report)
    except NotEnoughData as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main())
