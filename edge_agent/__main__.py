"""``python -m edge_agent``: the same Typer app as the ``edgehouse-agent`` console script."""

from edge_agent.cli import app

if __name__ == "__main__":
    app(prog_name="edgehouse-agent")
