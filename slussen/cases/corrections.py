"""Correcting a patient's details from their case: name, address and phone (the patient record,
`slussen.patients.services.correct_patient`), the case's contact channel, and the details a later
referral offered. A corrected address releases the letters held for want of one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from slussen.accounts.models import User
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor
from slussen.cases.engine import audit_case_change, may_act_on
from slussen.cases.models import CONTACT_CHANNELS, Case
from slussen.errors import Invalid, NotFound, NotPermitted
from slussen.keystore import Keystore
from slussen.letterqueue import release_address_holds
from slussen.patients.models import Patient
from slussen.patients.services import (
    CorrectionEntry,
    Offer,
    PatientIdentity,
    accept_offer,
    correct_patient,
    correction_history,
    decline_offer,
    pending_offer,
    read_patient,
)

_ADDRESS = ("street", "postcode", "town")


@dataclass(frozen=True)
class Corrected:
    """What a correction did: the fields it changed and how many held letters it released."""

    fields: tuple[str, ...]
    released: int


@dataclass(frozen=True)
class HistoryRow:
    """One earlier correction with the name of who made it."""

    entry: CorrectionEntry
    by: str

    @property
    def corrected_at(self) -> dt.datetime:
        return self.entry.corrected_at


@dataclass(frozen=True)
class DetailsView:
    """What the correction page shows: the record now (an audited read), the details a later
    referral offered, and the history of corrections."""

    identity: PatientIdentity
    offer: Offer | None
    history: list[HistoryRow]


def _patient_of(store: Keystore, actor: Actor, case: Case) -> Patient:
    """The case's patient, if the actor works its cases; refuses (NotFound) a case outside the
    actor's units and (NotPermitted) a role that does not work cases."""
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    if actor.role != "system" and not grants(actor.role, Permission.WORK_CASES):
        raise NotPermitted("Din roll får inte rätta patientens uppgifter.")
    patient = store.session.get(Patient, case.patient_id)
    assert patient is not None
    return patient


def details_view(store: Keystore, actor: Actor, case: Case) -> DetailsView:
    """The correction page's content, decrypted; one audited read of the patient. Refuses what
    `correct_details` refuses before it changes anything."""
    patient = _patient_of(store, actor, case)
    identity = read_patient(
        store, actor, patient, purpose="rättelse av uppgifter", unit_id=case.unit_id
    )
    entries = correction_history(store, patient)
    names: dict[int, str] = {
        user_id: name
        for user_id, name in store.session.execute(
            select(User.id, User.display_name).where(
                User.id.in_({e.corrected_by_id for e in entries if e.corrected_by_id})
            )
        )
    }
    history = [HistoryRow(e, names.get(e.corrected_by_id or 0, "Slussen")) for e in entries]
    return DetailsView(identity, pending_offer(store, patient), history)


def _release(store: Keystore, patient: Patient, changed: tuple[str, ...]) -> int:
    """Release the held letters of all the patient's cases when the address changed."""
    if not set(changed) & set(_ADDRESS):
        return 0
    case_ids = store.session.scalars(select(Case.id).where(Case.patient_id == patient.id))
    return release_address_holds(store.session, case_ids)


def correct_details(
    store: Keystore,
    actor: Actor,
    case: Case,
    changes: Mapping[str, str],
    *,
    contact_channel: str,
    reason: str,
) -> Corrected:
    """Correct the patient's name, address and phone (`changes`) and the case's contact channel,
    with a reason; the record's history keeps the earlier values (sealed), the change of channel
    is audited on the case, and letters of the patient's cases held for a missing or unusable
    address are queued again for the next batch when the address changed.

    Refuses a case outside the actor's units (NotFound), a role that does not work cases
    (NotPermitted), an unknown contact channel (Invalid), and what `correct_patient` refuses
    (no reason, an empty name, a malformed postcode, a partial address, nothing changed)."""
    patient = _patient_of(store, actor, case)
    if contact_channel not in CONTACT_CHANNELS:
        raise Invalid("Okänd kontaktväg.")
    also = {}
    if contact_channel != case.contact_channel:
        also["contact_channel"] = case.contact_channel
    changed = correct_patient(
        store,
        actor,
        patient,
        changes,
        reason=reason,
        unit_id=case.unit_id,
        also_changed=also,
    )
    if also:
        case.contact_channel = contact_channel
        audit_case_change(store, actor, case, "kontaktväg rättad")
    return Corrected(changed, _release(store, patient, changed))


def accept_offered_details(store: Keystore, actor: Actor, case: Case, offer_id: int) -> Corrected:
    """Take the details a later referral offered into the record (a correction, history kept)
    and release letters held for the address, as `correct_details` does. Refuses a case outside
    the actor's units (NotFound), a role that does not work cases (NotPermitted), and what
    `accept_offer` refuses (an offer of another patient, one already decided)."""
    patient = _patient_of(store, actor, case)
    changed = accept_offer(store, actor, patient, offer_id, unit_id=case.unit_id)
    return Corrected(changed, _release(store, patient, changed))


def decline_offered_details(store: Keystore, actor: Actor, case: Case, offer_id: int) -> None:
    """Keep the record as it is and mark the offered details declined. Refuses what
    `accept_offered_details` refuses."""
    patient = _patient_of(store, actor, case)
    decline_offer(store, actor, patient, offer_id, unit_id=case.unit_id)
