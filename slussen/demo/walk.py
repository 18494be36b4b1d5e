"""Taking a demo case along the sluss, one step at a time, through the services the web pages
call: `intake.services.refer_patient`, `cases.services.take_case`, the questionnaire answer
services, the visit services and, for the events no service wraps (the invitation, sending the
evaluation, closing), `engine.fire`.

The demo never names a state or an event: the services choose their own events, and the plain
events are found in the workflow's transition table: the one event that moves a case on without
ending it or needing data (`forward_event`), or an event that ends the case (`closing_events`).
So a region's renamed workflow works here too.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import select

from slussen.audit import PUBLIC, SYSTEM, Actor
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.services import take_case
from slussen.cases.workflow import Transition, Workflow, add_duration
from slussen.intake.services import refer_patient
from slussen.keystore import Keystore
from slussen.patients.services import PatientIdentity
from slussen.questionnaires import codes
from slussen.questionnaires import services as answers
from slussen.questionnaires.definitions import FormDef, Item, barrier_ids, interest_areas
from slussen.questionnaires.models import AnswerCode
from slussen.questionnaires.scoring import check_answers
from slussen.visits.services import (
    ASSOCIATION_OUTCOMES,
    Mapping,
    NetworkInput,
    StepInput,
    answer_handover,
    arrange_handover_meeting,
    book_mapping_visit,
    record_follow_up,
    record_handover_outcome,
    record_mapping_visit,
    request_handover,
    save_action_plan,
    save_mapping,
)

#: How a referral reaches the unit (the channel of the case).
CHANNELS = ("staff_flag", "self_referral", "phone", "message_1177")
REASONS = (
    "Vill gärna träffa fler människor.",
    "Känner sig ensam sedan flytten.",
    "Har svårt att komma ut efter sjukskrivningen.",
    "Saknar sammanhang efter pensionen.",
)
#: Why a coach closes a case, for the closing events that ask for a reason.
CLOSING_REASONS = (
    "Vill inte delta just nu.",
    "Flyttar till annan ort.",
    "Behöver kontakt med psykiatrin.",
)
FOLLOW_UP_NOTES = (
    "Har varit med två gånger.",
    "Har provat promenadgruppen och vill fortsätta.",
    "Har inte kommit i väg än; vi pratade om vad som hindrar.",
)
PLAN_GOALS = "Träffa andra varje vecka."
PLAN_STEP = "Prova promenadgruppen på tisdagar."
VISIT_PLACE = "Vårdcentralen, samtalsrum 2"

#: Demo answers per profile: (item code chooser) → lonelier or less lonely patients.
_PROFILES: dict[str, Callable[[Item], int]] = {
    "lonely": lambda item: item.max_code if item.id != "anxious_yesterday" else 7,
    "middle": lambda item: (item.min_code + item.max_code) // 2,
    "better": lambda item: item.min_code + (item.max_code - item.min_code) // 3,
}


def form_answers(form: FormDef, profile: str) -> dict[str, Any]:
    """Answers to `form` as a lonelier ("lonely"), "middle" or less lonely ("better") patient
    would give them."""
    pick = _PROFILES[profile]
    result: dict[str, Any] = {}
    for index, item in enumerate(form.items):
        if item.type == "text":
            result[item.id] = "Jag vill gärna hitta något att göra på dagarna."
        elif item.type == "tick":
            result[item.id] = 1 if index % 3 == 0 else 0
        elif form.id == "ons4":
            # ONS4: low well-being and high anxiety for "lonely", the reverse for "better".
            high = profile == "lonely"
            if item.id == "anxious_yesterday":
                result[item.id] = 7 if high else 3
            else:
                result[item.id] = {"lonely": 3, "middle": 5, "better": 7}[profile]
        elif form.id == "ons_loneliness":
            result[item.id] = {"lonely": 1, "middle": 2, "better": 4}[profile]
        else:
            result[item.id] = pick(item)
    return result


@dataclass(frozen=True)
class Sluss:
    """What every step needs: the session and key ring, the workflow, the forms of each
    occasion, the mapping's choices, and the local day."""

    store: Keystore
    workflow: Workflow
    baseline: list[FormDef]
    six_month: list[FormDef]
    screening: frozenset[str]
    interests: tuple[str, ...]
    barriers: tuple[str, ...]
    today: dt.date

    @classmethod
    def of(cls, app: Flask, store: Keystore, today: dt.date) -> Sluss:
        content = app.extensions["slussen.content"]
        settings = app.extensions["slussen.settings"]
        workflow: Workflow = content.compiled["workflow"]
        forms = content.compiled["forms"]
        demo_forms = settings.use_demo_forms
        return cls(
            store=store,
            workflow=workflow,
            baseline=answers.occasion_forms(workflow, forms, "baseline", demo_forms=demo_forms),
            six_month=answers.occasion_forms(workflow, forms, "six_month", demo_forms=demo_forms),
            screening=frozenset(answers.screening_ids(workflow)),
            interests=tuple(interest_areas()),
            barriers=barrier_ids(),
            today=today,
        )


# --- the workflow's plain events ------------------------------------------------------------------


def _may_fire(t: Transition) -> bool:
    return bool({"coach", "system"} & t.roles)


def forward_event(workflow: Workflow, state: str) -> Transition:
    """The one event that moves a case on from `state` without data and without ending it (the
    invitation, sending the evaluation). Refuses (ValueError) a workflow where that is not one
    event: the demo does not guess."""
    found = [
        t
        for t in workflow.events_from(state)
        if t.target(state) != state
        and not t.requires
        and not workflow.states[t.target(state)].is_terminal
        and _may_fire(t)
    ]
    if len(found) != 1:
        raise ValueError(f"the demo cannot tell which event moves a case on from {state!r}")
    return found[0]


def closing_events(workflow: Workflow, state: str) -> list[Transition]:
    """The events that end a case in `state`: first those that need no reason (completing,
    closing for no response), then the others in the workflow file's order."""
    found = [
        t
        for t in workflow.events_from(state)
        if workflow.states[t.target(state)].is_terminal and _may_fire(t)
    ]
    return sorted(found, key=lambda t: bool(t.requires))


def _actor_for(workflow: Workflow, t: Transition, state: str, coach: Actor) -> Actor:
    """The system fires what `slussen tick` fires from this state; the coach the rest."""
    by_timer = any(timer.event == t.event and state in timer.states for timer in workflow.timers)
    return SYSTEM if by_timer and "system" in t.roles else coach


def _counting_from(
    workflow: Workflow, t: Transition, today: dt.date, rng: random.Random
) -> dt.date:
    """The day the event's due dates count from: up to a few weeks back, so that due dates
    spread over the coming weeks, but never so far that a due date a timer acts on falls today
    or earlier (today's `slussen tick` would act on it at once)."""
    timer_dues = {timer.due for timer in workflow.timers}
    room = [
        (add_duration(today, duration) - today).days - 1
        for name, duration in t.due.items()
        if name in timer_dues
    ]
    return today - dt.timedelta(days=rng.randint(0, min(room, default=0)))


def fire_plain(sluss: Sluss, coach: Actor, case: Case, t: Transition, rng: random.Random) -> None:
    """Fire a plain event the way a coach's button or the daily tick does, with a reason when
    the event asks for one."""
    actor = _actor_for(sluss.workflow, t, case.state, coach)
    fire(
        sluss.store,
        case,
        t.event,
        actor,
        workflow=sluss.workflow,
        today=_counting_from(sluss.workflow, t, sluss.today, rng),
        reason=rng.choice(CLOSING_REASONS)
        if "reason" in t.requires or t.is_confirmed_step
        else None,
        note=rng.choice(FOLLOW_UP_NOTES) if "note" in t.requires else None,
        # The coach confirms a closing step at its button, with a reason.
        confirmed=True,
    )


# --- the steps ----------------------------------------------------------------------------------


def refer(
    sluss: Sluss,
    coach: Actor,
    unit_id: int,
    identity: PatientIdentity,
    rng: random.Random,
) -> Case:
    """A referral as the intake pages make it: the patient themself (self-referral) or the
    coach on the patient's behalf."""
    channel = rng.choice(CHANNELS)
    case = refer_patient(
        sluss.store,
        PUBLIC if channel == "self_referral" else coach,
        workflow=sluss.workflow,
        identity=identity,
        unit_id=unit_id,
        channel=channel,
        reason=rng.choice(REASONS),
        is_consent_to_contact=True,
    ).case
    # The demo's people are new, so every referral opens a case in its own unit.
    assert case is not None
    return case


def invite(sluss: Sluss, coach: Actor, case: Case, rng: random.Random) -> None:
    """The coach takes the case and sends the invitation."""
    take_case(coach, case)
    fire_plain(sluss, coach, case, forward_event(sluss.workflow, case.state), rng)


def key_in(
    sluss: Sluss,
    coach: Actor,
    case: Case,
    occasion: str,
    profile: str,
    *,
    screening_profile: str = "better",
) -> None:
    """The coach keys in the occasion's returned paper forms; the answer service moves the case
    on when the last one is in. Screening forms get `screening_profile` ("better" screens
    negative, so the case needs no decision about the screening)."""
    forms = sluss.baseline if occasion == "baseline" else sluss.six_month
    for form in forms:
        chosen = screening_profile if form.id in sluss.screening else profile
        answers.key_in_paper(
            sluss.store,
            coach,
            case,
            form,
            occasion,
            form_answers(form, chosen),
            workflow=sluss.workflow,
            forms=forms,
        )


def answer_online(sluss: Sluss, case: Case, profile: str) -> None:
    """The patient answers the baseline forms online with the code from the invitation."""
    session = sluss.store.session
    codes.create_answer_code(session, sluss.store.ring, case, "baseline")
    row = session.scalars(
        select(AnswerCode).where(AnswerCode.case_id == case.id).order_by(AnswerCode.id.desc())
    ).first()
    assert row is not None
    for form in sluss.baseline:
        checked = check_answers(form, form_answers(form, profile), require=True)
        answers.save_draft(sluss.store, row, form, checked.answers)
    answers.submit_online(sluss.store, row, workflow=sluss.workflow, forms=sluss.baseline)


def book_visit(
    sluss: Sluss, coach: Actor, case: Case, starts_at: dt.datetime, booked_at: dt.datetime
) -> None:
    """The coach books the mapping visit at `starts_at`, at `booked_at` (a visit in the past
    was booked before it)."""
    book_mapping_visit(
        sluss.store,
        coach,
        case,
        workflow=sluss.workflow,
        starts_at=starts_at,
        place=VISIT_PLACE,
        now=booked_at,
    )


def hold_visit(sluss: Sluss, coach: Actor, case: Case, rng: random.Random) -> None:
    """At the mapping visit: the network, interests and barriers, the action plan, and the
    visit recorded as held."""
    mapping = Mapping(
        network=[
            NetworkInput("Dottern", "family", 1, "weekly"),
            NetworkInput("Grannen på tredje våningen", "neighbour", 2, "rarely", True),
        ],
        interests=rng.sample(sluss.interests, min(2, len(sluss.interests))),
        barriers=rng.sample(sluss.barriers, min(1, len(sluss.barriers))),
        notes="Vill helst börja med något på dagtid.",
    )
    save_mapping(
        sluss.store,
        coach,
        case,
        mapping,
        workflow=sluss.workflow,
        known_interests=set(sluss.interests),
        known_barriers=set(sluss.barriers),
    )
    save_action_plan(
        sluss.store,
        coach,
        case,
        workflow=sluss.workflow,
        goals=PLAN_GOALS,
        steps=[StepInput(text=PLAN_STEP)],
    )
    record_mapping_visit(sluss.store, coach, case, workflow=sluss.workflow)


#: Associations a demo case is handed over to (by name: the demo association's page shows only
#: the hand-made request, slussen.demo.associations).
HANDOVER_ORGANISATIONS = ("Korpen", "Svenska kyrkan", "Biblioteket", "Röda Korset")


def hand_over(sluss: Sluss, coach: Actor, case: Case, rng: random.Random) -> None:
    """Sluss 2: the coach asks an association to meet the patient, it accepts and names the
    companion and the meeting, and records how the first occasion went."""
    handover = request_handover(
        sluss.store,
        coach,
        case,
        workflow=sluss.workflow,
        organisation_name=rng.choice(HANDOVER_ORGANISATIONS),
        helps="Vill bli mött vid entrén.",
    )
    answer_handover(sluss.store, coach, case, handover, workflow=sluss.workflow, is_accepted=True)
    arrange_handover_meeting(
        sluss.store,
        coach,
        case,
        handover,
        companion_name=rng.choice(("Eva", "Lars", "Noor", "Åke")),
        meeting_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=rng.randint(1, 20)),
        meeting_place="Vid entrén",
    )
    record_handover_outcome(
        sluss.store,
        coach,
        case,
        handover,
        workflow=sluss.workflow,
        outcome=rng.choice(ASSOCIATION_OUTCOMES),
    )


def follow_up(sluss: Sluss, coach: Actor, case: Case, rng: random.Random) -> None:
    """The coach records a follow-up (the visit service knows whether it is the first or the
    second)."""
    record_follow_up(
        sluss.store,
        coach,
        case,
        workflow=sluss.workflow,
        how_it_went=rng.choice(FOLLOW_UP_NOTES),
        mode=rng.choice(("at_unit", "phone")),
    )


def send_evaluation(sluss: Sluss, coach: Actor, case: Case, rng: random.Random) -> None:
    """The six-month evaluation goes out (as the daily tick sends it)."""
    fire_plain(sluss, coach, case, forward_event(sluss.workflow, case.state), rng)


def close(sluss: Sluss, coach: Actor, case: Case, choice: int, rng: random.Random) -> None:
    """End the case with its `choice`-th closing event (counted round, see `closing_events`)."""
    events = closing_events(sluss.workflow, case.state)
    fire_plain(sluss, coach, case, events[choice % len(events)], rng)
