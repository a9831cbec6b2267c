"""The Mosquitto configuration shipped with the agent (``mosquitto.conf``, package data)."""

from __future__ import annotations

from importlib import resources

CONFIG_NAME = "mosquitto.conf"


def shipped_config() -> str:
    """Text of the shipped ``mosquitto.conf``."""
    return resources.files(__name__).joinpath(CONFIG_NAME).read_text(encoding="utf-8")
