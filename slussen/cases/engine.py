"""The workflow engine: the one entry point that changes a case's state.

`fire(store, case, event, actor, ...)` checks the transition table, the role, the unit and the
guards, then writes the new state, a history row, the queued letters, the due dates and the audit
row in the caller's transaction. A refused event raises a domain error with a Swedish message and
changes nothing. `open_case` puts a new case in the initial state the same way.

`fire_many` and `open_cases` do the same for many cases at once (the demo's batches): the checks
(`_check`, with guards that judge a list of cases), the new state and due dates (`outcome`), the
history row, letters and audit purpose are the same code as `fire`'s; only the writing differs
(one executemany per table, `audit.record_many` for the chain).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from flask import current_app
from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from slussen import audit
from slussen.audit import Actor
from slussen.batchwrite import execute_many, reserve_ids
from slussen.cases.models import Case, CaseEvent, DueDate, Referral, state_writer
from slussen.cases.workflow import Transition, Workflow, add_duration
from slussen.config import today_local
from slussen.db import utcnow
from slussen.errors import Conflict, Invalid, NotFound, NotPermitted
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter, queue_letter
from slussen.patients.models import Patient


class TransitionRefused(Invalid):
    """The workflow refuses the event now (state, role, guard or missing data); says why."""


class StaleCase(Conflict):
    """Someone else changed the case since it was loaded (409; the page keeps what was typed)."""


def current_workflow() -> Workflow:
    """The workflow loaded and checked at app start."""
    workflow: Workflow = current_app.extensions["slussen.content"].compiled["workflow"]
    return workflow


def seal(
    store: Keystore, patient_id: int, table: str, column: str, row_id: int, text: str
) -> bytes:
    """Encrypt free text about a patient with the patient's data key, bound to its row."""
    patient = store.session.get(Patient, patient_id)
    assert patient is not None
    return store.cipher(patient.data_key_id).encrypt(
        text, table=table, column=column, row_id=row_id
    )


def unseal(
    store: Keystore, patient_id: int, table: str, column: str, row_id: int, blob: bytes | None
) -> str:
    """Decrypt what `seal` wrote; "" for no value. The caller writes the audit row."""
    if blob is None:
        return ""
    patient = store.session.get(Patient, patient_id)
    assert patient is not None
    return store.cipher(patient.data_key_id).decrypt_str(
        blob, table=table, column=column, row_id=row_id
    )


def may_act_on(actor: Actor, case: Case | CaseRow) -> bool:
    """Inner confidentiality: users act only on cases of their own units."""
    if actor.role in ("system", "patient"):
        return True
    return case.unit_id in actor.unit_ids


def _refuse_unless_allowed(
    workflow: Workflow, state: str, t: Transition, role: str, data: dict[str, Any]
) -> None:
    """The transition table's rules for one case: from-state, role and required data."""
    if state not in t.from_states:
        known = workflow.states.get(state)
        now = known.label.sv if known else state
        raise TransitionRefused(f"Det går inte att ”{t.label.sv.lower()}” när ärendet är ”{now}”.")
    if role not in t.roles:
        raise TransitionRefused(f"Din roll får inte ”{t.label.sv.lower()}”.")
    for kind in t.requires:
        value = data.get(kind)
        if value is None or (isinstance(value, str) and not value.strip()):
            missing = {"reason": "ett skäl", "note": "en anteckning", "visit": "en besökstid"}
            raise TransitionRefused(
                f"Ange {missing.get(kind, kind)} för att ”{t.label.sv.lower()}”."
            )


def _transition(workflow: Workflow, event: str) -> Transition:
    t = workflow.transitions.get(event)
    if t is None:
        raise TransitionRefused(f"Händelsen ”{event}” finns inte i arbetsflödet.")
    return t


def _check(
    session: Any,
    workflow: Workflow,
    t: Transition,
    cases: Sequence[Any],
    actors: Sequence[Actor],
    data: Sequence[dict[str, Any]],
) -> None:
    """Refuse (raise) unless `t` may fire on every case: the actor may act on it, the table's
    rules hold, and every guard passes (each guard judges all the cases in one call)."""
    for case, actor, values in zip(cases, actors, data, strict=True):
        if not may_act_on(actor, case):
            raise NotFound("Ärendet finns inte.")
        _refuse_unless_allowed(workflow, case.state, t, actor.role, values)
    for name in t.guards:
        refusal = next((r for r in workflow.guard_functions[name](session, cases, data) if r), None)
        if refusal:
            raise TransitionRefused(refusal)


def allowed_events(workflow: Workflow, case: Case, actor: Actor) -> list[Transition]:
    """The events this actor may try now (state and role; guards are checked on firing)."""
    if not may_act_on(actor, case):
        return []
    return [t for t in workflow.events_from(case.state) if actor.role in t.roles]


class Outcome(NamedTuple):
    """What firing a transition does to a case (computed, not yet written). A named tuple: the
    demo's timelines compute hundreds of thousands."""

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
) -> Outcome:
    """The state and due dates after firing `t` from `state` on `today`: a terminal state clears
    every due date; otherwise the transition's `clear` goes ("*" all), then its `due` durations
    from today and the `exact` days are set. Pure: `fire`, `fire_many` and the demo's timelines
    all use it."""
    to_state = t.target(state)
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


OPEN_PURPOSE = "ny remiss"


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
    due_on: dict[str, dt.date] | None = None,
) -> CaseEvent:
    """Fire `event` on `case` for `actor`: the only way a case changes state or screening flag.
    `due_on` sets named due dates to exact days (e.g. the booked visit's day).

    Refuses (nothing changes): an unknown event or one not allowed from the current state, a role
    the transition does not list, missing required data, a failing guard (TransitionRefused); a
    case outside the actor's units (NotFound); a case changed since the actor loaded it
    (StaleCase, when `expected_version` is given). Writes state, history, letters, due dates and
    the audit row, and flushes; the caller commits."""
    session = store.session
    if not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")
    if expected_version is not None and case.version != expected_version:
        raise StaleCase("Någon annan har ändrat ärendet medan du arbetade.")
    t = _transition(workflow, event)
    data = {"note": note, "reason": reason, "visit": visit}
    _check(session, workflow, t, [case], [actor], [data])

    current = {d.name: d.due_on for d in case.due_dates}
    result = outcome(workflow, t, case.state, current, today or today_local(), due_on)
    now = utcnow()
    history = CaseEvent(**_history(case.id, event, case.state, result.to_state, actor, now))
    session.add(history)
    if result.is_entered:
        case.state_entered_at = now
    with state_writer():
        case.state = result.to_state
        if t.screening is not None:
            case.screening_flag = t.screening
    # Every event gives the case a new version, a self-loop too (a reminder, a rebooking): the
    # row is updated even when no column of it changes, so concurrent events collide.
    flag_modified(case, "state")
    if result.is_closed:
        case.closed_at = now
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
    audit.record(
        session,
        store.ring,
        actor,
        "update",
        "case",
        case.id,
        purpose=event_purpose(event),
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )
    session.flush()
    return history


# --- many cases at once -------------------------------------------------------------------------


@dataclass
class CaseRow:
    """A case as `fire_many` holds it: the columns the engine reads and writes, and the data key
    of its patient (for notes). `open_cases` returns them; `fire_many` keeps them current."""

    id: int
    unit_id: int
    patient_id: int
    data_key_id: int
    state: str
    version: int
    is_consent_to_contact: bool
    state_entered_at: dt.datetime
    screening_flag: str | None = None
    coach_id: int | None = None
    closed_at: dt.datetime | None = None
    due: dict[str, dt.date] = field(default_factory=dict)
    #: What the database holds (version, due dates) until the row is written again.
    stored_version: int = 0
    stored_due: dict[str, dt.date] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Firing:
    """One case's part in `fire_many`: who fires, when, and the data `fire` takes."""

    case: CaseRow
    actor: Actor
    #: When it happens (default now) and the local day due dates count from (default today).
    at: dt.datetime | None = None
    today: dt.date | None = None
    note: str | None = None
    reason: str | None = None
    visit: Any = None
    due_on: dict[str, dt.date] | None = None


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


_cases = _table(Case)
_UPDATE_CASE = (
    update(_cases)
    .where(_cases.c.id == bindparam("b_id"), _cases.c.version == bindparam("b_version"))
    .values(
        state=bindparam("b_state"),
        version=bindparam("b_new_version"),
        state_entered_at=bindparam("b_entered"),
        closed_at=bindparam("b_closed"),
        next_due_on=bindparam("b_next_due"),
        coach_id=bindparam("b_coach"),
        screening_flag=bindparam("b_screening"),
    )
)
_due_dates = _table(DueDate)
_DELETE_DUE = delete(_due_dates).where(
    _due_dates.c.case_id == bindparam("b_case"), _due_dates.c.name == bindparam("b_name")
)
_INSERT_DUE = insert(_due_dates)
_INSERT_CASE = insert(_cases)
_INSERT_HISTORY = insert(_table(CaseEvent))
_INSERT_LETTER = insert(_table(QueuedLetter))
_INSERT_REFERRAL = insert(_table(Referral))


_DEFERRED: ContextVar[dict[int, CaseRow] | None] = ContextVar("slussen_deferred", default=None)


@contextlib.contextmanager
def case_rows_deferred(store: Keystore) -> Iterator[None]:
    """Within this block `open_cases` and `fire_many` write history, letters and audit rows as
    events fire, but each case's own row and due dates only once, when the block ends (the last
    state of each): a batch that walks cases through several events writes one case update, not
    one per event. Guards judge the `CaseRow`s, which are current; a query of the cases table
    inside the block sees the rows as they were before it. The block must end before the
    transaction commits; on an error nothing more is written (the caller rolls back)."""
    if _DEFERRED.get() is not None:
        yield
        return
    pending: dict[int, CaseRow] = {}
    token = _DEFERRED.set(pending)
    try:
        yield
    finally:
        _DEFERRED.reset(token)
    _write_case_rows(store, list(pending.values()))


def _changed(store: Keystore, rows: Sequence[CaseRow]) -> None:
    """Write the rows now, or at the end of the `case_rows_deferred` block."""
    pending = _DEFERRED.get()
    if pending is None:
        _write_case_rows(store, rows)
    else:
        pending.update((row.id, row) for row in rows)


def _write_case_rows(store: Keystore, rows: Sequence[CaseRow]) -> None:
    """Bring the case rows and their due dates in the database to the `CaseRow`s: the state
    columns (checked against the version read), due dates gone or changed deleted, new or
    changed ones inserted (a due date that stays as it was is not touched, as in `fire`)."""
    connection = store.session.connection()
    updates: list[dict[str, Any]] = []
    due_gone: list[dict[str, Any]] = []
    due_rows: list[dict[str, Any]] = []
    for case in rows:
        updates.append(
            {
                "b_id": case.id,
                "b_version": case.stored_version,
                "b_new_version": case.version,
                "b_state": case.state,
                "b_entered": case.state_entered_at,
                "b_closed": case.closed_at,
                "b_next_due": min(case.due.values(), default=None),
                "b_coach": case.coach_id,
                "b_screening": case.screening_flag,
            }
        )
        before = case.stored_due
        for name, day in before.items():
            if case.due.get(name) != day:
                due_gone.append({"b_case": case.id, "b_name": name})
        due_rows.extend(
            {"case_id": case.id, "name": name, "due_on": day}
            for name, day in case.due.items()
            if before.get(name) != day
        )
        case.stored_version = case.version
        case.stored_due = dict(case.due)
    changed = execute_many(connection, _UPDATE_CASE, updates)
    if connection.dialect.supports_sane_multi_rowcount and changed != len(updates):
        raise StaleCase("Någon annan har ändrat ärendet medan du arbetade.")
    execute_many(connection, _DELETE_DUE, due_gone)
    execute_many(connection, _INSERT_DUE, due_rows)


def fire_many(
    store: Keystore, firings: Sequence[Firing], event: str, *, workflow: Workflow
) -> None:
    """Fire `event` on many cases at once, with the rules of `fire`: the same checks (guards judge
    the whole batch in one call), the same new state, history rows, letters, due dates and one
    audit row per case, written with one executemany per table. Updates each `CaseRow`.

    Refuses (raises like `fire`, before anything is written) when the event may not fire on any
    one of the cases; StaleCase when a case changed since its row was read."""
    if not firings:
        return
    session = store.session
    t = _transition(workflow, event)
    cases = [f.case for f in firings]
    _check(
        session,
        workflow,
        t,
        cases,
        [f.actor for f in firings],
        [{"note": f.note, "reason": f.reason, "visit": f.visit} for f in firings],
    )
    connection = session.connection()
    now = utcnow()
    event_ids = reserve_ids(connection, _table(CaseEvent), len(firings))
    history: list[dict[str, Any]] = []
    letters: list[dict[str, Any]] = []
    entries: list[audit.Entry] = []
    purpose = event_purpose(event)
    for firing, event_id in zip(firings, event_ids, strict=True):
        case, actor = firing.case, firing.actor
        at = firing.at or now
        result = outcome(
            workflow, t, case.state, case.due, firing.today or today_local(), firing.due_on
        )
        row = _history(case.id, event, case.state, result.to_state, actor, at)
        row["id"] = event_id
        text = firing.note or firing.reason
        row["note_enc"] = (
            store.cipher(case.data_key_id).encrypt(
                text, table="case_events", column="note", row_id=event_id
            )
            if text
            else None
        )
        history.append(row)
        if result.is_entered:
            case.state_entered_at = at
        if result.is_closed:
            case.closed_at = at
        case.state = result.to_state
        if t.screening is not None:
            case.screening_flag = t.screening
        case.due = result.due
        case.version += 1
        letters.extend(
            {"case_id": case.id, "unit_id": case.unit_id, "letter": letter, "event": event,
             "status": "queued", "queued_at": at}
            for letter in t.letters
        )  # fmt: skip
        entries.append(
            audit.Entry(
                actor,
                "update",
                "case",
                case.id,
                purpose,
                patient_id=case.patient_id,
                unit_id=case.unit_id,
            )
        )
    _changed(store, cases)
    execute_many(connection, _INSERT_HISTORY, history)
    execute_many(connection, _INSERT_LETTER, letters)
    audit.record_many(session, store.ring, entries)


def _refuse_foreign_unit(actor: Actor, unit_id: int) -> None:
    if actor.role not in ("system", "public") and unit_id not in actor.unit_ids:
        raise NotPermitted("Du arbetar inte på den enheten.")


def _open_history(
    case_id: int, workflow: Workflow, actor: Actor, at: dt.datetime
) -> dict[str, Any]:
    return _history(case_id, "open", None, workflow.initial, actor, at)


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
    _refuse_foreign_unit(actor, unit_id)
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
    _sync_due_dates(case, opening_due(workflow, today_local()))
    referral = Referral(case_id=case.id, channel=channel, created_by_id=actor.user_id, is_seen=True)
    history = CaseEvent(**_open_history(case.id, workflow, actor, now))
    session.add_all([referral, history])
    session.flush()
    if reason:
        referral.reason_enc = seal(store, patient_id, "referrals", "reason", referral.id, reason)
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


@dataclass(frozen=True, slots=True)
class Opening:
    """One case for `open_cases`: the arguments of `open_case`, the patient's data key, and
    when it happens (default now; `today` is the local day its due dates count from)."""

    actor: Actor
    patient_id: int
    data_key_id: int
    unit_id: int
    channel: str
    is_consent_to_contact: bool
    contact_channel: str = "post"
    reason: str = ""
    flagged_by_id: int | None = None
    at: dt.datetime | None = None
    today: dt.date | None = None


def open_cases(
    store: Keystore, openings: Sequence[Opening], *, workflow: Workflow
) -> list[CaseRow]:
    """Open many cases at once, as `open_case` opens one: the case in the initial state, its
    reference, opening due dates, first referral (reason encrypted), the "open" history row and
    the audit row, each table written with one executemany. Returns the cases for `fire_many`.

    Refuses (before anything is written) what `open_case` refuses."""
    for opening in openings:
        _refuse_foreign_unit(opening.actor, opening.unit_id)
    if not openings:
        return []
    session = store.session
    connection = session.connection()
    now = utcnow()
    count = len(openings)
    case_ids = reserve_ids(connection, _cases, count)
    rows: list[CaseRow] = []
    case_rows: list[dict[str, Any]] = []
    referrals: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    entries: list[audit.Entry] = []
    for opening, case_id in zip(openings, case_ids, strict=True):
        at = opening.at or now
        due = opening_due(workflow, opening.today or today_local())
        case_rows.append(
            {
                "id": case_id,
                "reference": case_reference(case_id, at),
                "unit_id": opening.unit_id,
                "patient_id": opening.patient_id,
                "state": workflow.initial,
                "coach_id": None,
                "flagged_by_id": opening.flagged_by_id,
                "channel": opening.channel,
                "contact_channel": opening.contact_channel,
                "is_consent_to_contact": opening.is_consent_to_contact,
                "screening_flag": None,
                "opened_at": at,
                "state_entered_at": at,
                "closed_at": None,
                "next_due_on": None,
                "version": 1,
            }
        )
        rows.append(
            CaseRow(
                id=case_id,
                unit_id=opening.unit_id,
                patient_id=opening.patient_id,
                data_key_id=opening.data_key_id,
                state=workflow.initial,
                version=1,
                is_consent_to_contact=opening.is_consent_to_contact,
                state_entered_at=at,
                due=due,
                stored_version=1,
            )
        )
        history.append(_open_history(case_id, workflow, opening.actor, at))
        entries.append(
            audit.Entry(
                opening.actor,
                "create",
                "case",
                case_id,
                OPEN_PURPOSE,
                patient_id=opening.patient_id,
                unit_id=opening.unit_id,
            )
        )
    execute_many(connection, _INSERT_CASE, case_rows)
    referral_ids = reserve_ids(connection, _table(Referral), count)
    for opening, case_id, referral_id in zip(openings, case_ids, referral_ids, strict=True):
        reason_enc = (
            store.cipher(opening.data_key_id).encrypt(
                opening.reason, table="referrals", column="reason", row_id=referral_id
            )
            if opening.reason
            else None
        )
        referrals.append(
            {
                "id": referral_id,
                "case_id": case_id,
                "channel": opening.channel,
                "created_by_id": opening.actor.user_id,
                "created_at": opening.at or now,
                "reason_enc": reason_enc,
                "is_seen": True,
            }
        )
    execute_many(connection, _INSERT_REFERRAL, referrals)
    execute_many(connection, _INSERT_HISTORY, history)
    # The opening due dates (and next_due_on) go in like every later change of them.
    for row in rows:
        row.version += 1
    _changed(store, rows)
    audit.record_many(session, store.ring, entries)
    return rows
