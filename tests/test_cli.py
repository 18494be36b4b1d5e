"""The `slussen` command: init-db, demo, user create, content check; installed from a wheel."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from slussen.cli import cli
from tests.conftest import TEST_PASSWORD

REPO = Path(__file__).resolve().parent.parent


def test_init_db_then_demo_is_idempotent(cli_env: Path) -> None:
    from slussen.accounts.models import Unit, User
    from slussen.app import create_app
    from slussen.db import session_scope

    runner = CliRunner()
    result = runner.invoke(cli, ["init-db"])
    assert result.exit_code == 0, result.output
    assert "upgraded from empty" in result.output
    assert "up to date" in runner.invoke(cli, ["init-db"]).output

    first = runner.invoke(cli, ["demo", "--password", TEST_PASSWORD])
    assert first.exit_code == 0, first.output
    assert "koordinator" in first.output and TEST_PASSWORD in first.output
    second = runner.invoke(cli, ["demo"])
    assert second.exit_code == 0, second.output
    assert "demo users created now: 0" in second.output
    assert TEST_PASSWORD in second.output  # the logins are printed again

    app = create_app()
    with app.app_context(), session_scope(app) as session:
        assert session.scalar(select(func.count()).select_from(Unit)) == 3
        roles = set(session.scalars(select(User.role)))
    assert roles == {"coordinator", "coach", "staff", "evaluator", "org_rep", "admin"}
    assert (cli_env / "demo-logins.txt").stat().st_mode & 0o077 == 0

    client = app.test_client()
    client.application.config["WTF_CSRF_ENABLED"] = False
    response = client.post("/login", data={"username": "koordinator", "password": TEST_PASSWORD})
    assert response.status_code == 302


def test_demo_refused_in_production(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUSSEN_ENV", "production")
    monkeypatch.setenv("SLUSSEN_SECRET_KEY", "y" * 40)
    monkeypatch.setenv("SLUSSEN_KEYRING", str(cli_env / "keyring.json"))
    monkeypatch.setenv("SLUSSEN_PUBLIC_BASE_URL", "https://slussen.example.se")
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code != 0
    assert "refused in production" in result.output


def test_user_create_and_refusals(cli_env: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["init-db"])
    ok = runner.invoke(
        cli,
        ["user", "create", "--username", "Anna", "--role", "coach", "--password", TEST_PASSWORD],
    )
    assert ok.exit_code == 0, ok.output
    assert "Created anna (coach)" in ok.output
    again = runner.invoke(
        cli,
        ["user", "create", "--username", "anna", "--role", "coach", "--password", TEST_PASSWORD],
    )
    assert again.exit_code == 1
    assert "redan taget" in again.output
    short = runner.invoke(
        cli, ["user", "create", "--username", "bo", "--role", "coach", "--password", "kort"]
    )
    assert short.exit_code == 1
    assert "minst 15 tecken" in short.output
    named = ["user", "create", "--username", "bo", "--role", "coach"]
    product = runner.invoke(cli, [*named, "--password", "vi som jobbar med Slussen"])
    assert product.exit_code == 1
    assert "Lösenordet får inte innehålla ordet Slussen." in product.output
    unit = runner.invoke(
        cli,
        [
            "user",
            "create",
            "--username",
            "cia",
            "--role",
            "coach",
            "--unit",
            "SE0000000000-X",
            "--password",
            TEST_PASSWORD,
        ],
    )
    assert unit.exit_code == 1 and "Ingen enhet" in unit.output


def test_content_check_passes_on_shipped_content(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["content", "check"])
    assert result.exit_code == 0, result.output
    assert "Content is valid" in result.output


def test_content_check_names_file_and_line(cli_env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "content" / "workflows"
    bad.mkdir(parents=True)
    (bad / "sluss.toml").write_text('[states]\nreferred = "x"\nbroken = \n')
    result = CliRunner().invoke(cli, ["content", "check", str(tmp_path / "content")])
    assert result.exit_code == 1
    assert f"{bad / 'sluss.toml'}:3: error: not valid TOML" in result.output


def test_app_refuses_to_start_on_broken_content(cli_env: Path, tmp_path: Path) -> None:
    from slussen.app import create_app
    from slussen.content import ContentError

    bad = tmp_path / "content" / "forms"
    bad.mkdir(parents=True)
    (bad / "ucla3.toml").write_text("id = \n")
    with pytest.raises(ContentError, match=r"ucla3\.toml:1"):
        create_app({"content_dir": str(tmp_path / "content")})


@pytest.mark.slow
def test_wheel_install_finds_its_content(tmp_path: Path) -> None:
    """`pip install .` (not editable) into a fresh venv gives a working `slussen` command."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Dependencies come from this environment; only Slussen itself is built and installed.
    site = sysconfig.get_paths()["purelib"]
    purelib = next((venv / "lib").glob("python3*/site-packages"))
    (purelib / "deps.pth").write_text(site + "\n")
    build = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--quiet", str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    installed = next(purelib.glob("slussen"))
    assert (installed / "_content" / "migrations" / "env.py").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "SLUSSEN_INSTANCE_DIR": str(elsewhere / "instance"),
        "SLUSSEN_ENV": "testing",
        "HOME": str(tmp_path),
    }
    for args in (["content", "check"], ["init-db"]):
        result = subprocess.run(
            [str(venv / "bin" / "slussen"), *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert (elsewhere / "instance" / "slussen.sqlite3").exists()


def test_init_db_seals_the_canary_and_user_reset_totp(cli_env: Path) -> None:
    import pyotp

    from slussen.accounts.models import User
    from slussen.accounts.services import enrol_totp, has_second_factor, new_totp_secret
    from slussen.app import create_app
    from slussen.db import session_scope
    from slussen.keystore import current_key_ring, read_canary

    runner = CliRunner()
    first = runner.invoke(cli, ["init-db"])
    assert first.exit_code == 0 and "Sealed the key-ring canary" in first.output
    assert "Sealed" not in runner.invoke(cli, ["init-db"]).output  # once
    runner.invoke(
        cli,
        ["user", "create", "--username", "anna", "--role", "coach", "--password", TEST_PASSWORD],
    )
    app = create_app()
    with app.app_context(), session_scope(app) as session:
        assert read_canary(session) is not None
        user = session.scalar(select(User).where(User.username == "anna"))
        secret = new_totp_secret()
        enrol_totp(session, current_key_ring(), user, secret, pyotp.TOTP(secret).now())
    reset = runner.invoke(cli, ["user", "reset-totp", "Anna"])
    assert reset.exit_code == 0 and "Two-factor login of anna is off" in reset.output
    with app.app_context(), session_scope(app) as session:
        user = session.scalar(select(User).where(User.username == "anna"))
        assert user is not None and not has_second_factor(user)
    missing = runner.invoke(cli, ["user", "reset-totp", "nobody"])
    assert missing.exit_code == 1 and "There is no user nobody" in missing.output
    app.extensions["slussen.engine"].dispose()


@pytest.mark.parametrize(
    ("storage", "workers", "threads", "says"),
    [
        (None, 1, 12, "1 process with 12 threads; rate limits count in this process's memory"),
        ("redis://127.0.0.1:6399/0", 3, 4, "3 processes with 4 threads each"),
    ],
)
def test_serve_runs_one_process_while_rate_limits_count_in_memory(
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    storage: str | None,
    workers: int,
    threads: int,
    says: str,
) -> None:
    from slussen import serve

    if storage:
        monkeypatch.setenv("SLUSSEN_RATELIMIT_STORAGE_URI", storage)
    started: list[dict[str, object]] = []
    monkeypatch.setattr(serve, "run", lambda **kwargs: started.append(kwargs))
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    result = runner.invoke(cli, ["serve", "--port", "8123", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert started == [{"host": "127.0.0.1", "port": 8123, "workers": workers, "threads": threads}]
    assert f"Serving on 127.0.0.1:8123: {says}" in result.output
