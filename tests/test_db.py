"""The data layer on both databases: constraints, UTC times, transaction per test."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, Unit, User


def _unit(session: Session, hsa: str = "SE2321000016-DB01") -> Unit:
    unit = Unit(
        name="Vårdcentralen Databas",
        hsa_id=hsa,
        street="Gatan 1",
        postcode="722 15",
        town="Västerås",
        phone="021-00 00 00",
    )
    session.add(unit)
    session.flush()
    return unit


def _user(session: Session, username: str = "ulla", role: str = "coach") -> User:
    user = User(username=username, display_name="Ulla", role=role, password_hash="x")
    session.add(user)
    session.flush()
    return user


def test_round_trip_keeps_swedish_text_and_utc(backend: str, session: Session) -> None:
    unit = _unit(session)
    session.expire_all()
    loaded = session.get(Unit, unit.id)
    assert loaded is not None
    assert loaded.name == "Vårdcentralen Databas"
    assert loaded.created_at.tzinfo is not None
    assert abs(loaded.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_unique_hsa_id(backend: str, session: Session) -> None:
    _unit(session)
    with pytest.raises(IntegrityError):
        _unit(session)


def test_role_check_constraint(backend: str, session: Session) -> None:
    with pytest.raises(IntegrityError):
        _user(session, role="superuser")


def test_foreign_keys_are_enforced(backend: str, session: Session) -> None:
    user = _user(session)
    session.add(Membership(user_id=user.id, unit_id=999999))
    with pytest.raises(IntegrityError):
        session.flush()


def test_membership_gives_unit_ids(backend: str, session: Session) -> None:
    unit = _unit(session)
    user = _user(session)
    user.memberships.append(Membership(unit_id=unit.id))
    session.flush()
    session.expire_all()
    assert session.scalars(select(User)).one().unit_ids == frozenset({unit.id})


def test_each_test_starts_empty(backend: str, session: Session) -> None:
    assert session.scalar(text("SELECT count(*) FROM units")) == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys(session: Session) -> None:
    assert session.scalar(text("PRAGMA journal_mode")) == "wal"
    assert session.scalar(text("PRAGMA foreign_keys")) == 1
