"""The app of one ``edgehouse-cloud serve --workers N`` process: uvicorn imports :func:`app_from_environment`
in each worker process it starts.

A worker process is a fresh interpreter: it cannot be handed the parent's settings object, so it loads
the settings the same way (``EDGEHOUSE_CLOUD_*`` variables, which it inherits) and the TOML file the
parent was given, whose path the parent leaves in :data:`CONFIG_FILE_ENV` (a name outside the settings'
prefix, so no setting is mistaken for it). Each process then runs the whole app: its own engine and
pool, its own lifespan (migrations checked under their lock, the GC threshold, the embedded worker and
rollout controller where the settings ask for them). The processes share nothing but the database.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from cloud.app import create_app
from cloud.settings import CloudSettings, load_settings
from protocols.untrusted import bound_log_handlers

#: Where ``serve --workers`` leaves ``--config`` for its worker processes.
CONFIG_FILE_ENV: Final = "EDGEHOUSE_SERVE_CONFIG_FILE"


def configure_logging(settings: CloudSettings) -> None:
    """The cloud's log format at the settings' level, every handler bounded (nothing logged unbounded)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    bound_log_handlers()


def app_from_environment() -> FastAPI:
    """A new app for the settings of this process's environment (and the parent's config file)."""
    config = os.environ.get(CONFIG_FILE_ENV)
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings)
    return create_app(settings)
