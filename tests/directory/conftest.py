"""Fixtures for the directory tests: organisations, representatives and a helper that publishes
an activity through the real services (submit, then approve)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from slussen.config import local_zone
from slussen.directory.categories import interest_categories
from slussen.directory.models import ActivityRevision, Organisation
from slussen.directory.schedule import WEEKDAY_CODES
from slussen.directory.services import (
    ActivityData,
    add_representative,
    approve_revision,
    create_organisation,
    submit_activity,
)


def today() -> dt.date:
    return dt.datetime.now(local_zone()).date()


@dataclass
class Directory:
    coordinator: Any
    rep_a: Any
    rep_b: Any
    org_a: Organisation
    org_b: Organisation
    categories: list[str]


@pytest.fixture
def directory(app: Flask, session: Session, make_user: Callable[..., Any]) -> Directory:
    with app.app_context():
        categories = [c.id for c in interest_categories()]
    coordinator = make_user("coordinator", "samordnare")
    rep_a = make_user("org_rep", "rep_a", units=[])
    rep_b = make_user("org_rep", "rep_b", units=[])
    org_a = create_organisation(
        session, coordinator, name="Frivilligcentralen Test", sector="ideburen", area="Centrum"
    )
    org_b = create_organisation(
        session, coordinator, name="Korpen Test", sector="ideburen", area="Skarptorp"
    )
    add_representative(session, coordinator, org_a, rep_a)
    add_representative(session, coordinator, org_b, rep_b)
    return Directory(coordinator, rep_a, rep_b, org_a, org_b, categories)


def activity_data(**changes: Any) -> ActivityData:
    values: dict[str, Any] = {
        "title": "Promenad i parken",
        "description": "Vi går en lugn runda och fikar efteråt.",
        "categories": ["nature_walks"],
        "first_date": today(),
        "start_time": dt.time(10, 0),
        "duration_minutes": 90,
        "rrule": "FREQ=WEEKLY;BYDAY=" + WEEKDAY_CODES[today().weekday()],
        "place_name": "Stadsparken",
        "area": "Centrum",
        "languages": ["sv"],
    }
    values.update(changes)
    return ActivityData(**values)


@pytest.fixture
def publish(session: Session, directory: Directory) -> Callable[..., ActivityRevision]:
    """publish(org, **changes): an org_rep submits, the coordinator approves it."""

    def _publish(org: Organisation | None = None, **changes: Any) -> ActivityRevision:
        org = org or directory.org_a
        rep = directory.rep_a if org.id == directory.org_a.id else directory.rep_b
        revision = submit_activity(
            session,
            rep,
            org,
            activity_data(**changes),
            known_categories=directory.categories,
            today=today(),
        )
        approve_revision(session, directory.coordinator, revision, today=today())
        return revision

    return _publish
