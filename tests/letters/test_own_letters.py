"""A coach prints the letters of their own cases (nothing else: 404), audited like the
coordinator's print; a preview's answer code works from the letter's queueing; the kallelse's
paper interest form has a tick box per interest area."""

from __future__ import annotations

import datetime as dt
import io
import tomllib
from pathlib import Path
from typing import Any

import pypdf
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor, AuditEvent
from slussen.cases.models import Case
from slussen.cases.services import take_case
from slussen.cases.workflow import Workflow
from slussen.letterqueue import QueuedLetter
from slussen.letters.models import LetterBatch
from slussen.letters.render import _TickBoxes, form_story
from slussen.questionnaires import codes
from slussen.questionnaires.models import AnswerCode
from tests.builders import make_case
from tests.conftest import TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def prints(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "print")
        )
        or 0
    )


def kallelse_of(session: Session, case: Case) -> QueuedLetter:
    return session.scalars(
        select(QueuedLetter).where(
            QueuedLetter.case_id == case.id, QueuedLetter.letter == "kallelse"
        )
    ).one()


def two_coaches_cases(
    session: Session, ring: vault.KeyRing, workflow: Workflow, make_user: Any, unit: Any, me: Any
) -> tuple[Case, Case]:
    mine = make_case(session, ring, workflow, Actor.of(me), unit.id, "invited")
    take_case(Actor.of(me), mine)
    other_coach = Actor.of(make_user("coach", "annan-coach"))
    theirs = make_case(session, ring, workflow, other_coach, unit.id, "invited")
    take_case(other_coach, theirs)
    session.flush()
    return mine, theirs


def test_a_coach_prints_the_letters_of_their_own_cases_only(
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    me = login("coach")
    mine, theirs = two_coaches_cases(session, ring, workflow, make_user, unit, me)
    page = client.get("/brev/mina").get_data(as_text=True)
    assert "Mina brev" in page and mine.reference in page and theirs.reference not in page
    assert "/brev/mina" in client.get("/arbetslista").get_data(as_text=True)  # in the menu
    before = prints(session)
    response = client.post("/brev/mina/skriv-ut", data={"enhet": str(unit.id)})
    assert response.status_code == 302
    batch = session.scalars(select(LetterBatch)).one()
    assert batch.letter_count == 1 and batch.created_by_id == me.id
    assert kallelse_of(session, mine).status == "printed"
    assert kallelse_of(session, theirs).status == "queued"
    assert prints(session) == before + 1
    pdf = client.get(f"/brev/omgang/{batch.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert prints(session) == before + 2  # the reprint is audited too
    assert "Omgång" in client.get("/brev/mina").get_data(as_text=True)


def test_another_coachs_letters_and_batches_are_404_to_a_coach(
    app: Flask,
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    me = login("coach")
    mine, theirs = two_coaches_cases(session, ring, workflow, make_user, unit, me)
    response = client.post(
        "/brev/mina/skriv-ut",
        data={"enhet": str(unit.id), "letter": [str(kallelse_of(session, theirs).id)]},
    )
    assert response.status_code == 404
    assert "Brevet finns inte." in response.get_data(as_text=True)
    assert kallelse_of(session, theirs).status == "queued"
    assert kallelse_of(session, mine).status == "queued"
    # A coordinator's batch (the other coach's letter in it) stays the coordinator's.
    coordinator = make_user("coordinator")
    as_coordinator = app.test_client()
    as_coordinator.post(
        "/login", data={"username": coordinator.username, "password": TEST_PASSWORD}
    )
    assert as_coordinator.post("/brev/skriv-ut", data={"enhet": str(unit.id)}).status_code == 302
    batch = session.scalars(select(LetterBatch)).one()
    assert batch.letter_count == 2
    assert client.get(f"/brev/omgang/{batch.id}.pdf").status_code == 404
    assert as_coordinator.get(f"/brev/omgang/{batch.id}.pdf").status_code == 200
    assert client.get("/brev").status_code == 403  # the unit's queue stays the coordinator's


def test_a_previews_answer_code_works_before_the_letter_is_printed(
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
    app: Flask,
) -> None:
    me = login("coach")
    case = make_case(session, ring, workflow, Actor.of(me), unit.id, "invited")
    letter = kallelse_of(session, case)
    code = codes.letter_code(ring, letter.id)
    assert session.scalar(select(AnswerCode).where(AnswerCode.letter_id == letter.id)) is None
    response = client.get(f"/brev/{letter.id}.pdf")
    assert response.status_code == 200
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(response.data)).pages)
    assert code in text
    row = codes.redeem_code(session, ring, code)
    assert row.case_id == case.id and row.letter_id == letter.id
    assert letter.status == "queued"
    # Printed later, the code runs a full period from the print.
    row.expires_at = row.created_at + dt.timedelta(days=1)
    session.flush()
    coordinator = make_user("coordinator")
    as_coordinator = app.test_client()
    as_coordinator.post(
        "/login", data={"username": coordinator.username, "password": TEST_PASSWORD}
    )
    assert as_coordinator.post("/brev/skriv-ut", data={"enhet": str(unit.id)}).status_code == 302
    session.refresh(letter)
    session.refresh(row)
    assert letter.status == "printed"
    days = app.extensions["slussen.settings"].answer_code_days
    assert row.expires_at > row.created_at + dt.timedelta(days=days - 1)
    assert session.scalar(select(func.count()).select_from(AnswerCode)) == 1


def test_the_kallelse_interest_form_has_a_tick_box_per_interest_area() -> None:
    form = tomllib.loads((ROOT / "forms" / "interest_mapping.toml").read_text(encoding="utf-8"))
    areas = [item["text"]["sv"] for item in form["items"] if item["type"] == "tick"]
    assert len(areas) >= 10
    kallelse = tomllib.loads((ROOT / "letters" / "kallelse.toml").read_text(encoding="utf-8"))
    assert "interest_mapping" in kallelse["enclose"]
    story = form_story(form, "interest_mapping", "sv")
    boxes = [label for f in story if isinstance(f, _TickBoxes) for label in f.labels]
    assert sorted(boxes) == sorted(areas)
