"""``edgehouse-agent`` / ``python -m edge_agent``.

``run`` goes straight to the lean daemon path (:mod:`edge_agent.daemon`); every other command
(``status``, ``--help``) is the Typer app in :mod:`edge_agent.cli`.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and not {"--help", "-h"} & set(argv[1:]):
        from edge_agent.daemon import main as run_daemon

        raise SystemExit(run_daemon(argv[1:]))
    from edge_agent.cli import app

    app(prog_name="edgehouse-agent")


if __name__ == "__main__":
    main()
