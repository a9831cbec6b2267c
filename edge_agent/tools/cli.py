"""``edgehouse-agent db …`` and ``edgehouse-agent dead-letters …``: the operator's Typer commands.

Thin: options in, :mod:`database` / :mod:`export` / :mod:`dead_letters` do the work, rows out
through :mod:`formats` or a Rich table. Every value that came from a device is clipped and its
control characters escaped before it reaches the terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import sqlite_utils
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from edge_agent.config import AgentConfig, ConfigError
from edge_agent.tools import dead_letters as dl
from edge_agent.tools.database import ToolError, open_database, query, tables
from edge_agent.tools.export import DATASETS, export
from edge_agent.tools.formats import FORMATS, write_rows
from edge_agent.tools.timespec import TimeSpecError, iso, parse_time
from protocols.untrusted import clip

db_app = typer.Typer(
    no_args_is_help=True, help="Look into the agent's store (read-only; safe while it runs)."
)
dead_letters_app = typer.Typer(no_args_is_help=True, help="List, show and replay dead letters.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Agent TOML config (finds data_dir).")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="The agent.db file itself, instead of --config.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="From this time on: epoch ms, ISO 8601, or ago (90m, 7d).")
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Before this time (same forms as --since).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_err = Console(stderr=True, highlight=False)


def _fail(message: str, code: int = 1) -> typer.Exit:
    _err.print(Text(message))
    return typer.Exit(code)


def _config(config: Path) -> AgentConfig:
    try:
        return AgentConfig.load(config)
    except ConfigError as exc:
        raise _fail(f"config error: {exc}", 2) from None


def _db_path(config: Path | None, db: Path | None) -> Path:
    if (config is None) == (db is None):
        raise _fail("give either --config or --db", 2)
    return db if db is not None else _config(config).db_path  # type: ignore[arg-type]


@contextmanager
def _open(config: Path | None, db: Path | None) -> Iterator[sqlite_utils.Database]:
    try:
        database = open_database(_db_path(config, db))
    except ToolError as exc:
        raise _fail(str(exc)) from None
    try:
        yield database
    except ToolError as exc:
        raise _fail(str(exc)) from None
    finally:
        database.close()


def _time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except TimeSpecError as exc:
        raise _fail(f"{option}: {exc}", 2) from None


def safe(value: object, limit: int = 200) -> str:
    """A device-supplied value fit for a terminal: clipped, control characters escaped."""
    text = clip(value, limit)
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(safe("-" if v is None else v)) for v in row))
    Console().print(table)


# ------------------------------------------------------------------------------------------ db


@db_app.command("tables")
def db_tables(config: ConfigOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Every table of the store with its row count and columns."""
    with _open(config, db) as database:
        infos = tables(database)
    if as_json:
        typer.echo(json.dumps([{"name": t.name, "rows": t.rows, "columns": list(t.columns)} for t in infos]))
        return
    _table(
        "agent store", ("table", "rows", "columns"), ((t.name, t.rows, ", ".join(t.columns)) for t in infos)
    )


@db_app.command("query")
def db_query(
    sql: Annotated[str, typer.Argument(help="One SQL statement; the store is opened read-only.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A named parameter NAME=VALUE (for :NAME).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv, json or ndjson.")] = "table",
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Run one read-only SQL statement against the store."""
    if fmt not in ("table", *FORMATS):
        raise _fail(f"--format: one of table, {', '.join(FORMATS)}", 2)
    params: dict[str, str] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _fail(f"--param: {item!r} is not NAME=VALUE", 2)
        params[name] = value
    with _open(config, db) as database:
        result = query(database, sql, params)
        if fmt == "table":
            _table(safe(sql, 80), result.columns, (row.values() for row in result.rows))
        else:
            write_rows(result.rows, result.columns, fmt, sys.stdout)  # type: ignore[arg-type]


@db_app.command("export")
def db_export(
    what: Annotated[str, typer.Argument(help=f"{', '.join(DATASETS)}, or a table name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, json or ndjson.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    time_column: Annotated[
        str | None, typer.Option("--time-column", help="Filter on this column (default: the dataset's).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
) -> None:
    """Export readings, scans, alerts, stock, dead letters, … as CSV, JSON or NDJSON."""
    if fmt not in FORMATS:
        raise _fail(f"--format: one of {', '.join(FORMATS)}", 2)
    start, end = _time(since, "--since"), _time(until, "--until")
    with _open(config, db) as database:
        result = export(database, what, start, end, limit, time_column)
        if output is None:
            n = write_rows(result.rows, result.columns, fmt, sys.stdout)  # type: ignore[arg-type]
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                n = write_rows(result.rows, result.columns, fmt, out)  # type: ignore[arg-type]
    window = f" where {result.time_column} in [{iso(start)}, {iso(end)})" if start or end else ""
    _err.print(Text(f"exported {n} rows of {result.table}{window}"))


# -------------------------------------------------------------------------------- dead letters


def _selection(
    ids: list[int] | None,
    since: str | None,
    until: str | None,
    device: str | None,
    topic: str | None,
    reason: str | None,
) -> dl.Selection:
    return dl.Selection(
        ids=tuple(ids or ()),
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        device=device,
        topic_prefix=topic,
        reason_contains=reason,
    )


DeviceOpt = Annotated[str | None, typer.Option("--device", help="Letters whose topic has this device id.")]
TopicOpt = Annotated[str | None, typer.Option("--topic", help="Letters whose topic starts with this.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Letters whose reason contains this.")]


def _letter_json(letter: dl.Letter, with_payload: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": letter.id,
        "received_ts": letter.received_ts,
        "received": iso(letter.received_ts),
        "topic": letter.topic,
        "reason": letter.reason,
        "field": letter.field,
        "payload_bytes": letter.payload_bytes,
        "truncated": letter.truncated,
    }
    if with_payload:
        out["payload"] = letter.payload.decode("utf-8", "backslashreplace")
    return out


@dead_letters_app.command("list")
def dl_list(
    since: SinceOpt = None,
    until: UntilOpt = None,
    device: DeviceOpt = None,
    topic: TopicOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many (oldest first).")] = 50,
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Dead letters, oldest first: when, topic, reason, size."""
    selection = _selection(None, since, until, device, topic, reason)
    with _open(config, db) as database:
        total = dl.count(database, selection)
        letters = list(dl.select(database, selection, limit))
    if as_json:
        typer.echo(json.dumps([_letter_json(x, False) for x in letters]))
        return
    rows = (
        (x.id, iso(x.received_ts), x.topic, x.reason, x.field, f"{x.payload_bytes}{' (cut)' * x.truncated}")
        for x in letters
    )
    _table(
        f"dead letters: {len(letters)} of {total}",
        ("id", "received", "topic", "reason", "field", "bytes"),
        rows,
    )


@dead_letters_app.command("show")
def dl_show(
    letter_id: Annotated[int, typer.Argument(help="The dead letter's id (from list).")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One dead letter with its payload, and whether it decodes now (what replay would do)."""
    cfg = _config(config) if config is not None else None
    with _open(config, db) as database:
        letter = dl.get(database, letter_id)
        now = dl.verdict(dl.writer_for(database.conn, cfg), letter) if cfg is not None else None
    data = _letter_json(letter, True)
    if cfg is not None:
        data["decodes_now"] = now is None
        data["reason_now"] = now
    if as_json:
        typer.echo(json.dumps(data))
        return
    out = Console(highlight=False)
    for key, value in data.items():
        if key != "payload":
            out.print(Text(f"{key}: {safe('-' if value is None else value, 1000)}"))
    if cfg is None:
        out.print(Text("decodes_now: give --config to check (decoding depends on the gateway's site)"))
    out.print(Text("payload:"))
    out.print(Text(safe(data["payload"], len(data["payload"]) + 1)))


@dead_letters_app.command("replay")
def dl_replay(
    config: Annotated[Path, typer.Option("--config", "-c", help="Agent TOML config.")],
    ids: Annotated[
        list[int] | None, typer.Argument(help="Letter ids (default: every selected letter).")
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    device: DeviceOpt = None,
    topic: TopicOpt = None,
    reason: ReasonOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say which would decode now.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay dead letters through the live decoding and dedup: those that decode now are stored
    and synced once, the rest stay with their reason. Safe while the agent runs."""
    cfg = _config(config)
    selection = _selection(ids, since, until, device, topic, reason)
    try:
        database = open_database(cfg.db_path)  # read-only, for the progress total
        try:
            total = dl.count(database, selection)
        finally:
            database.close()
        with Progress(console=_err, transient=True, disable=as_json) as progress:
            task = progress.add_task("replaying dead letters", total=total)
            report = dl.replay(cfg, selection, dry_run, on_chunk=lambda n: progress.advance(task, n))
    except ToolError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(_report_json(report, dry_run)))
        return
    if report.still_failing:
        _table(
            "still failing (kept)",
            ("letters", "reason"),
            ((n, r) for r, n in report.still_failing.most_common()),
        )
    typer.echo(replay_line(report, dry_run))


def _report_json(report: dl.ReplayReport, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "selected": report.selected,
        "decoded": report.decoded,
        "stored": report.stored,
        "duplicates": report.duplicates,
        "rfid_burst_dropped": report.rfid_burst_dropped,
        "still_failing": sum(report.still_failing.values()),
        "reasons": dict(report.still_failing),
        "failing_ids": report.failing_ids,
    }


def replay_line(report: dl.ReplayReport, dry_run: bool) -> str:
    """The replay's last line: ``replay: selected=… decoded=… stored=… duplicates=… still_failing=…``."""
    head = "replay (dry run)" if dry_run else "replay"
    return (
        f"{head}: selected={report.selected} decoded={report.decoded} stored={report.stored_total} "
        f"duplicates={report.duplicates} rfid_burst_dropped={report.rfid_burst_dropped} "
        f"still_failing={sum(report.still_failing.values())}"
    )
