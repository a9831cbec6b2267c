"""``edgehouse-agent``: run the gateway agent, validate its config, show a running agent's state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from edge_agent import runtime
from edge_agent.config import AgentConfig, ConfigError
from edge_agent.tools.cli import db_app, dead_letters_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Edgehouse gateway agent.")
app.add_typer(db_app, name="db")
app.add_typer(dead_letters_app, name="dead-letters")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Agent TOML config file.")]


def _load(config: Path, err: Console) -> AgentConfig:
    try:
        return AgentConfig.load(config)
    except ConfigError as exc:
        err.print(f"[red]config error[/red]: {exc}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: ConfigOption,
    validate_config: Annotated[
        bool,
        typer.Option("--validate-config", help="Check the config, print OK or the error, start nothing."),
    ] = False,
) -> None:
    """Run the agent until SIGTERM/SIGINT (exit 0 after a graceful stop)."""
    # `edgehouse-agent run` itself bypasses Typer (edge_agent.__main__); this is the same path
    # for `edgehouse agent run` and `--help`.
    from edge_agent.daemon import run as run_daemon

    raise typer.Exit(run_daemon(config, validate_config))


@app.command()
def status(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Agent TOML config file.")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Agent status URL, e.g. http://127.0.0.1:9100")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Print the state of a running agent (found via its runtime file, or --url)."""
    err = Console(stderr=True)
    if url is None:
        if config is None:
            err.print("give --config or --url")
            raise typer.Exit(2)
        cfg = _load(config, err)
        try:
            url = runtime.read(cfg.runtime_path).url
        except (OSError, ValueError):
            err.print(f"no running agent: {cfg.runtime_path} is missing or unreadable")
            raise typer.Exit(1) from None
    try:
        response = httpx.get(f"{url.rstrip('/')}/status", timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        err.print(f"cannot reach the agent at {url}: {exc}")
        raise typer.Exit(1) from None
    data = response.json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"edge agent {data.get('gateway_id', '?')}", show_header=True)
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in data.items():
        if key == "models" and isinstance(value, dict):
            for task, line in value.items():
                table.add_row(f"models.{task}", model_line(line))
        elif key == "sync" and isinstance(value, dict):
            for name, text in sync_lines(value):
                table.add_row(name, text)
        elif isinstance(value, dict):
            for sub, subval in value.items():
                table.add_row(f"{key}.{sub}", str(subval))
        else:
            table.add_row(key, "-" if value is None else str(value))
    Console().print(table)


def duration(seconds: object) -> str:
    """``5400`` -> ``1h 30m``; ``None`` -> ``unknown``."""
    if not isinstance(seconds, int | float):
        return "unknown"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.0f}s"
    hours, minutes = divmod(s // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def sync_lines(sync: dict[str, Any]) -> list[tuple[str, str]]:
    """The status ``sync`` block as table rows: cap, expected drain time, lanes, why it is stuck."""
    cap = sync.get("cap_bytes_per_s")
    rate = "no cap" if cap is None else f"cap {cap * 8 / 1000:,.0f} kbit/s"
    link = f"{rate}, {sync.get('encoding')}, {sync.get('bytes_per_record')} B/record, {sync.get('bytes_sent', 0):,} B sent"
    rows = [("sync.link", link), ("sync.expected_drain", duration(sync.get("expected_drain_s")))]
    for lane, info in (sync.get("lanes") or {}).items():
        age = info.get("oldest_age_s")
        rows.append((f"sync.lanes.{lane}", f"{info.get('depth', 0):,}" + (f", oldest {duration(age)}" if age else "")))
    if sync.get("problem"):
        rows.append(("sync.problem", str(sync["problem"])))
    return rows


def model_line(line: dict[str, object]) -> str:
    """One task of the status ``models`` block: version, sha256 prefix, state, pending/shadow, refusal."""
    parts = []
    if line.get("version") is not None:
        parts.append(f"v{line['version']} {line.get('sha256') or ''}".strip())
    parts.append(str(line.get("state", "?")))
    if line.get("pending_version") is not None:
        parts.append(f"downloading v{line['pending_version']}")
    if line.get("shadow_version") is not None:
        parts.append(f"shadow v{line['shadow_version']}")
    if line.get("rejected_code"):
        parts.append(f"rejected {line['rejected_code']}: {line.get('rejected_reason') or ''}".rstrip(": "))
    return ", ".join(parts)
