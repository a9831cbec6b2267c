"""JSON Schema export of every wire contract, one file per (schema name, version).

The committed files under ``protocols/schemas/`` are the published contracts. The contract
test regenerates them: a schema whose content changed while its version did not fails the
test, so any wire change must bump ``v`` (and add a new file next to the old one).

A contract that embeds another (a sync batch carries alerts, forecasts and device messages)
is compared without the embedded contracts' definitions: each of those is versioned by its own
``v`` and file (an alert v2 inside a sync batch v1 bumps the alert, not the batch). The batch's
file is still rewritten by :func:`export`, so it shows everything it accepts today.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from protocols.gateway import AlertPayload, ForecastPayload, GatewayCommand, GatewayStatusPayload
from protocols.messages import ScanMessage, StatusMessage, TelemetryMessage
from protocols.model_update import DesiredModels, KeyRotation, ModelRelease, ModelReport
from protocols.stock import StockDiscrepancy, StockPosition
from protocols.sync import SyncAck, SyncBatch

CONTRACTS: Final[tuple[type[BaseModel], ...]] = (
    TelemetryMessage,
    ScanMessage,
    StatusMessage,
    AlertPayload,
    ForecastPayload,
    StockPosition,
    StockDiscrepancy,
    GatewayStatusPayload,
    GatewayCommand,
    SyncBatch,
    SyncAck,
    ModelRelease,
    KeyRotation,
    DesiredModels,
    ModelReport,
)
SCHEMA_DIR: Final = Path(__file__).with_name("schemas")


def contract_name(model: type[BaseModel]) -> str:
    return str(model.model_fields["schema_"].default)


def contract_version(model: type[BaseModel]) -> int:
    return int(model.model_fields["v"].default)


def schema_filename(model: type[BaseModel]) -> str:
    return f"{contract_name(model)}.v{contract_version(model)}.json"


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    """Write every contract's JSON Schema into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in CONTRACTS:
        path = out_dir / schema_filename(model)
        path.write_text(render(model))
        written.append(path)
    return written


def _refs(node: Any) -> set[str]:
    """Names of the ``#/$defs/...`` definitions ``node`` refers to."""
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                found.add(value.removeprefix("#/$defs/"))
            else:
                found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def own_part(model: type[BaseModel], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (of ``model``) with every embedded contract reduced to its name and version
    range, and the definitions reachable only through embedded contracts left out."""
    defs: dict[str, Any] = schema.get("$defs", {})
    embedded = {c.__name__: c for c in CONTRACTS if c is not model and c.__name__ in defs}
    keep: dict[str, Any] = {}
    todo = _refs({k: v for k, v in schema.items() if k != "$defs"})
    while todo:
        name = todo.pop()
        if name in keep or name not in defs:
            continue
        if name in embedded:
            keep[name] = {"contract": contract_name(embedded[name])}
            continue
        keep[name] = defs[name]
        todo |= _refs(defs[name])
    own = {k: v for k, v in schema.items() if k != "$defs"}
    if keep:
        own["$defs"] = keep
    return own


def drift(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Contracts whose current schema differs from the committed file of the same version
    (embedded contracts aside: each is checked against its own file)."""
    problems = []
    for model in CONTRACTS:
        path = schema_dir / schema_filename(model)
        if not path.exists():
            problems.append(f"{path.name}: not committed (run `edgehouse protocols schema`)")
            continue
        committed = json.loads(path.read_text())
        current = json.loads(render(model))
        if own_part(model, committed) != own_part(model, current):
            problems.append(f"{path.name}: schema changed without a version bump")
    return problems
