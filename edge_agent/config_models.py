"""The ``[models]`` section: the gateway's models (anomaly scoring per stream and per device, demand
forecasts). Re-exported by :mod:`edge_agent.config`; kept apart so ``config.py`` stays under the
module size limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelsConfig(_Section):
    """On-gateway models: streaming anomaly scoring of telemetry (``edge_agent/scoring/``) and
    daily demand forecasts (``edge_agent/forecasting.py``)."""

    enabled: bool = True
    #: The int8 LiteRT anomaly model; its ``.json`` manifest must sit next to it. None: the
    #: shipped ``models/default/anomaly.tflite``. A relative path is relative to the working dir.
    anomaly_model: Path | None = None
    #: Raise an alert when a stream's score reaches this. None: the model manifest's threshold.
    threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    #: Hysteresis: a raised alert clears once the score falls below ``clear_ratio * threshold``.
    clear_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    #: After an alert is raised, the same (device_id, metric) raises no new one for this long
    #: (device time).
    cooldown_s: Annotated[float, Field(ge=0)] = 300.0
    #: Committed telemetry messages the scorer may fall behind by; beyond that the oldest are
    #: skipped and counted (``edgehouse_agent_inference_dropped_messages_total``), never ingest slowed.
    queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    #: At start, the last this many stored telemetry messages are scored without alerting, so a
    #: restart does not cost each stream its warm-up (no score before 150 readings of a stream).
    warmup_messages: Annotated[int, Field(ge=0, le=1_000_000)] = 20_000
    #: Daily per-SKU demand forecasts (``edge_agent/forecasting.py``), made once per UTC day.
    forecast_enabled: bool = True
    #: The int8 LiteRT demand model (+ ``.json`` manifest). None: the shipped ``demand.tflite``.
    demand_model: Path | None = None
    #: Scans of this direction are the demand (units per SKU per UTC day).
    demand_direction: Literal["pick", "outbound"] = "pick"
    #: A SKU is forecast once this many days have passed since its first scan.
    forecast_min_history_days: Annotated[int, Field(ge=7, le=3650)] = 28
    #: Niceness added to the scoring and forecast threads (Linux; 0: same priority as ingest).
    #: At 19 they use the CPU ingest and MQTT leave idle: on a saturated core ingest keeps its
    #: rate and scoring falls behind (then skips, counted) instead of the other way round.
    nice: Annotated[int, Field(ge=0, le=19)] = 19
    #: Joint (multichannel) scoring of devices that report several channels in one message
    #: (``edge_agent/scoring/device_worker.py``, ``models/device_anomaly.py``).
    device_enabled: bool = True
    #: The int8 LiteRT device model (+ ``.json`` manifest). None: the shipped ``device_anomaly.tflite``.
    device_model: Path | None = None
    #: Raise a device alert when its joint score reaches this. None: the model manifest's threshold.
    device_threshold: Annotated[float, Field(gt=0, le=1)] | None = None
    #: A device alert is raised once its joint score has stayed at the threshold for this many
    #: consecutive messages (10: ten minutes of a pump's 60 s readings; a speed change that moves
    #: every channel at once, a lagging motor temperature, pass without paging anyone).
    device_confirm_messages: Annotated[int, Field(ge=1, le=10_000)] = 10
