"""Every view that shows patient data writes an audit row, and shows nothing if it cannot.

LEG-1 and AUD-3 of the security reference, checked over every endpoint marked with
`slussen.accesslog.markers.shows_patient_data`.

Design: the view module only *marks* a view; this file says how to call each marked endpoint, in
`CALLS`, keyed by endpoint name. `test_every_marked_view_has_a_call` fails for a marked endpoint
without an entry (and for an entry whose endpoint is no longer marked), naming it, so a new
patient view cannot slip past these checks. The recipe lives here rather than in an argument to
the marker because calling a view may need things only test code should build (a case brought to
a given state by firing workflow events, a queued letter, a logged-in role), and because test data
does not belong in the views. To add a view: mark it, then add one `Call` below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

import slussen.audit
from slussen.accesslog.markers import patient_data_endpoints
from slussen.accounts.models import User
from slussen.audit import SYSTEM, Actor, AuditEvent
from slussen.cases.engine import open_case
from slussen.demo import patients as demo_patients
from slussen.directory.models import Organisation
from slussen.directory.services import add_representative
from slussen.identifiers import parse_person_identifier
from slussen.intake.services import forward_referral
from slussen.keystore import Keystore, current_key_ring
from slussen.patients.services import PatientIdentity, register_patient
from slussen.visits.models import Handover
from slussen.visits.services import request_handover
from tests.builders import make_case


@dataclass(frozen=True)
class Demo:
    """The patient a call is about; `pnr` is the 12-digit personnummer."""

    patient_id: int
    pnr: str
    name: str
    #: An open case of the patient in the test unit (worklists and the case page show it).
    case_id: int
    #: A referral for the patient forwarded to the test unit (the coordinator's incoming list).
    forwarded_id: int
    #: A hand-over request (sluss 2) to an organisation, for a case of a namesake of the patient
    #: (an association's pages show the shared first name); `_represent` makes the logged-in
    #: org_rep its representative.
    handover_id: int = 0

    @property
    def identifying_strings(self) -> list[str]:
        """What must never appear in a response that failed to audit."""
        return [self.name, *self.name.split(), self.pnr, self.pnr[2:], self.pnr[:8] + "-"]


Send = Callable[[FlaskClient, Demo], TestResponse]


@dataclass(frozen=True)
class Call:
    """How to call one marked endpoint as `role`: `prepare` runs first (its audit rows are not
    counted, and it runs before the audit log is broken), then `send` must be audited."""

    send: Send
    prepare: Send | None = None
    role: str = "coordinator"


def _search(client: FlaskClient, demo: Demo) -> TestResponse:
    return client.post("/atkomstlogg/patient", data={"pnr": demo.pnr})


def _represent(client: FlaskClient, demo: Demo) -> TestResponse:
    """Make the logged-in org_rep user a representative of the organisation the demo's
    hand-over request is addressed to."""
    app = client.application
    with app.app_context(), app.extensions["slussen.sessionmaker"]() as session:
        handover = session.get(Handover, demo.handover_id)
        user = session.scalars(select(User).where(User.username == "org_rep")).one()
        assert handover is not None and handover.organisation_id is not None
        organisation = session.get(Organisation, handover.organisation_id)
        assert organisation is not None
        add_representative(session, None, organisation, user)
        session.commit()
    return client.get("/")


CALLS: dict[str, Call] = {
    "associations.index": Call(
        role="org_rep", prepare=_represent, send=lambda client, demo: client.get("/forening")
    ),
    "associations.show": Call(
        role="org_rep",
        prepare=_represent,
        send=lambda client, demo: client.get(f"/forening/forfragningar/{demo.handover_id}"),
    ),
    "accesslog.search_patient": Call(send=_search),
    "accesslog.index": Call(
        prepare=_search,
        send=lambda client, demo: client.get(f"/atkomstlogg?patient={demo.patient_id}"),
    ),
    "accesslog.extract": Call(
        send=lambda client, demo: client.post("/atkomstlogg/utdrag", data={"pnr": demo.pnr}),
    ),
    "cases.worklist": Call(role="coach", send=lambda client, demo: client.get("/arbetslista")),
    "cases.unit": Call(send=lambda client, demo: client.get("/enhet")),
    "cases.search": Call(
        role="coach", send=lambda client, demo: client.post("/sok", data={"q": demo.pnr})
    ),
    "cases.caseload": Call(
        role="coach",
        prepare=lambda client, demo: client.post(f"/arenden/{demo.case_id}/ta"),
        send=lambda client, demo: client.get("/mina-arenden"),
    ),
    "cases.show": Call(
        role="coach", send=lambda client, demo: client.get(f"/arenden/{demo.case_id}")
    ),
    "cases.details": Call(
        role="coach",
        send=lambda client, demo: client.get(f"/arenden/{demo.case_id}/uppgifter"),
    ),
    "intake.incoming_show": Call(
        send=lambda client, demo: client.get(f"/inkomna-remisser/{demo.forwarded_id}"),
    ),
    "visits.mapping": Call(
        role="coach",
        send=lambda client, demo: client.get(f"/arenden/{demo.case_id}/kartlaggning"),
    ),
}


@pytest.fixture
def demo(app: Flask, session: Session, unit: Any, make_user: Callable[..., Any]) -> Demo:
    """A patient registered in the test unit (the logged-in user's unit), with a real key ring,
    and a hand-over request for a namesake's case."""
    pnr = demo_patients.test_personnummer("19550928", 984)
    name = "Ingrid Åkesdotter Björk"
    with app.app_context():
        store = Keystore(session, current_key_ring())
        identity = PatientIdentity(identifier=parse_person_identifier(pnr), name=name)
        patient = register_patient(store, SYSTEM, identity, purpose="test", unit_id=unit.id)
        workflow = app.extensions["slussen.content"].compiled["workflow"]
        case = open_case(
            store,
            SYSTEM,
            workflow=workflow,
            patient_id=patient.id,
            unit_id=unit.id,
            channel="phone",
            is_consent_to_contact=True,
        )
        forwarded = forward_referral(
            store, SYSTEM, case, from_unit_id=unit.id, channel="phone", reason="Vill träffa fler"
        )
        coach = Actor.of(make_user("coach", "handover_coach"))
        namesake = make_case(
            session, store.ring, workflow, coach, unit.id, "plan_active", name=name
        )
        organisation = Organisation(name="Träffpunkten", sector="ideburen")
        session.add(organisation)
        session.flush()
        handover = request_handover(
            store, coach, namesake, workflow=workflow, organisation_id=organisation.id
        )
    session.flush()
    return Demo(patient.id, pnr, name, case.id, forwarded.id, handover.id)


def audit_rows(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_there_are_views_marked_as_showing_patient_data(app: Flask) -> None:
    assert patient_data_endpoints(app)


def test_every_marked_view_has_a_call(app: Flask) -> None:
    marked = set(patient_data_endpoints(app))
    assert sorted(marked - set(CALLS)) == [], "add a Call for these endpoints to CALLS"
    assert sorted(set(CALLS) - marked) == [], "these endpoints are no longer marked"


@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_marked_view_writes_an_audit_row(
    endpoint: str,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    demo: Demo,
) -> None:
    call = CALLS[endpoint]
    login(call.role)
    if call.prepare:
        call.prepare(client, demo)
    before = audit_rows(session)
    response = call.send(client, demo)
    assert response.status_code < 400, response.get_data(as_text=True)[:500]
    assert audit_rows(session) > before, f"{endpoint} showed patient data without an audit row"


@pytest.mark.parametrize("endpoint", sorted(CALLS))
def test_marked_view_shows_nothing_when_the_audit_row_cannot_be_written(
    endpoint: str,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    demo: Demo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call = CALLS[endpoint]
    login(call.role)
    if call.prepare:
        call.prepare(client, demo)
    before = audit_rows(session)

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("the audit log is unavailable")

    monkeypatch.setattr(slussen.audit, "record_entries", broken)
    response = call.send(client, demo)
    body = response.get_data(as_text=True)
    assert response.status_code >= 500
    assert response.mimetype == "text/html"
    assert "Något gick fel" in body
    for text in demo.identifying_strings:
        assert text not in body, f"{endpoint} leaked {text!r} without an audit row"
    assert audit_rows(session) == before
