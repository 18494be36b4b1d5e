"""Case queries for worklists and the case page: one indexed page of cases at a time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy import (
    case as sql_case,
)
from sqlalchemy.orm import Session

from slussen.accounts.models import User
from slussen.audit import Actor
from slussen.cases.engine import event_name, may_act_on, screening_of
from slussen.cases.models import Case, CaseEvent, Referral
from slussen.cases.workflow import Workflow
from slussen.errors import NotFound
from slussen.identifiers import PersonIdentifier
from slussen.keystore import DataKey, Keystore
from slussen.letterqueue import QueuedLetter
from slussen.patients.models import Patient
from slussen.patients.services import (
    PatientIdentity,
    find_patient_id,
    read_patient,
    rows_matching_name,
    unseal,
)

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    #: Rows with the `LISTED` columns (worklist, unit view) or whole cases (staff view).
    cases: list[Any]
    page: int
    has_next: bool


def _window(page: int) -> tuple[int, int, int]:
    """(page, limit, offset): the page clamped to 1–10,000, one row more than a page to see
    whether another follows."""
    page = max(1, min(page, 10_000))
    return page, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE


def _page(page: int, found: list[Any]) -> Page:
    return Page(found[:PAGE_SIZE], page, len(found) > PAGE_SIZE)


def _paginate(session: Session, query: Select[Any], page: int) -> Page:
    page, limit, offset = _window(page)
    return _page(page, list(session.scalars(query.limit(limit).offset(offset))))


#: What a list of cases shows, read as plain rows (no ORM objects, no due dates) with the
#: patient's encrypted name and wrapped data key: one query per page.
LISTED = (
    Case.id,
    Case.reference,
    Case.state,
    Case.unit_id,
    Case.coach_id,
    Case.channel,
    Case.screening_enc,
    Case.next_due_on,
    Case.version,
    Case.patient_id,
    Patient.data_key_id,
    Patient.name_enc,
    DataKey.wrapped.label("wrapped_key"),
    select(Referral.id)
    .where(Referral.case_id == Case.id, Referral.is_seen.is_(False))
    .exists()
    .label("has_unseen_referral"),
)


def _listed_page(where: list[ColumnElement[bool]], order: list[Any]) -> Select[Any]:
    """One page of `LISTED` rows of the cases matching `where`, in `order` (parameters `limit`
    and `offset`): the page's ids are chosen first (the index does that work), patients and keys
    are joined to those rows only."""
    ids = (
        select(Case.id)
        .where(*where)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    query: Select[Any] = select(*LISTED)  # type: ignore[assignment]
    return (
        query.join(Patient, Patient.id == Case.patient_id)
        .outerjoin(DataKey, DataKey.id == Patient.data_key_id)
        .where(Case.id.in_(ids))
        .order_by(*order)
    )


def _paginate_listed(session: Session, query: Select[Any], page: int, **params: Any) -> Page:
    page, limit, offset = _window(page)
    return _page(page, list(session.execute(query, {**params, "limit": limit, "offset": offset})))


#: The coach's worklist, built once (a statement per request costs more than its SQL).
_WORKLIST = _listed_page(
    [
        Case.unit_id.in_(bindparam("unit_ids", expanding=True)),
        Case.state.in_(bindparam("states", expanding=True)),
        or_(Case.coach_id == bindparam("coach_id"), Case.coach_id.is_(None)),
        Case.next_due_on <= bindparam("horizon", type_=Date),
    ],
    [Case.next_due_on, Case.id],
)


def coach_worklist(
    session: Session, actor: Actor, workflow: Workflow, *, today: dt.date, page: int = 1
) -> Page:
    """The coach's cases due within a week (overdue first), in their units, assigned to them or
    not yet taken; one page of `LISTED` rows, ordered by due date."""
    return _paginate_listed(
        session,
        _WORKLIST,
        page,
        unit_ids=sorted(actor.unit_ids),
        states=list(workflow.active_states),
        coach_id=actor.user_id,
        horizon=today + dt.timedelta(days=7),
    )


@dataclass(frozen=True)
class UnitFilters:
    state: str = ""
    coach_id: int | None = None
    is_overdue: bool = False
    channel: str = ""


def unit_cases(
    session: Session, actor: Actor, filters: UnitFilters, *, today: dt.date, page: int = 1
) -> Page:
    """The coordinator's view of every case in their units, filtered; one page of `LISTED`
    rows."""
    where: list[ColumnElement[bool]] = [Case.unit_id.in_(actor.unit_ids)]
    if filters.state:
        where.append(Case.state == filters.state)
    if filters.coach_id:
        where.append(Case.coach_id == filters.coach_id)
    if filters.is_overdue:
        where.append(Case.next_due_on < today)
    if filters.channel:
        where.append(Case.channel == filters.channel)
    order = [Case.next_due_on.is_(None), Case.next_due_on, Case.id.desc()]
    return _paginate_listed(session, _listed_page(where, order), page)


def flagged_cases(session: Session, actor: Actor, *, page: int = 1) -> Page:
    """The cases a staff member flagged (they see only state and next date)."""
    query = select(Case).where(Case.flagged_by_id == actor.user_id).order_by(Case.id.desc())
    return _paginate(session, query, page)


_STATE_COUNTS = (
    select(Case.state, func.count())
    .where(Case.unit_id.in_(bindparam("unit_ids", expanding=True)))
    .group_by(Case.state)
)


def state_counts(session: Session, unit_ids: frozenset[int]) -> dict[str, int]:
    rows = session.execute(_STATE_COUNTS, {"unit_ids": sorted(unit_ids)})
    return {state: int(count) for state, count in rows}


@dataclass(frozen=True)
class TimelineEntry:
    event: CaseEvent
    #: The event's name (unsealed when the history keeps it sealed).
    name: str
    note: str
    #: Who did it, as people know them: the user's display name (the username only for an
    #: account that no longer exists); empty when no user did (Slussen itself, the patient).
    actor: str = ""


def case_view(store: Keystore, actor: Actor, case: Case) -> dict[str, Any]:
    """Everything the case page shows, decrypted; writes the audit row (read) for the patient
    last, so a write transaction (SQLite's lock, PostgreSQL's audit chain head) is held only from
    there to the caller's commit."""
    session = store.session
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    events = list(
        session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )
    actor_ids = {e.actor_id for e in events if e.actor_id is not None}
    people: dict[int, str] = {
        user_id: name
        for user_id, name in session.execute(
            select(User.id, User.display_name).where(User.id.in_(actor_ids))
        )
    }
    timeline = [
        TimelineEntry(
            e,
            event_name(store, e, case.patient_id),
            unseal(store, case.patient_id, "case_events", "note", e.id, e.note_enc),
            "" if e.actor_id is None else people.get(e.actor_id, e.actor_name),
        )
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
    identity: PatientIdentity = read_patient(
        store, actor, patient, purpose="ärendesida", unit_id=case.unit_id
    )
    return {
        "identity": identity,
        "patient": patient,
        "screening": screening_of(store, case),
        "timeline": timeline,
        "referrals": referral_texts,
        "letters": letters,
    }


def take_case(actor: Actor, case: Case) -> bool:
    """Make `actor` the coach responsible for an unassigned case; False when it has a coach.

    Refuses (NotFound) a case outside the actor's units."""
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    if case.coach_id is not None:
        return False
    case.coach_id = actor.user_id
    return True


def mark_referrals_seen(referrals: list[tuple[Referral, str]]) -> None:
    """The coach has seen these referrals (as `case_view` returns them)."""
    for referral, _reason in referrals:
        referral.is_seen = True


def case_by_reference(session: Session, reference: str) -> Case:
    """The case with this reference (e.g. "S26-000123"); refuses (NotFound) an unknown one."""
    case = session.scalar(select(Case).where(Case.reference == reference))
    if case is None:
        raise NotFound(f"Inget ärende har referensen {reference}.")
    return case


# --- finding any case ----------------------------------------------------------------------------

#: How many cases a search shows at most; more matches ask for a longer name.
SEARCH_LIMIT = 50
#: How many cases' names are decrypted together while a name search goes through the units.
_SEARCH_BATCH = 500


@dataclass(frozen=True)
class Found:
    #: `LISTED` rows of the cases found, newest case first.
    cases: list[Any]
    #: More cases matched than are shown (SEARCH_LIMIT).
    is_truncated: bool


_CASES_OF_PATIENT = _listed_page(
    [
        Case.patient_id == bindparam("patient_id"),
        Case.unit_id.in_(bindparam("unit_ids", expanding=True)),
    ],
    [Case.id.desc()],
)


def find_cases_by_identifier(store: Keystore, actor: Actor, identifier: PersonIdentifier) -> Found:
    """The cases, in the actor's units, of the patient with this personnummer,
    samordningsnummer or reservnummer, found by blind index (nothing is decrypted to look).
    The caller shows them through `names_for_list`, which records each patient shown. A patient
    with no case in the actor's units is not found (nothing tells that they exist)."""
    patient_id = find_patient_id(store, identifier)
    if patient_id is None or not actor.unit_ids:
        return Found([], False)
    rows = list(
        store.session.execute(
            _CASES_OF_PATIENT,
            {
                "patient_id": patient_id,
                "unit_ids": sorted(actor.unit_ids),
                "limit": SEARCH_LIMIT + 1,
                "offset": 0,
            },
        )
    )
    return Found(rows[:SEARCH_LIMIT], len(rows) > SEARCH_LIMIT)


_UNIT_BATCH = _listed_page(
    [
        Case.unit_id.in_(bindparam("unit_ids", expanding=True)),
        Case.id < bindparam("before"),
    ],
    [Case.id.desc()],
)


def find_cases_by_name(store: Keystore, actor: Actor, query: str) -> Found:
    """The cases in the actor's units whose patient's name holds every word of `query` (case
    and accents folded), newest first, at most SEARCH_LIMIT. The names are sealed, so the
    search decrypts the names of the units' cases in batches (`rows_matching_name`) and keeps
    only the matches; the caller shows those through `names_for_list`, which records each one.

    Refuses a role without patient access (NotPermitted)."""
    found: list[Any] = []
    before = 2**62
    while len(found) <= SEARCH_LIMIT and actor.unit_ids:
        batch = list(
            store.session.execute(
                _UNIT_BATCH,
                {
                    "unit_ids": sorted(actor.unit_ids),
                    "before": before,
                    "limit": _SEARCH_BATCH,
                    "offset": 0,
                },
            )
        )
        found.extend(rows_matching_name(store, actor, batch, query))
        if len(batch) < _SEARCH_BATCH:
            break
        before = batch[-1].id
    return Found(found[:SEARCH_LIMIT], len(found) > SEARCH_LIMIT)


#: The caseload's orders: by due date (none last), newest case first, by state.
CASELOAD_SORTS = ("due", "newest", "state")


@dataclass(frozen=True)
class CaseloadFilters:
    #: "" every case, "open" the open ones, "closed" the closed ones, or one state's name.
    state: str = ""
    sort: str = "due"


def coach_caseload(
    session: Session,
    actor: Actor,
    workflow: Workflow,
    filters: CaseloadFilters,
    *,
    page: int = 1,
) -> Page:
    """Every case the coach is responsible for in their units, in every state (closed too),
    filtered by state and sorted; one page of `LISTED` rows."""
    where: list[ColumnElement[bool]] = [
        Case.unit_id.in_(actor.unit_ids),
        Case.coach_id == actor.user_id,
    ]
    if filters.state == "open":
        where.append(Case.state.in_(workflow.active_states))
    elif filters.state == "closed":
        where.append(Case.state.in_(workflow.terminal_states))
    elif filters.state in workflow.states:
        where.append(Case.state == filters.state)
    orders: dict[str, list[Any]] = {
        "due": [Case.next_due_on.is_(None), Case.next_due_on, Case.id.desc()],
        "newest": [Case.id.desc()],
        # The workflow file's order of states (referred first, the closed ones last).
        "state": [
            sql_case({name: n for n, name in enumerate(workflow.states)}, value=Case.state),
            Case.next_due_on.is_(None),
            Case.next_due_on,
            Case.id.desc(),
        ],
    }
    order = orders.get(filters.sort, orders["due"])
    return _paginate_listed(session, _listed_page(where, order), page)
