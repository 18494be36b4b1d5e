"""Finding any case (search by identifier or name, the caseload, the unit list for coaches) and
the safe transitions (confirmation with a reason, reopening, answers before registering)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.accounts.models import Unit
from slussen.audit import Actor, AuditEvent
from slussen.cases.engine import TransitionRefused, fire
from slussen.cases.models import CaseEvent
from slussen.cases.workflow import Workflow
from slussen.identifiers import parse_person_identifier
from slussen.keystore import Keystore
from slussen.patients.services import LISTED, SHOWN_IN, name_key
from tests.builders import key_in_first_form, make_case, sample_pnr


def shown(session: Session, purpose: str) -> list[int]:
    """The cases whose patients the access log records as shown in a list for `purpose`."""
    rows = session.scalars(
        select(AuditEvent.object_id).where(
            AuditEvent.object_type == LISTED, AuditEvent.purpose == purpose
        )
    )
    return [int(row) for row in rows]


@pytest.fixture
def other_unit(session: Session) -> Unit:
    unit = Unit(
        name="Vårdcentralen Annan",
        hsa_id="SE2321000016-TST2",
        street="Annangatan 2",
        postcode="722 16",
        town="Västerås",
        phone="021-11 11 11",
    )
    session.add(unit)
    session.flush()
    return unit


def test_name_key_folds_case_accents_and_separators() -> None:
    assert name_key("Åsa Öberg-Lindén") == "asa oberg linden"
    assert name_key("  ÉLIN   ekström ") == "elin ekstrom"


def test_a_case_is_found_by_personnummer_and_by_name_within_the_units_only(
    client: FlaskClient,
    login: Callable[..., Any],
    make_user: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
    other_unit: Unit,
) -> None:
    coach = Actor.of(login("coach"))
    elsewhere = Actor.of(make_user("coach", "annan", units=[other_unit]))
    mine = make_case(session, ring, workflow, coach, unit.id, "invited", name="Åsa Öberg")
    make_case(session, ring, workflow, coach, unit.id, name="Bertil Ek")
    theirs = make_case(session, ring, workflow, elsewhere, other_unit.id, name="Åsa Öström")
    pnr_mine = sample_pnr(5000)
    make_case(
        session,
        ring,
        workflow,
        coach,
        unit.id,
        name="Per Nummer",
        identifier=parse_person_identifier(pnr_mine),
    )
    # By name: case and accents do not matter, nor the order of the words; the other unit's
    # Åsa is not shown.
    page = client.post("/sok", data={"q": "oberg asa"}).get_data(as_text=True)
    assert "Åsa Öberg" in page and mine.reference in page
    assert "Öström" not in page and theirs.reference not in page and "Bertil" not in page
    assert shown(session, SHOWN_IN["search"]) == [mine.id]
    # By personnummer, in the 12- and the 10-digit form.
    for typed in (pnr_mine, f"{pnr_mine[2:8]}-{pnr_mine[8:]}"):
        page = client.post("/sok", data={"q": typed}).get_data(as_text=True)
        assert "Per Nummer" in page, typed
    # The other unit's patient: nothing says they exist.
    page = client.post("/sok", data={"q": "Öström"}).get_data(as_text=True)
    assert "Inget ärende på dina enheter stämmer." in page


def test_a_mistyped_personnummer_and_a_too_short_name_say_why(
    client: FlaskClient, login: Callable[..., Any]
) -> None:
    login("coach")
    page = client.post("/sok", data={"q": "19811218-9875"}).get_data(as_text=True)
    assert "Kontrollsiffran stämmer inte. Kontrollera personnumret." in page
    page = client.post("/sok", data={"q": "å"}).get_data(as_text=True)
    assert "Skriv minst två bokstäver av namnet." in page


def test_the_caseload_shows_every_state_and_the_coach_sees_the_unit(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    user = login("coach")
    coach = Actor.of(user)
    closed = make_case(
        session, ring, workflow, coach, unit.id, "closed_declined", name="Stängd Person"
    )
    open_case = make_case(session, ring, workflow, coach, unit.id, "assessed", name="Öppen Person")
    for case in (closed, open_case):
        case.coach_id = user.id
    session.flush()
    page = client.get("/mina-arenden").get_data(as_text=True)
    assert "Stängd Person" in page and "Öppen Person" in page
    page = client.get("/mina-arenden", query_string={"state": "closed"}).get_data(as_text=True)
    assert "Stängd Person" in page and "Öppen Person" not in page
    newest = client.get("/mina-arenden", query_string={"sort": "newest"}).get_data(as_text=True)
    assert newest.index("Öppen Person") < newest.index("Stängd Person")
    assert sorted(shown(session, SHOWN_IN["caseload"])) == sorted(
        [closed.id, open_case.id] * 2 + [closed.id]
    )
    # A coach may see the unit's list now, and the worklist's counts link to it.
    assert client.get("/enhet").status_code == 200
    worklist = client.get("/arbetslista").get_data(as_text=True)
    assert 'href="/enhet?state=assessed"' in worklist
    assert 'action="/sok"' in worklist and 'method="post"' in worklist


def test_closing_needs_a_confirmation_and_a_reason(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "invited")
    with pytest.raises(
        TransitionRefused,
        match=re.escape("Bekräfta att du vill ”avsluta – annat skäl”: det går inte att ångra."),
    ):
        fire(store, case, "close_other", actors["coach"], workflow=workflow, reason="Flyttat")
    with pytest.raises(
        TransitionRefused, match=re.escape("Ange ett skäl för att ”avsluta – inget svar”.")
    ):
        fire(store, case, "close_no_response", actors["coach"], workflow=workflow, confirmed=True)
    assert case.state == "invited"
    # The daily tick is not asked.
    fire(store, case, "close_no_response", actors["system"], workflow=workflow)
    assert case.state == "closed_no_response"


def test_a_coordinator_reopens_a_closed_case_where_it_was(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "assessed")
    fire(
        store,
        case,
        "decline",
        actors["coach"],
        workflow=workflow,
        reason="Vill inte nu",
        confirmed=True,
    )
    assert case.state == "closed_declined" and case.closed_at is not None
    with pytest.raises(
        TransitionRefused, match=re.escape("Din roll får inte ”öppna ärendet igen”.")
    ):
        fire(store, case, "reopen", actors["coach"], workflow=workflow, reason="Ångrade sig")
    with pytest.raises(
        TransitionRefused, match=re.escape("Ange ett skäl för att ”öppna ärendet igen”.")
    ):
        fire(store, case, "reopen", actors["coordinator"], workflow=workflow)
    fire(store, case, "reopen", actors["coordinator"], workflow=workflow, reason="Ringde igen")
    assert case.state == "assessed" and case.closed_at is None
    assert {d.name for d in case.due_dates} == {"reopened"}
    events = session.scalars(
        select(CaseEvent.event).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
    ).all()
    assert events[-2:] == ["decline", "reopen"]


def test_registering_answers_refuses_without_any(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "invited")
    with pytest.raises(
        TransitionRefused,
        match=re.escape(
            "Inga svar är registrerade ännu. Registrera patientens svar på formulären först"
        ),
    ):
        fire(store, case, "register_baseline", actors["coach"], workflow=workflow)
    assert case.state == "invited"
    key_in_first_form(store, actors["coach"], case, workflow, "baseline")
    fire(store, case, "register_baseline", actors["coach"], workflow=workflow)
    assert case.state == "assessed"
    later = make_case(session, ring, workflow, actors["coach"], unit.id, "evaluation_sent")
    with pytest.raises(TransitionRefused, match=re.escape("Inga svar på sexmånadersuppföljningen")):
        fire(store, later, "register_evaluation", actors["coach"], workflow=workflow)


def test_the_case_page_asks_before_closing(
    app: Flask,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    coach = Actor.of(login("coach"))
    case = make_case(session, ring, workflow, coach, unit.id, "invited")
    page = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert f'href="/arenden/{case.id}/handelse/close_other/bekrafta"' in page
    ask = client.get(f"/arenden/{case.id}/handelse/close_other/bekrafta").get_data(as_text=True)
    assert "Det här avslutar ärendet." in ask and 'name="confirmed" value="1"' in ask
    unconfirmed = client.post(
        f"/arenden/{case.id}/handelse/close_other", data={"version": case.version, "text": "x"}
    )
    assert unconfirmed.status_code == 422
    assert "Bekräfta att du vill" in unconfirmed.get_data(as_text=True)
    done = client.post(
        f"/arenden/{case.id}/handelse/close_other",
        data={"version": case.version, "text": "Flyttar", "confirmed": "1"},
    )
    assert done.status_code == 302
    session.refresh(case)
    assert case.state == "closed_other"
