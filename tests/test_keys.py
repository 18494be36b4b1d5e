"""Key ring and rotation: every demo patient stays readable; an interrupted rotation resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from slussen.audit import SYSTEM
from slussen.cli import cli
from slussen.keystore import Keystore, current_key_ring, key_usage, rotate_master_key
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from tests.conftest import TEST_PASSWORD


class Interrupted(Exception):
    pass


@pytest.fixture
def demo_app(cli_env: Path) -> Flask:
    from slussen.app import create_app

    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    assert runner.invoke(cli, ["demo", "--password", TEST_PASSWORD]).exit_code == 0
    return create_app()


def read_all(app: Flask) -> dict[int, tuple[str, str]]:
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as session:
        store = Keystore(session, current_key_ring())
        patients = session.scalars(select(Patient).order_by(Patient.id)).all()
        out = {}
        for p in patients:
            identity = read_patient(store, SYSTEM, p, purpose="rotation test")
            out[p.id] = (identity.identifier.value, identity.name)
        session.rollback()
        return out


def test_rotation_round_trips_all_demo_data(demo_app: Flask) -> None:
    before = read_all(demo_app)
    assert len(before) == 12
    result = CliRunner().invoke(cli, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "active key m2, 12 data keys rewrapped, retired: m1" in result.output
    assert read_all(demo_app) == before
    status = CliRunner().invoke(cli, ["keys", "status"])
    assert "m2  active" in status.output and "wraps 12" in status.output
    assert "m1  retired" in status.output


def test_interrupted_rotation_resumes(demo_app: Flask) -> None:
    before = read_all(demo_app)
    factory = demo_app.extensions["slussen.sessionmaker"]
    with demo_app.app_context():
        ring = current_key_ring()

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotate_master_key(factory, ring, batch_size=5, progress=stop_after_first_batch)
    with factory() as session:
        half = key_usage(session)
    assert half == {"m1": 7, "m2": 5}  # half-way: both keys in use, nothing lost
    assert read_all(demo_app) == before

    again = CliRunner().invoke(cli, ["keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert "Resumed an interrupted rotation: active key m2, 7 data keys rewrapped" in again.output
    with factory() as session:
        assert key_usage(session) == {"m2": 12}
    assert read_all(demo_app) == before


def test_keys_init_refuses_to_overwrite(cli_env: Path, tmp_path: Path) -> None:
    target = tmp_path / "ring" / "keyring.json"
    first = CliRunner().invoke(cli, ["keys", "init", "--path", str(target)])
    assert first.exit_code == 0, first.output
    assert target.stat().st_mode & 0o777 == 0o600
    second = CliRunner().invoke(cli, ["keys", "init", "--path", str(target)])
    assert second.exit_code == 1 and "exists already" in second.output


def test_production_never_creates_a_key_ring(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUSSEN_ENV", "production")
    monkeypatch.setenv("SLUSSEN_SECRET_KEY", "z" * 40)
    monkeypatch.setenv("SLUSSEN_KEYRING", str(cli_env / "missing" / "keyring.json"))
    result = CliRunner().invoke(cli, ["keys", "status"])
    assert result.exit_code == 1
    assert "slussen keys init" in result.output
