"""``edgehouse-agent run``: the daemon's own start-up path, kept lean.

A gateway runs this process for months, so it loads only what the running agent uses: no
Typer, Click, Rich or Pygments (the interactive CLI in :mod:`edge_agent.cli` keeps those for
``status`` and ``--help``). Measured on the agent's ingest bench, the CLI stack and httpx's
command-line module cost about 7 MB of resident memory that a daemon never touches.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

#: Exit status of a configuration that cannot be used (the systemd unit does not restart on it).
CONFIG_ERROR_EXIT = 2
#: glibc ``mallopt`` parameter: the number of malloc arenas.
_M_ARENA_MAX = -8
#: The agent's threads (MQTT, ingest, scoring, forecasts, sync, housekeeping, HTTP) would each
#: get a malloc arena of their own (glibc allows 8 per core); two keep the heap from fragmenting
#: over many arenas, at no measurable cost to ingest throughput on the bench.
ARENA_MAX = 2


def limit_malloc_arenas(arenas: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas; False where libc is not glibc or ``MALLOC_ARENA_MAX`` is set.

    An operator's own ``MALLOC_ARENA_MAX`` (read by glibc at start) wins over this default.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def block_httpx_cli() -> None:
    """Keep ``import httpx`` from loading its command-line client (Click, Rich, Pygments).

    httpx imports ``httpx._main`` inside ``try/except ImportError`` and falls back to a stub
    when it is missing; a ``None`` entry in ``sys.modules`` makes that import fail, which is
    Python's documented way to block a module. Only the daemon does this.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]


def install_stop_signals(stop: threading.Event) -> None:
    """Map SIGTERM and SIGINT to one stop event (the only place signals are handled)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def wait_for_stop(stop: threading.Event) -> None:
    """Block until ``stop`` is set, in short waits: a signal's Python handler runs only in the main
    thread, between bytecodes, and the kernel may hand SIGTERM to another of the agent's threads,
    which would never wake a wait without a timeout (the agent would ignore the signal)."""
    while not stop.wait(0.5):
        pass


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgehouse-agent run",
        description="Run the agent until SIGTERM/SIGINT (exit 0 after a graceful stop).",
    )
    ap.add_argument("--config", "-c", type=Path, required=True, help="Agent TOML config file.")
    ap.add_argument(
        "--validate-config",
        action="store_true",
        help="Check the config, print OK or the error, start nothing.",
    )
    return ap


def run(config: Path, validate_config: bool = False) -> int:
    """Load the config (exit 2 naming the bad key), then run the agent until stopped."""
    block_httpx_cli()
    from edge_agent.config import AgentConfig, ConfigError

    try:
        cfg = AgentConfig.load(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    if validate_config:
        print("OK")
        return 0
    limit_malloc_arenas()
    from edge_agent import logs

    logs.configure(cfg.log_level)  # plain text, or journald's priority prefixes under systemd
    from protocols.untrusted import bound_log_handlers

    bound_log_handlers()  # nothing from a payload, topic or the cloud is logged unbounded
    # One line per sync post / model poll at INFO would drown the agent's own log.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    from edge_agent.app import Agent
    from edge_agent.service.notify import notify

    stop = threading.Event()
    install_stop_signals(stop)
    agent = Agent(cfg)
    agent.start()
    # Type=notify: systemd counts the service as started only now (store open, threads running).
    notify("READY=1", f"STATUS=gateway {cfg.gateway_id} (site {cfg.site}) running", f"MAINPID={os.getpid()}")
    try:
        wait_for_stop(stop)
    finally:
        notify("STOPPING=1", "STATUS=stopping: draining ingest, last sync round")
        agent.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(args.config, args.validate_config)
