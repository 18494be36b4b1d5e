"""The demo is one place: its activities are in the town of the health centre the demo users work
at, so a coach's suggestions and the printed lists are believable."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import demo
from slussen.accounts.models import Membership, Unit, User
from slussen.directory.models import Activity, ActivityRevision
from tests.conftest import TEST_PASSWORD


def test_demo_activities_are_in_the_demo_coach_s_town(app: Flask, session: Session) -> None:
    with app.app_context():
        demo.seed(app, password=TEST_PASSWORD)
    coach_town = session.scalar(
        select(Unit.town)
        .join(Membership, Membership.unit_id == Unit.id)
        .join(User, User.id == Membership.user_id)
        .where(User.username == "coach")
    )
    assert coach_town == "Västerås"
    towns = session.scalars(
        select(ActivityRevision.town).join(
            Activity, Activity.published_revision_id == ActivityRevision.id
        )
    ).all()
    assert len(towns) >= 5
    assert set(towns) == {coach_town}
    # Every postcode is one of the town's (Västerås: 721 00–725 99).
    postcodes = session.scalars(
        select(ActivityRevision.postcode).join(
            Activity, Activity.published_revision_id == ActivityRevision.id
        )
    ).all()
    assert all("721 00" <= code <= "725 99" for code in postcodes), postcodes
