"""The end of ``edgehouse demo``: the operations console's URL and log-in tokens, and, in a terminal (or with
``--keep``), the stack kept up until Ctrl-C so the console can be browsed.

Non-interactive runs (tests, CI, ``--no-live``, ``--no-keep``) are unchanged: one hint line, then the stack
stops as before. The gateway agents have stopped by then (their exit codes are in the summary), so the
console's fleet page shows them go late, then offline, while the cloud and the broker stay up.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

import httpx
from rich.console import Console

#: The people's roles the demo issues a token for (besides the admin token of the demo's cloud).
ROLES = ("operator", "planner")


def wants_keep(keep: bool | None, live: bool) -> bool:
    """``--keep``/``--no-keep`` when given; otherwise keep only with the live view in a terminal."""
    if keep is not None:
        return keep
    return live and sys.stdin.isatty() and sys.stdout.isatty()


def console_tokens(cloud_url: str, admin_token: str) -> dict[str, str]:
    """A fresh token per role (admin: the demo cloud's own), issued through the cloud's API."""
    tokens = {"admin": admin_token}
    with httpx.Client(base_url=cloud_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10) as c:
        for role in ROLES:
            resp = c.post("/api/v1/tokens", json={"role": role, "label": f"{role} (demo console)"})
            resp.raise_for_status()
            tokens[role] = str(resp.json()["token"])
    return tokens


def _until_interrupted() -> None:
    """Block until Ctrl-C (main thread). Python's KeyboardInterrupt handler is put in place for the wait:
    a process started with SIGINT ignored (any background job of a shell without job control, such as a
    CI script) would otherwise never see it. In short waits: Python runs a signal's handler only in the
    main thread, between bytecodes; when the kernel hands SIGINT to another thread of the process, a
    wait without a timeout would never return to notice it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        never = threading.Event()
        while not never.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)


def offer_console(console: Console, cloud_url: str, admin_token: str, keep: bool,
                  wait: Callable[[], None] = _until_interrupted) -> dict[str, str]:
    """Print the console's URL and tokens, then ``wait`` (until Ctrl-C) when ``keep``; returns the tokens."""
    if not keep:
        console.print("console: run `make demo` in a terminal (or `edgehouse demo --keep`) to browse it")
        return {}
    tokens = console_tokens(cloud_url, admin_token)
    console.print(f"\n[b]console:[/] {cloud_url}/console  (log in with one of these tokens)")
    for role, token in tokens.items():
        console.print(f"  {role:9s}{token}", soft_wrap=True, highlight=False)
    try:  # a Ctrl-C right after the line (before the wait) is a Ctrl-C too
        console.print("the cloud and the broker stay up: press Ctrl-C to stop", highlight=False)
        wait()
    except KeyboardInterrupt:
        console.print("stopping …")
    return tokens
