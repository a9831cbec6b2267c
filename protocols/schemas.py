"""JSON Schema export of every wire contract, one file per (schema name, version).

The committed files under ``protocols/schemas/`` are the published contracts. The contract
test regenerates them: a schema whose content changed while its version did not fails the
test, so any wire change must bump ``v`` (and add a new file next to the old one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

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


def drift(schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Contracts whose current schema differs from the committed file of the same version."""
    problems = []
    for model in CONTRACTS:
        path = schema_dir / schema_filename(model)
        if not path.exists():
            problems.append(f"{path.name}: not committed (run `edgehouse protocols schema`)")
        elif path.read_text() != render(model):
            problems.append(f"{path.name}: schema changed without a version bump")
    return problems
