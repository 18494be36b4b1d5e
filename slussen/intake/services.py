"""Referral rules: one open case per patient, found by blind index; never a twin; never an oracle
across units (a referral for another unit's patient is forwarded there, the referrer told
nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import audit
from slussen.accounts.models import Unit
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor
from slussen.cases.engine import audit_case_change, open_case, refuse_foreign_unit
from slussen.cases.models import CHANNELS, CONTACT_CHANNELS, Case, CaseEvent, Referral
from slussen.cases.services import case_by_reference
from slussen.cases.workflow import Workflow
from slussen.db import utcnow
from slussen.errors import Invalid, NotFound, NotPermitted
from slussen.intake.models import ForwardedReferral
from slussen.keystore import Keystore
from slussen.patients.models import Patient
from slussen.patients.services import (
    PatientIdentity,
    erase_patient,
    find_patient_id,
    offer_details,
    read_patient,
    register_patient,
    seal,
    unseal,
)

#: Who may refer: staff flag, coaches and coordinators register calls, the public self-refers.
REFERRING_ROLES = ("staff", "coach", "coordinator", "public", "system")

#: The table a forwarded referral's sealed texts are bound to.
FORWARDED = "forwarded_referrals"


@dataclass(frozen=True)
class IntakeResult:
    #: The case opened or attached to; None when the referral was forwarded to another unit's
    #: open case, which the referrer must never hold (no oracle across units).
    case: Case | None
    #: True when the referral was attached to a case that was already open in the same unit.
    is_attached: bool = False


def open_case_of_patient(store: Keystore, workflow: Workflow, patient_id: int) -> Case | None:
    """The patient's open (non-terminal) case in any unit, if there is one."""
    return store.session.scalar(
        select(Case).where(
            Case.patient_id == patient_id, Case.state.not_in(workflow.terminal_states)
        )
    )


def check_referral(
    actor: Actor, *, unit_id: int, channel: str, contact_channel: str, is_consent_to_contact: bool
) -> None:
    """Refuse a referral this actor may not make (see `refer_patient`); the demo's batches use it
    too."""
    if actor.role not in REFERRING_ROLES:
        raise NotPermitted("Din roll får inte remittera patienter.")
    if channel not in CHANNELS or contact_channel not in CONTACT_CHANNELS:
        raise Invalid("Okänd kontaktväg.")
    if channel == "self_referral" and not is_consent_to_contact:
        raise Invalid("Du behöver samtycka till att vi kontaktar dig.")
    refuse_foreign_unit(actor, unit_id)


def refer_patient(
    store: Keystore,
    actor: Actor,
    *,
    workflow: Workflow,
    identity: PatientIdentity,
    unit_id: int,
    channel: str,
    reason: str,
    is_consent_to_contact: bool,
    contact_channel: str = "post",
) -> IntakeResult:
    """Refer a patient to the sluss: open a case, or attach to the patient's open case.

    Refuses a role that may not refer, an unknown channel, a missing consent from a self-referral
    (Invalid), and a user referring to a unit they do not work in (NotPermitted). A second
    referral for a patient with an open case never opens a twin: in the same unit it is attached
    to the open case and waits, unseen, for the coach; when the open case is in another unit it
    is forwarded to that unit's coordinators (`forward_referral`) and the referrer learns
    nothing (the result holds no case). A second referral that gives an address or phone other
    than the record's offers them to the coach (`patients.services.offer_details`)."""
    check_referral(
        actor,
        unit_id=unit_id,
        channel=channel,
        contact_channel=contact_channel,
        is_consent_to_contact=is_consent_to_contact,
    )
    patient_id = find_patient_id(store, identity.identifier)
    if patient_id is not None:
        existing = open_case_of_patient(store, workflow, patient_id)
        if existing is None or existing.unit_id == unit_id:
            # A different address or phone is offered to the coach, never written over the
            # record (`offer_details`); a referral forwarded to another unit offers nothing.
            offer_details(store, actor, patient_id, identity, unit_id=unit_id)
        if existing is not None and existing.unit_id != unit_id:
            forward_referral(
                store, actor, existing, from_unit_id=unit_id, channel=channel, reason=reason
            )
            return IntakeResult(None)
        if existing is not None:
            attach_referral(
                store, actor, existing, channel=channel, created_by_id=actor.user_id, reason=reason
            )
            return IntakeResult(existing, is_attached=True)
    else:
        patient = register_patient(store, actor, identity, purpose="remiss", unit_id=unit_id)
        patient_id = patient.id
    case = open_case(
        store,
        actor,
        workflow=workflow,
        patient_id=patient_id,
        unit_id=unit_id,
        channel=channel,
        is_consent_to_contact=is_consent_to_contact,
        contact_channel=contact_channel,
        reason=reason,
        flagged_by_id=actor.user_id if channel == "staff_flag" else None,
    )
    return IntakeResult(case)


def attach_referral(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    channel: str,
    created_by_id: int | None,
    reason: str,
) -> Referral:
    """Attach a later referral to the open case: it waits, unseen, for the coach; the change is
    audited as the actor's. Refuses nothing itself: its callers have checked the referral."""
    referral = Referral(
        case_id=case.id, channel=channel, created_by_id=created_by_id, is_seen=False
    )
    store.session.add(referral)
    store.session.flush()
    if reason:
        referral.reason_enc = seal(
            store, case.patient_id, "referrals", "reason", referral.id, reason
        )
    audit_case_change(store, actor, case, "ny remiss kopplad till öppet ärende")
    return referral


def forward_referral(
    store: Keystore, actor: Actor, case: Case, *, from_unit_id: int, channel: str, reason: str
) -> ForwardedReferral:
    """Forward a referral made in `from_unit_id` to the unit of the patient's open `case`, for
    its coordinators to accept or decline; the text is sealed with the patient's key. Audited
    (create) in the receiving unit's name. Refuses nothing itself: `refer_patient` has checked
    the referral."""
    forwarded = ForwardedReferral(
        case_id=case.id,
        to_unit_id=case.unit_id,
        from_unit_id=from_unit_id,
        channel=channel,
        created_by_id=actor.user_id,
        status="pending",
    )
    store.session.add(forwarded)
    store.session.flush()
    if reason:
        forwarded.reason_enc = seal(
            store, case.patient_id, FORWARDED, "reason", forwarded.id, reason
        )
    _audit_forwarded(store, actor, forwarded, case, "create", "remiss från annan enhet")
    return forwarded


def _audit_forwarded(
    store: Keystore,
    actor: Actor,
    forwarded: ForwardedReferral,
    case: Case,
    action: str,
    purpose: str,
) -> None:
    audit.record(
        store.session,
        store.ring,
        actor,
        action,
        "forwarded_referral",
        forwarded.id,
        purpose=purpose,
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )


def may_decide(actor: Actor, forwarded: ForwardedReferral) -> bool:
    """Only the receiving unit's coordinators see and decide a forwarded referral."""
    return grants(actor.role, Permission.COORDINATE_UNIT) and forwarded.to_unit_id in actor.unit_ids


def incoming_referrals(session: Session, actor: Actor) -> list[Any]:
    """The pending forwarded referrals of the actor's units, oldest first: id, when, channel,
    the referring unit's name, and the case's reference, id, unit and patient (no patient data;
    the list records each case it shows, `patients.services.record_shown`)."""
    return list(
        session.execute(
            select(
                ForwardedReferral.id,
                ForwardedReferral.created_at,
                ForwardedReferral.channel,
                Unit.name.label("from_unit"),
                Case.reference,
                Case.id.label("case_id"),
                Case.unit_id.label("case_unit_id"),
                Case.patient_id,
            )
            .join(Unit, Unit.id == ForwardedReferral.from_unit_id)
            .join(Case, Case.id == ForwardedReferral.case_id)
            .where(
                ForwardedReferral.to_unit_id.in_(sorted(actor.unit_ids)),
                ForwardedReferral.status == "pending",
            )
            .order_by(ForwardedReferral.id)
        )
    )


@dataclass(frozen=True)
class IncomingView:
    forwarded: ForwardedReferral
    case: Case
    from_unit: str
    reason: str
    identity: PatientIdentity


def incoming_view(store: Keystore, actor: Actor, forwarded: ForwardedReferral) -> IncomingView:
    """What the coordinator sees of one forwarded referral, decrypted: the patient (an audited
    read) and the text. Refuses (NotFound) a referral outside the actor's units."""
    _refuse_unless_decider(actor, forwarded)
    session = store.session
    case = session.get(Case, forwarded.case_id)
    unit = session.get(Unit, forwarded.from_unit_id)
    patient = session.get(Patient, case.patient_id) if case is not None else None
    assert case is not None and unit is not None and patient is not None
    reason = unseal(store, case.patient_id, FORWARDED, "reason", forwarded.id, forwarded.reason_enc)
    identity = read_patient(
        store, actor, patient, purpose="remiss från annan enhet", unit_id=case.unit_id
    )
    return IncomingView(forwarded, case, unit.name, reason, identity)


def _refuse_unless_decider(actor: Actor, forwarded: ForwardedReferral) -> None:
    if not may_decide(actor, forwarded):
        raise NotFound("Remissen finns inte.")


def _refuse_decided(forwarded: ForwardedReferral) -> None:
    if forwarded.status != "pending":
        raise Invalid("Remissen är redan besvarad.")


def accept_forwarded_referral(
    store: Keystore, actor: Actor, forwarded: ForwardedReferral, *, workflow: Workflow
) -> Case:
    """Accept a forwarded referral: it is attached to the open case as a referral from the
    referring user (`attach_referral`, audited), and the acceptance is audited. Refuses
    (NotFound) a referral outside the actor's units, (Invalid) one already decided or whose case
    has closed meanwhile (decline it instead)."""
    _refuse_unless_decider(actor, forwarded)
    _refuse_decided(forwarded)
    case = store.session.get(Case, forwarded.case_id)
    assert case is not None
    if case.state in workflow.terminal_states:
        raise Invalid("Ärendet är avslutat. Avböj remissen och skriv varför.")
    reason = unseal(store, case.patient_id, FORWARDED, "reason", forwarded.id, forwarded.reason_enc)
    referral = attach_referral(
        store,
        actor,
        case,
        channel=forwarded.channel,
        created_by_id=forwarded.created_by_id,
        reason=reason,
    )
    forwarded.status = "accepted"
    forwarded.referral_id = referral.id
    forwarded.decided_by_id = actor.user_id
    forwarded.decided_at = utcnow()
    _audit_forwarded(store, actor, forwarded, case, "update", "remiss från annan enhet godtagen")
    return case


def decline_forwarded_referral(
    store: Keystore, actor: Actor, forwarded: ForwardedReferral, *, reason: str
) -> None:
    """Decline a forwarded referral with a reason (sealed with the patient's key); audited.
    Refuses (NotFound) a referral outside the actor's units, (Invalid) one already decided or a
    missing reason."""
    _refuse_unless_decider(actor, forwarded)
    _refuse_decided(forwarded)
    reason = reason.strip()
    if not reason:
        raise Invalid("Skriv varför remissen avböjs.")
    case = store.session.get(Case, forwarded.case_id)
    assert case is not None
    forwarded.status = "declined"
    forwarded.decided_by_id = actor.user_id
    forwarded.decided_at = utcnow()
    forwarded.decision_reason_enc = seal(
        store, case.patient_id, FORWARDED, "decision_reason", forwarded.id, reason[:2000]
    )
    _audit_forwarded(store, actor, forwarded, case, "update", "remiss från annan enhet avböjd")


def erase_self_referral_by_reference(
    store: Keystore, actor: Actor, reference: str, *, reason: str
) -> None:
    """erase_self_referral for the case named by its reference (the command line's way);
    refuses (NotFound) an unknown reference, and whatever erase_self_referral refuses."""
    erase_self_referral(store, actor, case_by_reference(store.session, reference), reason=reason)


def erase_self_referral(store: Keystore, actor: Actor, case: Case, *, reason: str) -> None:
    """Crypto-shred the patient of a self-referral that never became a working case: opened by
    the patient, closed straight from the state it was opened in, and the patient has no other
    case. Refuses anything else (Invalid): case records are kept (PDL). The erasure is
    audited."""
    if not reason.strip():
        raise Invalid("Ange varför uppgifterna raderas.")
    events = list(
        store.session.execute(
            select(CaseEvent.from_state, CaseEvent.to_state)
            .where(CaseEvent.case_id == case.id)
            .order_by(CaseEvent.id)
        )
    )
    # Opened, then closed from the state it was opened in (the workflow's initial state).
    never_worked = len(events) == 2 and events[1].from_state == events[0].to_state
    if case.channel != "self_referral" or case.closed_at is None or not never_worked:
        raise Invalid("Bara en egenanmälan som avslutades utan att bli ett ärende kan raderas.")
    others = store.session.scalar(
        select(Case.id).where(Case.patient_id == case.patient_id, Case.id != case.id).limit(1)
    )
    if others is not None:
        raise Invalid("Patienten har andra ärenden; uppgifterna behålls.")
    patient = store.session.get(Patient, case.patient_id)
    assert patient is not None
    erase_patient(store, actor, patient, reason=reason.strip()[:200])
