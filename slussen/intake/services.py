"""Referral rules: one open case per patient, found by blind index; never a twin."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from slussen.audit import Actor
from slussen.cases.engine import audit_case_change, open_case, refuse_foreign_unit, seal
from slussen.cases.models import CHANNELS, CONTACT_CHANNELS, Case, CaseEvent, Referral
from slussen.cases.services import case_by_reference
from slussen.cases.workflow import Workflow
from slussen.errors import Invalid, NotPermitted
from slussen.keystore import Keystore
from slussen.patients.models import Patient
from slussen.patients.services import (
    PatientIdentity,
    erase_patient,
    find_patient_id,
    register_patient,
)

#: Who may refer: staff flag, coaches and coordinators register calls, the public self-refers.
REFERRING_ROLES = ("staff", "coach", "coordinator", "public", "system")


@dataclass(frozen=True)
class IntakeResult:
    case: Case
    #: True when the referral was attached to a case that was already open.
    is_attached: bool


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
    referral for a patient with an open case never opens a twin: it is attached to the open case
    and waits, unseen, for the coach."""
    check_referral(
        actor,
        unit_id=unit_id,
        channel=channel,
        contact_channel=contact_channel,
        is_consent_to_contact=is_consent_to_contact,
    )
    session = store.session
    patient_id = find_patient_id(store, identity.identifier)
    if patient_id is not None:
        existing = open_case_of_patient(store, workflow, patient_id)
        if existing is not None:
            referral = Referral(
                case_id=existing.id, channel=channel, created_by_id=actor.user_id, is_seen=False
            )
            session.add(referral)
            session.flush()
            if reason:
                referral.reason_enc = seal(
                    store, patient_id, "referrals", "reason", referral.id, reason
                )
            audit_case_change(store, actor, existing, "ny remiss kopplad till öppet ärende")
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
    return IntakeResult(case, is_attached=False)


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
