"""Settings: layers, validation, one clear line on bad configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slussen.config import ConfigError, load_settings

GOOD_SECRET = "x" * 40


def test_defaults_are_development_on_sqlite() -> None:
    settings = load_settings(environ={})
    assert settings.env == "development"
    assert settings.sqlalchemy_url.startswith("sqlite:///")
    assert settings.sqlalchemy_url.endswith("instance/slussen.sqlite3")


def test_environment_overrides_file_and_file_overrides_default(tmp_path: Path) -> None:
    config = tmp_path / "slussen.toml"
    config.write_text("session_idle_minutes = 15\nserve_port = 8000\n")
    settings = load_settings(environ={"SLUSSEN_CONFIG": str(config), "SLUSSEN_SERVE_PORT": "9000"})
    assert settings.session_idle_minutes == 15
    assert settings.serve_port == 9000


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(AttributeError):
        settings.env = "production"  # type: ignore[misc]


def test_postgres_url_gets_psycopg_driver() -> None:
    settings = load_settings(environ={"SLUSSEN_DATABASE_URL": "postgresql://u@127.0.0.1/db"})
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_keyring_environment_name() -> None:
    settings = load_settings(environ={"SLUSSEN_KEYRING": "/etc/slussen/keyring.json"})
    assert str(settings.resolved_keyring_path) == "/etc/slussen/keyring.json"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"SLUSSEN_SESION_IDLE_MINUTES": "5"}, "unknown setting 'sesion_idle_minutes'"),
        ({"SLUSSEN_SERVE_PORT": "many"}, "'serve_port'"),
        ({"SLUSSEN_DATABASE_URL": "not a url"}, "'database_url'"),
        ({"SLUSSEN_DATABASE_URL": "mysql://u@h/db"}, "'database_url'"),
        ({"SLUSSEN_ENV": "staging"}, "'env'"),
        ({"SLUSSEN_ENV": "production"}, "'secret_key'"),
        ({"SLUSSEN_ENV": "production", "SLUSSEN_SECRET_KEY": "REPLACE-ME"}, "'secret_key'"),
        (
            {"SLUSSEN_ENV": "production", "SLUSSEN_SECRET_KEY": GOOD_SECRET},
            "'keyring_path'",
        ),
    ],
)
def test_bad_configuration_names_the_key(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_settings(environ=environ)


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'colour' in .*bad\.toml"):
        load_settings(environ={"SLUSSEN_CONFIG": str(config)})


def test_production_with_secret_and_keyring_starts() -> None:
    settings = load_settings(
        environ={
            "SLUSSEN_ENV": "production",
            "SLUSSEN_SECRET_KEY": GOOD_SECRET,
            "SLUSSEN_KEYRING": "/etc/slussen/keyring.json",
            "SLUSSEN_PUBLIC_BASE_URL": "https://slussen.example.se/",
        }
    )
    assert settings.is_production and settings.totp_required
    assert settings.absolute_url("/svar") == "https://slussen.example.se/svar"


def test_production_refuses_to_start_without_its_public_address() -> None:
    production = {
        "SLUSSEN_ENV": "production",
        "SLUSSEN_SECRET_KEY": GOOD_SECRET,
        "SLUSSEN_KEYRING": "/etc/slussen/keyring.json",
    }
    for missing in ({}, {"SLUSSEN_PUBLIC_BASE_URL": "http://slussen.example.se"}):
        with pytest.raises(ConfigError, match=r"^setting 'public_base_url' \(https://…\) is req"):
            load_settings(environ={**production, **missing})


def test_base_url_in_development_is_the_local_server() -> None:
    settings = load_settings(environ={"SLUSSEN_SERVE_PORT": "5001"})
    assert settings.base_url == "http://127.0.0.1:5001"
    assert settings.absolute_url("aktiviteter/3") == "http://127.0.0.1:5001/aktiviteter/3"


@pytest.mark.parametrize(
    "env",
    [
        {"SLUSSEN_SERVE_PORT": "many"},
        {"SLUSSEN_ENV": "production"},
        {"SLUSSEN_DATABASE_URL": "::nonsense::"},
    ],
)
def test_cli_prints_one_line_not_a_traceback(env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slussen.cli", "init-db"],
        env={"PATH": "/usr/bin:/bin", "SLUSSEN_INSTANCE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("slussen: configuration error:")
    assert "Traceback" not in result.stderr
