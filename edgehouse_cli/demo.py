"""``edgehouse demo``: broker, cloud, two gateway agents and a simulated fleet, end to end.

Everything runs on this machine on private ports under ``workdir``: a Mosquitto started
with the shipped config (or the embedded Python broker when Mosquitto is not installed),
the cloud on SQLite, one agent per gateway of the fleet file, and the simulator with its
faults switched on. A live Rich view shows rates, outbox depth and dead letters; the run
ends with a summary that reconciles what was published with what the edge and the cloud
stored, and succeeds only when nothing was lost.

Midway (once the fleet has streamed ``lifecycle_after_sim_h`` simulated hours) the model
lifecycle runs as an admin would drive it: the cloud retrains the anomaly model on the synced
data (TensorFlow, ``train`` extra), signs it if it passes its quality gate, rolls it out (canary
in shadow, then every gateway), and the summary says how long it took from the train request to
the new model running on every gateway.

Before the live part each gateway's store gets 112 days of pre-generated demand history
(``edgehouse_cli.demo_history``), so the agents forecast every SKU at start and the forecasts reach
the cloud; the live fleet starts today. At the end the cloud builds a replenishment plan from the
synced forecasts and stock, routes it, and the summary prints the routes, the line
``replenishment: orders=<n> routes=<n> distance_km=<x> unserved=<n>`` and writes the route plot
(``edgehouse_cli.demo_replenish``).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as day_time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from edgehouse_cli.broker import Broker, EmbeddedBroker, MosquittoBroker
from edgehouse_cli.demo_console import offer_console
from edgehouse_cli.demo_history import HISTORY_DAYS, seed_history
from edgehouse_cli.demo_replenish import plan_and_report
from edgehouse_cli.lifecycle import ModelAdmin, RetrainDrill
from edgehouse_cli.stack import AgentProcess, CloudProcess
from firmware_sim.config import Fleet
from firmware_sim.faults import FaultConfig
from firmware_sim.runner import RunStats, SimRunner
from firmware_sim.truth import Summary
from protocols.signing import Signer, generate_private_key_pem

DEFAULT_FLEET = Path(__file__).resolve().parent.parent / "firmware_sim" / "fleets" / "demo.toml"
#: Faults the demo injects on top of the fleet's own settings, so the summary has something to reconcile.
DEMO_FAULTS = "duplicates=0.02,reorder=0.02,late=0.01,malformed=0.005,reboots=0.0005,clock_skew=0.001,disconnects=0.0005"


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 90.0
    fleet_path: Path | None = None
    broker_url: str | None = None
    embedded_broker: bool = False
    workdir: Path = Path("var/demo")
    live: bool = True
    drain_timeout_s: float = 60.0
    #: Retrain, sign and roll out the anomaly model midway (needs TensorFlow: the ``train`` extra).
    lifecycle: bool = True
    #: Simulated hours of telemetry the cloud should hold before the retrain starts.
    lifecycle_after_sim_h: float = 10.0
    lifecycle_timeout_s: float = 300.0
    #: After the summary, print the console's URL and tokens and keep the stack up until Ctrl-C.
    keep: bool = False


@dataclass
class _External:
    """A broker the user already runs (``--broker-url``)."""

    host: str
    port: int
    name: str = "external"
    mqtt_protocol: str = "v5"

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


@dataclass
class _Totals:
    edge: dict[str, dict[str, object]] = field(default_factory=dict)
    cloud: dict[str, int] = field(default_factory=dict)


def _broker(opts: DemoOptions) -> Broker:
    if opts.broker_url:
        url = urlparse(opts.broker_url)
        return _External(url.hostname or "127.0.0.1", url.port or 1883)
    if not opts.embedded_broker and MosquittoBroker.available():
        return MosquittoBroker(data_dir=opts.workdir / "broker")
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    return EmbeddedBroker()


def _num(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _view(broker: Broker, stats: RunStats | None, totals: _Totals, phase: str, lifecycle: str = "") -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[b]phase[/] {phase}",
        f"[b]broker[/] {broker.name} {broker.host}:{broker.port}",
        f"[b]sim time[/] {stats.sim_time:%Y-%m-%d %H:%M}" if stats else "",
    )
    if lifecycle:
        head.add_row(f"[b]model lifecycle[/] {lifecycle}", "", "")
    sim = Table(title="simulated fleet", expand=True)
    for col in ("published", "msgs/s", "telemetry", "scan", "status", "duplicates", "malformed", "in flight"):
        sim.add_column(col, justify="right")
    if stats is not None:
        sim.add_row(
            f"{stats.published:,}", f"{stats.msgs_per_s:,.0f}", f"{stats.by_kind.get('telemetry', 0):,}",
            f"{stats.by_kind.get('scan', 0):,}", f"{stats.by_kind.get('status', 0):,}",
            f"{stats.duplicates:,}", f"{stats.malformed:,}", f"{stats.in_flight:,}",
        )
    gws = Table(title="gateways", expand=True)
    for col in ("gateway", "mqtt", "in", "telemetry", "scans", "dups", "rfid burst", "dead letters",
                "outbox", "synced", "oldest unsynced s"):
        gws.add_column(col, justify="right")
    for gw, st in totals.edge.items():
        stored = st.get("stored") if isinstance(st.get("stored"), dict) else {}
        assert isinstance(stored, dict)
        gws.add_row(
            gw, "up" if st.get("mqtt_connected") else "[red]down[/]", f"{_num(st.get('messages_in')):,}",
            f"{_num(stored.get('telemetry')):,}", f"{_num(stored.get('scan')):,}",
            f"{_num(st.get('duplicates')):,}", f"{_num(st.get('rfid_burst_dropped')):,}",
            f"{_num(st.get('dead_letters')):,}", f"{_num(st.get('outbox_depth')):,}", f"{_num(st.get('synced')):,}",
            f"{float(st.get('oldest_unsynced_age_s') or 0.0):.1f}",  # type: ignore[arg-type]
        )
    cloud = Table(title="cloud", expand=True)
    for col in ("telemetry", "scan", "device status", "alerts", "forecasts"):
        cloud.add_column(col, justify="right")
    c = totals.cloud
    cloud.add_row(*(f"{c.get(k, 0):,}" for k in ("telemetry", "scan", "device_status", "alert", "forecast")))
    return Group(Panel(head, title="Edgehouse demo"), sim, gws, cloud)


def _poll(agents: list[AgentProcess], cloud: CloudProcess, totals: _Totals) -> None:
    for agent in agents:
        try:
            totals.edge[agent.gateway_id] = agent.status()
        except (httpx.HTTPError, OSError, ValueError) as exc:  # restarting or busy: keep its last state
            totals.edge.setdefault(agent.gateway_id, {})["error"] = str(exc)
    try:
        totals.cloud = cloud.counts()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        logging.getLogger(__name__).debug("cloud not answering: %s", exc)


def _summary(console: Console, summary: Summary, totals: _Totals, rcs: dict[str, int | None],
             lifecycle: str | None, history_scans: int = 0) -> bool:
    # the pre-generated history's scans are expected at the edge and in the cloud along with the live ones
    exp = summary.expected_stored.model_copy(update={"scan": summary.expected_stored.scan + history_scans})
    edge_t = sum(_num((s.get("stored") or {}).get("telemetry")) for s in totals.edge.values())  # type: ignore[union-attr]
    edge_s = history_scans + sum(_num((s.get("stored") or {}).get("scan")) for s in totals.edge.values())  # type: ignore[union-attr]
    dups = sum(_num(s.get("duplicates")) for s in totals.edge.values())
    bursts = sum(_num(s.get("rfid_burst_dropped")) for s in totals.edge.values())
    dead = sum(_num(s.get("dead_letters")) for s in totals.edge.values())
    cloud_t, cloud_s = totals.cloud.get("telemetry", 0), totals.cloud.get("scan", 0)
    lost = max(0, exp.telemetry - cloud_t) + max(0, exp.scan - cloud_s)
    extra = max(0, cloud_t - exp.telemetry) + max(0, cloud_s - exp.scan)
    table = Table(title="demo summary", show_header=True)
    table.add_column("")
    table.add_column("telemetry", justify="right")
    table.add_column("scans", justify="right")
    table.add_column("total", justify="right")
    table.add_row("published (incl. duplicates, malformed)", "", "", f"{summary.published:,}")
    table.add_row(f"pre-generated history ({HISTORY_DAYS} days of picks and restocks)", "", f"{history_scans:,}",
                  f"{history_scans:,}")
    table.add_row("expected (unique, valid, after RFID burst dedup)", f"{exp.telemetry:,}", f"{exp.scan:,}",
                  f"{exp.telemetry + exp.scan:,}")
    table.add_row("stored at the edge", f"{edge_t:,}", f"{edge_s:,}", f"{edge_t + edge_s:,}")
    table.add_row("stored in the cloud", f"{cloud_t:,}", f"{cloud_s:,}", f"{cloud_t + cloud_s:,}")
    table.add_row("duplicates dropped (injected)", "", "", f"{dups:,} ({summary.duplicates:,})")
    table.add_row("RFID burst repeats dropped (injected)", "", "", f"{bursts:,} ({summary.rfid_burst_repeats:,})")
    table.add_row("dead-lettered (malformed injected)", "", "", f"{dead:,} ({summary.malformed:,})")
    table.add_row("alerts / demand forecasts in the cloud", "", "",
                  f"{totals.cloud.get('alert', 0):,} / {totals.cloud.get('forecast', 0):,}")
    table.add_row("[b]lost[/]", "", "", f"[b]{lost}[/]")
    table.add_row("stored twice", "", "", f"{extra}")
    table.add_row("agents' exit codes (SIGTERM)", "", "", ", ".join(f"{k}={v}" for k, v in rcs.items()))
    if lifecycle is not None:
        table.add_row("model lifecycle", "", "", lifecycle)
    console.print(table)
    ok = lost == 0 and extra == 0 and all(rc == 0 for rc in rcs.values())
    console.print("[green]OK: nothing lost, nothing stored twice[/]" if ok else "[red]FAILED[/]")
    return ok


def _lifecycle_skip_reason(opts: DemoOptions) -> str | None:
    if not opts.lifecycle:
        return "off (--no-lifecycle)"
    if importlib.util.find_spec("tensorflow") is None:
        return "skipped: retraining needs TensorFlow (pip install 'edgehouse[train]')"
    return None


def run_demo(opts: DemoOptions) -> bool:
    console = Console()
    fleet = Fleet.load(opts.fleet_path or DEFAULT_FLEET)
    # The live part starts today, right after the pre-generated history (which ends yesterday).
    today = datetime.now(UTC).date()
    fleet = Fleet(fleet.config.model_copy(update={"start": datetime.combine(today, day_time(6), UTC)}))
    if opts.workdir.exists():
        shutil.rmtree(opts.workdir)
    opts.workdir.mkdir(parents=True)
    broker = _broker(opts)
    # The release signing key: the cloud signs online with it, the gateways trust its public half.
    key = opts.workdir / "keys" / "release.pem"
    key.parent.mkdir()
    key.write_bytes(generate_private_key_pem())
    key.chmod(0o600)
    cloud = CloudProcess(workdir=opts.workdir / "cloud",
                         settings={"signing_key_file": str(key.resolve()), "rollout_tick_s": "0.5"})
    updates = {"trusted_keys": [Signer.from_file(key).public_key.public_key], "poll_interval_s": 2.0,
               "report_interval_s": 2.0}
    agents: list[AgentProcess] = []
    totals = _Totals()
    rcs: dict[str, int | None] = {}
    history_scans = 0
    runner: SimRunner | None = None
    skip = _lifecycle_skip_reason(opts)
    drill: RetrainDrill | None = None
    try:
        console.print("starting broker …")
        broker.start()
        console.print(f"broker: {broker.name} on {broker.host}:{broker.port}; starting cloud …")
        cloud.start()
        for gw in fleet.gateway_ids:
            token = cloud.register_gateway(gw, fleet.site_of(gw))
            agent = AgentProcess(
                gateway_id=gw, site=fleet.site_of(gw), workdir=opts.workdir / "agents",
                mqtt_host=broker.host, mqtt_port=broker.port, filters=fleet.topic_filters(gw),
                cloud_url=cloud.url, cloud_token=token, mqtt_protocol=broker.mqtt_protocol,
                extra={"updates": updates},
            )
            history = seed_history(fleet, gw, agent.data_dir, today)
            history_scans += history.scans
            console.print(f"history for {gw}: {history.days} days, {history.skus} SKUs, {history.scans:,} scans")
            console.print(f"starting agent {gw} …")
            agent.start()
            agents.append(agent)
        faults = fleet.config.faults if fleet.config.faults.any else FaultConfig().with_overrides(DEMO_FAULTS)
        runner = SimRunner(
            fleet, broker.host, broker.port, ground_truth_path=opts.workdir / "truth.jsonl",
            faults=faults, duration_s=opts.duration_s, mqtt_protocol=broker.mqtt_protocol,
        )
        start_ms = fleet.start_ms

        def lifecycle_line() -> str:
            if skip is not None:
                return skip
            return drill.result.line if drill is not None else f"retrain after {opts.lifecycle_after_sim_h:g} simulated h"

        def maybe_start_drill(stats: RunStats) -> None:
            nonlocal drill
            if skip is not None or drill is not None:
                return
            if stats.sim_time.timestamp() * 1000 - start_ms >= opts.lifecycle_after_sim_h * 3_600_000:
                drill = RetrainDrill(ModelAdmin(cloud.url, cloud.admin_token), lambda: totals.edge,
                                     timeout_s=opts.lifecycle_timeout_s)
                drill.start()

        runner.start()
        with Live(_view(broker, None, totals, "publishing"), console=console, refresh_per_second=4,
                  transient=not opts.live, auto_refresh=opts.live) as live:
            while not runner.done:
                _poll(agents, cloud, totals)
                stats = runner.stats()
                maybe_start_drill(stats)
                live.update(_view(broker, stats, totals, "publishing", lifecycle_line()))
                time.sleep(0.5)
            summary = runner.join()
            assert summary is not None
            deadline = time.monotonic() + opts.drain_timeout_s
            exp = summary.expected_stored
            while time.monotonic() < deadline:
                _poll(agents, cloud, totals)
                live.update(_view(broker, runner.stats(), totals, "draining to the cloud", lifecycle_line()))
                if totals.cloud.get("telemetry", 0) >= exp.telemetry \
                        and totals.cloud.get("scan", 0) >= exp.scan + history_scans \
                        and all(_num(s.get("outbox_depth")) == 0 for s in totals.edge.values()):
                    break
                time.sleep(0.5)
            if drill is None and skip is None:
                skip = f"skipped: the run ended before {opts.lifecycle_after_sim_h:g} simulated hours of data"
            deadline = time.monotonic() + opts.lifecycle_timeout_s
            while drill is not None and not drill.done and time.monotonic() < deadline:
                _poll(agents, cloud, totals)
                live.update(_view(broker, runner.stats(), totals, "model lifecycle", lifecycle_line()))
                time.sleep(0.5)
        _poll(agents, cloud, totals)
        for agent in agents:
            rcs[agent.gateway_id] = agent.stop()
        ok = _summary(console, summary, totals, rcs, lifecycle_line(), history_scans)
        try:
            plan_and_report(console, cloud.url, cloud.admin_token, [s.id for s in fleet.config.sites],
                            opts.workdir / "replenishment-routes.png")
        except (httpx.HTTPError, ValueError) as exc:
            console.print(f"[red]replenishment plan failed: {exc}[/]")
            ok = False
        if drill is not None and (drill.result.error or not drill.done):
            console.print(f"[red]model lifecycle failed: {drill.result.error or 'timed out'}[/]")
            ok = False
        offer_console(console, cloud.url, cloud.admin_token, opts.keep)
        return ok
    finally:
        if runner is not None and not runner.done:
            runner.stop(force=True)
        for agent in agents:
            agent.stop()
        cloud.stop()
        broker.stop()
