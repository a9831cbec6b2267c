"""``edgehouse``: one command line over every part of Edgehouse.

Each part keeps its own Typer app (``edgehouse-agent``, ``edgehouse-cloud``, ``edgehouse-sim``,
routing, training); this module only mounts them. A part whose extra is not installed is
replaced by a command that names the extra to install, so a gateway that installed only
``edgehouse[edge]`` still gets a working ``edgehouse`` with the parts it has.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Edgehouse: warehouse edge AI and logistics.", no_args_is_help=True)
protocols_app = typer.Typer(help="Wire contracts.", no_args_is_help=True)
app.add_typer(protocols_app, name="protocols")

#: (command name, module holding a Typer ``app``, extra that provides it, help)
_PARTS: tuple[tuple[str, str, str, str], ...] = (
    ("agent", "edge_agent.cli", "edge", "The gateway agent daemon."),
    ("cloud", "cloud.cli", "cloud", "The cloud service and its admin commands."),
    ("models", "cloud.models_cli", "cloud", "Model registry, retraining, signing and staged rollouts."),
    ("sim", "firmware_sim.cli", "sim", "The device simulator."),
    ("routes", "cloud.routing.cli", "routing", "Vehicle routing for planners."),
    ("train", "models.cli", "train", "Train the gateway models (TensorFlow)."),
)


_OURS = {"edge_agent", "cloud", "firmware_sim", "models", "protocols", "edgehouse_cli"}


def _mount(name: str, module: str, extra: str, help_text: str) -> None:
    try:
        sub = importlib.import_module(module).app
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in _OURS and exc.name != module:
            raise  # a bug in our own code, not a missing extra
        reason = str(exc)
        missing = typer.Typer(help=f"{help_text} (unavailable: {reason})")

        @missing.callback(invoke_without_command=True)
        def _explain() -> None:
            Console(stderr=True).print(
                f"[red]`edgehouse {name}` needs the `{extra}` extra:[/] pip install 'edgehouse[{extra}]' ({reason})"
            )
            raise typer.Exit(2)

        app.add_typer(missing, name=name)
        return
    app.add_typer(sub, name=name, help=help_text)


for _part in _PARTS:
    _mount(*_part)


@protocols_app.command("schema")
def protocols_schema(
    out: Annotated[Path | None, typer.Option(help="Folder to write into (default: protocols/schemas/).")] = None,
    check: Annotated[bool, typer.Option(help="Only check the committed schemas; exit 1 on drift.")] = False,
) -> None:
    """Export every wire contract as JSON Schema, one file per (name, version)."""
    from protocols import schemas

    console = Console()
    if check:
        problems = schemas.drift(out or schemas.SCHEMA_DIR)
        for p in problems:
            console.print(f"[red]{p}[/]")
        raise typer.Exit(1 if problems else 0)
    for path in schemas.export(out or schemas.SCHEMA_DIR):
        console.print(f"wrote {path}")


@app.command("demo")
def demo(
    duration: Annotated[float, typer.Option(help="Seconds the simulated fleet publishes.")] = 90.0,
    fleet: Annotated[Path | None, typer.Option(help="Fleet file (default: the bundled demo fleet).")] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(envvar="EDGEHOUSE_DEMO_BROKER_URL", help="Use this broker (mqtt://host:port) instead."),
    ] = None,
    embedded_broker: Annotated[
        bool, typer.Option(help="Use the embedded Python broker even if Mosquitto is installed.")
    ] = False,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its databases and logs.")] = Path("var/demo"),
    live: Annotated[bool, typer.Option(help="Show the live view.")] = True,
    lifecycle: Annotated[
        bool, typer.Option(help="Midway, retrain the anomaly model in the cloud and roll it out (needs TensorFlow).")
    ] = True,
    keep: Annotated[
        bool | None,
        typer.Option("--keep/--no-keep", help="After the summary, print the console's URL and tokens and keep the "
                     "stack up until Ctrl-C (default: when the live view runs in a terminal)."),
    ] = None,
) -> None:
    """Run a broker, the cloud, two gateway agents and a simulated fleet; print a summary."""
    from edgehouse_cli.demo import DemoOptions, run_demo
    from edgehouse_cli.demo_console import wants_keep

    ok = run_demo(
        DemoOptions(
            duration_s=duration,
            fleet_path=fleet,
            broker_url=broker_url,
            embedded_broker=embedded_broker,
            workdir=workdir,
            live=live,
            lifecycle=lifecycle,
            keep=wants_keep(keep, live),
        )
    )
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":
    app()
