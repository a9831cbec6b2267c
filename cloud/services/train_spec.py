"""What a retraining job hands its worker process (``spec.json``) and what the worker hands back
(``result.json``, JSON-line progress on stdout). Shared by cloud.services.train_jobs and cloud.train_worker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

TrainTask = Literal["anomaly", "demand", "device_anomaly"]
SPEC_FILE: Final = "spec.json"
RESULT_FILE: Final = "result.json"
#: Exit status of a worker that refused its job with a clear reason (e.g. not enough data).
EXIT_REFUSED: Final = 3
#: Split ranges kept in a result (the first ones, for inspection).
MAX_SPLITS: Final = 500


class TrainJobSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: int
    database_url: str
    task: TrainTask
    scope: str
    seed: int = 7
    epochs: Annotated[int, Field(ge=1)]
    out_dir: Path
    deployed_model: Path = Field(description="the deployed .tflite, its manifest .json beside it")
    deployed_version: int | None = None
    parent_keras: Path | None = Field(default=None, description="Keras model of the deployed version, if known")
    data_from_ts: int | None = None
    data_to_ts: int | None = None
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    holdout_days: Annotated[int, Field(ge=1)] = 28
    min_readings: Annotated[int, Field(ge=1)] = 200
    min_holdout_readings: Annotated[int, Field(ge=1)] = 30
    min_series: Annotated[int, Field(ge=1)] = 1
    synthetic_share: Annotated[float, Field(ge=0, lt=1)] = 0.3
    demand_direction: Literal["pick", "outbound"] = "pick"
    demand_min_history: Annotated[int, Field(ge=7)] = 28
    gate_tolerance: Annotated[float, Field(ge=0)] = 0.02
    mixed_precision: bool | None = None


class SplitRange(BaseModel):
    """Where one series was cut: training readings/days in ``train``, held-back ones in ``holdout`` (ms, inclusive)."""

    series: str
    train: tuple[int, int]
    holdout: tuple[int, int]


class TrainResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: TrainTask
    scope: str
    metrics: dict[str, float]
    candidate: dict[str, float]
    deployed: dict[str, float]
    gate_passed: bool
    gate_reason: str
    data_from_ts: int
    data_to_ts: int
    holdout_from_ts: int
    holdout_to_ts: int
    series_used: int
    splits: list[SplitRange]
    tflite: Path
    keras: Path | None = None
