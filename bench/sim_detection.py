"""Detection quality of the gateway's anomaly alerting on simulated fleets with exact ground truth.

    python bench/sim_detection.py [--fleet FILE] [--days N] [--seed S] [--grace-min M]

Generates ``--days`` simulated days of ``--fleet`` offline (``firmware_sim.messages``, no broker,
the fleet's own fault rates), decodes every telemetry message with
``protocols.decode_device_message``, drops duplicates by the gateway's key (device, boot, seq),
and streams every reading per ``(device_id, metric)`` in arrival order through the shipped int8
``AnomalyScorer`` and the gateway's ``edge_agent.scoring.hysteresis.AlertHysteresis`` (threshold
from the model manifest, ``clear_ratio`` and cool-down from ``ModelsConfig`` defaults), exactly as
``InferenceWorker`` does. Raised alerts are matched to the ground-truth anomaly windows:

* an alert of device D / metric M at true time t detects a labelled anomaly of D (and of M, where
  the label names a metric) when ``start_ts <= t <= end_ts + grace``; each anomaly is detected at
  most once, its delay is its first matching alert's time minus ``start_ts``;
* an alert that matches no anomaly is a false positive; precision = matching alerts / alerts.

Alert times are the device clock; the simulator's clock-skew ground truth maps them back to true
simulated time before matching. Labelled anomalies on streams that the gateway never scores
(scan-derived demand anomalies: metric ``picks``) are listed but left out of the totals.

The gateway also raises device alerts: the fleet's multichannel devices go through the agent's
``DeviceScoringWorker`` path (``bench/_device_detection.py``: the shipped joint score, confirmed
over ``models.device_confirm_messages`` messages). A device alert names no metric: it matches
every label of its device. The figures are printed per kind (``sim_detection_streams:`` the
per-stream alerts alone, ``device_detection:`` the device alerts alone, on the jointly scored
devices' labels) and, on the last line, for what the gateway raises: an anomaly is detected when
a stream alert or a device alert matches it, precision and the false-alert rate count both kinds
(``--no-devices``: stream alerts only, the last line then equals the per-stream one).

Last line: sim_detection: anomalies=<n> detected=<n> precision=<p> recall=<r> mean_delay_min=<d>
alerts=<n> readings=<n> false_alerts_per_stream_day=<x> (false alerts / (scored streams x days))
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge_agent.config import ModelsConfig
from edge_agent.scoring.hysteresis import AlertHysteresis, HysteresisConfig
from edge_agent.store.telemetry import Reading
from firmware_sim import Fleet, messages
from models.anomaly import AnomalyScorer, AnomalyScorerConfig
from models.runtime import default_model_path, load_model
from protocols import DecodeError, DeviceTopicKind, TelemetryMessage, decode_device_message

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FLEET = REPO / "firmware_sim" / "fleets" / "demo.toml"
DAY_S = 86_400
MINUTE_MS = 60_000
#: The bench's own gateway id (it appears only inside alert ids, never in the figures).
GATEWAY_ID = "sim-detection"
#: Progress is refreshed every this many messages (refreshing per message costs more than scoring).
_PROGRESS_EVERY = 2_000


@dataclass(frozen=True, slots=True)
class AnomalyWindow:
    """One labelled anomaly (ground truth), times in true simulated ms."""

    device_id: str
    metric: str | None
    kind: str
    start_ts: int
    end_ts: int


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """One raised alert, ``ts`` in true simulated ms; ``metric`` None: a device alert (any metric)."""

    device_id: str
    metric: str | None
    ts: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    """``detected_at[i]``: the first matching alert's time for ``windows[i]``, or None."""

    windows: tuple[AnomalyWindow, ...]
    detected_at: tuple[int | None, ...]
    true_alerts: int
    false: tuple[RaisedAlert, ...]

    @property
    def false_alerts(self) -> int:
        return len(self.false)

    @property
    def alerts(self) -> int:
        return self.true_alerts + self.false_alerts

    @property
    def detected(self) -> int:
        return sum(t is not None for t in self.detected_at)

    @property
    def precision(self) -> float:
        """Matching alerts / alerts; 0.0 without alerts."""
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        """Detected anomalies / anomalies; 0.0 without anomalies."""
        return self.detected / len(self.windows) if self.windows else 0.0

    def delays_min(self, kind: str | None = None) -> list[float]:
        """Detection delays in simulated minutes (of one kind, or all)."""
        return [
            (t - w.start_ts) / MINUTE_MS
            for w, t in zip(self.windows, self.detected_at, strict=True)
            if t is not None and (kind is None or w.kind == kind)
        ]


def match_alerts(
    alerts: Iterable[RaisedAlert], windows: Sequence[AnomalyWindow], grace_ms: int
) -> MatchResult:
    """Match alerts to anomaly windows (see the module docstring for the rules)."""
    by_device: dict[str, list[int]] = defaultdict(list)
    for i, w in enumerate(windows):
        by_device[w.device_id].append(i)
    first: list[int | None] = [None] * len(windows)
    true_alerts = 0
    false: list[RaisedAlert] = []
    for a in alerts:
        hit = False
        for i in by_device.get(a.device_id, ()):
            w = windows[i]
            on_metric = w.metric is None or a.metric is None or w.metric == a.metric
            if on_metric and w.start_ts <= a.ts <= w.end_ts + grace_ms:
                hit = True
                current = first[i]
                if current is None or a.ts < current:
                    first[i] = a.ts
        if hit:
            true_alerts += 1
        else:
            false.append(a)
    return MatchResult(tuple(windows), tuple(first), true_alerts, tuple(false))


@dataclass(frozen=True, slots=True)
class StreamResult:
    """What streaming a simulated fleet through the gateway's scorer produced."""

    windows: tuple[AnomalyWindow, ...]
    alerts: tuple[RaisedAlert, ...]
    streams: frozenset[tuple[str, str]]
    readings: int
    messages: int
    rejected: int
    duplicates: int
    suppressed: int
    threshold: float
    clear_below: float
    cooldown_ms: int
    seconds: float


def _gateway_alerting(model_path: Path) -> tuple[AnomalyScorer, AlertHysteresis]:
    """The scorer and hysteresis as ``InferenceWorker._load`` builds them with default settings.

    ``InferenceWorker`` picks its threshold inline (manifest default, else the scorer default) and
    offers no factory for it, so that choice is restated here; the rest is the gateway's code.
    """
    settings = ModelsConfig()
    model = load_model(model_path)
    threshold = settings.threshold
    if threshold is None:
        defaults = model.manifest.anomaly_defaults
        threshold = defaults.threshold if defaults is not None else AnomalyScorerConfig().threshold
    scorer = AnomalyScorer(model, AnomalyScorerConfig(threshold=threshold))
    hysteresis = AlertHysteresis(
        GATEWAY_ID,
        HysteresisConfig(
            threshold=threshold,
            clear_ratio=settings.clear_ratio,
            cooldown_ms=int(settings.cooldown_s * 1000),
            window=scorer.features.window,
            max_streams=scorer.config.max_streams,
        ),
        model.manifest.version,
    )
    return scorer, hysteresis


def stream_fleet(fleet: Fleet, days: float, model_path: Path, console: Console | None = None) -> StreamResult:
    """Simulate ``days`` of ``fleet`` and run every telemetry reading through the gateway's alerting."""
    scorer, hysteresis = _gateway_alerting(model_path)
    windows: list[AnomalyWindow] = []
    alerts: list[RaisedAlert] = []
    streams: set[tuple[str, str]] = set()
    seen: set[tuple[str, str, int]] = set()
    skew_ms: dict[str, int] = defaultdict(int)
    readings = n_messages = rejected = duplicates = 0
    telemetry_suffix = "/" + DeviceTopicKind.TELEMETRY.value
    start_ms = fleet.start_ms
    total_s = int(days * DAY_S)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]streaming[/] simulated s"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[readings]} readings, {task.fields[alerts]} alerts"),
        TimeElapsedColumn(),
        console=console if console is not None else Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task("sim", total=total_s, readings=0, alerts=0)
        for topic, payload, events in messages(fleet, sim_seconds=total_s):
            n_messages += 1
            for ev in events:
                if ev.get("type") == "anomaly":
                    metric = ev.get("metric")
                    windows.append(
                        AnomalyWindow(
                            str(ev["device_id"]),
                            None if metric is None else str(metric),
                            str(ev["kind"]),
                            int(str(ev["start_ts"])),
                            int(str(ev["end_ts"])),
                        )
                    )
                elif ev.get("type") == "fault" and ev.get("fault") == "clock_skew":
                    # The event rides on the first message stamped with the new offset.
                    skew_ms[str(ev["device_id"])] = int(str(ev["offset_ms"]))
            if not topic.endswith(telemetry_suffix):
                continue
            try:
                msg = decode_device_message(payload, "telemetry")
            except DecodeError:
                rejected += 1
                continue
            assert isinstance(msg, TelemetryMessage)
            if msg.dedup_key in seen:
                duplicates += 1
                continue
            seen.add(msg.dedup_key)
            for r in msg.body.readings:
                reading = Reading(msg.device_id, r.metric, msg.ts, float(r.value))
                result = scorer.score(f"{reading.device_id}/{reading.metric}", reading.ts, reading.value)
                alert = hysteresis.observe(reading, result)
                readings += 1
                streams.add((reading.device_id, reading.metric))
                if alert is not None and alert.state == "raised":
                    alerts.append(
                        RaisedAlert(reading.device_id, reading.metric, reading.ts - skew_ms[msg.device_id])
                    )
            if n_messages % _PROGRESS_EVERY == 0:
                done = min(total_s, max(0, (msg.ts - skew_ms[msg.device_id] - start_ms) // 1000))
                progress.update(task, completed=done, readings=readings, alerts=len(alerts))
        progress.update(task, completed=total_s, readings=readings, alerts=len(alerts))
    return StreamResult(
        windows=tuple(windows),
        alerts=tuple(alerts),
        streams=frozenset(streams),
        readings=readings,
        messages=n_messages,
        rejected=rejected,
        duplicates=duplicates,
        suppressed=hysteresis.suppressed,
        threshold=hysteresis.config.threshold,
        clear_below=hysteresis.config.clear_below,
        cooldown_ms=hysteresis.config.cooldown_ms,
        seconds=time.perf_counter() - started,
    )


def scored_windows(
    windows: Iterable[AnomalyWindow], streams: frozenset[tuple[str, str]]
) -> tuple[list[AnomalyWindow], list[AnomalyWindow]]:
    """Split labels into those on scored streams (telemetry) and those the gateway never scores."""
    devices = {d for d, _ in streams}
    inside: list[AnomalyWindow] = []
    outside: list[AnomalyWindow] = []
    for w in windows:
        on_stream = w.device_id in devices if w.metric is None else (w.device_id, w.metric) in streams
        (inside if on_stream else outside).append(w)
    return inside, outside


def _fmt_delay(delays: Sequence[float]) -> str:
    return f"{sum(delays) / len(delays):.1f}" if delays else "-"


def report_table(result: MatchResult, unscored: Sequence[AnomalyWindow]) -> Table:
    """Per-kind detection table plus the overall row."""
    table = Table(
        title="Injected anomalies detected by stream alerts (the per-stream int8 scorer)",
        caption="delays in simulated minutes; 'not scored': scan-demand labels, no telemetry stream",
    )
    for col in ("kind", "anomalies", "detected", "recall", "mean delay min", "max delay min"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    kinds = sorted({w.kind for w in result.windows})
    for kind in kinds:
        n = sum(w.kind == kind for w in result.windows)
        delays = result.delays_min(kind)
        table.add_row(
            kind,
            str(n),
            str(len(delays)),
            f"{len(delays) / n:.2f}",
            _fmt_delay(delays),
            f"{max(delays):.1f}" if delays else "-",
        )
    for kind in sorted({w.kind for w in unscored}):
        n = sum(w.kind == kind for w in unscored)
        table.add_row(f"[dim]{kind} (not scored)[/]", str(n), "-", "-", "-", "-")
    delays = result.delays_min()
    table.add_section()
    table.add_row(
        "[bold]overall[/]",
        str(len(result.windows)),
        str(result.detected),
        f"{result.recall:.2f}",
        _fmt_delay(delays),
        f"{max(delays):.1f}" if delays else "-",
    )
    return table


def false_alert_table(result: MatchResult, streams: frozenset[tuple[str, str]], days: float) -> Table:
    """False alerts per metric, and per stream and simulated day."""
    table = Table(title="False alerts by metric")
    for col in ("metric", "streams", "false alerts", "per stream-day"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    per_metric: dict[str | None, int] = defaultdict(int)
    for a in result.false:
        per_metric[a.metric] += 1
    for metric in sorted({m for _, m in streams}):
        n_streams = sum(m == metric for _, m in streams)
        n = per_metric.get(metric, 0)
        table.add_row(metric, str(n_streams), str(n), f"{n / (n_streams * days):.2f}")
    if None in per_metric:  # device alerts: per stream-day of every scored stream
        n = per_metric[None]
        table.add_row("(device alerts)", str(len(streams)), str(n), f"{n / (len(streams) * days):.2f}")
    return table


def last_line(result: MatchResult, readings: int, stream_days: float, prefix: str = "sim_detection") -> str:
    """The agreed last line; ``stream_days`` = scored streams x simulated days (the false-alert rate's
    denominator; nan when 0). ``prefix`` names the line (``sim_detection_streams``: stream alerts only)."""
    delays = result.delays_min()
    mean_delay = sum(delays) / len(delays) if delays else math.nan
    per_stream_day = result.false_alerts / stream_days if stream_days > 0 else math.nan
    return (
        f"{prefix}: anomalies={len(result.windows)} detected={result.detected} "
        f"precision={result.precision:.3f} recall={result.recall:.3f} mean_delay_min={mean_delay:.1f} "
        f"alerts={result.alerts} readings={readings} false_alerts_per_stream_day={per_stream_day:.3f}"
    )


def device_report(fleet: Fleet, days: float, grace_ms: int, console: Console) -> list[RaisedAlert]:
    """The fleet's multichannel devices (pumps, cold rooms, conveyors, ...) scored jointly per device
    (the agent's ``DeviceScoringWorker`` path): their faults per kind (the pump's cavitation, valve
    closure and rotor imbalance among them), and false device alerts per device-day. Returns the
    raised device alerts (``metric`` None), for the gateway's total."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _device_detection import stream_devices

    streamed = stream_devices(fleet, days)
    if not streamed.devices:
        return []
    windows = [AnomalyWindow(d, None, kind, a, b) for d, kind, a, b in streamed.windows]
    alerts = [RaisedAlert(d, None, ts) for d, ts in streamed.alerts]
    result = match_alerts(alerts, windows, grace_ms)
    table = report_table(result, [])
    table.title = "Multichannel devices: faults detected by the joint device score"
    console.print(table)
    per_day = result.false_alerts / (streamed.devices * days)
    console.print(
        f"device_detection: devices={streamed.devices} ({', '.join(f'{k} {n}' for k, n in sorted(streamed.kinds.items()))}) anomalies={len(windows)} detected={result.detected} "
        f"precision={result.precision:.3f} recall={result.recall:.3f} alerts={result.alerts} "
        f"false_alerts_per_device_day={per_day:.2f} threshold={streamed.threshold:.2f}"
    )
    return alerts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fleet", type=Path, default=DEFAULT_FLEET)
    parser.add_argument("--days", type=float, default=10.0, help="simulated days (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="override the fleet file's seed")
    parser.add_argument(
        "--grace-min",
        type=float,
        default=30.0,
        help="alerts up to this long after an anomaly ends still count",
    )
    parser.add_argument("--model", type=Path, default=default_model_path("anomaly"))
    parser.add_argument("--no-devices", action="store_true", help="skip the joint device score of the pumps")
    args = parser.parse_args(argv)
    if args.days <= 0:
        parser.error("--days must be positive")

    fleet = Fleet.load(args.fleet)
    if args.seed is not None:
        fleet = Fleet(fleet.config.model_copy(update={"seed": args.seed}))
    console = Console(width=None if sys.stdout.isatty() else 120)
    streamed = stream_fleet(fleet, args.days, args.model)
    inside, outside = scored_windows(streamed.windows, streamed.streams)
    grace_ms = int(args.grace_min * MINUTE_MS)
    result = match_alerts(streamed.alerts, inside, grace_ms)

    console.print(report_table(result, outside))
    console.print(false_alert_table(result, streamed.streams, args.days))
    console.print(
        f"fleet {fleet.config.name} seed {fleet.seed}, {args.days:g} simulated days, grace {args.grace_min:g} min; "
        f"threshold {streamed.threshold:.4f}, clear below {streamed.clear_below:.4f}, "
        f"cool-down {streamed.cooldown_ms / 1000:g} s"
    )
    console.print(
        f"alerts: {result.alerts} raised ({result.true_alerts} inside an anomaly window, "
        f"{result.false_alerts} false), {streamed.suppressed} suppressed by the cool-down; "
        f"{len(streamed.streams)} streams"
    )
    console.print(
        f"streamed {streamed.messages} messages ({streamed.rejected} rejected, {streamed.duplicates} duplicates), "
        f"{streamed.readings} readings in {streamed.seconds:.1f} s"
    )
    stream_days = len(streamed.streams) * args.days
    print(last_line(result, streamed.readings, stream_days, prefix="sim_detection_streams"))
    total = result
    if not args.no_devices:
        device_alerts = device_report(fleet, args.days, grace_ms, console)
        total = match_alerts([*streamed.alerts, *device_alerts], inside, grace_ms)
        table = report_table(total, outside)
        table.title = "Injected anomalies detected by the gateway: stream or device alerts"
        console.print(table)
        console.print(false_alert_table(total, streamed.streams, args.days))
    print(last_line(total, streamed.readings, stream_days))


if __name__ == "__main__":
    main()
