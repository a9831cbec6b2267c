"""The model manifest written next to every exported `.tflite` (pydantic v2, edge-safe)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.feature_config import DemandFeatureConfig, SensorFeatureConfig

Task = Literal["anomaly", "demand", "device_anomaly"]
DType = Literal["float32", "int8", "uint8", "int16", "int32"]


class QuantParams(BaseModel):
    """Affine int8 mapping: real = scale * (q - zero_point)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = Field(gt=0.0)
    zero_point: int


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    shape: tuple[int, ...]
    dtype: DType
    quantization: QuantParams | None = Field(
        default=None, description="set when the tensor itself is int8 (Python side must (de)quantize)"
    )
    inner_quantization: QuantParams | None = Field(
        default=None,
        description="for float I/O: the int8 params the graph's QUANTIZE/DEQUANTIZE op applies",
    )


class AnomalyScorerDefaults(BaseModel):
    """Scorer settings that ship with the anomaly model (the gateway may override)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(ge=0.0, le=1.0, description="alert when score >= threshold")
    threshold_source: str


class DemandPostprocess(BaseModel):
    """What the gateway does to the demand network's output (fitted on the validation month).

    Point forecast (``mean``) = (1 - ses_weight) x network mean + ses_weight x the
    promotion-adjusted SES forecast of the same history (``demand_eval.promo_ses_forecast``; a
    forecast combination); P90 = max(p90_factor x network P90, P50)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ses_weight: float = Field(
        default=0.0, ge=0.0, le=1.0, description="weight of promo-adjusted SES in the point forecast"
    )
    p90_factor: float = Field(default=1.0, gt=0.0, description="P90 multiplier (coverage calibration)")
    fitted_on: str = Field(default="", description="the rows the two numbers were chosen on")


class ModelManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    task: Task
    version: int = Field(ge=1)
    created_utc: str
    runtime: Literal["litert"] = "litert"
    quantization: Literal["int8-full-integer", "float32"]
    io_dtype: DType
    batch_size: Literal[1] = 1
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    training_data: str
    training_window: tuple[str, str] | None = Field(
        default=None, description="first and last date (ISO) of real data used for training, if any"
    )
    seed: int
    metrics: dict[str, float]
    sensor_features: SensorFeatureConfig | None = None
    demand_features: DemandFeatureConfig | None = None
    anomaly_defaults: AnomalyScorerDefaults | None = None
    demand_postprocess: DemandPostprocess | None = Field(
        default=None, description="demand only; None = the network's output as is (older manifests)"
    )
    quantiles: tuple[float, ...] = ()
    recreate_command: str


def file_digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def manifest_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def read_manifest(path: Path) -> ModelManifest:
    return ModelManifest.model_validate_json(path.read_text(encoding="utf-8"))


def write_manifest(manifest: ModelManifest, path: Path) -> None:
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")


class ModelLoadError(RuntimeError):
    """The model or its manifest is missing, tampered with or unusable here."""


DEFAULT_DIR = Path(__file__).resolve().parent / "default"


def default_model_path(task: str, variant: str = "") -> Path:
    """Shipped models: models/default/{anomaly,demand}.tflite (variant '_float' for the float32 twin)."""
    return DEFAULT_DIR / f"{task}{variant}.tflite"
