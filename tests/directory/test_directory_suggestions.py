"""Suggestions for the action plan: matching interests, avoiding barriers, ranked, with reasons;
stale activities are left out; next occasions for the plan letter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from slussen.config import local_zone
from slussen.directory.services import next_occasions, suggest_activities
from tests.directory.conftest import Directory, today


def test_suggestions_match_interests_and_avoid_barriers(
    backend: str, session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    walk = publish(
        title="Promenad med fika",
        categories=["nature_walks", "fika_conversation"],
        has_companion=True,
        area="Skarptorp",
    )
    publish(
        title="Fiskestuga",
        categories=["outdoor_life", "nature_walks"],
        cost_sek=50,
        area="Skarptorp",
    )
    near = publish(title="Stavgång", categories=["nature_walks"], area="Skarptorp")
    far = publish(title="Naturvandring långt bort", categories=["nature_walks"], area="Ljura")
    publish(title="Stickcafé", categories=["crafts"])
    stale = publish(title="Gammal promenad", categories=["nature_walks"], area="Skarptorp")
    stale.activity.last_verified_on = today() - dt.timedelta(days=300)
    session.flush()

    found = suggest_activities(
        session,
        interests=["nature_walks"],
        barriers=["cost", "anxiety", "transport"],
        area="Skarptorp",
        today=today(),
        category_labels={"nature_walks": "Promenader och natur"},
    )
    titles = [s.activity.published.title for s in found]
    assert titles == ["Promenad med fika", "Stavgång", "Naturvandring långt bort"]
    assert found[0].activity.id == walk.activity_id
    assert found[0].reasons == [
        "Passar intresset promenader och natur",
        "Kostnadsfritt",
        "Någon kan möta upp och följa med första gången",
        "Nära: Skarptorp",
    ]
    assert found[1].activity.id == near.activity_id and found[2].activity.id == far.activity_id
    assert found[0].score > found[1].score > found[2].score
    assert found[0].next_occasion is not None

    without_barriers = suggest_activities(
        session, interests=["nature_walks"], barriers=[], area=None, today=today()
    )
    assert "Fiskestuga" in [s.activity.published.title for s in without_barriers]
    assert (
        len(
            suggest_activities(
                session, interests=[], barriers=[], area=None, today=today(), limit=2
            )
        )
        == 2
    )


def test_next_occasions_for_the_plan_letter(session: Session, publish: Callable[..., Any]) -> None:
    revision = publish(title="Seniorgympa")
    after = dt.datetime.combine(today(), dt.time(0), tzinfo=local_zone())
    found = next_occasions(revision.activity, after, 3)
    assert [o.starts_at.date() for o in found] == [
        today() + dt.timedelta(days=7 * i) for i in range(3)
    ]
    assert all(o.starts_at.hour == 10 for o in found)


def test_distance_counts_the_postal_area_when_the_area_differs(
    session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    publish(title="Boule i Ljura", area="Ljura", postcode="602 11")
    publish(title="Boule i Skarptorp", area="Skarptorp", postcode="603 79")
    publish(title="Boule i Centrum", area="Centrum", postcode="602 32")
    found = suggest_activities(
        session,
        interests=["nature_walks"],
        barriers=["transport"],
        area="Centrum",
        postcode="602 15",
        today=today(),
    )
    assert [s.activity.published.title for s in found] == [
        "Boule i Centrum",
        "Boule i Ljura",
        "Boule i Skarptorp",
    ]
    assert found[0].reasons[-1] == "Nära: Centrum"
    assert found[1].reasons[-1] == "Nära: samma postnummerområde (602 11)"
    assert found[0].score > found[1].score > found[2].score


def test_no_time_favours_evenings_and_weekends_and_times_of_day_rank(
    session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    # On Tuesdays, so that "at the weekend" never counts for either.
    tuesday = today() + dt.timedelta(days=(1 - today().weekday()) % 7)
    weekly = {"first_date": tuesday, "rrule": "FREQ=WEEKLY;BYDAY=TU"}
    publish(title="Förmiddagspromenad", start_time=dt.time(10, 0), **weekly)
    publish(title="Kvällspromenad", start_time=dt.time(18, 30), **weekly)
    busy = suggest_activities(
        session, interests=["nature_walks"], barriers=["time"], area=None, today=today()
    )
    assert [s.activity.published.title for s in busy] == ["Kvällspromenad", "Förmiddagspromenad"]
    assert busy[0].reasons[-1] == "På kvällen eller helgen"

    mornings = suggest_activities(
        session,
        interests=["nature_walks"],
        barriers=[],
        area=None,
        today=today(),
        times_of_day=["morning"],
    )
    assert [s.activity.published.title for s in mornings] == [
        "Förmiddagspromenad",
        "Kvällspromenad",
    ]
    assert mornings[0].reasons[-1] == "Passar tiden på dagen: kl. 10.00"
