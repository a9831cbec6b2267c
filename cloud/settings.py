"""Settings of the cloud service: environment variables ``EDGEHOUSE_CLOUD_*`` and an optional TOML file.

Precedence, highest first: keyword arguments, environment variables, the TOML file, defaults.
Everything is validated at start-up; an error names the offending key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from protocols.signing import decode_public_key

ENV_PREFIX: Final = "EDGEHOUSE_CLOUD_"
MIN_ADMIN_TOKEN_CHARS: Final = 20
MIN_DISTINCT_TOKEN_CHARS: Final = 8
#: Values (and their obvious variants) that must never protect a production service.
WEAK_TOKENS: Final = frozenset(
    {"admin", "administrator", "change", "me", "changeme", "default", "dev", "development", "password",
     "secret", "test", "token", "edgehouse", "letmein", "root", "qwerty"}
)

_WEAK_PATTERN: Final = re.compile("(?:" + "|".join(sorted(WEAK_TOKENS, key=len, reverse=True)) + ")*")

Environment = Literal["development", "test", "production"]


def weak_token_reason(token: str) -> str | None:
    """Why ``token`` is too weak to guard a service, or None when it is acceptable."""
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        return f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters"
    letters = re.sub(r"[^a-z]", "", token.lower())
    if _WEAK_PATTERN.fullmatch(letters):
        return "is a well-known default value"
    if len(set(token)) < MIN_DISTINCT_TOKEN_CHARS:
        return f"must use at least {MIN_DISTINCT_TOKEN_CHARS} distinct characters"
    return None


class CloudSettings(BaseSettings):
    """Validated configuration of one cloud API process."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    environment: Environment = "production"
    database_url: Annotated[str, Field(min_length=1)] = "sqlite:///var/cloud/edgehouse.db"
    admin_token: SecretStr
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    #: Largest request body accepted as sent (compressed), in bytes.
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16 * 1024 * 1024
    #: Largest sync batch accepted after decompression, in bytes.
    max_decompressed_bytes: Annotated[int, Field(ge=1024, le=1 << 31)] = 64 * 1024 * 1024
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 5
    #: Seconds an API process keeps a stored token it found (by its sha256), so that a gateway's sync costs
    #: no token query; 0 looks every request up. Tokens are never revoked today; a revocation added later
    #: would reach every replica within this time.
    auth_cache_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Allocations between two young garbage collections in an API process (``cloud.gc_tuning``);
    #: 0 keeps CPython's default (700): about 10 % more CPU per sync batch.
    gc_gen0_threshold: Annotated[int, Field(ge=0, le=10_000_000)] = 50_000
    #: Apply pending schema migrations at start-up; off: refuse to start on an outdated schema
    #: (run ``edgehouse-cloud migrate`` first).
    migrate_on_start: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Run a job worker (route and train queues) inside the API process: a single-node install, the demo.
    #: Off when dedicated ``edgehouse-cloud worker`` processes run the jobs (the compose file).
    embedded_worker: bool = True
    #: Run the rollout controller inside the API process; off when ``edgehouse-cloud controller`` runs it.
    embedded_rollout_controller: bool = True
    #: Route jobs one worker solves at once (each in its own solver process).
    worker_route_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    #: How often an idle worker slot looks for a queued job.
    worker_poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    #: A running job's lease: its worker renews it every third of this; a job whose lease expired
    #: (its worker died) is queued again or, after ``job_max_attempts``, failed.
    job_lease_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    job_max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    #: Finished route jobs (and their plans) are deleted after this long.
    route_job_retention_days: Annotated[float, Field(gt=0, le=3650)] = 7.0
    #: Directory where a worker prepares retraining jobs (spec, deployed and candidate model per job).
    train_workdir: Path = Path("var/cloud/train")
    #: Retraining jobs one worker runs at once (each in its own process); further jobs wait in the queue.
    max_concurrent_train_jobs: Annotated[int, Field(ge=1, le=16)] = 1
    #: Retraining jobs waiting at most; more are refused with 429.
    max_queued_train_jobs: Annotated[int, Field(ge=1, le=1000)] = 16
    #: A retraining job still running after this long is killed and fails.
    train_job_timeout_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 3600.0
    #: Default epochs of an anomaly / demand retrain (a request may override).
    train_anomaly_epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    train_demand_epochs: Annotated[int, Field(ge=1, le=1000)] = 10
    #: Share of each reading series' time span (the most recent) held back to evaluate anomaly candidates.
    train_holdout_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.2
    #: Readings each series needs before the hold-out to train an anomaly candidate.
    train_min_readings: Annotated[int, Field(ge=30)] = 200
    #: A candidate passes the gate when its primary holdout metric is at most this much worse than deployed.
    train_gate_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.02
    #: Scans of this direction are the demand the demand model learns (as on the gateways).
    train_demand_direction: Literal["pick", "outbound"] = "pick"
    #: Ed25519 private key (PKCS#8 PEM, ``edgehouse models keygen``) that signs releases online; unset: offline signing.
    signing_key_file: Path | None = None
    #: Public keys (base64 of the raw 32 bytes) whose signatures the cloud accepts on uploaded documents.
    trusted_keys: list[str] = Field(default_factory=list)
    #: How long a signed release stays valid; the controller re-signs (online key) within the last quarter.
    release_ttl_days: Annotated[float, Field(gt=0, le=3650)] = 30.0
    #: Seconds between two passes of the rollout controller.
    rollout_tick_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    #: Telemetry, readings and scans older than this many days are removed (PostgreSQL: whole week
    #: partitions dropped; SQLite: rows deleted); 0 keeps everything.
    readings_retention_days: Annotated[float, Field(ge=0, le=36_500)] = 0.0
    #: Seconds between two passes of the partition upkeep (weeks created ahead, retention).
    partition_upkeep_s: Annotated[float, Field(ge=1, le=86_400)] = 3600.0
    #: The fleet view (issue 16): a gateway not heard from (sync or model report) for this long is late …
    fleet_late_after_s: Annotated[float, Field(gt=0, le=30 * 86400)] = 180.0
    #: … and offline after this long (never heard from: offline).
    fleet_offline_after_s: Annotated[float, Field(gt=0, le=365 * 86400)] = 900.0
    #: Map tiles for the console's route map (``{z}/{x}/{y}`` URL); unset: coordinates drawn without tiles.
    console_tile_url: Annotated[str, Field(max_length=500)] | None = None
    #: Reorder alerts (issue 15): raised when synced stock < P90 demand over this many days + the margin.
    reorder_lead_time_days: Annotated[int, Field(ge=1, le=28)] = 7
    reorder_safety_units: Annotated[float, Field(ge=0, le=1e9)] = 0.0

    @field_validator("signing_key_file")
    @classmethod
    def _key_file_exists(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"file {path} does not exist")
        return path

    @field_validator("trusted_keys")
    @classmethod
    def _public_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            decode_public_key(key)
        return keys

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///").split("?", 1)[0]
            if path in ("", ":memory:"):
                raise ValueError("an in-memory SQLite database cannot be shared by the API's threads; give a file")
            return url
        if url.startswith("postgresql+psycopg://"):
            return url
        raise ValueError("must start with 'sqlite:///' (a file) or 'postgresql+psycopg://'")

    @model_validator(mode="after")
    def _cross_checks(self) -> CloudSettings:
        token = self.admin_token.get_secret_value()
        if not token.strip():
            raise _key_error("admin_token", "must not be empty")
        reason = weak_token_reason(token)
        if reason is not None and self.environment != "development":
            raise _key_error("admin_token", f"{reason} (allowed only with environment='development')")
        if self.fleet_offline_after_s <= self.fleet_late_after_s:
            raise _key_error("fleet_offline_after_s", "must be more than fleet_late_after_s")
        if self.max_decompressed_bytes < self.max_body_bytes:
            raise _key_error("max_decompressed_bytes", "must be at least max_body_bytes")
        return self

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


class SettingsError(ValueError):
    """A configuration that cannot start the service; ``key`` names the setting."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


def _key_error(key: str, reason: str) -> ValueError:
    # Raised inside a model validator: pydantic reports it at the model level, so the key goes in the text.
    return ValueError(f"{key}: {reason}")


def unknown_environment(environ: Mapping[str, str]) -> str | None:
    """The first ``EDGEHOUSE_CLOUD_*`` variable naming no setting (a typo would be ignored otherwise)."""
    known = {name.upper() for name in CloudSettings.model_fields}
    for var in sorted(environ):
        if var.upper().startswith(ENV_PREFIX) and var.upper().removeprefix(ENV_PREFIX) not in known:
            return var
    return None


def load_settings(config_file: Path | None = None, **overrides: object) -> CloudSettings:
    """Build settings from the environment and optionally a TOML file; raise :class:`SettingsError`.

    An ``EDGEHOUSE_CLOUD_*`` variable that names no setting fails, naming it.
    """
    unknown = unknown_environment(os.environ)
    if unknown is not None:
        known = [ENV_PREFIX + name.upper() for name in CloudSettings.model_fields]
        close = difflib.get_close_matches(unknown.upper(), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"see the {ENV_PREFIX}* settings in the README"
        raise SettingsError(unknown[:100], f"unknown setting ({hint})")
    if config_file is not None and not config_file.is_file():
        raise SettingsError("config", f"file {config_file} does not exist")
    cls: type[CloudSettings] = CloudSettings
    if config_file is not None:
        cls = type(
            "CloudSettingsFromFile",
            (CloudSettings,),
            {"model_config": SettingsConfigDict(toml_file=config_file), "__module__": __name__},
        )
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise settings_error(exc) from None
    except ValueError as exc:  # a malformed TOML file
        raise SettingsError("config", str(exc)) from None


def settings_error(exc: ValidationError) -> SettingsError:
    """The first problem of a settings validation error, with the key it concerns."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc and ": " in msg:
        loc, msg = msg.split(": ", 1)
    if err.get("type") == "missing":
        msg = f"is required (set {ENV_PREFIX}{loc.upper()})"
    return SettingsError(loc or "settings", msg)
