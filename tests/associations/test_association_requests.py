"""Sluss 2 for the associations, through the real pages: a representative sees only the requests
addressed to their own organisations and only what the patient agreed to share; a request of
another organisation is 404 through every URL (on SQLite and PostgreSQL); answering moves the
workflow; every view is in the access log; an unanswered request reminds the coach."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.audit import Actor, AuditEvent
from slussen.cases.models import Case, CaseEvent
from slussen.cases.timers import run_timers
from slussen.cases.workflow import Workflow
from slussen.config import today_local
from slussen.directory.models import Organisation
from slussen.directory.services import add_representative
from slussen.keystore import Keystore
from slussen.visits.models import Handover
from slussen.visits.services import request_handover
from tests.builders import make_case, sample_pnr
from tests.conftest import TEST_PASSWORD


@dataclass
class Scene:
    mine: Handover
    theirs: Handover
    my_case: Case
    their_case: Case


def _scene(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> Scene:
    """Two organisations, X and Y; the user `rep_x` represents X; one request to each."""
    x = Organisation(name="Träffpunkt X", sector="ideburen")
    y = Organisation(name="Föreningen Y", sector="ideburen")
    session.add_all([x, y])
    session.flush()
    add_representative(session, None, x, make_user("org_rep", "rep_x", units=[]))
    add_representative(session, None, y, make_user("org_rep", "rep_y", units=[]))
    store = Keystore(session, ring)
    my_case = make_case(session, ring, workflow, coach, unit.id, "plan_active", n=7001)
    their_case = make_case(session, ring, workflow, coach, unit.id, "plan_active", n=7002)
    mine = request_handover(
        store,
        coach,
        my_case,
        workflow=workflow,
        organisation_id=x.id,
        is_phone_shared=True,
        helps="Vill bli mött vid entrén",
    )
    theirs = request_handover(
        store, coach, their_case, workflow=workflow, organisation_id=y.id, helps="Hemligt Y"
    )
    session.flush()
    return Scene(mine, theirs, my_case, their_case)


def _log_in(client: FlaskClient, username: str) -> None:
    response = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


def _snapshot(session: Session, scene: Scene) -> tuple[Any, ...]:
    session.expire_all()
    theirs = session.get(Handover, scene.theirs.id)
    case = session.get(Case, scene.their_case.id)
    assert theirs is not None and case is not None
    return (theirs.status, theirs.outcome, theirs.answer_reason_enc, case.state, case.version)


def test_a_request_of_another_organisation_is_404_through_every_url(
    backend: str,
    app: Flask,
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> None:
    scene = _scene(session, ring, workflow, coach, unit, make_user)
    _log_in(client, "rep_x")
    before = _snapshot(session, scene)
    pseudonym = audit.patient_pseudonym(ring, scene.their_case.patient_id)
    checked = 0
    for rule in app.url_map.iter_rules():
        if "handover_id" not in rule.arguments:
            continue
        url = rule.rule.replace("<int:handover_id>", str(scene.theirs.id))
        url = url.replace("<int:case_id>", str(scene.their_case.id))
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            empty = client.open(url, method=method, data={})
            assert empty.status_code == 404, (method, url, "empty form", empty.status_code)
            response = client.open(
                url,
                method=method,
                data={
                    "answer": "yes",
                    "reason": "x",
                    "outcome": "went",
                    "status": "done",
                    "companion_name": "Eva",
                    "meeting_day": "2030-05-06",
                    "meeting_time": "14.00",
                    "meeting_place": "Entrén",
                },
            )
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Hemligt" not in response.get_data(as_text=True)
            checked += 1
    assert checked >= 5  # the request page, its three forms, and the coach's form
    # The case page of either patient is no association's page either.
    for case in (scene.my_case, scene.their_case):
        assert client.get(f"/arenden/{case.id}").status_code == 404
    assert _snapshot(session, scene) == before
    # Nothing of Y's patient was read by X's representative.
    read = session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.patient_pseudonym == pseudonym, AuditEvent.actor_name == "rep_x")
    )
    assert read == 0
    # The own organisation's request opens.
    page = client.get(f"/forening/forfragningar/{scene.mine.id}")
    assert page.status_code == 200 and "Vill bli mött vid entrén" in page.get_data(as_text=True)


def test_the_association_sees_only_what_was_shared_and_each_view_is_logged(
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> None:
    scene = _scene(session, ring, workflow, coach, unit, make_user)
    _log_in(client, "rep_x")
    start = client.get("/", follow_redirects=True)
    assert start.request.path == "/forening"
    listed = start.get_data(as_text=True)
    detail = client.get(f"/forening/forfragningar/{scene.mine.id}").get_data(as_text=True)
    for page in (listed, detail):
        assert "Testperson" in page  # the first name the patient agreed to share
        assert "Hemligt Y" not in page  # another organisation's request
        pnr = sample_pnr(7001)
        for secret in (pnr, pnr[2:], f"{pnr[:8]}-{pnr[8:]}", "Provgatan", "7001"):
            assert secret not in page, secret  # no personnummer, no surname, no address
    assert "070-000 00 00" in detail and "Vill bli mött vid entrén" in detail
    pseudonym = audit.patient_pseudonym(ring, scene.my_case.patient_id)
    rows = session.execute(
        select(AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id).where(
            AuditEvent.patient_pseudonym == pseudonym, AuditEvent.actor_name == "rep_x"
        )
    ).all()
    assert rows == [("read", "handover", str(scene.mine.id))] * 2  # the list and the page


def test_answering_moves_the_workflow_and_the_coach_sees_it(
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> None:
    scene = _scene(session, ring, workflow, coach, unit, make_user)
    _log_in(client, "rep_x")
    base = f"/forening/forfragningar/{scene.mine.id}"
    # Declining needs a reason; nothing changes without one.
    page = client.post(f"{base}/svar", data={"answer": "no"}, follow_redirects=True)
    assert "Skriv skälet" in page.get_data(as_text=True)
    session.expire_all()
    assert session.get(Handover, scene.mine.id).status == "requested"  # type: ignore[union-attr]
    # The outcome is refused before an accepted meeting.
    page = client.post(f"{base}/utfall", data={"outcome": "went"}, follow_redirects=True)
    assert "efter ett accepterat möte" in page.get_data(as_text=True)

    client.post(f"{base}/svar", data={"answer": "yes", "reason": "Gärna!"})
    page = client.post(
        f"{base}/mote",
        data={
            "companion_name": "Eva",
            "meeting_day": "2030-05-06",
            "meeting_time": "14.00",
            "meeting_place": "Entrén, Storgatan 2",
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "måndag 6 maj 2030 kl. 14.00" in page and "Entrén, Storgatan 2" in page
    client.post(f"{base}/utfall", data={"outcome": "will_continue"})
    session.expire_all()
    case = session.get(Case, scene.my_case.id)
    assert case is not None and case.state == "handed_over"
    events = list(
        session.scalars(
            select(CaseEvent.event).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )
    assert events[-3:] == ["request_handover", "answer_handover", "record_handover_outcome"]
    assert not {d.name for d in case.due_dates} & {"handover_answer", "handover_unanswered"}
    # The coach's case page shows the answer, the meeting and the outcome.
    client.post("/logout")
    _log_in(client, "coach")
    shown = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert "Kom och fortsätter" in shown and "Eva" in shown and "Gärna!" in shown
    assert "Slussad till förening" in shown


def test_an_unanswered_request_reminds_the_coach(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> None:
    scene = _scene(session, ring, workflow, coach, unit, make_user)
    factory = app.extensions["slussen.sessionmaker"]
    today = today_local()
    early = run_timers(factory, ring, workflow, today=today + dt.timedelta(days=4))
    assert not early.fired
    late = run_timers(factory, ring, workflow, today=today + dt.timedelta(days=5))
    assert dict(late.fired) == {"remind_handover": 2}
    session.expire_all()
    case = session.get(Case, scene.my_case.id)
    assert case is not None
    due = {d.name: d.due_on for d in case.due_dates}
    # On the coach's worklist that day (the worklist lists cases by their next due date).
    reminded = today + dt.timedelta(days=5)
    assert due["handover_unanswered"] == reminded and case.next_due_on == reminded
    assert "handover_answer" not in due
    assert not run_timers(factory, ring, workflow, today=today + dt.timedelta(days=6)).fired


@pytest.mark.parametrize("username", ["rep_y", "coach"])
def test_only_the_addressed_association_lists_a_request(
    username: str,
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Callable[..., Any],
) -> None:
    scene = _scene(session, ring, workflow, coach, unit, make_user)
    _log_in(client, username)
    response = client.get("/forening")
    if username == "coach":
        assert response.status_code == 403  # not an association's page
        return
    page = response.get_data(as_text=True)
    assert "Hemligt Y" not in page and f"/forening/forfragningar/{scene.theirs.id}" in page
    assert f"/forening/forfragningar/{scene.mine.id}" not in page
