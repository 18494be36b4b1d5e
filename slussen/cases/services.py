"""Case queries for worklists and the case page: one indexed page of cases at a time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from slussen import audit
from slussen.audit import Actor
from slussen.cases.engine import NotPermitted, may_act_on, unseal
from slussen.cases.models import Case, CaseEvent, Referral
from slussen.cases.workflow import Workflow
from slussen.keystore import Keystore
from slussen.letters.models import QueuedLetter
from slussen.patients.models import Patient
from slussen.patients.services import PatientIdentity, read_patient

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    cases: list[Case]
    page: int
    has_next: bool


def _paginate(session: Session, query: Select[Any], page: int) -> Page:
    page = max(1, min(page, 10_000))
    rows: list[Case] = list(
        session.scalars(query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE))
    )
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


def coach_worklist(
    session: Session, actor: Actor, workflow: Workflow, *, today: dt.date, page: int = 1
) -> Page:
    """The coach's cases due within a week (overdue first), in their units, assigned to them or
    not yet taken; one page, ordered by due date."""
    horizon = today + dt.timedelta(days=7)
    query = (
        select(Case)
        .where(Case.unit_id.in_(actor.unit_ids), Case.state.in_(workflow.active_states))
        .where(or_(Case.coach_id == actor.user_id, Case.coach_id.is_(None)))
        .where(Case.next_due_on <= horizon)
        .order_by(Case.next_due_on, Case.id)
    )
    return _paginate(session, query, page)


@dataclass(frozen=True)
class UnitFilters:
    state: str = ""
    coach_id: int | None = None
    is_overdue: bool = False
    channel: str = ""


def unit_cases(
    session: Session, actor: Actor, filters: UnitFilters, *, today: dt.date, page: int = 1
) -> Page:
    """The coordinator's view of every case in their units, filtered; one page."""
    query = select(Case).where(Case.unit_id.in_(actor.unit_ids))
    if filters.state:
        query = query.where(Case.state == filters.state)
    if filters.coach_id:
        query = query.where(Case.coach_id == filters.coach_id)
    if filters.is_overdue:
        query = query.where(Case.next_due_on < today)
    if filters.channel:
        query = query.where(Case.channel == filters.channel)
    return _paginate(
        session, query.order_by(Case.next_due_on.is_(None), Case.next_due_on, Case.id.desc()), page
    )


def flagged_cases(session: Session, actor: Actor, *, page: int = 1) -> Page:
    """The cases a staff member flagged (they see only state and next date)."""
    query = select(Case).where(Case.flagged_by_id == actor.user_id).order_by(Case.id.desc())
    return _paginate(session, query, page)


def state_counts(session: Session, unit_ids: frozenset[int]) -> dict[str, int]:
    rows = session.execute(
        select(Case.state, func.count()).where(Case.unit_id.in_(unit_ids)).group_by(Case.state)
    )
    return {state: int(count) for state, count in rows}


def unseen_referrals(session: Session, case_ids: list[int]) -> set[int]:
    if not case_ids:
        return set()
    return set(
        session.scalars(
            select(Referral.case_id).where(
                Referral.case_id.in_(case_ids), Referral.is_seen.is_(False)
            )
        )
    )


def names_for_list(
    store: Keystore, actor: Actor, cases: list[Case], *, purpose: str
) -> dict[int, str]:
    """Decrypt the names of the patients on one page of a list; one audit row for the page.

    A list shows names so a coach can recognise people; it writes one `read` row naming the list
    rather than one row per patient (the case page, opened per patient, writes its own)."""
    if not cases:
        return {}
    session = store.session
    rows = session.execute(
        select(Patient.id, Patient.data_key_id, Patient.name_enc).where(
            Patient.id.in_({c.patient_id for c in cases})
        )
    ).all()
    store.preload(row.data_key_id for row in rows)
    patients = {row.id: row for row in rows}
    names = {}
    for case in cases:
        patient = patients[case.patient_id]
        if patient.name_enc is None:
            names[case.id] = "–"
            continue
        cipher = store.cipher(patient.data_key_id)
        names[case.id] = cipher.decrypt_str(
            patient.name_enc, table="patients", column="name", row_id=patient.id
        )
    audit.record(
        session,
        store.ring,
        actor,
        "read",
        "case_list",
        ",".join(str(c.id) for c in cases)[:80],
        purpose=purpose,
    )
    return names


@dataclass(frozen=True)
class TimelineEntry:
    event: CaseEvent
    note: str


def case_view(store: Keystore, actor: Actor, case: Case) -> dict[str, Any]:
    """Everything the case page shows, decrypted; writes the audit row (read) for the patient."""
    session = store.session
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    identity: PatientIdentity = read_patient(
        store, actor, patient, purpose="ärendesida", unit_id=case.unit_id
    )
    events = list(
        session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )
    timeline = [
        TimelineEntry(e, unseal(store, case.patient_id, "case_events", "note", e.id, e.note_enc))
        for e in events
    ]
    referrals = list(
        session.scalars(select(Referral).where(Referral.case_id == case.id).order_by(Referral.id))
    )
    referral_texts = [
        (r, unseal(store, case.patient_id, "referrals", "reason", r.id, r.reason_enc))
        for r in referrals
    ]
    letters = list(
        session.scalars(
            select(QueuedLetter).where(QueuedLetter.case_id == case.id).order_by(QueuedLetter.id)
        )
    )
    return {
        "identity": identity,
        "patient": patient,
        "timeline": timeline,
        "referrals": referral_texts,
        "letters": letters,
    }


def take_case(actor: Actor, case: Case) -> bool:
    """Make `actor` the coach responsible for an unassigned case; False when it has a coach.

    Refuses (NotPermitted) a case outside the actor's units."""
    if not may_act_on(actor, case):
        raise NotPermitted("Ärendet finns inte.")
    if case.coach_id is not None:
        return False
    case.coach_id = actor.user_id
    return True


def mark_referrals_seen(session: Session, case: Case) -> None:
    for referral in session.scalars(
        select(Referral).where(Referral.case_id == case.id, Referral.is_seen.is_(False))
    ):
        referral.is_seen = True
