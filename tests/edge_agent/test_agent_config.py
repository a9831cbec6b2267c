from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig, ConfigError

BASE = 'gateway_id = "gw-1"\nsite = "s1"\ndata_dir = "data"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    cfg = AgentConfig.load(write(tmp_path, BASE))
    assert cfg.client_id == "gw-1"
    assert cfg.topic_filters == ["edgehouse/v1/s1/+/+"]
    assert cfg.data_dir == (tmp_path / "data").resolve()
    assert cfg.ingest.rfid_burst_window_ms == 2000
    assert cfg.receive_maximum == 2 * cfg.ingest.batch_max
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 0
    assert cfg.store.synchronous == "NORMAL"
    assert not cfg.cloud.enabled


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "[mqtt]\nprot = 1\n", "mqtt.prot"),
        (BASE + "colour = 'red'\n", "colour"),
        (BASE + "[ingest]\nbatch_max = 0\n", "ingest.batch_max"),
        (BASE + "[mqtt]\npassword = 'x'\n", "mqtt"),
        (BASE + "[mqtt.tls]\nca_file = 'ca.pem'\ncert_file = 'c.pem'\n", "mqtt.tls"),
        (BASE + "[cloud]\nurl = 'http://cloud'\n", "cloud"),
        (BASE + "[http]\nport = 70000\n", "http.port"),
        ('site = "s1"\ndata_dir = "d"\n', "gateway_id"),
        (BASE.replace('"gw-1"', '"gw/1"'), "gateway_id"),
    ],
)
def test_bad_keys_fail_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        AgentConfig.load(write(tmp_path, text))
    assert str(info.value).startswith(key), str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        AgentConfig.load(write(tmp_path, "gateway_id = \n"))
    with pytest.raises(ConfigError, match="cannot read"):
        AgentConfig.load(tmp_path / "missing.toml")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASE + "[mqtt]\nport = 1884\n[cloud]\ntoken = 'secret'\n")
    monkeypatch.setenv("EDGEHOUSE_AGENT_CLOUD__URL", "http://cloud.example:8000")
    monkeypatch.setenv("EDGEHOUSE_AGENT_MQTT__PORT", "1999")
    monkeypatch.setenv("EDGEHOUSE_AGENT_SITE", "s2")
    cfg = AgentConfig.load(path)
    assert cfg.cloud.url == "http://cloud.example:8000"
    assert cfg.cloud.token is not None and cfg.cloud.token.get_secret_value() == "secret"
    assert cfg.mqtt.port == 1999
    assert cfg.site == "s2" and cfg.topic_filters == ["edgehouse/v1/s2/+/+"]


def test_bad_environment_key_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEHOUSE_AGENT_MQTT__PROT", "1")
    with pytest.raises(ConfigError, match=r"^mqtt\.prot"):
        AgentConfig.load(write(tmp_path, BASE))


def test_full_config(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[mqtt]
host = "broker.local"
port = 8883
client_id = "gw-1-agent"
filters = ["edgehouse/v1/s1/+/telemetry", "edgehouse/v1/s1/+/scan"]
username = "gw-1"
password = "pw"
keepalive = 20
session_expiry_s = 3600
reconnect_min_s = 1
reconnect_max_s = 60
receive_maximum = 500
[mqtt.tls]
ca_file = "ca.pem"
cert_file = "gw.pem"
key_file = "gw.key"
[ingest]
batch_max = 200
batch_max_wait_ms = 10
rfid_burst_window_ms = 1500
dead_letter_max_bytes = 1024
[store]
quota_mb = 50
synchronous = "FULL"
history_max_age_days = 30
dead_letter_max_age_days = 7
retention_interval_s = 60
[cloud]
url = "https://cloud.example"
token = "t"
batch_max_records = 500
interval_s = 2
connect_timeout_s = 3
request_timeout_s = 10
backoff_min_s = 0.5
backoff_max_s = 120
auth_backoff_s = 300
shutdown_flush_s = 1
[http]
host = "0.0.0.0"
port = 9100
"""
    )
    cfg = AgentConfig.load(write(tmp_path, text))
    assert cfg.client_id == "gw-1-agent"
    assert cfg.topic_filters[1].endswith("/scan")
    assert cfg.mqtt.tls is not None and cfg.mqtt.tls.key_file == Path("gw.key")
    assert cfg.store.synchronous == "FULL" and cfg.cloud.enabled and cfg.http.port == 9100
    assert cfg.receive_maximum == 500


def test_shipped_example_loads_and_documents_every_key(tmp_path: Path) -> None:
    from importlib import resources

    from pydantic import BaseModel

    text = resources.files("edge_agent").joinpath("agent.example.toml").read_text()
    cfg = AgentConfig.load(write(tmp_path, text))
    assert cfg.gateway_id == "gw-01"
    assert cfg == AgentConfig.from_mapping(
        {"gateway_id": "gw-01", "site": "site-1", "data_dir": str((tmp_path / "data").resolve())}
    )  # the example shows the defaults

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            sub = field.annotation
            inner = [
                a
                for a in getattr(sub, "__args__", (sub,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            out.append(prefix + name)
            if inner:
                out.extend(keys(inner[0], f"{prefix}{name}."))
        return out

    for key in keys(AgentConfig):
        leaf = key.rsplit(".", 1)[-1]
        assert f"{leaf} =" in text or f"[{key}]" in text, f"{key} missing from agent.example.toml"


def test_environment_json_values_case_and_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "[mqtt]\nport = 1884\nhost = 'file-host'\n")
    env = {
        "EDGEHOUSE_AGENT_MQTT__FILTERS": '["edgehouse/v1/s1/+/scan"]',  # a list comes as JSON
        "EDGEHOUSE_AGENT_MQTT": '{"port": 1000, "keepalive": 40}',  # a whole section as JSON
        "edgehouse_agent_mqtt__port": "1999",  # names are case-insensitive; the leaf wins over its section
        "EDGEHOUSE_AGENT_CLOUD__CAP_SCHEDULE": '[{"start": "08:00", "end": "18:00", "max_bytes_per_s": 5000}]',
        "OTHER_VAR": "ignored",
    }
    data = {"gateway_id": "gw-1", "site": "s1", "data_dir": str(tmp_path), "mqtt": {"host": "file-host"}}
    cfg = AgentConfig.from_mapping(data, env)
    assert cfg.mqtt.filters == ["edgehouse/v1/s1/+/scan"]
    assert (cfg.mqtt.port, cfg.mqtt.keepalive, cfg.mqtt.host) == (1999, 40, "file-host")
    assert cfg.cloud.cap_schedule[0].max_bytes_per_s == 5000
    assert AgentConfig.load(path).mqtt.port == 1884  # the real environment holds none of these


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("EDGEHOUSE_AGENT_COLOUR", "red", "colour: unknown key"),
        ("EDGEHOUSE_AGENT_SITE__X", "1", "site.x: unknown key"),
        ("EDGEHOUSE_AGENT_MQTT__TLS__CA", "x", "mqtt.tls.ca"),
        ("EDGEHOUSE_AGENT_MQTT__FILTERS", "not-json", "mqtt.filters: Input should be a valid list"),
        ("EDGEHOUSE_AGENT_MQTT__PORT", "high", "mqtt.port"),
    ],
)
def test_bad_environment_values_name_the_key(tmp_path: Path, name: str, value: str, key: str) -> None:
    data = {"gateway_id": "gw-1", "site": "s1", "data_dir": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_mapping(data, {name: value})
    assert str(info.value).startswith(key), str(info.value)
    if "unknown key" in key:
        assert name in str(info.value)


def test_agent_config_does_not_import_pydantic_settings() -> None:
    import subprocess
    import sys

    code = "import sys, edge_agent.config; print('pydantic_settings' in sys.modules, 'asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
