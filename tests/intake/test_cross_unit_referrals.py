"""No oracle across units: a referral at unit A for a patient whose open case is at unit B tells
A nothing (the same answer as for a new patient) and waits for B's coordinator, who accepts or
declines it; a referral in the same unit is attached as before."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Unit
from slussen.audit import Actor, AuditEvent
from slussen.cases.models import Case, Referral
from slussen.cases.workflow import Workflow
from slussen.identifiers import parse_person_identifier
from slussen.intake.models import ForwardedReferral
from slussen.keystore import Keystore
from slussen.patients.services import SHOWN_IN, unseal
from tests.builders import make_case, sample_pnr
from tests.conftest import TEST_PASSWORD

#: The patient with an open case at unit B (a Skatteverket test number).
KNOWN_PNR = sample_pnr(500)
#: A person nobody has referred yet.
NEW_PNR = sample_pnr(501)
TEXT = "Berättade om ensamhet vid diabeteskontrollen"


@dataclass(frozen=True)
class World:
    unit_a: Any
    unit_b: Any
    case_b: Case
    new_client: Callable[[str, Any], FlaskClient]


@pytest.fixture
def world(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
    make_user: Callable[..., Any],
) -> World:
    unit_b = Unit(
        name="Vårdcentralen Bortom",
        hsa_id="SE2321000016-BRT2",
        street="Bortagatan 2",
        postcode="722 16",
        town="Västerås",
        phone="021-11 11 11",
    )
    session.add(unit_b)
    session.flush()
    coach_b = Actor.of(make_user("coach", "coach_b", units=[unit_b]))
    case_b = make_case(
        session,
        ring,
        workflow,
        coach_b,
        unit_b.id,
        identifier=parse_person_identifier(KNOWN_PNR),
        name="Britta Lindqvist",
    )

    def new_client(role: str, where: Any) -> FlaskClient:
        """A client logged in as a new user with `role` in unit `where`."""
        user = make_user(role, f"{role}_{where.hsa_id[-4:].lower()}", units=[where])
        client = app.test_client()
        response = client.post(
            "/login", data={"username": user.username, "password": TEST_PASSWORD}
        )
        assert response.status_code == 302
        return client

    return World(unit, unit_b, case_b, new_client)


def staff_referral(client: FlaskClient, unit: Any, pnr: str, channel: str = "staff_flag") -> Any:
    return client.post(
        "/remiss",
        data={
            "personnummer": pnr,
            "name": "Britta L.",
            "unit": str(unit.id),
            "channel": channel,
            "contact_channel": "post",
            "preferred_language": "sv",
            "reason": TEXT,
            "consent": "y",
        },
    )


def self_referral(client: FlaskClient, unit: Any, pnr: str) -> Any:
    return client.post(
        "/anmalan",
        data={
            "personnummer": pnr,
            "name": "Britta L.",
            "unit": str(unit.id),
            "wish": TEXT,
            "contact_channel": "post",
            "consent": "y",
        },
    )


def forwarded(session: Session) -> list[ForwardedReferral]:
    return list(session.scalars(select(ForwardedReferral).order_by(ForwardedReferral.id)))


def audited(session: Session, purpose: str) -> int:
    query = select(func.count()).select_from(AuditEvent).where(AuditEvent.purpose == purpose)
    return int(session.scalar(query) or 0)


def assert_tells_nothing(page: str, world: World) -> None:
    for secret in (world.case_b.reference, world.unit_b.name, "öppet ärende (", "Bortom"):
        assert secret not in page, secret


def test_staff_at_a_learn_nothing_of_the_case_at_b(session: Session, world: World) -> None:
    staff = world.new_client("staff", world.unit_a)
    known = staff_referral(staff, world.unit_a, KNOWN_PNR)
    known_page = staff.get(known.location).get_data(as_text=True)
    new = staff_referral(staff, world.unit_a, NEW_PNR)
    new_page = staff.get(new.location).get_data(as_text=True)
    # The same answer as for a brand-new patient: status, place and words.
    assert (
        (known.status_code, known.location)
        == (new.status_code, new.location)
        == (302, "/mina-flaggningar")
    )
    assert "Remissen är mottagen." in known_page and "Remissen är mottagen." in new_page
    assert_tells_nothing(known_page, world)
    assert_tells_nothing(new_page, world)
    assert_tells_nothing(staff.get("/mina-flaggningar").get_data(as_text=True), world)
    # Nothing was opened at A for the known patient; B has one request waiting.
    assert (
        session.scalar(
            select(func.count()).select_from(Case).where(Case.patient_id == world.case_b.patient_id)
        )
        == 1
    )
    (request,) = forwarded(session)
    assert (request.to_unit_id, request.from_unit_id, request.status) == (
        world.unit_b.id,
        world.unit_a.id,
        "pending",
    )
    assert request.reason_enc is not None and TEXT.encode() not in request.reason_enc


_CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="[^"]*"')


def without_tokens(page: str) -> str:
    return _CSRF_FIELD.sub("", page)


def test_coach_and_coordinator_at_a_see_nothing_anywhere(session: Session, world: World) -> None:
    coach = world.new_client("coach", world.unit_a)
    known = staff_referral(coach, world.unit_a, KNOWN_PNR, channel="phone")
    known_page = coach.get(known.location).get_data(as_text=True)
    new = staff_referral(coach, world.unit_a, NEW_PNR, channel="phone")
    new_page = coach.get(new.location).get_data(as_text=True)
    # The coach lands on the referral form again: the two answers are the same page (but for the
    # CSRF tokens, which carry the second they were signed in).
    assert without_tokens(known_page) == without_tokens(new_page)
    assert "Remissen är mottagen." in known_page
    assert_tells_nothing(coach.get("/arbetslista").get_data(as_text=True), world)
    coordinator = world.new_client("coordinator", world.unit_a)
    for path in ("/enhet", "/inkomna-remisser", "/atkomstlogg", "/arbetslista"):
        response = coordinator.get(path)
        assert response.status_code == 200, path
        assert_tells_nothing(response.get_data(as_text=True), world)
    assert "Inga remisser från andra enheter väntar." in coordinator.get(
        "/inkomna-remisser"
    ).get_data(as_text=True)
    # A's coordinator cannot open B's request either: 404, as for one that does not exist.
    (request,) = forwarded(session)
    assert coordinator.get(f"/inkomna-remisser/{request.id}").status_code == 404
    assert coordinator.post(f"/inkomna-remisser/{request.id}/godta").status_code == 404


def test_self_referral_at_a_answers_as_for_a_new_person(
    session: Session, world: World, app: Flask
) -> None:
    public = app.test_client()
    known = self_referral(public, world.unit_a, KNOWN_PNR)
    new = self_referral(public, world.unit_a, NEW_PNR)
    assert (known.status_code, known.location) == (new.status_code, new.location)
    assert known.location.endswith("/anmalan/tack")
    receipt = public.get(known.location).get_data(as_text=True)
    assert_tells_nothing(receipt, world)
    (request,) = forwarded(session)
    assert request.channel == "self_referral" and request.to_unit_id == world.unit_b.id


def test_b_coordinator_sees_a_named_and_accepts(
    session: Session, store: Keystore, world: World
) -> None:
    staff = world.new_client("staff", world.unit_a)
    staff_referral(staff, world.unit_a, KNOWN_PNR)
    coordinator = world.new_client("coordinator", world.unit_b)
    nav = coordinator.get("/enhet").get_data(as_text=True)
    assert 'href="/inkomna-remisser"' in nav and "Inkomna remisser från andra enheter" in nav
    listing = coordinator.get("/inkomna-remisser").get_data(as_text=True)
    assert "(1)" in listing and world.unit_a.name in listing and world.case_b.reference in listing
    assert "Britta" not in listing  # the list shows no patient data
    (request,) = forwarded(session)
    before = audited(session, "remiss från annan enhet")
    detail = coordinator.get(f"/inkomna-remisser/{request.id}").get_data(as_text=True)
    assert world.unit_a.name in detail and TEXT in detail and "Britta Lindqvist" in detail
    assert audited(session, "remiss från annan enhet") == before + 1  # the read of the patient

    response = coordinator.post(f"/inkomna-remisser/{request.id}/godta")
    assert response.status_code == 302
    session.refresh(request)
    assert request.status == "accepted" and request.referral_id is not None
    referral = session.get(Referral, request.referral_id)
    assert referral is not None and referral.case_id == world.case_b.id and not referral.is_seen
    assert (
        unseal(
            store, world.case_b.patient_id, "referrals", "reason", referral.id, referral.reason_enc
        )
        == TEXT
    )
    assert audited(session, "ny remiss kopplad till öppet ärende") == 1
    assert audited(session, "remiss från annan enhet godtagen") == 1
    # Answered: the list is empty again and a second answer is refused.
    assert "(0)" in coordinator.get("/inkomna-remisser").get_data(as_text=True)
    again = coordinator.post(f"/inkomna-remisser/{request.id}/godta", follow_redirects=True)
    assert "Remissen är redan besvarad." in again.get_data(as_text=True)


def test_b_coordinator_declines_with_a_reason(
    session: Session, store: Keystore, world: World
) -> None:
    staff = world.new_client("staff", world.unit_a)
    staff_referral(staff, world.unit_a, KNOWN_PNR)
    coordinator = world.new_client("coordinator", world.unit_b)
    (request,) = forwarded(session)
    refused = coordinator.post(
        f"/inkomna-remisser/{request.id}/avboj", data={"reason": "  "}, follow_redirects=True
    )
    assert "Skriv varför remissen avböjs." in refused.get_data(as_text=True)
    session.refresh(request)
    assert request.status == "pending"
    response = coordinator.post(
        f"/inkomna-remisser/{request.id}/avboj", data={"reason": "Redan i gång med samma sak"}
    )
    assert response.status_code == 302
    session.refresh(request)
    assert request.status == "declined" and request.decision_reason_enc is not None
    reason = unseal(
        store,
        world.case_b.patient_id,
        "forwarded_referrals",
        "decision_reason",
        request.id,
        request.decision_reason_enc,
    )
    assert reason == "Redan i gång med samma sak"
    assert audited(session, "remiss från annan enhet avböjd") == 1
    referrals = session.scalar(
        select(func.count()).select_from(Referral).where(Referral.case_id == world.case_b.id)
    )
    assert referrals == 1  # only the one that opened the case


def test_same_unit_referral_is_attached_as_before(session: Session, world: World) -> None:
    staff = world.new_client("staff", world.unit_b)
    response = staff_referral(staff, world.unit_b, KNOWN_PNR)
    page = staff.get(response.location).get_data(as_text=True)
    assert f"öppet ärende ({world.case_b.reference})" in page
    assert forwarded(session) == []
    unseen = session.scalars(
        select(Referral).where(Referral.case_id == world.case_b.id, Referral.is_seen.is_(False))
    ).all()
    assert len(unseen) == 1


def test_the_incoming_list_records_each_case_it_shows(
    session: Session, ring: vault.KeyRing, world: World
) -> None:
    staff = world.new_client("staff", world.unit_a)
    staff_referral(staff, world.unit_a, KNOWN_PNR)
    coordinator = world.new_client("coordinator", world.unit_b)
    assert coordinator.get("/inkomna-remisser").status_code == 200
    rows = session.execute(
        select(AuditEvent.object_id, AuditEvent.patient_pseudonym, AuditEvent.unit_id).where(
            AuditEvent.purpose == SHOWN_IN["incoming"]
        )
    ).all()
    pseudonym = audit.patient_pseudonym(ring, world.case_b.patient_id)
    assert rows == [(str(world.case_b.id), pseudonym, world.unit_b.id)]
