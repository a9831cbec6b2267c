"""``edgehouse-cloud``: serve the API, run job workers and the rollout controller, migrate the database,
register gateways and issue tokens.

Settings come from ``EDGEHOUSE_CLOUD_*`` variables and optionally ``--config FILE`` (TOML).
The admin commands work on the database directly, so they also provision a fresh install.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import Engine

from cloud.app import create_app
from cloud.asgi import CONFIG_FILE_ENV, configure_logging
from cloud.auth import ROLES, Role
from cloud.db import migrate as migrations
from cloud.db.engine import build_engine
from cloud.jobs.queue import QUEUE_NAMES
from cloud.jobs.worker import Worker
from cloud.schemas import GatewayCreate, TokenCreate
from cloud.services import gateways as gateway_service
from cloud.services.errors import ServiceError
from cloud.services.model_registry import ensure_shipped_defaults
from cloud.services.model_signing import Keyring
from cloud.services.rollout_controller import RolloutController
from cloud.settings import CloudSettings, SettingsError, load_settings

log = logging.getLogger(__name__)
app = typer.Typer(help="Edgehouse cloud service.", no_args_is_help=True, add_completion=False)
gateway_app = typer.Typer(help="Register and list gateways.", no_args_is_help=True)
token_app = typer.Typer(help="Issue API tokens.", no_args_is_help=True)
app.add_typer(gateway_app, name="gateway")
app.add_typer(token_app, name="token")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (env variables override it)")
]


def _settings(config: Path | None, **overrides: object) -> CloudSettings:
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _engine(settings: CloudSettings, pool_size: int = 1) -> Iterator[Engine]:
    engine = build_engine(settings.database_url, pool_size=pool_size)
    try:
        try:
            migrations.ensure_schema(engine, apply=settings.migrate_on_start)
        except migrations.MigrationError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        ensure_shipped_defaults(engine)  # as the app's lifespan does: every process that opens the database
        yield engine
    finally:
        engine.dispose()


def _fail(exc: ServiceError) -> typer.Exit:
    typer.echo(f"error: {exc.field + ': ' if exc.field else ''}{exc.message}", err=True)
    return typer.Exit(1)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Overrides the host setting")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides the port setting")] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="API processes sharing the port (uvicorn workers; about one per core)")] = 1,
) -> None:
    """Run the API with uvicorn until SIGINT/SIGTERM."""
    settings = _settings(config, host=host, port=port)
    _logging(settings)
    # log_config=None: uvicorn's loggers propagate to the (bounded) root handler instead of their own.
    if workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                    log_config=None)
        return
    with _engine(settings):  # migrate once here, before the workers start (each checks again under the lock)
        pass
    if config is not None:
        os.environ[CONFIG_FILE_ENV] = str(config.resolve())
    log.info("serving with %d worker processes", workers)
    uvicorn.run("cloud.asgi:app_from_environment", factory=True, workers=workers, host=settings.host,
                port=settings.port, log_level=settings.log_level, log_config=None)


def _until_signalled(component: Worker | RolloutController, what: str) -> None:
    """Start ``component``, run until SIGINT/SIGTERM, then stop it (its jobs go back to the queue)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: %s received, stopping", what, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    component.start()
    log.info("%s running until SIGTERM or SIGINT", what)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        component.stop()
    log.info("%s stopped", what)


def _logging(settings: CloudSettings) -> None:
    configure_logging(settings)  # nothing from a request or a job's output is logged unbounded


@app.command()
def worker(
    config: ConfigOption = None,
    queues: Annotated[str, typer.Option(help="Queues to serve, comma-separated: route, train")] = "route,train",
    route_concurrency: Annotated[int | None, typer.Option(
        min=1, max=64, help="Route jobs solved at once (default: WORKER_ROUTE_CONCURRENCY)")] = None,
    train_concurrency: Annotated[int | None, typer.Option(
        min=1, max=16, help="Retraining jobs run at once (default: MAX_CONCURRENT_TRAIN_JOBS)")] = None,
) -> None:
    """Run route and training jobs from the database until SIGINT/SIGTERM (any number of workers on PostgreSQL)."""
    settings = _settings(config)
    _logging(settings)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUE_NAMES]
    if unknown or not names:
        typer.echo(f"error: --queues: unknown queue {unknown[0]!r} (route, train)" if unknown
                   else "error: --queues: name at least one queue", err=True)
        raise typer.Exit(2)
    concurrency = {k: v for k, v in (("route", route_concurrency), ("train", train_concurrency)) if v is not None}
    slots = (concurrency.get("route", settings.worker_route_concurrency) if "route" in names else 0) + (
        concurrency.get("train", settings.max_concurrent_train_jobs) if "train" in names else 0)
    with _engine(settings, pool_size=slots + 2) as engine:  # a connection per slot, the upkeep loop, one spare
        _until_signalled(Worker(settings, engine, names, concurrency), "worker")  # type: ignore[arg-type]


@app.command()
def controller(config: ConfigOption = None) -> None:
    """Run the rollout controller until SIGINT/SIGTERM (API replicas then set EMBEDDED_ROLLOUT_CONTROLLER=false)."""
    settings = _settings(config)
    _logging(settings)
    with _engine(settings, pool_size=2) as engine:
        _until_signalled(RolloutController(engine, Keyring.from_settings(settings), settings.rollout_tick_s),
                         "rollout controller")


@app.command()
def migrate(
    config: ConfigOption = None,
    show_status: Annotated[bool, typer.Option("--status", help="Show each migration's state; change nothing")] = False,
) -> None:
    """Apply the pending schema migrations (safe while other processes start or run)."""
    settings = _settings(config)
    _logging(settings)
    engine = build_engine(settings.database_url, pool_size=1)
    try:
        if not show_status:
            started = time.perf_counter()
            try:
                done = migrations.migrate(engine)
            except migrations.MigrationError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
            took = time.perf_counter() - started
            typer.echo(f"applied {len(done)} migrations in {took:.2f} s" if done else "the schema is up to date")
        states = migrations.status(engine)
    finally:
        engine.dispose()
    for st in states:
        when = "" if st.applied_ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.applied_ts / 1000))
        took_ms = "" if st.duration_ms is None else f"{st.duration_ms} ms"
        typer.echo(f"{st.name:<40} {st.state:<8} {when:<19} {took_ms:>9}  {st.summary}")


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate the settings and exit (0 when they are good)."""
    settings = _settings(config)
    typer.echo(f"ok: {settings.backend} database, listening on {settings.host}:{settings.port}")


@gateway_app.command("add")
def gateway_add(
    gateway_id: Annotated[str, typer.Argument(help="Gateway id, e.g. gw-berlin-1")],
    site: Annotated[str, typer.Option(help="Site the gateway serves")],
    token: Annotated[str | None, typer.Option(help="Use this secret instead of a random one")] = None,
    config: ConfigOption = None,
) -> None:
    """Register a gateway and print its token (shown only now)."""
    settings = _settings(config)
    try:
        req = GatewayCreate(gateway_id=gateway_id, site=site, token=token)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with _engine(settings) as engine:
        try:
            created = gateway_service.register_gateway(engine, req, gateway_service.TokenRules.from_settings(settings))
        except ServiceError as exc:
            raise _fail(exc) from None
    typer.echo(created.token)


@gateway_app.command("list")
def gateway_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """List gateways with their last sync time and stored record counts."""
    settings = _settings(config)
    with _engine(settings) as engine:
        rows = gateway_service.list_gateways(engine)
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    typer.echo(f"{'gateway_id':<24} {'site':<16} {'last_seen_ts':>14}  counts")
    for r in rows:
        counts = " ".join(f"{k}={v}" for k, v in r.counts.items())
        typer.echo(f"{r.gateway_id:<24} {r.site:<16} {r.last_seen_ts or '-':>14}  {counts}")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, planner, operator or gateway")],
    gateway_id: Annotated[str | None, typer.Option(help="The gateway, for gateway tokens")] = None,
    label: Annotated[str | None, typer.Option(help="What the token is for")] = None,
    config: ConfigOption = None,
) -> None:
    """Issue a token and print it (shown only now)."""
    settings = _settings(config)
    if role not in ROLES:
        typer.echo(f"error: role: must be one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    checked_role: Role = role  # type: ignore[assignment]  # checked against ROLES above
    try:
        req = TokenCreate(role=checked_role, gateway_id=gateway_id, label=label)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with _engine(settings) as engine:
        try:
            created = gateway_service.create_token(engine, req, gateway_service.TokenRules.from_settings(settings))
        except ServiceError as exc:
            raise _fail(exc) from None
    typer.echo(created.token)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m cloud``: no arguments means ``serve``."""
    args = sys.argv[1:] if argv is None else argv
    app(args=args or ["serve"], prog_name="edgehouse-cloud")
