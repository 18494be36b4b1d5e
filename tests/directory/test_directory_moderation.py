"""Moderation and access: only approved revisions are public, a returned revision shows the
coordinator's comment, history is kept; an org_rep reaches only their own organisation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.directory.models import ActivityOccasion, ActivityRevision
from slussen.directory.services import (
    NotPending,
    approve_revision,
    is_hidden_from_suggestions,
    is_stale,
    load_activity,
    load_organisation,
    return_revision,
    stale_activities,
    submit_activity,
    submit_revision,
)
from slussen.errors import NotFound, NotPermitted
from tests.conftest import TEST_PASSWORD
from tests.directory.conftest import Directory, activity_data, today


def _login(client: FlaskClient, username: str) -> None:
    response = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302


def test_only_approved_revisions_are_public_and_history_is_kept(
    backend: str, session: Session, directory: Directory, client: FlaskClient
) -> None:
    revision = submit_activity(
        session,
        directory.rep_a,
        directory.org_a,
        activity_data(title="Språkpromenad"),
        known_categories=directory.categories,
        today=today(),
    )
    activity = revision.activity
    assert revision.status == "pending"
    assert activity.published is None
    assert "Språkpromenad" not in client.get("/aktiviteter").get_data(as_text=True)
    assert client.get(f"/aktiviteter/{activity.id}").status_code == 404

    approve_revision(session, directory.coordinator, revision, today=today())
    page = client.get("/aktiviteter").get_data(as_text=True)
    assert "Språkpromenad" in page
    assert session.scalar(select(func.count()).where(ActivityOccasion.activity_id == activity.id))

    change = submit_revision(
        session,
        directory.rep_a,
        activity,
        activity_data(title="Språkpromenad i ny park"),
        known_categories=directory.categories,
        today=today(),
    )
    assert "Språkpromenad i ny park" not in client.get("/aktiviteter").get_data(as_text=True)
    approve_revision(session, directory.coordinator, change, today=today())
    page = client.get("/aktiviteter").get_data(as_text=True)
    assert "Språkpromenad i ny park" in page
    statuses = [
        r.status
        for r in session.scalars(
            select(ActivityRevision)
            .where(ActivityRevision.activity_id == activity.id)
            .order_by(ActivityRevision.number)
        )
    ]
    assert statuses == ["superseded", "approved"]


def test_a_returned_revision_shows_the_comment_and_the_public_keeps_the_old_version(
    backend: str,
    session: Session,
    directory: Directory,
    publish: Callable[..., Any],
    client: FlaskClient,
) -> None:
    published = publish(title="Stickcafé")
    change = submit_revision(
        session,
        directory.rep_a,
        published.activity,
        activity_data(title="Stickcafé med fel tid"),
        known_categories=directory.categories,
        today=today(),
    )
    return_revision(
        session, directory.coordinator, change, comment="Stämmer tiden? Biblioteket öppnar 11."
    )
    with pytest.raises(NotPending):
        approve_revision(session, directory.coordinator, change, today=today())
    assert change.status == "returned"
    assert "Stickcafé med fel tid" not in client.get("/aktiviteter").get_data(as_text=True)
    assert "Stickcafé" in client.get("/aktiviteter").get_data(as_text=True)

    _login(client, "rep_a")
    page = client.get(f"/katalog/aktiviteter/{published.activity_id}").get_data(as_text=True)
    assert "Stämmer tiden? Biblioteket öppnar 11." in page
    assert "Version 2" in page and "Version 1" in page
    organisation_page = client.get(f"/katalog/organisationer/{directory.org_a.id}").get_data(
        as_text=True
    )
    assert "Skickad tillbaka" in organisation_page


def test_returning_needs_a_comment_and_only_the_coordinator_moderates(
    session: Session, directory: Directory
) -> None:
    revision = submit_activity(
        session,
        directory.rep_a,
        directory.org_a,
        activity_data(),
        known_categories=directory.categories,
        today=today(),
    )
    with pytest.raises(NotPermitted):
        approve_revision(session, directory.rep_a, revision, today=today())
    with pytest.raises(Exception, match="Skriv vad"):
        return_revision(session, directory.coordinator, revision, comment="  ")


def test_org_rep_cannot_reach_another_organisation(
    backend: str, session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    other = publish(directory.org_b, title="Pickleball")
    with pytest.raises(NotFound):
        load_organisation(session, directory.rep_a, directory.org_b.id)
    with pytest.raises(NotFound):
        load_activity(session, directory.rep_a, other.activity_id, edit=True)
    with pytest.raises(NotFound):
        submit_revision(
            session,
            directory.rep_a,
            other.activity,
            activity_data(),
            known_categories=directory.categories,
            today=today(),
        )
    with pytest.raises(NotFound):
        submit_activity(
            session,
            directory.rep_a,
            directory.org_b,
            activity_data(),
            known_categories=directory.categories,
            today=today(),
        )


def test_org_rep_gets_404_for_other_organisations_pages(
    app: Flask,
    session: Session,
    directory: Directory,
    publish: Callable[..., Any],
    client: FlaskClient,
) -> None:
    own = publish(directory.org_a, title="Egen promenad")
    other = publish(directory.org_b, title="Pickleball")
    pending = submit_revision(
        session,
        directory.rep_b,
        other.activity,
        activity_data(title="Pickleball ny tid"),
        known_categories=directory.categories,
        today=today(),
    )
    _login(client, "rep_a")
    org_b, act_b = directory.org_b.id, other.activity_id
    for url in (
        f"/katalog/organisationer/{org_b}",
        f"/katalog/organisationer/{org_b}/andra",
        f"/katalog/organisationer/{org_b}/aktiviteter/ny",
        f"/katalog/aktiviteter/{act_b}",
        f"/katalog/aktiviteter/{act_b}/andra",
        f"/katalog/andringar/{pending.id}",
        "/katalog/organisationer/99999",
    ):
        assert client.get(url).status_code == 404, url
    for url in (
        f"/katalog/aktiviteter/{act_b}/andra",
        f"/katalog/aktiviteter/{act_b}/kontrollerad",
        f"/katalog/aktiviteter/{act_b}/dold",
        f"/katalog/organisationer/{org_b}/aktiviteter/ny",
    ):
        assert client.post(url, data={"title": "Kapat"}).status_code == 404, url
    assert client.get("/katalog/granska").status_code == 403
    assert client.post(f"/katalog/andringar/{pending.id}/godkann").status_code == 403
    home = client.get("/katalog").get_data(as_text=True)
    assert "Frivilligcentralen Test" in home and "Korpen Test" not in home
    assert client.get(f"/katalog/aktiviteter/{own.activity_id}").status_code == 200
    session.expire_all()
    assert pending.status == "pending"


def test_org_rep_sees_nothing_about_patients(
    app: Flask, directory: Directory, client: FlaskClient
) -> None:
    _login(client, "rep_a")
    from slussen.accounts.auth import is_public_endpoint

    # The association's own pages (sluss 2) show only requests addressed to its organisations:
    # none here (tests/associations/ tests what they show).
    own_pages = ("directory.", "accounts.", "core.", "associations.", "static")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(own_pages) or "GET" not in (rule.methods or set()):
            continue
        with app.test_request_context():
            if is_public_endpoint(rule.endpoint):
                continue  # public pages (the self-referral form) are open to everyone
        url = rule.rule.replace("<int:", "<").replace("<", "").replace(">", "")
        url = "/".join("1" if part.endswith("_id") else part for part in url.split("/"))
        patient_pages = (
            "cases.",
            "visits.",
            "intake.",
            "accesslog.",
            "letters.",
            "questionnaires.",
        )
        expected = (404,) if rule.endpoint.startswith(patient_pages) else (403, 404)
        assert client.get(url).status_code in expected, url
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Aktivitetskatalog" in page


def test_org_rep_adds_an_activity_through_the_form_and_it_waits(
    session: Session, directory: Directory, client: FlaskClient
) -> None:
    _login(client, "rep_a")
    response = client.post(
        f"/katalog/organisationer/{directory.org_a.id}/aktiviteter/ny",
        data={
            "title": "Seniorgympa",
            "description": "Lugn gympa till musik.",
            "categories": ["sport_exercise"],
            "kind": "leisure",
            "first_date": today().isoformat(),
            "start_time": "10:00",
            "duration_minutes": "60",
            "repeat": "weekly",
            "weekdays": ["0", "3"],
            "languages": "sv",
        },
    )
    assert response.status_code == 302
    revision = session.scalar(
        select(ActivityRevision).where(ActivityRevision.title == "Seniorgympa")
    )
    assert revision is not None and revision.status == "pending"
    assert revision.rrule == "FREQ=WEEKLY;BYDAY=MO,TH"
    bad = client.post(
        f"/katalog/organisationer/{directory.org_a.id}/aktiviteter/ny",
        data={
            "title": "X",
            "first_date": "",
            "start_time": "10:00",
            "duration_minutes": "60",
            "repeat": "custom",
            "custom_rrule": "FREQ=SECONDLY",
            "languages": "sv",
        },
    )
    assert bad.status_code == 200
    assert "Ange ett datum" in bad.get_data(as_text=True)


def test_coordinator_approves_through_the_pages(
    session: Session, directory: Directory, client: FlaskClient
) -> None:
    revision = submit_activity(
        session,
        directory.rep_a,
        directory.org_a,
        activity_data(title="Berättarcafé"),
        known_categories=directory.categories,
        today=today(),
    )
    _login(client, "samordnare")
    assert "Berättarcafé" in client.get("/katalog/granska").get_data(as_text=True)
    assert client.get(f"/katalog/andringar/{revision.id}").status_code == 200
    response = client.post(f"/katalog/andringar/{revision.id}/godkann", data={})
    assert response.status_code == 302
    session.expire_all()
    assert revision.status == "approved"
    again = client.post(f"/katalog/andringar/{revision.id}/godkann", data={})
    assert again.status_code == 409


def test_stale_flags_after_six_months_and_hidden_after_nine(
    backend: str, session: Session, directory: Directory, publish: Callable[..., Any]
) -> None:
    activity = publish().activity
    now = today()
    assert not is_stale(activity, now)
    activity.last_verified_on = now - dt.timedelta(days=200)
    assert is_stale(activity, now) and not is_hidden_from_suggestions(activity, now)
    assert [
        a.id for a in stale_activities(session, today=now, organisation_ids=[directory.org_a.id])
    ] == [activity.id]
    assert stale_activities(session, today=now, organisation_ids=[directory.org_b.id]) == []
    activity.last_verified_on = now - dt.timedelta(days=280)
    assert is_hidden_from_suggestions(activity, now)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "title": st.text(max_size=300),
            "first_date": st.text(max_size=12) | st.dates().map(str),
            "start_time": st.text(max_size=6) | st.sampled_from(["10:00", "25:61", "7"]),
            "duration_minutes": st.text(max_size=6) | st.integers(-5, 5000).map(str),
            "repeat": st.sampled_from(["none", "weekly", "biweekly", "monthly", "custom", "x"]),
            "weekdays": st.lists(st.text(max_size=2) | st.integers(-1, 8).map(str), max_size=3),
            "until": st.text(max_size=12) | st.dates().map(str),
            "custom_rrule": st.text(max_size=60)
            | st.sampled_from(["FREQ=WEEKLY;BYDAY=MO", "FREQ=SECONDLY", "FREQ=MONTHLY;BYDAY=9ZZ"]),
            "extra_dates": st.text(max_size=40),
            "exception_dates": st.text(max_size=40),
            "cost_sek": st.text(max_size=8),
            "capacity": st.text(max_size=8),
            "languages": st.text(max_size=20) | st.sampled_from(["sv, en", "xx", "sv;ar"]),
            "categories": st.lists(
                st.sampled_from(["crafts", "nature_walks", "bogus"]), max_size=2
            ),
            "age_groups": st.lists(st.sampled_from(["seniors", "aliens"]), max_size=2),
            "contact_email": st.text(max_size=30),
        },
    )
)
def test_any_activity_form_input_gives_a_message_or_a_revision(
    client: FlaskClient, directory: Directory, fields: dict[str, Any]
) -> None:
    client.post("/login", data={"username": "rep_a", "password": TEST_PASSWORD})
    response = client.post(
        f"/katalog/organisationer/{directory.org_a.id}/aktiviteter/ny", data=fields
    )
    # A NUL is refused before any form reads it (tests/test_hostile_input.py).
    expected = (400,) if "\\x00" in repr(fields) else (200, 302)
    assert response.status_code in expected
