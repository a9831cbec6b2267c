"""Typed FastAPI dependencies on the per-app state built by :func:`cloud.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from cloud.settings import CloudSettings

if TYPE_CHECKING:
    from cloud.auth import PrincipalCache
    from cloud.jobs.worker import Worker
    from cloud.services.model_signing import Keyring
    from cloud.services.route_jobs import RouteSolver


@dataclass
class CloudState:
    """Everything one app instance owns (the only thing on ``app.state``).

    Built by :func:`cloud.app.create_app`: its settings, the model-signing keyring and the route solver; while the app
    runs, its database engine and, with ``EMBEDDED_WORKER``, the embedded job worker.
    """

    settings: CloudSettings
    keyring: Keyring
    route_solver: RouteSolver
    #: Stored tokens found recently (``cloud.auth.PrincipalCache``); None: every request looks its token up.
    principals: PrincipalCache | None = field(default=None)
    engine: Engine | None = field(default=None)
    worker: Worker | None = field(default=None)


def state_of(request: Request) -> CloudState:
    """The app's state (for code outside dependency injection)."""
    state = request.app.state.cloud
    assert isinstance(state, CloudState)
    return state


# The dependencies below are ``async def`` although they never wait: FastAPI runs a plain ``def`` dependency
# in its thread pool, a thread hop per dependency per request (about a tenth of a sync request's API CPU).


async def get_state(request: Request) -> CloudState:
    return state_of(request)


async def get_keyring(state: Annotated[CloudState, Depends(get_state)]) -> Keyring:
    return state.keyring


async def get_route_solver(state: Annotated[CloudState, Depends(get_state)]) -> RouteSolver:
    return state.route_solver


async def get_settings(state: Annotated[CloudState, Depends(get_state)]) -> CloudSettings:
    return state.settings


async def get_engine(state: Annotated[CloudState, Depends(get_state)]) -> Engine:
    if state.engine is None:
        raise RuntimeError("the app is not started: run it inside its lifespan")
    return state.engine


SettingsDep = Annotated[CloudSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
