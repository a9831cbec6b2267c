"""Agent configuration: a TOML file, overridden by ``EDGEHOUSE_AGENT_*`` environment variables.

Nested keys use ``__``: ``EDGEHOUSE_AGENT_CLOUD__URL`` overrides ``[cloud] url`` (the rules are in
:mod:`edge_agent.config_env`). Every section forbids unknown keys, in the file and in the environment,
so a typo fails start-up with an error naming the key (see :class:`ConfigError`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_agent.config_cloud import CapWindow, CloudConfig  # noqa: F401 - re-exported: the [cloud] section
from edge_agent.config_env import UnknownEnvKey, deep_merge, env_overrides
from edge_agent.config_models import ModelsConfig  # the [models] section, re-exported here
from edge_agent.config_stock import StockConfig
from protocols import TopicError, device_filter
from protocols.signing import decode_public_key
from protocols.topics import check_id

IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the offending key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class TlsConfig(Section):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttConfig(Section):
    #: MQTT protocol version. v5 is the default (session expiry, receive maximum); v311 exists
    #: for brokers that only speak 3.1.1 (e.g. the demo's embedded Python broker), where the
    #: persistent session is ``clean_session=False`` and expiry is the broker's setting.
    protocol: Literal["v5", "v311"] = "v5"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    #: Fixed client id: the broker keys the persistent session on it. Defaults to ``gateway_id``.
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    #: Topic filters subscribed at QoS 1. Defaults to every device topic of ``site``.
    filters: Annotated[list[str], Field(min_length=1)] | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsConfig | None = None
    #: Seconds between keepalive pings (the broker drops us after 1.5x this without traffic).
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    #: How long the broker keeps our session (subscriptions + queued messages) while we are away.
    session_expiry_s: Annotated[int, Field(ge=0, le=2**32 - 1)] = 7 * 24 * 3600
    reconnect_min_s: PositiveFloat = 0.5
    reconnect_max_s: PositiveFloat = 30.0
    #: MQTT v5 Receive Maximum: unacknowledged QoS 1 messages the broker may send us at once.
    #: It also sizes the in-process queue, so a paused ingest never blocks the network thread.
    #: Default: 2 x ingest.batch_max, so the broker keeps sending while a batch commits.
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] | None = None

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        for f in self.filters or ():
            if not f or f.count("#") > 1 or ("#" in f and not f.endswith("#")):
                raise ValueError(f"invalid topic filter {f!r}")
        return self


class IngestConfig(Section):
    #: Messages per SQLite transaction. 250 measured as fast as 500 here with a smaller peak RSS.
    batch_max: Annotated[int, Field(ge=1, le=10_000)] = 250
    batch_max_wait_ms: Annotated[int, Field(ge=0, le=10_000)] = 20
    #: An RFID read of the same (reader_id, tag_id) within this much device time is dropped.
    rfid_burst_window_ms: Annotated[int, Field(ge=0)] = 2000
    #: Raw payload bytes kept per dead letter.
    dead_letter_max_bytes: Annotated[int, Field(ge=0, le=1 << 20)] = 4096


class StoreConfig(Section):
    #: Disk quota of the database (live pages; WAL excluded). Unsynced data is never dropped.
    quota_mb: Annotated[float, Field(gt=0)] = 1024.0
    #: NORMAL (with WAL) survives a process crash (kill -9); FULL also survives power loss.
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    #: Synced local history older than this is dropped even under quota (None: keep until quota).
    history_max_age_days: PositiveFloat | None = None
    #: Dead letters older than this are dropped even under quota (None: keep until quota).
    dead_letter_max_age_days: PositiveFloat | None = 30.0
    retention_interval_s: PositiveFloat = 30.0


class HttpConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    #: 0 binds an ephemeral port; the bound port is written to ``agent.runtime.json``.
    port: Port = 0


class AlertsConfig(Section):
    """The alert budget of the site (``edge_agent/alert_budget.py``), after ISA-18.2: about 150
    alerts per operator per day is "very likely acceptable", more than 10 in 10 minutes is a flood.

    More than ``flood_alerts`` anomaly alerts raised within ``flood_window_s`` (agent clock) is a
    flood: the agent raises one ``alert_flood`` system alert and withholds further anomaly alerts,
    counting them, until the window holds ``flood_clear_alerts`` or fewer; then the flood clears
    with the final counts. System alerts are never withheld.
    """

    #: False: every alert goes out (still counted in ``/status`` and ``/metrics``).
    budget_enabled: bool = True
    flood_window_s: Annotated[int, Field(ge=1, le=86_400)] = 600
    #: More than this many alerts raised within ``flood_window_s`` is a flood.
    flood_alerts: Annotated[int, Field(ge=1, le=100_000)] = 10
    #: The flood clears once the window holds this many or fewer (below ``flood_alerts``).
    flood_clear_alerts: Annotated[int, Field(ge=0, le=100_000)] = 5
    #: Alerts per day the site's operator can handle; ``/status`` shows the last 24 h against it.
    daily_alerts: Annotated[int, Field(ge=1, le=1_000_000)] = 150
    #: How often a flood is checked for its end while no alert arrives.
    check_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0

    @field_validator("flood_clear_alerts")
    @classmethod
    def _clear_below_flood(cls, value: int, info: ValidationInfo) -> int:
        flood = info.data.get("flood_alerts")
        if flood is not None and value >= flood:
            raise ValueError(f"must be below alerts.flood_alerts ({flood})")
        return value


def _key_file_entries(path: Path) -> list[str]:
    """The keys in a trusted-key file: one base64 (or ``ed25519:base64``) key per line, ``#`` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    keys = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [k for k in keys if k]


class UpdatesConfig(Section):
    """Signed model updates from the cloud (``edge_agent/updates/``)."""

    #: None: on when ``cloud.url`` is set.
    enabled: bool | None = None
    #: Ed25519 public keys (base64 of the raw 32 bytes, or ``ed25519:<base64>``) whose
    #: signatures this gateway accepts on releases and key rotations.
    trusted_keys: list[str] = []
    #: Files holding more such keys, one per line (``#`` comments).
    trusted_key_files: list[Path] = []
    #: Installed models, staging and install state. None: ``{data_dir}/models``; relative: to data_dir.
    dir: Path | None = None
    poll_interval_s: PositiveFloat = 300.0
    report_interval_s: PositiveFloat = 60.0
    chunk_bytes: Annotated[int, Field(ge=1024, le=16 << 20)] = 64 << 10
    #: Failed attempts in a row (without progress) before a download gives up (``download_failed``).
    download_retries: Annotated[int, Field(ge=0, le=100)] = 5
    #: Free space that must remain after staging an artifact (else ``disk_full``).
    min_free_bytes: Annotated[int, Field(ge=0)] = 64 << 20

    @field_validator("trusted_keys")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        for i, key in enumerate(keys):
            try:
                decode_public_key(key)
            except ValueError as exc:
                raise ValueError(f"entry {i}: {exc}") from None
        return keys

    @field_validator("trusted_key_files")
    @classmethod
    def _key_files(cls, files: list[Path]) -> list[Path]:
        for path in files:
            for key in _key_file_entries(path):
                try:
                    decode_public_key(key)
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc}") from None
        return files

    def all_trusted_keys(self) -> list[str]:
        """The configured keys plus those in ``trusted_key_files``."""
        keys = list(self.trusted_keys)
        for path in self.trusted_key_files:
            keys.extend(_key_file_entries(path))
        return keys


class AgentConfig(BaseModel):
    """The whole agent configuration. Build it with :meth:`load` (file + environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    gateway_id: Ident
    site: Ident
    data_dir: Path
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mqtt: MqttConfig = MqttConfig()
    ingest: IngestConfig = IngestConfig()
    store: StoreConfig = StoreConfig()
    cloud: CloudConfig = CloudConfig()
    http: HttpConfig = HttpConfig()
    models: ModelsConfig = ModelsConfig()
    alerts: AlertsConfig = AlertsConfig()
    updates: UpdatesConfig = UpdatesConfig()
    stock: StockConfig = StockConfig()

    @model_validator(mode="after")
    def _ids(self) -> AgentConfig:
        try:
            check_id(self.gateway_id, "gateway_id")
            check_id(self.site, "site")
        except TopicError as exc:
            raise ValueError(str(exc)) from None
        if self.updates.enabled and not self.cloud.enabled:
            raise ValueError("updates.enabled = true needs cloud.url")
        return self

    @property
    def updates_enabled(self) -> bool:
        return self.cloud.enabled if self.updates.enabled is None else self.updates.enabled

    @property
    def updates_dir(self) -> Path:
        """Installed models and the install state: ``updates.dir`` (relative to data_dir) or ``{data_dir}/models``."""
        if self.updates.dir is None:
            return self.data_dir / "models"
        return self.updates.dir if self.updates.dir.is_absolute() else self.data_dir / self.updates.dir

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.gateway_id

    @property
    def receive_maximum(self) -> int:
        """The MQTT v5 Receive Maximum announced to the broker (see ``mqtt.receive_maximum``)."""
        if self.mqtt.receive_maximum is not None:
            return self.mqtt.receive_maximum
        return min(65535, 2 * self.ingest.batch_max)

    @property
    def topic_filters(self) -> list[str]:
        return list(self.mqtt.filters) if self.mqtt.filters else [device_filter(self.site)]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agent.db"

    @property
    def runtime_path(self) -> Path:
        return self.data_dir / "agent.runtime.json"

    @classmethod
    def load(cls, path: Path | str) -> AgentConfig:
        """Read ``path`` (TOML), apply environment overrides, validate; raise :class:`ConfigError`."""
        path = Path(path)
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        data_dir = data.get("data_dir")
        if isinstance(data_dir, str) and not Path(data_dir).is_absolute():
            data["data_dir"] = str((path.parent / data_dir).resolve())
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], environ: Mapping[str, str] | None = None) -> AgentConfig:
        """Validate a mapping with the environment's overrides (``os.environ`` unless ``environ`` is
        given, see :mod:`edge_agent.config_env`) merged over it; raise :class:`ConfigError`."""
        try:
            overrides = env_overrides(cls, os.environ if environ is None else environ)
        except UnknownEnvKey as exc:
            raise ConfigError(str(exc)) from None
        try:
            return cls.model_validate(deep_merge(data, overrides))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, each starting with the dotted key it concerns."""
    lines = []
    for err in exc.errors(include_url=False):
        key = ".".join(str(p) for p in err.get("loc", ())) or "(config)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (not permitted)"
        lines.append(f"{key}: {msg}")
    return "; ".join(lines)
