"""Typed FastAPI dependencies on the per-app state built by :func:`cloud.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from cloud.settings import CloudSettings


@dataclass
class CloudState:
    """What one app instance owns: its settings and, while running, its database engine."""

    settings: CloudSettings
    engine: Engine | None = field(default=None)


def get_state(request: Request) -> CloudState:
    state = request.app.state.cloud
    assert isinstance(state, CloudState)
    return state


def get_settings(state: Annotated[CloudState, Depends(get_state)]) -> CloudSettings:
    return state.settings


def get_engine(state: Annotated[CloudState, Depends(get_state)]) -> Engine:
    if state.engine is None:
        raise RuntimeError("the app is not started: run it inside its lifespan")
    return state.engine


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
