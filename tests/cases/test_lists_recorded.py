"""Every patient a list shows is recorded: one access-log row each, with its pseudonym and the
list's purpose, and the coordinator's review and the patient's extract show them as such."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.audit import SYSTEM, AuditEvent
from slussen.cases.engine import open_case
from slussen.cases.models import Case
from slussen.demo.patients import test_personnummer as skatteverket_test_number
from slussen.identifiers import parse_person_identifier
from slussen.keystore import Keystore
from slussen.patients.services import LISTED, SHOWN_IN, PatientIdentity, register_patient
from tests.intake.test_referral_pages import staff_referral

#: Birth dates whose test series (serials 980–999) give the 50 patients.
BIRTHS = ("19420315", "19550928", "19811218")


@dataclass(frozen=True)
class Listed:
    #: (patient id, case id, personnummer) of each case, in the order opened.
    cases: list[tuple[int, int, str]]


@pytest.fixture
def fifty(app: Flask, session: Session, unit: Any, ring: vault.KeyRing) -> Listed:
    """50 patients, each with an open case in the test unit (due today: every list shows it)."""
    store = Keystore(session, ring)
    workflow = app.extensions["slussen.content"].compiled["workflow"]
    cases = []
    numbers = [skatteverket_test_number(b, s) for b in BIRTHS for s in range(980, 1000)][:50]
    with app.app_context():
        for n, pnr in enumerate(numbers):
            identity = PatientIdentity(
                identifier=parse_person_identifier(pnr), name=f"Listpatient Nummer{n}"
            )
            patient = register_patient(store, SYSTEM, identity, purpose="test", unit_id=unit.id)
            case = open_case(
                store,
                SYSTEM,
                workflow=workflow,
                patient_id=patient.id,
                unit_id=unit.id,
                channel="phone",
                is_consent_to_contact=True,
            )
            cases.append((patient.id, case.id, pnr))
    session.flush()
    return Listed(cases)


def listed_rows(session: Session, purpose: str) -> list[Any]:
    return list(
        session.execute(
            select(AuditEvent.object_id, AuditEvent.patient_pseudonym, AuditEvent.unit_id)
            .where(AuditEvent.object_type == LISTED, AuditEvent.purpose == purpose)
            .order_by(AuditEvent.id)
        )
    )


def assert_each_shown_once(rows: list[Any], fifty: Listed, ring: vault.KeyRing, unit: Any) -> None:
    assert len(rows) == 50
    pseudonyms = {audit.patient_pseudonym(ring, patient_id) for patient_id, _c, _p in fifty.cases}
    assert len({r.patient_pseudonym for r in rows}) == 50
    assert {r.patient_pseudonym for r in rows} == pseudonyms
    assert {r.object_id for r in rows} == {str(case_id) for _p, case_id, _n in fifty.cases}
    assert {r.unit_id for r in rows} == {unit.id}


def test_the_worklist_with_50_cases_writes_50_entries(
    backend: str,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    unit: Any,
    fifty: Listed,
) -> None:
    login("coach")
    page = client.get("/arbetslista").get_data(as_text=True)
    assert "Listpatient Nummer0" in page and "Listpatient Nummer49" in page
    assert_each_shown_once(listed_rows(session, SHOWN_IN["worklist"]), fifty, ring, unit)
    assert audit.verify_chain(session, ring).ok


def test_the_unit_view_with_filters_writes_one_entry_per_patient_shown(
    backend: str,
    app: Flask,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    unit: Any,
    fifty: Listed,
) -> None:
    login("coordinator")
    initial = app.extensions["slussen.content"].compiled["workflow"].initial
    assert (
        client.get("/enhet?channel=self_referral").status_code == 200
    )  # shows nobody, records nobody
    assert listed_rows(session, SHOWN_IN["unit"]) == []
    page = client.get(f"/enhet?channel=phone&state={initial}").get_data(as_text=True)
    assert "Listpatient Nummer0" in page
    assert_each_shown_once(listed_rows(session, SHOWN_IN["unit"]), fifty, ring, unit)
    # The coordinator's review lists them, in words.
    review = client.get("/atkomstlogg").get_data(as_text=True)
    assert review.count("visad i enhetens lista") >= 40
    assert "Ärende i en lista" in review and "listed_case" not in review


def test_the_review_and_the_extract_show_the_worklist_appearance(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    fifty: Listed,
) -> None:
    login("coach")
    assert client.get("/arbetslista").status_code == 200
    client.post("/logout")
    login("coordinator")
    _patient_id, _case_id, pnr = fifty.cases[7]
    found = client.post("/atkomstlogg/patient", data={"pnr": pnr}, follow_redirects=True)
    review = found.get_data(as_text=True)
    assert review.count("visad i arbetslista") == 1 and "Ärende i en lista" in review
    response = client.post("/atkomstlogg/utdrag", data={"pnr": pnr})
    assert response.status_code == 200
    text = " ".join(
        " ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.data)).pages).split()
    )
    assert "Visad i arbetslista" in text
    assert "listed_case" not in text


def test_the_flagged_list_records_each_case_it_shows(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
    unit: Any,
) -> None:
    login("staff")
    assert staff_referral(client, unit).status_code == 302
    case = session.scalars(select(Case)).one()
    assert client.get("/mina-flaggningar").status_code == 200
    rows = listed_rows(session, SHOWN_IN["flagged"])
    assert [(r.object_id, r.patient_pseudonym, r.unit_id) for r in rows] == [
        (str(case.id), audit.patient_pseudonym(ring, case.patient_id), unit.id)
    ]
