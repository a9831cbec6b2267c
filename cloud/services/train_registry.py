"""The model registry as retraining jobs see it: register a candidate, read what is deployed.

Adapts cloud.services.model_registry to the callables cloud.jobs.train_runner.TrainRunner takes
(its tests inject their own).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from cloud.services import model_registry


def register_candidate(engine: Engine, candidate: model_registry.CandidateIn) -> int:
    """Register ``candidate``; its model version."""
    stored = model_registry.register_candidate(engine, candidate)
    return int(stored.model_version)


def deployed_model(engine: Engine, task: str, scope: str) -> tuple[int, bytes, dict[str, Any]] | None:
    """(version, tflite bytes, manifest) of what ``scope`` runs now (the registry falls back to the defaults)."""
    return model_registry.deployed_model(engine, task, scope)
