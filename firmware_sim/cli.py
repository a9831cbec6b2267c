"""``edgehouse-sim``: run a simulated fleet against a broker, validate a fleet file, or generate offline."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from firmware_sim.config import Fleet, FleetError
from firmware_sim.faults import FaultConfig, FaultSpecError
from firmware_sim.generator import simulate
from firmware_sim.runner import RunStats, SimRunner
from firmware_sim.truth import TruthLedger, TruthWriter

app = typer.Typer(help="Edgehouse device simulator: seeded warehouse device fleets over MQTT.", no_args_is_help=True)
console = Console(stderr=True)

FleetOpt = Annotated[Path, typer.Option("--fleet", "-f", help="Fleet description (TOML).", exists=True, dir_okay=False)]
FaultsOpt = Annotated[
    str | None,
    typer.Option(help="Override fault rates, e.g. duplicates=0.01,malformed=0.005 ('none' disables all)."),
]


def parse_broker(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (port defaults to 1883) -> (host, port)."""
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise typer.BadParameter(f"broker must look like mqtt://host:port, got {url!r}")
    return parsed.hostname, parsed.port or 1883


def _load(fleet_path: Path, faults: str | None) -> tuple[Fleet, FaultConfig]:
    try:
        fleet = Fleet.load(fleet_path)
        fault_cfg = fleet.config.faults if faults is None else fleet.config.faults.with_overrides(faults)
    except (FleetError, FaultSpecError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    return fleet, fault_cfg


def _table(s: RunStats, target: str) -> Table:
    t = Table(title=f"edgehouse-sim: {s.state}  ({target})", show_header=False, expand=False)
    t.add_row("elapsed", f"{s.elapsed_s:8.1f} s")
    t.add_row("simulated time", s.sim_time.strftime("%Y-%m-%d %H:%M:%S %a"))
    t.add_row("published", f"{s.published:,}  ({s.msgs_per_s:,.0f} msg/s)")
    t.add_row("by kind", ", ".join(f"{k} {v:,}" for k, v in sorted(s.by_kind.items())) or "-")
    t.add_row("in flight", f"{s.in_flight:,}")
    t.add_row("faults", ", ".join(f"{k} {v}" for k, v in s.faults.items()) or "-")
    t.add_row("anomalies", str(s.anomalies))
    return t


@app.command("run")
def run_cmd(
    fleet: FleetOpt,
    broker: Annotated[str, typer.Option(help="MQTT broker URL.")] = "mqtt://127.0.0.1:1883",
    duration: Annotated[float | None, typer.Option(help="Wall-clock seconds to run.")] = None,
    speed: Annotated[float | None, typer.Option(help="Simulated seconds per wall second (overrides the fleet).")] = None,
    truth: Annotated[Path | None, typer.Option(help="Ground-truth JSONL output path.")] = None,
    rate: Annotated[float | None, typer.Option(help="Load-test mode: total messages per second.")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many publishes (plus the final flush).")] = None,
    faults: FaultsOpt = None,
    qos: Annotated[int, typer.Option(help="QoS for data messages (0 only with --rate).", min=0, max=1)] = 1,
    publishers: Annotated[int | None, typer.Option(help="Publisher threads (default min(4, devices)).")] = None,
    max_inflight: Annotated[int, typer.Option(help="Unacknowledged QoS 1 messages per device client.")] = 20,
    quiet: Annotated[bool, typer.Option(help="No live display; print the summary only.")] = False,
) -> None:
    """Publish the fleet to a broker; Ctrl-C stops cleanly (held messages and offline statuses are sent)."""
    fleet_obj, fault_cfg = _load(fleet, faults)
    host, port = parse_broker(broker)
    if duration is None and count is None:
        console.print("[yellow]no --duration or --count: running until interrupted[/]")
    try:
        runner = SimRunner(
            fleet_obj, host, port, truth, fault_cfg, duration, count, rate,
            speed=speed, qos=1 if qos else 0, publishers=publishers, max_inflight=max_inflight,
        )
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    target = f"{host}:{port}, " + (f"{rate:,.0f} msg/s" if rate else f"x{runner.speed:,.0f}")
    runner.start()
    try:
        if quiet:
            while not runner.done:
                time.sleep(0.2)
        else:
            with Live(_table(runner.stats(), target), console=console, refresh_per_second=4) as live:
                while not runner.done:
                    time.sleep(0.25)
                    live.update(_table(runner.stats(), target))
                live.update(_table(runner.stats(), target))
    except KeyboardInterrupt:
        console.print("stopping: flushing held messages…")
        runner.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        summary = runner.join()
    except RuntimeError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if summary is not None:
        sys.stdout.write(summary.model_dump_json() + "\n")


@app.command()
def validate(fleet_file: Annotated[Path, typer.Argument(help="Fleet description (TOML).")]) -> None:
    """Check a fleet file; print its devices and gateway subscriptions, or every problem found."""
    try:
        fleet = Fleet.load(fleet_file)
    except FleetError as exc:
        console.print(f"[red]invalid:[/] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"{fleet.config.name}: {len(fleet.devices)} devices, x{fleet.config.time_scale:,.0f}")
    for col in ("site", "gateway", "device", "kind", "interval"):
        table.add_column(col)
    for d in fleet.devices:
        table.add_row(d.site, d.gateway_id, d.device_id, d.kind, f"{d.group.interval_s:g} s")
    Console().print(table)
    typer.echo("ok")


@app.command()
def generate(
    fleet: FleetOpt,
    hours: Annotated[float, typer.Option(help="Simulated hours to generate.")] = 24.0,
    out: Annotated[Path, typer.Option(help="JSONL of {topic, payload} per publish.")] = Path("messages.jsonl"),
    truth: Annotated[Path | None, typer.Option(help="Ground-truth JSONL output path.")] = None,
    faults: FaultsOpt = None,
) -> None:
    """Generate offline (no broker): every message and the ground truth, as fast as possible."""
    fleet_obj, fault_cfg = _load(fleet, faults)
    writer = TruthWriter(truth) if truth is not None else None
    ledger = TruthLedger(writer)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for e in simulate(fleet_obj, hours * 3600.0, fault_cfg):
            ledger.record(e)
            if e.publishes:
                fh.write(json.dumps({"topic": e.topic, "payload": e.payload.decode("utf-8", "replace")}) + "\n")
    summary = ledger.summary()
    if writer is not None:
        writer.close(summary)
    sys.stdout.write(summary.model_dump_json() + "\n")


if __name__ == "__main__":
    app()
