"""Key ring and rotation: every demo patient and every TOTP secret stays readable; an interrupted
rotation resumes; the canary names the key ring a database needs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from slussen import vault
from slussen.accounts.models import User
from slussen.accounts.services import enrol_totp, new_totp_secret, use_second_factor
from slussen.audit import SYSTEM, AuditEvent
from slussen.cli import cli
from slussen.db import make_engine, utcnow
from slussen.keystore import (
    DataKey,
    KeyDestroyed,
    Keystore,
    current_key_ring,
    key_usage,
    rotate_master_key,
)
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from tests.conftest import TEST_PASSWORD, DemoSite


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


def enrol_coach(app: Flask) -> str:
    """Turn on TOTP for a demo user; return the secret."""
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as session:
        user = session.scalar(select(User).where(User.role == "coach").order_by(User.id))
        assert user is not None
        secret = new_totp_secret()
        enrolled = utcnow() - dt.timedelta(minutes=5)
        code = pyotp.TOTP(secret).at(enrolled)
        enrol_totp(session, current_key_ring(), user, secret, code, now=enrolled)
        session.commit()
    return secret


def totp_verifies(app: Flask, secret: str) -> bool:
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as session:
        user = session.scalar(select(User).where(User.role == "coach").order_by(User.id))
        assert user is not None
        used = use_second_factor(session, current_key_ring(), user, pyotp.TOTP(secret).now())
        session.rollback()
        return used.method == "totp"


def test_rotation_round_trips_all_demo_data(demo_app: Flask) -> None:
    before = read_all(demo_app)
    assert len(before) == 12
    secret = enrol_coach(demo_app)
    assert totp_verifies(demo_app, secret)
    result = CliRunner().invoke(cli, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    # 12 patients, the coach's TOTP key and the canary's key.
    assert "active key m2, 14 data keys rewrapped, retired: m1" in result.output
    assert read_all(demo_app) == before
    assert totp_verifies(demo_app, secret)
    status = CliRunner().invoke(cli, ["keys", "status"])
    assert status.exit_code == 0, status.output
    assert "m2  active" in status.output and "wraps 14" in status.output
    assert "m1  retired" in status.output
    assert "opens the database's canary" in status.output


def test_a_fresh_key_ring_with_the_same_ids_is_refused(demo_app: Flask, cli_env: Path) -> None:
    ring_path = cli_env / "keyring.json"
    with demo_app.app_context():
        expected = current_key_ring().fingerprint()
    ring_path.unlink()
    fresh = vault.KeyRing.create(ring_path)  # "m1" again, other keys
    for command in (["keys", "status"], ["init-db"], ["serve"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, result.output
        assert (
            f"the key ring {ring_path} (fingerprint {fresh.fingerprint()}, master keys m1) cannot"
            f" open the canary of the database: it needs the key ring with fingerprint {expected}"
            " holding master keys m1" in result.output
        )
    assert "the database was not changed." in CliRunner().invoke(cli, ["init-db"]).output


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
    assert half == {"m1": 8, "m2": 5}  # half-way: both keys in use, nothing lost
    assert read_all(demo_app) == before

    again = CliRunner().invoke(cli, ["keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert "Resumed an interrupted rotation: active key m2, 8 data keys rewrapped" in again.output
    with factory() as session:
        assert key_usage(session) == {"m2": 13}  # 12 patients and the canary
    assert read_all(demo_app) == before


def test_a_key_erased_during_a_rotation_stays_erased(demo_site: DemoSite) -> None:
    """A slice's keys are rewrapped in memory and written together before the slice commits: a
    patient erased in between keeps no key (on SQLite and PostgreSQL), and the count and the
    access log say how many keys were really rewrapped."""
    engine = make_engine(demo_site.url)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    ring = demo_site.ring
    try:
        with factory() as session:
            patients = session.execute(
                select(Patient.id, Patient.data_key_id).order_by(Patient.id)
            ).all()
            before = {
                p.id: read_patient(Keystore(session, ring), SYSTEM, p, purpose="test").name
                for p in session.scalars(select(Patient).order_by(Patient.id))
            }
            session.rollback()
            total = key_usage(session)["m1"]
        erased_patient, erased_key = patients[-1]
        reports: list[tuple[int, int]] = []

        def erase_after_first_slice(done: int, of: int) -> None:
            # Every key was read (one page of 2000) before the first slice committed; the erased
            # one is written in a later slice.
            if not reports:
                with factory() as other:
                    Keystore(other, ring).destroy(erased_key)
                    other.commit()
            reports.append((done, of))

        result = rotate_master_key(factory, ring, batch_size=5, progress=erase_after_first_slice)

        assert result.rewrapped == total - 1
        assert reports[0] == (5, total) and reports[-1] == (total - 1, total)
        with factory() as session:
            assert key_usage(session) == {"m2": total - 1}
            erased = session.get_one(DataKey, erased_key)
            assert erased.wrapped is None and erased.master_key_id is None
            store = Keystore(session, ring)
            for patient in session.scalars(select(Patient).order_by(Patient.id)):
                if patient.id == erased_patient:
                    with pytest.raises(KeyDestroyed):
                        read_patient(store, SYSTEM, patient, purpose="test")
                else:
                    assert (
                        read_patient(store, SYSTEM, patient, purpose="test").name
                        == (before[patient.id])
                    )
            session.rollback()
            logged = session.scalars(
                select(AuditEvent.purpose).where(AuditEvent.action == "key_rotate")
            ).all()
            assert logged == [f"rewrapped {total - 1} data keys"]
    finally:
        engine.dispose()


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
    monkeypatch.setenv("SLUSSEN_PUBLIC_BASE_URL", "https://slussen.example.se")
    result = CliRunner().invoke(cli, ["keys", "status"])
    assert result.exit_code == 1
    assert "slussen keys init" in result.output
