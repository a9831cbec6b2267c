"""Running the agent as a systemd service: the shipped unit and sysusers files (package data) and
:mod:`edge_agent.service.notify`, the agent's side of ``Type=notify``."""

from __future__ import annotations

from importlib import resources

UNIT_NAME = "edgehouse-agent.service"
SYSUSERS_NAME = "edgehouse-agent.sysusers"


def shipped_unit() -> str:
    """Text of the shipped ``edgehouse-agent.service``."""
    return resources.files(__name__).joinpath(UNIT_NAME).read_text(encoding="utf-8")


def shipped_sysusers() -> str:
    """Text of the shipped ``edgehouse-agent.sysusers`` (the dedicated user)."""
    return resources.files(__name__).joinpath(SYSUSERS_NAME).read_text(encoding="utf-8")
