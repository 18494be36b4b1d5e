"""Correcting a patient's details: audited, history kept sealed, every refusal in Swedish; a
corrected address releases the held letter; a second referral's different address waits for the
coach (on SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import PUBLIC, Actor, AuditEvent, verify_chain
from slussen.cases.corrections import (
    accept_offered_details,
    correct_details,
    decline_offered_details,
    details_view,
)
from slussen.cases.models import Case
from slussen.cases.services import take_case
from slussen.cases.workflow import Workflow
from slussen.errors import Invalid, NotFound, NotPermitted
from slussen.intake.services import refer_patient
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter
from slussen.letters import services as letters
from slussen.patients.models import OfferedDetails, Patient, PatientCorrection
from slussen.patients.services import (
    NothingChanged,
    PatientErased,
    correct_patient,
    erase_patient,
    has_pending_offer,
    read_patient,
)
from tests.builders import identity, make_case

NEW_ADDRESS = {"street": "Nygatan 7", "postcode": "72215", "town": "Västerås"}


def _changes(store: Keystore, actor: Actor, case: Case, **changes: str) -> dict[str, str]:
    """Everything on the form as the record has it, with `changes`."""
    patient = store.session.get(Patient, case.patient_id)
    assert patient is not None
    now = read_patient(store, actor, patient, purpose="test")
    values = {f: getattr(now, f) for f in ("name", "street", "postcode", "town", "phone")}
    values.update(changes)
    return values


def _print(store: Keystore, actor: Actor, unit_id: int, app: Flask) -> letters.BatchResult:
    context = letters.render_context(
        app.extensions["slussen.content"], app.extensions["slussen.settings"]
    )
    return letters.print_batch(
        store,
        actor,
        unit_id,
        io.BytesIO(),
        context=context,
        settings=app.extensions["slussen.settings"],
    )


def test_a_corrected_address_releases_the_held_letter_and_keeps_the_history(
    backend: str,
    app: Flask,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "invited", street="")
    first = _print(store, coordinator, unit.id, app)
    letter = session.scalars(select(QueuedLetter).where(QueuedLetter.case_id == case.id)).one()
    assert (
        first.batch is None and letter.status == "held" and letter.hold_reason == "Adress saknas."
    )

    done = correct_details(
        store,
        coach,
        case,
        _changes(store, coach, case, **NEW_ADDRESS),
        contact_channel="phone",
        reason="Patienten ringde och gav sin adress.",
    )
    assert set(done.fields) == {"street", "contact_channel"} and done.released == 1
    assert letter.status == "queued" and letter.hold_reason is None
    assert case.contact_channel == "phone"

    second = _print(store, coordinator, unit.id, app)
    assert second.batch is not None and second.printed == 1 and letter.status == "printed"

    view = details_view(store, coach, case)
    assert view.identity.street == "Nygatan 7" and view.identity.postcode == "722 15"
    (row,) = view.history
    assert row.entry.reason == "Patienten ringde och gav sin adress."
    assert row.entry.earlier == {"street": "", "contact_channel": "post"}
    assert row.by == "Test coach"
    stored = session.scalars(select(PatientCorrection)).one()
    blob = (stored.reason_enc or b"") + (stored.earlier_enc or b"")
    assert b"ringde" not in blob and b"post" not in blob
    actions = [
        tuple(r)
        for r in session.execute(
            select(AuditEvent.action, AuditEvent.object_type).where(
                AuditEvent.object_type.in_(("patient", "patient_correction"))
            )
        )
    ]
    assert ("update", "patient") in actions and ("create", "patient_correction") in actions
    assert verify_chain(session, store.ring).ok


def test_letters_held_for_another_reason_stay_held(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "invited")
    letter = session.scalars(select(QueuedLetter).where(QueuedLetter.case_id == case.id)).one()
    letter.status, letter.hold_reason = "held", "Ingen hälsocoach är utsedd för ärendet."
    done = correct_details(
        store,
        coach,
        case,
        _changes(store, coach, case, **NEW_ADDRESS),
        contact_channel=case.contact_channel,
        reason="Ny adress",
    )
    assert done.released == 0 and letter.status == "held"


@pytest.mark.parametrize(
    ("changes", "channel", "reason", "message"),
    [
        ({}, "post", "  ", "Skriv varför uppgifterna rättas."),
        ({}, "post", "x" * 501, "Skriv högst 500 tecken om varför."),
        ({}, "post", "Ingen ändring", "Inget har ändrats."),
        ({"name": " "}, "post", "Fel namn", "Namn saknas."),
        ({"postcode": "0123"}, "post", "Fel postnummer", "Postnumret"),
        ({"street": "", "postcode": "72215"}, "post", "Halv adress", "Fyll i gatuadress"),
        ({}, "fax", "Fax", "Okänd kontaktväg."),
    ],
)
def test_a_correction_is_refused_with_a_swedish_message(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    changes: dict[str, str],
    channel: str,
    reason: str,
    message: str,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id)
    with pytest.raises(Invalid, match=re.escape(message)):
        correct_details(
            store,
            coach,
            case,
            _changes(store, coach, case, **changes),
            contact_channel=channel,
            reason=reason,
        )
    assert session.scalars(select(PatientCorrection)).all() == []


def test_nothing_changed_is_its_own_refusal(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id)
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    with pytest.raises(NothingChanged, match="Inget har ändrats"):
        correct_patient(store, coach, patient, {"phone": "070-000 00 00"}, reason="Samma")


def test_who_may_correct(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    make_user: Any,
    coach: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id)
    form = _changes(store, coach, case, phone="070-123 45 67")
    staff = Actor.of(make_user("staff", "personalen"))
    with pytest.raises(NotPermitted, match="Din roll får inte rätta patientens uppgifter"):
        correct_details(store, staff, case, form, contact_channel="post", reason="Nytt nummer")
    stranger = Actor(999, "annan", "coach", frozenset({unit.id + 1000}))
    with pytest.raises(NotFound, match="Ärendet finns inte"):
        correct_details(store, stranger, case, form, contact_channel="post", reason="Nytt nummer")
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    erase_patient(store, Actor(None, "(system)", "system"), patient, reason="test")
    with pytest.raises(PatientErased):
        correct_patient(store, coach, patient, {"phone": "1"}, reason="Efter radering")


def test_a_second_referral_offers_its_address_to_the_coach(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    app: Flask,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "invited", n=4711, street="")
    take_case(coach, case)
    _print(store, coordinator, unit.id, app)  # the kallelse is held: no address
    again = identity(4711, street="Nygatan 7", postcode="722 15", town="Västerås")
    result = refer_patient(
        store,
        PUBLIC,
        workflow=workflow,
        identity=again,
        unit_id=unit.id,
        channel="self_referral",
        reason="Jag vill också vara med",
        is_consent_to_contact=True,
    )
    assert result.case is not None and result.case.id == case.id
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    assert read_patient(store, coach, patient, purpose="test").street == ""  # not written over
    assert has_pending_offer(session, patient.id)
    offer = session.scalars(select(OfferedDetails)).one()
    assert b"Nygatan" not in (offer.details_enc or b"")
    view = details_view(store, coach, case)
    assert view.offer is not None
    assert view.offer.details == {"street": "Nygatan 7", "postcode": "722 15", "town": "Västerås"}

    done = accept_offered_details(store, coach, case, offer.id)
    assert set(done.fields) == {"street"} and done.released == 1
    assert read_patient(store, coach, patient, purpose="test").street == "Nygatan 7"
    assert offer.status == "accepted" and offer.decided_by_id == coach.user_id
    (row,) = details_view(store, coach, case).history
    assert row.entry.earlier == {"street": ""} and row.entry.reason.startswith("Uppgifter från")
    with pytest.raises(Invalid, match="De föreslagna uppgifterna är redan hanterade"):
        decline_offered_details(store, coach, case, offer.id)


def test_the_same_details_offer_nothing_and_a_declined_offer_changes_nothing(
    backend: str,
    store: Keystore,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, n=4712)

    def refer(**changes: Any) -> None:
        refer_patient(
            store,
            coach,
            workflow=workflow,
            identity=identity(4712, **changes),
            unit_id=unit.id,
            channel="phone",
            reason="Ringde igen",
            is_consent_to_contact=True,
        )

    refer(town="VÄSTERÅS", phone="0700000000")  # the same, written otherwise
    assert not has_pending_offer(session, case.patient_id)
    refer(phone="070-999 99 99")
    offer = session.scalars(select(OfferedDetails)).one()
    decline_offered_details(store, coach, case, offer.id)
    assert offer.status == "declined"
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    assert read_patient(store, coach, patient, purpose="test").phone == "070-000 00 00"
    other = make_case(session, ring, workflow, coach, unit.id)
    with pytest.raises(NotFound, match="Uppgifterna finns inte"):
        accept_offered_details(store, coach, other, offer.id)
