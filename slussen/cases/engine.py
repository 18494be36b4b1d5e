"""The workflow engine: the one entry point that changes a case's state.

`fire(store, case, event, actor, ...)` checks the transition table, the role, the unit and the
guards, then writes the new state, a history row, the queued letters, the due dates and the audit
row in the caller's transaction. A refused event raises a domain error with a Swedish message and
changes nothing. `open_case` puts a new case in the initial state the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from slussen import audit
from slussen.audit import Actor
from slussen.cases.models import Case, CaseEvent, DueDate, Referral, state_writer
from slussen.cases.workflow import Transition, Workflow, add_duration, needs_event
from slussen.config import today_local
from slussen.db import utcnow
from slussen.errors import Conflict, Invalid, NotFound, NotPermitted
from slussen.keystore import Keystore
from slussen.letterqueue import queue_letter
from slussen.patients.services import read_demographics, seal, unseal
from slussen.research import services as research_records

#: The events whose first firing is a step of the flow in the research records.
RESEARCH_STEPS = {
    "invitation": needs_event("invites"),
    "baseline": needs_event("registers_baseline"),
    "mapping_visit": needs_event("records_mapping_visit"),
    "follow_up_1": needs_event("records_follow_up_1"),
    "six_month": needs_event("registers_evaluation"),
}


class TransitionRefused(Invalid):
    """The workflow refuses the event now (state, role, guard or missing data); says why."""


class StaleCase(Conflict):
    """Someone else changed the case since it was loaded (409; the page keeps what was typed)."""


def current_workflow() -> Workflow:
    """The workflow loaded and checked at app start."""
    workflow: Workflow = current_app.extensions["slussen.content"].compiled["workflow"]
    return workflow


def may_act_on(actor: Actor, case: Case) -> bool:
    """Inner confidentiality: users act only on cases of their own units, and on the cases a
    capability above granted them for this request (`Actor.case_ids`: an association's user on
    a hand-over addressed to their organisation)."""
    if actor.role in ("system", "patient"):
        return True
    return case.unit_id in actor.unit_ids or case.id in actor.case_ids


#: Who fires events without a person deciding at a button: the daily tick, and the patient's
#: own answers. They are never asked to confirm.
UNASKED_ROLES = ("system", "patient")


def asks_confirmation(t: Transition, role: str) -> bool:
    """Whether `role` must confirm `t` and give a reason (`confirm = true` in the file)."""
    return t.is_confirmed_step and role not in UNASKED_ROLES


def _refuse_unless_allowed(
    workflow: Workflow, state: str, t: Transition, role: str, data: dict[str, Any]
) -> None:
    """The transition table's rules for one case: from-state, role, required data, and a
    person's confirmation with a reason for a step that asks for one."""
    if state not in t.from_states:
        known = workflow.states.get(state)
        now = known.label.sv if known else state
        raise TransitionRefused(f"Det går inte att ”{t.label.sv.lower()}” när ärendet är ”{now}”.")
    if role not in t.roles:
        raise TransitionRefused(f"Din roll får inte ”{t.label.sv.lower()}”.")
    for kind in t.requires:
        value = data.get(kind)
        if value is None or (isinstance(value, str) and not value.strip()):
            missing = {
                "reason": "ett skäl",
                "note": "en anteckning",
                "visit": "en besökstid",
                "handover": "en överlämning",
            }
            raise TransitionRefused(
                f"Ange {missing.get(kind, kind)} för att ”{t.label.sv.lower()}”."
            )
    if asks_confirmation(t, role):
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise TransitionRefused(f"Ange ett skäl för att ”{t.label.sv.lower()}”.")
        if not data.get("confirmed"):
            raise TransitionRefused(
                f"Bekräfta att du vill ”{t.label.sv.lower()}”: det går inte att ångra."
            )


def _transition(workflow: Workflow, event: str) -> Transition:
    t = workflow.transitions.get(event)
    if t is None:
        raise TransitionRefused(f"Händelsen ”{event}” finns inte i arbetsflödet.")
    return t


def _check(
    session: Any, workflow: Workflow, t: Transition, case: Case, actor: Actor, data: dict[str, Any]
) -> None:
    """Refuse (raise) unless `t` may fire on `case`: the actor may act on it, the table's rules
    hold, and every guard passes."""
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    _refuse_unless_allowed(workflow, case.state, t, actor.role, data)
    for name in t.guards:
        refusal = workflow.guard_functions[name](session, case, data)
        if refusal:
            raise TransitionRefused(refusal)


def allowed_events(workflow: Workflow, case: Case, actor: Actor) -> list[Transition]:
    """The events this actor may try now (state and role; guards are checked on firing)."""
    if not may_act_on(actor, case):
        return []
    return [t for t in workflow.events_from(case.state) if actor.role in t.roles]


class Outcome(NamedTuple):
    """What firing a transition does to a case (computed, not yet written)."""

    to_state: str
    #: The case enters a new state (state_entered_at moves); False for a self-loop.
    is_entered: bool
    #: The new state is terminal: the case closes and every due date goes.
    is_closed: bool
    #: The case's due dates afterwards (name -> day).
    due: dict[str, dt.date]

    @property
    def next_due_on(self) -> dt.date | None:
        return min(self.due.values(), default=None)


def outcome(
    workflow: Workflow,
    t: Transition,
    state: str,
    due: Mapping[str, dt.date],
    today: dt.date,
    exact: Mapping[str, dt.date] | None = None,
    previous: str | None = None,
) -> Outcome:
    """The state and due dates after firing `t` from `state` on `today` (`previous`: the state
    before `state`, for a transition going back to it): a terminal state clears every due date;
    otherwise the transition's `clear` goes ("*" all), then its `due` durations from today and
    the `exact` days are set. Pure."""
    to_state = t.target(state, previous)
    closed = workflow.states[to_state].is_terminal
    if closed:
        dates: dict[str, dt.date] = {}
    elif "*" in t.clear:
        dates = {}
    else:
        dates = {name: day for name, day in due.items() if name not in t.clear}
    if not closed:
        for name, duration in t.due.items():
            dates[name] = add_duration(today, duration)
        dates.update(exact or {})
    return Outcome(to_state, state != to_state, closed, dates)


def opening_due(workflow: Workflow, today: dt.date) -> dict[str, dt.date]:
    """The due dates a new case starts with."""
    return {name: add_duration(today, d) for name, d in workflow.opening_due.items()}


def case_reference(case_id: int, opened_at: dt.datetime) -> str:
    """The reference printed on letters instead of any identifier, e.g. "S26-000123"."""
    return f"S{opened_at:%y}-{case_id:06d}"


def event_purpose(event: str) -> str:
    """The audit purpose of firing `event`."""
    return f"händelse {event}"


#: Where a case's screening result is sealed (table, column; the row is the case id).
SCREENING_FIELD = ("cases", "screening")
#: Every sealed screening value has this length, so ciphertexts do not tell them apart.
_SCREENING_WIDTH = 10
#: What the history and the access log show in clear of a transition that sets the screening
#: flag: the event itself is sealed in the history row (`CaseEvent.event_enc`), as its name
#: would say who screened positive.
SEALED_EVENT = "sealed"
SEALED_PURPOSE = "ändring av ärendet"


def screening_of(store: Keystore, case: Case) -> str | None:
    """The case's screening result: None (no flag), "positive" (the coach must decide) or
    "resolved", unsealed with the patient's data key. The caller audits the read of the case."""
    table, column = SCREENING_FIELD
    value = unseal(store, case.patient_id, table, column, case.id, case.screening_enc).strip()
    return value or None


def _seal_screening(store: Keystore, case: Case, value: str | None) -> None:
    table, column = SCREENING_FIELD
    padded = (value or "").ljust(_SCREENING_WIDTH)
    with state_writer():
        case.screening_enc = seal(store, case.patient_id, table, column, case.id, padded)


def event_name(store: Keystore, history: CaseEvent, patient_id: int) -> str:
    """The event a history row records, unsealed when the row keeps it sealed."""
    if history.event != SEALED_EVENT:
        return history.event
    return unseal(store, patient_id, "case_events", "event", history.id, history.event_enc)


OPEN_PURPOSE = "ny remiss"


def previous_state(session: Any, case: Case) -> str | None:
    """The state the case was in before it entered its current one, from its history (the
    latest row that moved it into the current state from another); None if it never moved."""
    previous: str | None = session.scalar(
        select(CaseEvent.from_state)
        .where(
            CaseEvent.case_id == case.id,
            CaseEvent.to_state == case.state,
            CaseEvent.from_state.is_not(None),
            CaseEvent.from_state != case.state,
        )
        .order_by(CaseEvent.id.desc())
        .limit(1)
    )
    return previous


def _history(
    case_id: int, event: str, from_state: str | None, to_state: str, actor: Actor, at: dt.datetime
) -> dict[str, Any]:
    """One history row's columns (without its note)."""
    return {
        "case_id": case_id,
        "event": event,
        "from_state": from_state,
        "to_state": to_state,
        "actor_id": actor.user_id,
        "actor_name": actor.name[:80],
        "actor_role": actor.role[:20],
        "occurred_at": at,
    }


def _sync_due_dates(case: Case, dates: dict[str, dt.date]) -> None:
    """Make the ORM case's due-date rows say `dates` (rows kept where the name stays)."""
    case.due_dates[:] = [d for d in case.due_dates if d.name in dates]
    for name, due_on in dates.items():
        existing = next((d for d in case.due_dates if d.name == name), None)
        if existing is None:
            case.due_dates.append(DueDate(name=name, due_on=due_on))
        else:
            existing.due_on = due_on
    case.next_due_on = min(dates.values(), default=None)


def fire(
    store: Keystore,
    case: Case,
    event: str,
    actor: Actor,
    *,
    workflow: Workflow,
    today: dt.date | None = None,
    expected_version: int | None = None,
    note: str | None = None,
    reason: str | None = None,
    visit: Any = None,
    handover: Any = None,
    due_on: dict[str, dt.date] | None = None,
    confirmed: bool = False,
) -> CaseEvent:
    """Fire `event` on `case` for `actor`: the only way a case changes state or screening flag.
    `due_on` sets named due dates to exact days (e.g. the booked visit's day); `handover`: the
    sluss-2 hand-over an event answers (`requires = ["handover"]`); `confirmed`: the
    person confirmed a step that asks for it (`confirm = true`). A transition going back
    (`to = "<previous>"`, reopening) returns the case to the state before its current one and
    clears its closing time; the history keeps every row.

    Refuses (nothing changes): an unknown event or one not allowed from the current state, a role
    the transition does not list, missing required data, a step a person has not confirmed with a
    reason, a failing guard (TransitionRefused); a
    case outside the actor's units (NotFound); a case changed since the actor loaded it
    (StaleCase, when `expected_version` is given). Writes state, history, letters, due dates and
    the audit row, and flushes; the caller commits."""
    session = store.session
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    if expected_version is not None and case.version != expected_version:
        raise StaleCase("Någon annan har ändrat ärendet medan du arbetade.")
    t = _transition(workflow, event)
    data = {
        "note": note,
        "reason": reason,
        "visit": visit,
        "handover": handover,
        "confirmed": confirmed,
        "screening": screening_of(store, case),
    }
    _check(session, workflow, t, case, actor, data)

    current = {d.name: d.due_on for d in case.due_dates}
    previous = previous_state(session, case) if t.goes_back else None
    if t.goes_back and previous is None:
        raise TransitionRefused("Ärendet har inget tidigare läge att gå tillbaka till.")
    result = outcome(workflow, t, case.state, current, today or today_local(), due_on, previous)
    now = utcnow()
    is_sealed = t.screening is not None
    recorded = SEALED_EVENT if is_sealed else event
    history = CaseEvent(**_history(case.id, recorded, case.state, result.to_state, actor, now))
    session.add(history)
    if result.is_entered:
        case.state_entered_at = now
    with state_writer():
        case.state = result.to_state
    if t.screening is not None:
        _seal_screening(store, case, t.screening)
    # Every event gives the case a new version, a self-loop too (a reminder, a rebooking): the
    # row is updated even when no column of it changes, so concurrent events collide.
    flag_modified(case, "state")
    if result.is_closed:
        case.closed_at = now
    elif t.goes_back:
        case.closed_at = None
    _sync_due_dates(case, result.due)
    for letter in t.letters:
        queue_letter(session, case, letter, event)
    try:
        session.flush()
    except StaleDataError:
        raise StaleCase("Någon annan har ändrat ärendet medan du arbetade.") from None
    text = note or reason
    if text:
        history.note_enc = seal(store, case.patient_id, "case_events", "note", history.id, text)
    if is_sealed:
        history.event_enc = seal(store, case.patient_id, "case_events", "event", history.id, event)
    research_records.record(store, case.id, *_research_facts(workflow, t, result, now))
    audit_case_change(store, actor, case, SEALED_PURPOSE if is_sealed else event_purpose(event))
    session.flush()
    return history


def _research_facts(
    workflow: Workflow, t: Transition, result: Outcome, at: dt.datetime
) -> list[research_records.Fact]:
    """What firing `t` tells the research records: the case's status, the step of the flow it
    reached (RESEARCH_STEPS), and a screening flag."""
    facts: list[research_records.Fact] = [
        research_records.Status(result.to_state if result.is_closed else research_records.OPEN)
    ]
    facts += [
        research_records.Reached(step, at)
        for step, part in RESEARCH_STEPS.items()
        if workflow.event_for(part) == t.event
    ]
    if t.screening is not None:
        facts.append(research_records.Flagged())
    return facts


def audit_case_change(store: Keystore, actor: Actor, case: Case, purpose: str) -> None:
    """The access-log row of a change to a case (an "update" of the case, with its patient and
    unit)."""
    audit.record(
        store.session,
        store.ring,
        actor,
        "update",
        "case",
        case.id,
        purpose=purpose,
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )


def refuse_foreign_unit(actor: Actor, unit_id: int) -> None:
    """Refuses (NotPermitted) a user acting for a unit they do not belong to; the system and the
    public (self-referral) act for any unit."""
    if actor.role not in ("system", "public") and unit_id not in actor.unit_ids:
        raise NotPermitted("Du arbetar inte på den enheten.")


def open_case(
    store: Keystore,
    actor: Actor,
    *,
    workflow: Workflow,
    patient_id: int,
    unit_id: int,
    channel: str,
    is_consent_to_contact: bool,
    contact_channel: str = "post",
    reason: str = "",
    flagged_by_id: int | None = None,
) -> Case:
    """Open a case in the workflow's initial state, with its first referral and history row.

    Refuses a user acting for a unit they do not belong to (NotPermitted)."""
    refuse_foreign_unit(actor, unit_id)
    session = store.session
    now = utcnow()
    with state_writer():
        case = Case(
            reference="",
            unit_id=unit_id,
            patient_id=patient_id,
            state=workflow.initial,
            channel=channel,
            contact_channel=contact_channel,
            is_consent_to_contact=is_consent_to_contact,
            flagged_by_id=flagged_by_id,
            opened_at=now,
            state_entered_at=now,
        )
    session.add(case)
    session.flush()
    case.reference = case_reference(case.id, now)
    _seal_screening(store, case, None)
    _sync_due_dates(case, opening_due(workflow, today_local()))
    referral = Referral(case_id=case.id, channel=channel, created_by_id=actor.user_id, is_seen=True)
    history = CaseEvent(**_history(case.id, "open", None, workflow.initial, actor, now))
    session.add_all([referral, history])
    session.flush()
    if reason:
        referral.reason_enc = seal(store, patient_id, "referrals", "reason", referral.id, reason)
    known = read_demographics(store, patient_id)
    research_records.record(
        store,
        case.id,
        research_records.Opened(patient_id, unit_id, channel, now, known.birth_year, known.sex),
    )
    audit.record(
        session,
        store.ring,
        actor,
        "create",
        "case",
        case.id,
        purpose=OPEN_PURPOSE,
        patient_id=patient_id,
        unit_id=unit_id,
    )
    session.flush()
    return case
