"""Settings: environment, TOML file, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.settings import SettingsError, load_settings

STRONG = "Zk3j9fQx0aP2mLw8vR5tY1b"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DATABASE_URL", "ADMIN_TOKEN", "HOST", "PORT", "ENVIRONMENT", "MAX_BODY_BYTES",
                "MAX_DECOMPRESSED_BYTES"):
        monkeypatch.delenv(f"EDGEHOUSE_CLOUD_{key}", raising=False)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEHOUSE_CLOUD_ADMIN_TOKEN", STRONG)
    monkeypatch.setenv("EDGEHOUSE_CLOUD_DATABASE_URL", "postgresql+psycopg://u@db:5432/eh")
    monkeypatch.setenv("EDGEHOUSE_CLOUD_PORT", "9001")
    monkeypatch.setenv("EDGEHOUSE_CLOUD_HOST", "0.0.0.0")
    s = load_settings()
    assert (s.backend, s.port, s.host, s.environment) == ("postgresql", 9001, "0.0.0.0", "production")
    assert s.admin_token.get_secret_value() == STRONG and STRONG not in repr(s)


def test_defaults() -> None:
    s = load_settings(admin_token=STRONG)
    assert s.database_url == "sqlite:///var/cloud/edgehouse.db" and s.backend == "sqlite"


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(f'admin_token = "{STRONG}"\nport = 8111\nhost = "10.0.0.1"\n')
    assert load_settings(cfg).port == 8111
    monkeypatch.setenv("EDGEHOUSE_CLOUD_PORT", "8222")
    s = load_settings(cfg)
    assert (s.port, s.host) == (8222, "10.0.0.1")


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({}, "admin_token", "EDGEHOUSE_CLOUD_ADMIN_TOKEN"),
        ({"admin_token": "changeme"}, "admin_token", "at least 20"),
        ({"admin_token": "changeme-changeme-2024"}, "admin_token", "well-known"),
        ({"admin_token": "aaaaaaaaaaaaaaaaaaaaaaaa"}, "admin_token", "distinct"),
        ({"admin_token": STRONG, "database_url": "mysql://x/y"}, "database_url", "postgresql+psycopg"),
        ({"admin_token": STRONG, "database_url": "sqlite:///:memory:"}, "database_url", "in-memory"),
        ({"admin_token": STRONG, "port": 70000}, "port", "65535"),
        ({"admin_token": STRONG, "environment": "prod"}, "environment", "production"),
        ({"admin_token": STRONG, "max_body_bytes": 10**8}, "max_decompressed_bytes", "at least max_body_bytes"),
        ({"admin_token": STRONG, "adminn_token": "x"}, "adminn_token", "Extra"),
    ],
)
def test_bad_values_name_the_key(values: dict, key: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**values)
    assert err.value.key == key
    assert fragment in err.value.reason


def test_weak_token_is_allowed_in_development() -> None:
    assert load_settings(admin_token="dev", environment="development").environment == "development"


def test_bad_toml_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(f'admin_token = "{STRONG}"\nport = "eighty"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert err.value.key == "port"
    cfg.write_text("admin_token = \n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg)
    assert err.value.key == "config"
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path / "missing.toml")
    assert err.value.key == "config"


def test_every_setting_and_command_is_documented() -> None:
    """The README's configuration table names every setting; the READMEs name every edgehouse-cloud command."""
    import re

    import typer

    from cloud.cli import app
    from cloud.settings import CloudSettings

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    table = readme[readme.index("### Cloud (`edgehouse-cloud`)"):readme.index("API (OpenAPI at")]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert [k for k in CloudSettings.model_fields if k.upper() not in documented] == []
    docs = readme + (root / "cloud" / "README.md").read_text()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert [c for c in commands if f"edgehouse-cloud {c}" not in docs] == []


def test_an_unknown_environment_variable_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEHOUSE_CLOUD_ADMIN_TOKEN", STRONG)
    monkeypatch.setenv("EDGEHOUSE_CLOUD_MAX_BODY_BYTE", "10")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert err.value.key == "EDGEHOUSE_CLOUD_MAX_BODY_BYTE"
    assert "did you mean EDGEHOUSE_CLOUD_MAX_BODY_BYTES?" in err.value.reason
    monkeypatch.delenv("EDGEHOUSE_CLOUD_MAX_BODY_BYTE")
    monkeypatch.setenv("EDGEHOUSE_CLOUD_ZZZ", "1")
    with pytest.raises(SettingsError, match="EDGEHOUSE_CLOUD_ZZZ: unknown setting"):
        load_settings()
