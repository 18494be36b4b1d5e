"""Visit rules: booking and recording the mapping visit, the network, interests, barriers, the
action plan and its revisions, sluss 2 hand-overs, and follow-ups.

Each function takes the Keystore (session + key ring) and the acting user, checks that the actor
may act on the case, seals every health fact and free text with the patient's data key
(`slussen.patients.services.seal`; structured facts as a small JSON text), and flushes; state
changes go through slussen.cases.engine.fire. The readers here (`load_mapping`, `case_visits`,
`case_handovers`, `visit_place`, `handover_details`, `current_plan`) are the only way to see these
fields in clear; the caller writes the read's audit row.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from babel.dates import format_date
from holidays.countries.sweden import Sweden
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from slussen import audit
from slussen.accounts.models import Unit
from slussen.audit import Actor
from slussen.cases.engine import fire, may_act_on
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow, needs_event, needs_states
from slussen.config import local_zone
from slussen.directory.models import Activity, Organisation
from slussen.directory.schedule import WEEKDAY_NAMES_SV
from slussen.errors import Invalid, NotFound
from slussen.keystore import KeyDestroyed, Keystore
from slussen.letterqueue import QueuedLetter, queue_letter
from slussen.patients.models import Patient
from slussen.patients.services import read_patient, seal, unseal
from slussen.research import services as research
from slussen.text import has_forbidden_characters
from slussen.visits.models import (
    CONTACT_FREQUENCIES,
    HANDOVER_OUTCOMES,
    HANDOVER_STATUSES,
    RELATION_TYPES,
    STEP_ACTORS,
    STEP_OUTCOMES,
    VISIT_MODES,
    ActionPlan,
    Handover,
    MappingRecord,
    NetworkEntry,
    PlanStep,
    Visit,
)

#: A short free text (a place, a name, a step); notes and accounts of a visit may be long.
MAX_TEXT = 4000
#: A note of a 45-minute visit typed as it happens, the patient's goals, a follow-up's account.
LONG_TEXT = 20_000

BOOKS_MAPPING_VISIT = needs_event("books_mapping_visit")
REBOOKS_MAPPING_VISIT = needs_event("rebooks_mapping_visit")
RECORDS_MAPPING_VISIT = needs_event("records_mapping_visit")
RECORDS_FOLLOW_UP_1 = needs_event("records_follow_up_1")
RECORDS_FOLLOW_UP_2 = needs_event("records_follow_up_2")
REFERS_ELSEWHERE = needs_event("refers_elsewhere")
RESOLVES_SCREENING = needs_event("resolves_screening")
REQUESTS_HANDOVER = needs_event("requests_handover")
ANSWERS_HANDOVER = needs_event("answers_handover")
RECORDS_HANDOVER_OUTCOME = needs_event("records_handover_outcome")
RECORDS_LATER_HANDOVER_OUTCOME = needs_event("records_later_handover_outcome")
#: The states in which a hand-over may be asked for and answered.
HANDOVER_OPEN = needs_states("handover_open")
#: The states in which the mapping and the action plan may be written.
MAPPING_OPEN = needs_states("mapping_open")


def _require(actor: Actor, case: Case) -> None:
    if actor.role not in ("coach", "coordinator") or not may_act_on(actor, case):
        raise NotFound("Ärendet finns inte.")


def _seal_json(
    store: Keystore, case: Case, table: str, column: str, row_id: int, value: Any
) -> bytes:
    """Seal a structured fact (a list of ids, a network entry's fields) as compact JSON."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return seal(store, case.patient_id, table, column, row_id, text)


def _unseal_json(
    store: Keystore, case: Case, table: str, column: str, row_id: int, blob: bytes | None
) -> Any:
    """What `_seal_json` sealed; None for no value."""
    if blob is None:
        return None
    return json.loads(unseal(store, case.patient_id, table, column, row_id, blob))


def _seal_text(
    store: Keystore, case: Case, table: str, column: str, row_id: int, text: str
) -> bytes | None:
    """Seal a short text; None for an empty one (so that a query can ask whether it is set)."""
    return seal(store, case.patient_id, table, column, row_id, text) if text else None


def _text(value: str, what: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"Skriv {what}.")
    if len(value) > limit:
        # Swedish groups thousands with a (non-breaking) space: "20 000".
        shown = f"{limit:,}".replace(",", "\u00a0")
        raise Invalid(
            f"{what.capitalize()} får vara högst {shown} tecken; nu är det {len(value)} tecken."
        )
    if has_forbidden_characters(value):
        raise Invalid(
            f"{what.capitalize()} innehåller tecken som inte kan sparas (osynliga styrtecken eller "
            "tecken som vänder skrivriktningen). Ta bort dem och försök igen."
        )
    return value


# --- booking ------------------------------------------------------------------------------------


def book_mapping_visit(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    starts_at: dt.datetime,
    place: str,
    duration_minutes: int = 45,
    coach_id: int | None = None,
    expected_version: int | None = None,
    now: dt.datetime | None = None,
) -> Visit:
    """Book (or rebook) the 45-minute mapping visit and queue the appointment letter; a
    rebooking's letter replaces the earlier one while that is not yet printed.

    Refuses a time in the past, an empty place, an unreasonable length (Invalid), and whatever
    the workflow refuses (the screening flag must be resolved first)."""
    _require(actor, case)
    if starts_at.tzinfo is None:
        raise Invalid("Tiden saknar tidszon.")
    if starts_at < (now or dt.datetime.now(dt.UTC)):
        raise Invalid("Besökstiden har redan passerat.")
    place = _text(place, "var besöket är", required=True)[:200]
    if not 15 <= duration_minutes <= 120:
        raise Invalid("Besöket ska vara 15–120 minuter.")
    session = store.session
    rebooking = workflow.can_fire(REBOOKS_MAPPING_VISIT, case.state)
    if rebooking:
        for old in session.scalars(
            select(Visit).where(
                Visit.case_id == case.id, Visit.kind == "mapping", Visit.status == "booked"
            )
        ):
            old.status = "cancelled"
        # The rebooking's letters (the new time) replace those not yet printed.
        rebooks = workflow.transitions[workflow.event_for(REBOOKS_MAPPING_VISIT)]
        _cancel_unprinted(session, case, letters=rebooks.letters)
    visit = Visit(
        case_id=case.id,
        kind="mapping",
        starts_at=starts_at,
        duration_minutes=duration_minutes,
        coach_id=coach_id or actor.user_id,
    )
    session.add(visit)
    session.flush()
    visit.place_enc = seal(store, case.patient_id, "visits", "place", visit.id, place)
    if case.coach_id is None:
        case.coach_id = coach_id or actor.user_id
    event = workflow.event_for(REBOOKS_MAPPING_VISIT if rebooking else BOOKS_MAPPING_VISIT)
    local_day = starts_at.astimezone(local_zone()).date()
    fire(
        store,
        case,
        event,
        actor,
        workflow=workflow,
        visit=visit,
        expected_version=expected_version,
        due_on={"mapping_visit": local_day},
    )
    return visit


def booked_visit(store: Keystore, case: Case, kind: str = "mapping") -> Visit | None:
    """The case's booked visit of `kind` (the latest), or None; its place is sealed
    (`visit_place`)."""
    return store.session.scalar(
        select(Visit)
        .where(Visit.case_id == case.id, Visit.kind == kind, Visit.status == "booked")
        .order_by(Visit.starts_at.desc())
    )


@dataclass(frozen=True)
class VisitView:
    """A visit in clear text, for the case page."""

    id: int
    kind: str
    status: str
    mode: str
    starts_at: dt.datetime
    duration_minutes: int
    place: str


def visit_place(store: Keystore, patient_id: int, visit: Visit) -> str:
    """Where the visit is, decrypted ("" for an erased patient's visit whose place was
    dropped). The caller has audited the read (a letter: the patient read)."""
    return unseal(store, patient_id, "visits", "place", visit.id, visit.place_enc)


def case_visits(store: Keystore, case: Case) -> list[VisitView]:
    """The case's visits in time order, places decrypted (one data key for all). The caller
    audits the read."""
    visits = store.session.scalars(
        select(Visit).where(Visit.case_id == case.id).order_by(Visit.starts_at, Visit.id)
    )
    return [
        VisitView(
            id=v.id,
            kind=v.kind,
            status=v.status,
            mode=v.mode,
            starts_at=v.starts_at,
            duration_minutes=v.duration_minutes,
            place=visit_place(store, case.patient_id, v),
        )
        for v in visits
    ]


# --- the mapping --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkInput:
    label: str
    relation_type: str
    closeness: int
    contact_frequency: str
    is_could_deepen: bool = False
    is_could_resume: bool = False


@dataclass(frozen=True)
class Mapping:
    """The mapping in clear text, for the case page and the forms."""

    network: list[NetworkInput] = field(default_factory=list)
    interests: list[str] = field(default_factory=list)
    barriers: list[str] = field(default_factory=list)
    barrier_notes: str = ""
    notes: str = ""
    area: str = ""


def save_mapping(
    store: Keystore,
    actor: Actor,
    case: Case,
    mapping: Mapping,
    *,
    workflow: Workflow,
    known_interests: set[str],
    known_barriers: set[str],
) -> None:
    """Replace the case's mapping (network, interests, barriers, notes).

    Refuses unknown relation types, frequencies, interests or barriers, closeness outside 1–3,
    and a case not in a state where the mapping is written (`mapping_open`)."""
    _require(actor, case)
    if case.state not in workflow.states_for(MAPPING_OPEN):
        raise Invalid("Kartläggningen görs vid kartläggningsbesöket.")
    for entry in mapping.network:
        if entry.relation_type not in RELATION_TYPES:
            raise Invalid("Okänd typ av relation.")
        if entry.contact_frequency not in CONTACT_FREQUENCIES:
            raise Invalid("Okänd kontaktfrekvens.")
        if entry.closeness not in (1, 2, 3):
            raise Invalid("Närheten ska vara 1, 2 eller 3.")
        _text(entry.label, "vem eller vad", required=True)
    if unknown := set(mapping.interests) - known_interests:
        raise Invalid(f"Okänt intresseområde: {', '.join(sorted(unknown))}.")
    if unknown := set(mapping.barriers) - known_barriers:
        raise Invalid(f"Okänt hinder: {', '.join(sorted(unknown))}.")
    session = store.session
    session.execute(delete(NetworkEntry).where(NetworkEntry.case_id == case.id))
    rows = [NetworkEntry(case_id=case.id, label_enc=b"") for _ in mapping.network]
    session.add_all(rows)
    session.flush()
    for row, entry in zip(rows, mapping.network, strict=True):
        row.label_enc = seal(
            store,
            case.patient_id,
            "network_entries",
            "label",
            row.id,
            _text(entry.label, "vem eller vad", required=True)[:200],
        )
        row.facts_enc = _seal_json(
            store,
            case,
            "network_entries",
            "facts",
            row.id,
            {
                "relation_type": entry.relation_type,
                "closeness": entry.closeness,
                "contact_frequency": entry.contact_frequency,
                "could_deepen": bool(entry.is_could_deepen),
                "could_resume": bool(entry.is_could_resume),
            },
        )
    record = session.scalar(select(MappingRecord).where(MappingRecord.case_id == case.id))
    if record is None:
        record = MappingRecord(case_id=case.id)
        session.add(record)
        session.flush()
    interests, barriers = sorted(set(mapping.interests)), sorted(set(mapping.barriers))
    record.interests_enc = (
        _seal_json(store, case, "mapping_records", "interests", record.id, interests)
        if interests
        else None
    )
    record.barriers_enc = (
        _seal_json(store, case, "mapping_records", "barriers", record.id, barriers)
        if barriers
        else None
    )
    record.area_enc = _seal_text(
        store, case, "mapping_records", "area", record.id, _text(mapping.area, "område")[:100]
    )
    record.barrier_notes_enc = seal(
        store,
        case.patient_id,
        "mapping_records",
        "barrier_notes",
        record.id,
        _text(mapping.barrier_notes, "hindren", limit=LONG_TEXT),
    )
    record.notes_enc = seal(
        store,
        case.patient_id,
        "mapping_records",
        "notes",
        record.id,
        _text(mapping.notes, "anteckningen", limit=LONG_TEXT),
    )
    session.flush()


def _network_entry(store: Keystore, case: Case, row: NetworkEntry) -> NetworkInput:
    label = unseal(store, case.patient_id, "network_entries", "label", row.id, row.label_enc)
    facts = _unseal_json(store, case, "network_entries", "facts", row.id, row.facts_enc)
    if facts is None:  # only an erased patient's entry has none, and its label did not open
        raise KeyDestroyed("the record was erased; its data can no longer be read")
    return NetworkInput(
        label=label,
        relation_type=facts["relation_type"],
        closeness=facts["closeness"],
        contact_frequency=facts["contact_frequency"],
        is_could_deepen=facts["could_deepen"],
        is_could_resume=facts["could_resume"],
    )


def load_mapping(store: Keystore, case: Case) -> Mapping:
    """Decrypt the mapping (one data key for the whole case). The caller has written the case's
    read audit row."""
    session = store.session
    network = [
        _network_entry(store, case, e)
        for e in session.scalars(
            select(NetworkEntry).where(NetworkEntry.case_id == case.id).order_by(NetworkEntry.id)
        )
    ]
    record = session.scalar(select(MappingRecord).where(MappingRecord.case_id == case.id))
    if record is None:
        return Mapping(network=network)
    pid, rid = case.patient_id, record.id
    return Mapping(
        network=network,
        interests=_unseal_json(
            store, case, "mapping_records", "interests", rid, record.interests_enc
        )
        or [],
        barriers=_unseal_json(store, case, "mapping_records", "barriers", rid, record.barriers_enc)
        or [],
        barrier_notes=unseal(
            store, pid, "mapping_records", "barrier_notes", rid, record.barrier_notes_enc
        ),
        notes=unseal(store, pid, "mapping_records", "notes", rid, record.notes_enc),
        area=unseal(store, pid, "mapping_records", "area", rid, record.area_enc),
    )


# --- the action plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StepInput:
    text: str
    actor: str = "patient"
    due_on: dt.date | None = None
    activity_id: int | None = None
    outcome: str = "pending"
    outcome_note: str = ""


@dataclass(frozen=True)
class Plan:
    revision: int
    goals: str
    steps: list[StepInput]
    step_ids: list[int]
    created_at: dt.datetime


def save_action_plan(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    goals: str,
    steps: list[StepInput],
) -> ActionPlan:
    """Write a new revision of the action plan; earlier revisions are kept. A step may name an
    activity from the directory (`activity_id`, chosen from the suggestions); a step with an
    activity and no text of its own takes the activity's title.

    Refuses an empty goal, a plan without steps, unknown step actors or outcomes, an activity
    the directory never published, and a case not in a state where the plan is written
    (`mapping_open`)."""
    _require(actor, case)
    if case.state not in workflow.states_for(MAPPING_OPEN):
        raise Invalid("Handlingsplanen skrivs vid kartläggningsbesöket.")
    goals = _text(goals, "målen", required=True, limit=LONG_TEXT)
    if not steps:
        raise Invalid("Planen behöver minst ett steg.")
    if len(steps) > 30:
        raise Invalid("Planen får ha högst 30 steg.")
    steps = [_with_activity(store.session, step) for step in steps]
    for step in steps:
        _text(step.text, "vad steget är", required=True)
        if step.actor not in STEP_ACTORS or step.outcome not in STEP_OUTCOMES:
            raise Invalid("Okänt val i ett steg.")
    session = store.session
    revision = (
        session.scalar(select(func.max(ActionPlan.revision)).where(ActionPlan.case_id == case.id))
        or 0
    ) + 1
    plan = ActionPlan(
        case_id=case.id, revision=revision, goals_enc=b"", created_by_id=actor.user_id
    )
    session.add(plan)
    session.flush()
    plan.goals_enc = seal(store, case.patient_id, "action_plans", "goals", plan.id, goals)
    for position, step in enumerate(steps, start=1):
        row = PlanStep(
            plan_id=plan.id,
            position=position,
            activity_id=step.activity_id,
            text_enc=b"",
            actor=step.actor,
            due_on=step.due_on,
            outcome=step.outcome,
        )
        session.add(row)
        session.flush()
        row.text_enc = seal(
            store, case.patient_id, "plan_steps", "text", row.id, _text(step.text, "vad steget är")
        )
        if step.outcome_note:
            row.outcome_note_enc = seal(
                store,
                case.patient_id,
                "plan_steps",
                "outcome_note",
                row.id,
                _text(step.outcome_note, "utfallet"),
            )
    research.record(store, case.id, research.Reached("action_plan", plan.created_at))
    session.flush()
    return plan


def _with_activity(session: Session, step: StepInput) -> StepInput:
    """The step, its text taken from its activity's title when it has none; refuses an activity
    that does not exist or was never published (an activity withdrawn after it was chosen stays
    in the plan: the letter then prints the step's own text)."""
    if step.activity_id is None:
        return step
    activity = session.get(Activity, step.activity_id)
    if activity is None or activity.published is None:
        raise Invalid("Aktiviteten i ett steg finns inte i aktivitetskatalogen. Välj en annan.")
    return step if step.text.strip() else replace(step, text=activity.published.title)


def current_plan(store: Keystore, case: Case) -> Plan | None:
    """The newest plan revision in clear text (the caller audits the read)."""
    plan = store.session.scalar(
        select(ActionPlan)
        .where(ActionPlan.case_id == case.id)
        .order_by(ActionPlan.revision.desc())
        .limit(1)
    )
    if plan is None:
        return None
    pid = case.patient_id
    steps = [
        StepInput(
            text=unseal(store, pid, "plan_steps", "text", s.id, s.text_enc),
            actor=s.actor,
            due_on=s.due_on,
            activity_id=s.activity_id,
            outcome=s.outcome,
            outcome_note=unseal(store, pid, "plan_steps", "outcome_note", s.id, s.outcome_note_enc),
        )
        for s in plan.steps
    ]
    return Plan(
        plan.revision,
        unseal(store, pid, "action_plans", "goals", plan.id, plan.goals_enc),
        steps,
        [s.id for s in plan.steps],
        plan.created_at,
    )


def record_mapping_visit(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    expected_version: int | None = None,
    note: str = "",
) -> None:
    """Mark the booked mapping visit as held and move the case to the active plan (the workflow
    refuses this without an action plan); queues the plan letter."""
    _require(actor, case)
    visit = booked_visit(store, case)
    fire(
        store,
        case,
        workflow.event_for(RECORDS_MAPPING_VISIT),
        actor,
        workflow=workflow,
        expected_version=expected_version,
        note=note or None,
    )
    if visit is not None:
        visit.status = "done"
    store.session.flush()


# --- sluss 2 ------------------------------------------------------------------------------------

#: How the first occasion went, in the association's words: came, did not come, will continue.
ASSOCIATION_OUTCOMES = ("went", "did_not_go", "will_continue")


def _require_party(actor: Actor, case: Case) -> None:
    """The coach's side (their units), or an association's user granted this case for the
    request (slussen.associations checked that the hand-over is addressed to them)."""
    if actor.role == "org_rep" and case.id in actor.case_ids:
        return
    _require(actor, case)


def _first_name(name: str) -> str:
    return (name.strip().split() or [""])[0]


def request_handover(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    organisation_name: str = "",
    step_id: int | None = None,
    organisation_id: int | None = None,
    activity_id: int | None = None,
    wished_at: dt.datetime | None = None,
    is_phone_shared: bool = False,
    helps: str = "",
    first_name: str = "",
) -> Handover:
    """Ask an organisation to meet the patient and go along to the first occasion, recording what
    the patient agreed to share with it (first name, the phone number only with consent, what
    helps them); fires the workflow's request event (which sets the answer's due date).

    An organisation of the directory (`organisation_id`) gets the request on its association
    page; its name is taken from the directory. Refuses an empty organisation name, an unknown
    organisation or an activity of another one, a step that is not in the case's plan, and a
    state in which the workflow takes no request."""
    _require(actor, case)
    organisation = None
    if organisation_id is not None:
        organisation = store.session.get(Organisation, organisation_id)
        if organisation is None:
            raise Invalid("Organisationen finns inte i katalogen.")
        organisation_name = organisation.name
    name = _text(organisation_name, "organisationens namn", required=True)[:200]
    if activity_id is not None:
        activity = store.session.get(Activity, activity_id)
        if activity is None or organisation is None or activity.organisation_id != organisation.id:
            raise Invalid("Aktiviteten hör inte till organisationen.")
    if step_id is not None:
        owner = store.session.scalar(
            select(ActionPlan.case_id)
            .join(PlanStep, PlanStep.plan_id == ActionPlan.id)
            .where(PlanStep.id == step_id)
        )
        if owner != case.id:
            raise Invalid("Steget finns inte i ärendets plan.")
    helps = _text(helps, "vad som hjälper patienten")[:1000]
    first_name = _text(first_name, "förnamnet")[:100]
    fire(store, case, workflow.event_for(REQUESTS_HANDOVER), actor, workflow=workflow)
    patient = store.session.get(Patient, case.patient_id)
    assert patient is not None
    identity = read_patient(
        store, actor, patient, purpose="överlämning till förening", unit_id=case.unit_id
    )
    shared = {
        "first_name": first_name or _first_name(identity.name),
        "phone": identity.phone if is_phone_shared else "",
        "helps": helps,
    }
    handover = Handover(
        case_id=case.id,
        step_id=step_id,
        organisation_id=organisation_id,
        activity_id=activity_id,
        wished_at=wished_at,
    )
    store.session.add(handover)
    store.session.flush()
    handover.organisation_name_enc = seal(
        store, case.patient_id, "handovers", "organisation_name", handover.id, name
    )
    handover.shared_enc = _seal_json(store, case, "handovers", "shared", handover.id, shared)
    store.session.flush()
    return handover


def _fire_answer(
    store: Keystore, actor: Actor, case: Case, handover: Handover, workflow: Workflow
) -> None:
    fire(
        store,
        case,
        workflow.event_for(ANSWERS_HANDOVER),
        actor,
        workflow=workflow,
        handover=handover,
    )


def _fire_outcome(
    store: Keystore, actor: Actor, case: Case, handover: Handover, workflow: Workflow
) -> None:
    """The first occasion happened: the research records' step, and the workflow's outcome
    event (the first hand-over's moves the case on; a later one's where that cannot fire)."""
    first = workflow.event_for(RECORDS_HANDOVER_OUTCOME)
    later = workflow.event_for(RECORDS_LATER_HANDOVER_OUTCOME)
    event = later if workflow.can_fire(RECORDS_LATER_HANDOVER_OUTCOME, case.state) else first
    fire(store, case, event, actor, workflow=workflow, handover=handover)
    research.record(
        store,
        case.id,
        research.Reached("handover_done", handover.meeting_at or handover.created_at),
    )


def _audit_handover_change(store: Keystore, actor: Actor, case: Case, handover: Handover) -> None:
    audit.record(
        store.session,
        store.ring,
        actor,
        "update",
        "handover",
        handover.id,
        purpose="överlämning till förening",
        patient_id=case.patient_id,
        unit_id=case.unit_id,
    )


def _set_meeting(
    store: Keystore,
    case: Case,
    handover: Handover,
    companion_name: str,
    meeting_at: dt.datetime | None,
    meeting_place: str,
) -> None:
    handover.companion_name_enc = _seal_text(
        store,
        case,
        "handovers",
        "companion_name",
        handover.id,
        _text(companion_name, "följeslagarens förnamn")[:100],
    )
    handover.meeting_at = meeting_at
    handover.meeting_place_enc = _seal_text(
        store,
        case,
        "handovers",
        "meeting_place",
        handover.id,
        _text(meeting_place, "mötesplatsen")[:200],
    )


def answer_handover(
    store: Keystore,
    actor: Actor,
    case: Case,
    handover: Handover,
    *,
    workflow: Workflow,
    is_accepted: bool,
    reason: str = "",
) -> None:
    """The association accepts or declines a request (declining with a reason); fires the
    workflow's answer event (which clears the answer's due date and the coach's reminder);
    accepting queues the hand-over confirmation letter, which waits for the meeting.

    Refuses a hand-over of another case, one already answered, and a decline without a reason."""
    _require_party(actor, case)
    if handover.case_id != case.id:
        raise NotFound("Överlämningen finns inte.")
    if handover.status != "requested":
        raise Invalid("Förfrågan är redan besvarad.")
    reason = _text(reason, "skälet", required=not is_accepted)[:1000]
    _fire_answer(store, actor, case, handover, workflow)
    handover.status = "accepted" if is_accepted else "declined"
    handover.answer_reason_enc = _seal_text(
        store, case, "handovers", "answer_reason", handover.id, reason
    )
    if is_accepted:
        queue_letter(store.session, case, "handover", "handover_accepted")
    _audit_handover_change(store, actor, case, handover)
    store.session.flush()


def arrange_handover_meeting(
    store: Keystore,
    actor: Actor,
    case: Case,
    handover: Handover,
    *,
    companion_name: str,
    meeting_at: dt.datetime | None,
    meeting_place: str,
) -> None:
    """Name the companion and confirm where and when they meet the patient (the confirmation
    letter goes out with them).

    Refuses a hand-over not accepted (or already done), and a missing name, time or place."""
    _require_party(actor, case)
    if handover.case_id != case.id:
        raise NotFound("Överlämningen finns inte.")
    if handover.status != "accepted":
        raise Invalid("Mötet bestäms när förfrågan är accepterad.")
    _text(companion_name, "följeslagarens förnamn", required=True)
    _text(meeting_place, "mötesplatsen", required=True)
    if meeting_at is None:
        raise Invalid("Ange datum och tid för mötet.")
    _set_meeting(store, case, handover, companion_name, meeting_at, meeting_place)
    _audit_handover_change(store, actor, case, handover)
    store.session.flush()


def record_handover_outcome(
    store: Keystore,
    actor: Actor,
    case: Case,
    handover: Handover,
    *,
    workflow: Workflow,
    outcome: str,
) -> None:
    """Afterwards: how the first occasion went (came, did not come, will continue). The coach
    sees it on the case; the workflow's outcome event moves the case on.

    Refuses an unknown outcome, a hand-over that was not accepted or whose outcome is recorded,
    and a state in which the workflow takes no outcome."""
    _require_party(actor, case)
    if handover.case_id != case.id:
        raise NotFound("Överlämningen finns inte.")
    if outcome not in ASSOCIATION_OUTCOMES:
        raise Invalid("Välj hur första tillfället gick.")
    if handover.status != "accepted":
        raise Invalid("Utfallet registreras efter ett accepterat möte.")
    _fire_outcome(store, actor, case, handover, workflow)
    handover.status = "done"
    handover.outcome = outcome
    _audit_handover_change(store, actor, case, handover)
    store.session.flush()


def update_handover(
    store: Keystore,
    actor: Actor,
    case: Case,
    handover: Handover,
    *,
    workflow: Workflow,
    status: str,
    companion_name: str = "",
    meeting_at: dt.datetime | None = None,
    meeting_place: str = "",
    outcome: str | None = None,
    note: str = "",
) -> None:
    """The coach's form for a hand-over: who accepted, the agreed meeting and the outcome of the
    first occasion, in one step. Leaving "requested" fires the workflow's answer event and
    reaching "done" its outcome event, as the association's own answers do; accepting queues
    the hand-over confirmation letter.

    Refuses unknown statuses or outcomes, an outcome before the hand-over was accepted, and a
    hand-over of another case."""
    _require(actor, case)
    if handover.case_id != case.id:
        raise NotFound("Överlämningen finns inte.")
    if status not in HANDOVER_STATUSES or (outcome and outcome not in HANDOVER_OUTCOMES):
        raise Invalid("Okänt val för överlämningen.")
    if outcome and status != "done":
        raise Invalid("Ett utfall hör till en genomförd överlämning.")
    was = handover.status
    if was == "requested" and status != "requested":
        _fire_answer(store, actor, case, handover, workflow)
    if status == "accepted" and was != "accepted":
        # The patient gets a confirmation letter with the agreed time and place.
        queue_letter(store.session, case, "handover", "handover_accepted")
    handover.status = status
    _set_meeting(store, case, handover, companion_name, meeting_at, meeting_place)
    handover.outcome = outcome
    if note:
        handover.notes_enc = seal(
            store, case.patient_id, "handovers", "notes", handover.id, _text(note, "anteckningen")
        )
    if status == "done" and was != "done":
        _fire_outcome(store, actor, case, handover, workflow)
    store.session.flush()


@dataclass(frozen=True)
class HandoverView:
    """A hand-over in clear text, for the case page and the hand-over letter."""

    id: int
    step_id: int | None
    organisation_id: int | None
    organisation_name: str
    status: str
    companion_name: str
    meeting_at: dt.datetime | None
    meeting_place: str
    outcome: str | None
    activity_id: int | None = None
    wished_at: dt.datetime | None = None
    #: What the patient agreed to share with the association (the only patient facts its page
    #: shows): their first name, the phone number ("" without consent), what helps them.
    first_name: str = ""
    phone: str = ""
    helps: str = ""
    #: The association's reason for declining, or its word with the answer.
    answer_reason: str = ""


def handover_details(store: Keystore, patient_id: int, handover: Handover) -> HandoverView:
    """One hand-over with its organisation's name, the companion and the meeting place
    decrypted ("" where none was given). The caller has audited the read."""

    def opened(column: str, blob: bytes | None) -> str:
        return unseal(store, patient_id, "handovers", column, handover.id, blob)

    shared_text = opened("shared", handover.shared_enc)
    shared = json.loads(shared_text) if shared_text else {}

    return HandoverView(
        id=handover.id,
        step_id=handover.step_id,
        organisation_id=handover.organisation_id,
        organisation_name=opened("organisation_name", handover.organisation_name_enc),
        status=handover.status,
        companion_name=opened("companion_name", handover.companion_name_enc),
        meeting_at=handover.meeting_at,
        meeting_place=opened("meeting_place", handover.meeting_place_enc),
        outcome=handover.outcome,
        activity_id=handover.activity_id,
        wished_at=handover.wished_at,
        first_name=str(shared.get("first_name", "")),
        phone=str(shared.get("phone", "")),
        helps=str(shared.get("helps", "")),
        answer_reason=opened("answer_reason", handover.answer_reason_enc),
    )


def case_handovers(store: Keystore, case: Case) -> list[HandoverView]:
    """The case's hand-overs in the order they were requested, decrypted (one data key for
    all). The caller audits the read."""
    rows = store.session.scalars(
        select(Handover).where(Handover.case_id == case.id).order_by(Handover.id)
    )
    return [handover_details(store, case.patient_id, h) for h in rows]


# --- follow-ups ---------------------------------------------------------------------------------


#: The visit kind of each follow-up and the event that records it.
_FOLLOW_UP_EVENTS = {"follow_up_1": RECORDS_FOLLOW_UP_1, "follow_up_2": RECORDS_FOLLOW_UP_2}


def follow_up_kind(workflow: Workflow, state: str) -> str | None:
    """The follow-up a case in `state` is due ("follow_up_1", then "follow_up_2"): the first
    whose recording event may fire in it; None when neither may."""
    return next(
        (kind for kind, part in _FOLLOW_UP_EVENTS.items() if workflow.can_fire(part, state)),
        None,
    )


def book_follow_up(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    starts_at: dt.datetime,
    mode: str = "at_unit",
    place: str = "",
    duration_minutes: int = 30,
    send_letter: bool = True,
    now: dt.datetime | None = None,
) -> Visit:
    """Book the next follow-up (at the unit, or a phone time) and queue the follow-up letter.

    Rebooking cancels the earlier booked time and replaces its letter while that is still
    unprinted (queued or held), so the patient gets one letter with the time that holds. A phone
    time may be recorded without a letter (`send_letter=False`: agreed on the phone); a visit at
    the unit always gets one. A time outside the unit's opening hours or on a holiday is not
    refused: the booking page warns first (`visit_time_warnings`) and books once the coach
    confirms.

    Refuses a time in the past, an unknown mode, an empty place for a visit at the unit, and a
    case in which no follow-up can be recorded."""
    _require(actor, case)
    kind = follow_up_kind(workflow, case.state)
    if kind is None:
        raise Invalid("Uppföljning bokas när handlingsplanen har börjat.")
    if mode not in VISIT_MODES:
        raise Invalid("Okänt sätt för uppföljningen.")
    if starts_at.tzinfo is None:
        raise Invalid("Tiden saknar tidszon.")
    if starts_at < (now or dt.datetime.now(dt.UTC)):
        raise Invalid("Tiden har redan passerat.")
    if not 10 <= duration_minutes <= 90:
        raise Invalid("Uppföljningen ska vara 10–90 minuter.")
    place = _text(place, "var uppföljningen är", required=mode == "at_unit")[:200] or "Telefon"
    session = store.session
    for old in session.scalars(
        select(Visit).where(Visit.case_id == case.id, Visit.kind == kind, Visit.status == "booked")
    ):
        old.status = "cancelled"
    _cancel_unprinted(session, case, events=(FOLLOW_UP_LETTER_EVENT,))
    visit = Visit(
        case_id=case.id,
        kind=kind,
        mode=mode,
        starts_at=starts_at,
        duration_minutes=duration_minutes,
        coach_id=actor.user_id,
    )
    session.add(visit)
    session.flush()
    visit.place_enc = seal(store, case.patient_id, "visits", "place", visit.id, place)
    if case.coach_id is None:
        case.coach_id = actor.user_id
    if send_letter or mode != "phone":
        queue_letter(session, case, "follow_up", FOLLOW_UP_LETTER_EVENT)
    session.flush()
    return visit


#: The queue's name for what queued a follow-up letter (no workflow event does).
FOLLOW_UP_LETTER_EVENT = "follow_up_booked"


def _cancel_unprinted(
    session: Session,
    case: Case,
    *,
    letters: tuple[str, ...] = (),
    events: tuple[str, ...] = (),
) -> None:
    """Cancel the case's letters of these templates (or queued by these events) that are not
    printed yet (queued or held): a rebooked time's letter would tell the patient a time that no
    longer holds, and the new letter replaces it. A printed one has gone out; the new one
    follows it."""
    which = QueuedLetter.letter.in_(letters) if letters else QueuedLetter.event.in_(events)
    session.execute(
        update(QueuedLetter)
        .where(
            QueuedLetter.case_id == case.id,
            which,
            QueuedLetter.status.in_(("queued", "held")),
        )
        .values(status="cancelled", hold_reason=None)
        .execution_options(synchronize_session="fetch")
    )


# --- opening hours and holidays -----------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def swedish_holidays(year: int) -> dict[dt.date, str]:
    """Sweden's public holidays in `year` (Swedish names, from the `holidays` package), and the
    three eves that are days off in practice (midsommarafton, julafton, nyårsafton); Sundays are
    left to the unit's open weekdays, and the half days ("från kl. 14.00") are left out."""
    public = Sweden(years=year, include_sundays=False, language="sv")
    eves = Sweden(years=year, include_sundays=False, language="sv", categories=("bank",))
    days = {day: str(name) for day, name in public.items()}
    for day, name in eves.items():
        if "(" not in name:
            days.setdefault(day, str(name))
    return days


def visit_time_warnings(
    session: Session, unit_id: int, starts_at: dt.datetime, duration_minutes: int
) -> list[str]:
    """Why a visit at `starts_at` may not suit the unit, in Swedish for the booking page: a
    public holiday, a weekday the unit is closed, a time outside its opening hours (the unit's
    setting, Monday to Friday 08.00–17.00 by default). Empty when the time suits. These are
    warnings, never refusals: a coach may book a Saturday walk-and-talk."""
    unit = session.get(Unit, unit_id)
    if unit is None or starts_at.tzinfo is None:
        return []
    start = starts_at.astimezone(local_zone())
    end = start + dt.timedelta(minutes=duration_minutes)
    day = start.date()
    warnings = []
    holiday = swedish_holidays(day.year).get(day)
    if holiday:
        when = str(format_date(day, "full", locale="sv_SE"))
        warnings.append(f"{when.capitalize()} är en helgdag ({holiday}).")
    if str(day.isoweekday()) not in unit.open_weekdays:
        warnings.append(f"Vårdcentralen har stängt på {WEEKDAY_NAMES_SV[day.weekday()]}ar.")
    elif start.time() < unit.opens_at or end.date() != day or end.time() > unit.closes_at:
        warnings.append(
            f"Tiden {start:%H.%M}–{end:%H.%M} ligger utanför vårdcentralens öppettider "
            f"{unit.opens_at:%H.%M}–{unit.closes_at:%H.%M}."
        )
    return warnings


def record_follow_up(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    how_it_went: str,
    problem_solving: str = "",
    mode: str = "at_unit",
    expected_version: int | None = None,
) -> Visit:
    """Record follow-up 1 (at the unit or by phone) or, after it, the phone follow-up 2.

    Refuses an empty account of how it has gone and an unknown mode; the workflow decides whether
    a follow-up fits the case's state."""
    _require(actor, case)
    if mode not in VISIT_MODES:
        raise Invalid("Okänt sätt för uppföljningen.")
    text = _text(how_it_went, "hur det har gått", required=True, limit=LONG_TEXT)
    extra = _text(problem_solving, "problemlösningen", limit=LONG_TEXT)
    kind = follow_up_kind(workflow, case.state) or "follow_up_2"
    # In a state where neither follow-up fits, the engine refuses follow-up 2 and says why.
    event = workflow.event_for(_FOLLOW_UP_EVENTS[kind])
    note = text if not extra else f"{text}\n\nProblemlösning: {extra}"
    booked = booked_visit(store, case, kind)
    visit = booked or Visit(
        case_id=case.id,
        kind=kind,
        starts_at=dt.datetime.now(dt.UTC),
        duration_minutes=30,
        coach_id=actor.user_id,
    )
    visit.status = "done"
    visit.mode = mode
    fire(store, case, event, actor, workflow=workflow, note=note, expected_version=expected_version)
    store.session.add(visit)
    store.session.flush()
    if booked is None:
        place = "Telefon" if mode == "phone" else "Vårdcentralen"
        visit.place_enc = seal(store, case.patient_id, "visits", "place", visit.id, place)
    visit.notes_enc = seal(store, case.patient_id, "visits", "notes", visit.id, note)
    store.session.flush()
    return visit


def resolve_screening(
    store: Keystore,
    actor: Actor,
    case: Case,
    *,
    workflow: Workflow,
    decision: str,
    reason: str = "",
    expected_version: int | None = None,
) -> None:
    """The coach resolves a positive screening: continue in the sluss (the event resolving the
    screening), or refer elsewhere (with a reason and a letter); `decision` is "continue" or
    "refer" (the case page's choices). A positive screening never excludes by itself.

    Refuses an unknown decision (Invalid), and whatever the workflow refuses (no positive
    screening to resolve, no reason for referring)."""
    _require(actor, case)
    if decision == "continue":
        fire(
            store,
            case,
            workflow.event_for(RESOLVES_SCREENING),
            actor,
            workflow=workflow,
            expected_version=expected_version,
        )
    elif decision == "refer":
        fire(
            store,
            case,
            workflow.event_for(REFERS_ELSEWHERE),
            actor,
            workflow=workflow,
            reason=reason,
            expected_version=expected_version,
        )
    else:
        raise Invalid("Välj att fortsätta eller att hänvisa vidare.")
