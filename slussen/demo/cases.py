"""Demo cases: `slussen demo --cases N` spreads N cases over every state by firing real events.

Patients get Skatteverket's test personnummer (birth numbers 980–999 only) and invented names.
Each case walks its path (`PATHS`) through the batch forms of the real services: patients are
registered with `register_patients`, cases opened with `engine.open_cases`, and every event fired
with `engine.fire_many` (or the visit services' batch forms), which share the one-case path's
checks, state changes, due dates, letters, history and audit rows. A batch of cases is one
transaction, with a progress bar, so a region-sized demo (100,000 cases over 50 units) takes
about a minute, not hours.

Dates are realistic: each case's path is dated (`plan_timeline`) so that open cases' next due
dates spread around today (overdue, today, this week, later) and closed cases closed some time in
the last year; a due date a timer acts on (`slussen tick`) falls after today.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.accounts.models import Membership, Unit, User
from slussen.audit import SYSTEM, Actor
from slussen.cases import engine
from slussen.cases.engine import (
    CaseRow,
    Firing,
    Opening,
    case_rows_deferred,
    fire,
    fire_many,
    open_cases,
)
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.demo import DemoContext, demo_step
from slussen.identifiers import PersonIdentifier, luhn_check_digit
from slussen.intake.services import check_referral, refer_patient
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.models import PatientLookup
from slussen.patients.services import PatientIdentity, _lookup_digest, register_patients
from slussen.visits.services import (
    Booking,
    PlanInput,
    StepInput,
    book_mapping_visit,
    book_mapping_visits,
    record_follow_up,
    record_follow_ups,
    record_mapping_visit,
    record_mapping_visits,
    save_action_plan,
    save_action_plans,
)

#: How a realistic caseload is spread over the states (weights, summing to 100).
STATE_WEIGHTS = {
    "referred": 6,
    "invited": 10,
    "assessed": 6,
    "mapping_booked": 6,
    "plan_active": 12,
    "followed_up": 12,
    "evaluation_sent": 6,
    "evaluated": 4,
    "closed_completed": 18,
    "closed_declined": 5,
    "closed_no_response": 8,
    "closed_referred_elsewhere": 3,
    "closed_other": 4,
}

#: The main path through the sluss; each open state is reached by a prefix of it.
MAIN_PATH = (
    "invite",
    "register_baseline",
    "book",
    "plan",
    "record_mapping_visit",
    "follow_up",
    "send_evaluation",
    "register_evaluation",
    "complete",
)
#: The events leading from `referred` to each state ("book", "plan" and "follow_up" are the
#: visit services that fire their events).
PATHS: dict[str, tuple[str, ...]] = {
    "referred": (),
    "invited": MAIN_PATH[:1],
    "assessed": MAIN_PATH[:2],
    "mapping_booked": MAIN_PATH[:3],
    "plan_active": MAIN_PATH[:5],
    "followed_up": MAIN_PATH[:6],
    "evaluation_sent": MAIN_PATH[:7],
    "evaluated": MAIN_PATH[:8],
    "closed_completed": MAIN_PATH,
    "closed_declined": ("invite", "decline"),
    "closed_no_response": ("invite", "close_no_response"),
    "closed_referred_elsewhere": ("invite", "register_baseline", "refer_elsewhere"),
    "closed_other": ("close_other",),
}

FIRST_NAMES = (
    "Anna",
    "Eva",
    "Maria",
    "Karin",
    "Sara",
    "Lena",
    "Kerstin",
    "Ingrid",
    "Aisha",
    "Noor",
    "Lars",
    "Erik",
    "Per",
    "Karl",
    "Johan",
    "Anders",
    "Ali",
    "Mohammed",
    "Gösta",
    "Åke",
    "Östen",
    "Märta",
    "Björn",
    "Sven",
)
LAST_NAMES = (
    "Lindqvist",
    "Ekström",
    "Åberg",
    "Sjöholm",
    "Nyberg",
    "Björklund",
    "Hedlund",
    "Karimi",
    "Haddad",
    "Öberg",
    "Wikström",
    "Dahl",
    "Forsberg",
    "Söderlund",
)
STREETS = (
    "Solrosvägen",
    "Tallstigen",
    "Kvarngatan",
    "Hamngatan",
    "Björkvägen",
    "Ängsgatan",
    "Stationsvägen",
    "Skolgatan",
    "Vallgatan",
    "Parkvägen",
    "Lindvägen",
    "Åsgatan",
)
TOWNS = (
    ("722 19", "Västerås"),
    ("731 32", "Köping"),
    ("733 30", "Sala"),
    ("724 60", "Västerås"),
    ("725 92", "Västerås"),
    ("735 31", "Surahammar"),
)
#: What the path's steps fire ("plan" fires nothing: the plan is written at the visit).
STEP_EVENTS = {"book": "book_mapping_visit", "follow_up": "record_follow_up"}
#: Events the daily `slussen tick` fires when their due date falls; the demo fires them as system.
SYSTEM_EVENTS = frozenset({"send_evaluation", "close_no_response"})
#: The note or reason an event is given (events that require one, and the follow-up).
STEP_NOTES = {
    "decline": "Vill inte delta just nu.",
    "close_other": "Flyttar till annan ort.",
    "refer_elsewhere": "Behöver kontakt med psykiatrin.",
    "record_follow_up": "Har varit med två gånger.",
}
REASONS = (
    "Vill gärna träffa fler människor.",
    "Känner sig ensam sedan flytten.",
    "Har svårt att komma ut efter sjukskrivningen.",
    "Saknar sammanhang efter pensionen.",
)
PLAN_GOALS = "Träffa andra varje vecka."
PLAN_STEP = "Prova promenadgruppen på tisdagar."
VISIT_PLACE = "Vårdcentralen, samtalsrum 2"
#: Days between the previous event and this one (low, high), roughly when each happens.
GAPS = {
    "invite": (0, 3),
    "register_baseline": (5, 25),
    "book_mapping_visit": (1, 7),
    "send_evaluation": (0, 2),  # after the six-month evaluation due date
    "register_evaluation": (5, 25),
    "complete": (1, 14),
    "decline": (1, 20),
    "close_no_response": (0, 1),  # after the 28-day no_response due date
    "close_other": (1, 20),
    "refer_elsewhere": (1, 10),
}
#: Cases per transaction.
BATCH_SIZE = 2500
#: SQLite page cache while seeding (KiB).
SQLITE_CACHE_KIB = 256 * 1024
EXTRA_UNIT_TOWNS = ("Arboga", "Fagersta", "Kungsör", "Norberg", "Skinnskatteberg", "Hallstahammar")


def test_series_personnummer(n: int) -> str:
    """The n-th personnummer of Skatteverket's test series (birth numbers 980–999 only):
    20 per birth date, dates from 1944 on (after the hand-made demo patients' range is avoided
    by `seed_cases`)."""
    birth = dt.date(1944, 1, 1) + dt.timedelta(days=n // 20)
    serial = 980 + n % 20
    nine = f"{birth:%y%m%d}{serial}"
    return f"{birth:%Y%m%d}{serial}{luhn_check_digit(nine)}"


def _identifier(value: str) -> PersonIdentifier:
    return PersonIdentifier(kind="pnr", value=value, issuer="1.2.752.129.2.1.3.1")


def plan_states(count: int, rng: random.Random) -> list[str]:
    """`count` states drawn with STATE_WEIGHTS, every state present when count ≥ 13."""
    states = list(STATE_WEIGHTS)
    chosen = states[: min(count, len(states))]
    chosen += rng.choices(states, weights=list(STATE_WEIGHTS.values()), k=count - len(chosen))
    rng.shuffle(chosen)
    return chosen


def demo_identity(number: int, rng: random.Random, pnr: str | None = None) -> PatientIdentity:
    """An invented patient with the `number`-th test-series personnummer (`pnr`, if known)."""
    postcode, town = TOWNS[number % len(TOWNS)]
    return PatientIdentity(
        identifier=_identifier(pnr or test_series_personnummer(number)),
        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        street=f"{rng.choice(STREETS)} {rng.randint(1, 60)}",
        postcode=postcode,
        town=town,
        phone=f"070-{rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        preferred_language="en" if number % 17 == 0 else "sv",
    )


def step_actor(step: str, coach: Actor) -> Actor:
    """Who takes a step of the path: the system for what `slussen tick` fires, else the coach."""
    return SYSTEM if STEP_EVENTS.get(step, step) in SYSTEM_EVENTS else coach


def seed_case(
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit_id: int,
    state: str,
    number: int,
    rng: random.Random,
) -> Case:
    """One demo case brought to `state` by the one-case services and events, as the batches
    (`seed_batch`) bring many; the tests compare the two."""
    case = refer_patient(
        store,
        coach,
        workflow=workflow,
        identity=demo_identity(number, rng),
        unit_id=unit_id,
        channel=rng.choice(("staff_flag", "self_referral", "phone", "message_1177")),
        reason=REASONS[0],
        is_consent_to_contact=True,
    ).case
    visit_day = dt.datetime(2030, 1, 7, 9, tzinfo=dt.UTC) + dt.timedelta(hours=number % 500)
    for step in PATHS[state]:
        if step == "book":
            book_mapping_visit(
                store, coach, case, workflow=workflow, starts_at=visit_day, place=VISIT_PLACE
            )
        elif step == "plan":
            save_action_plan(
                store, coach, case, goals=PLAN_GOALS, steps=[StepInput(text=PLAN_STEP)]
            )
        elif step == "record_mapping_visit":
            record_mapping_visit(store, coach, case, workflow=workflow)
        elif step == "follow_up":
            record_follow_up(
                store,
                coach,
                case,
                workflow=workflow,
                how_it_went=STEP_NOTES["record_follow_up"],
            )
        else:
            actor = step_actor(step, coach)
            fire(store, case, step, actor, workflow=workflow, reason=STEP_NOTES.get(step))
    return case


# --- dating a path ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """A case's path with days: when it was opened, the day of each step, the due dates it is
    left with, and the day of its mapping visit (when booked)."""

    opened: dt.date
    days: list[dt.date]
    due: dict[str, dt.date]
    visit_day: dt.date | None


def replay(
    workflow: Workflow, state: str, opened: dt.date, gaps: Sequence[int], visit_lead: int
) -> Timeline:
    """Date the path to `state` from `opened`: `gaps[i]` days before the i-th step, except that
    steps which happen when a due date falls (a follow-up, the evaluation, closing for no
    response) take that date, and the visit is `visit_lead` days after booking. The due dates
    come from the engine's own `outcome`, as firing will set them."""
    due = engine.opening_due(workflow, opened)
    current = workflow.initial
    day = opened
    days: list[dt.date] = []
    visit_day: dt.date | None = None
    for step, gap in zip(PATHS[state], gaps, strict=False):
        event = STEP_EVENTS.get(step, step)
        if step == "plan" or event == "record_mapping_visit":
            day = visit_day or day
        elif event == "record_follow_up":
            day = due.get("follow_up_1", day) + dt.timedelta(days=gap % 4)
        elif event == "send_evaluation":
            day = due.get("evaluation", day) + dt.timedelta(days=gap % 3)
        elif event == "close_no_response":
            day = due.get("no_response", day) + dt.timedelta(days=gap % 2)
        else:
            day = day + dt.timedelta(days=gap)
        days.append(day)
        if step == "plan":
            continue
        exact = {}
        if event == "book_mapping_visit":
            visit_day = day + dt.timedelta(days=visit_lead)
            exact["mapping_visit"] = visit_day
        result = engine.outcome(workflow, workflow.transitions[event], current, due, day, exact)
        current, due = result.to_state, result.due
    return Timeline(opened, days, due, visit_day)


def plan_timeline(workflow: Workflow, state: str, today: dt.date, rng: random.Random) -> Timeline:
    """The path to `state`, dated so that an open case's next due date is overdue, today, later
    this week or later (drawn 12/4/14/70 %; as nothing may happen after today, about 9/3/33/55 %
    come out), and a closed case closed within the last 400 days. Nothing happens after today,
    and no due date a timer acts on (`slussen tick`) falls today or earlier."""
    steps = PATHS[state]
    gaps = [rng.randint(*GAPS.get(STEP_EVENTS.get(s, s), (1, 10))) for s in steps]
    visit_lead = rng.randint(7, 21)
    probe = replay(workflow, state, today, gaps, visit_lead)
    last = probe.days[-1] if probe.days else probe.opened
    timer_dues = {timer.due for timer in workflow.timers}
    shift = 0
    if probe.due:
        name, first_due = min(probe.due.items(), key=lambda item: item[1])
        roll = rng.random()
        if roll < 0.12 and name not in timer_dues:
            target = rng.randint(-21, -1)
        elif roll < 0.16 and name not in timer_dues:
            target = 0
        elif roll < 0.30:
            target = rng.randint(1, 7)
        else:
            target = rng.randint(8, 120)
        shift = (today + dt.timedelta(days=target) - first_due).days
        latest = (today - last).days
        if shift > latest:
            shift = latest - rng.randint(0, 2)
    else:
        shift = (today - dt.timedelta(days=rng.randint(0, 400)) - last).days
    timeline = replay(workflow, state, today + dt.timedelta(days=shift), gaps, visit_lead)
    # Months differ in length, so a shifted path is not exactly the probe moved: correct it.
    for _attempt in range(4):
        last = timeline.days[-1] if timeline.days else timeline.opened
        # A timer's due date today or earlier would be acted on by today's tick: tomorrow at
        # the earliest.
        early = [(today - d).days + 1 for n, d in timeline.due.items() if n in timer_dues]
        if last > today:
            shift -= (last - today).days
        elif early and max(early) > 0 and last < today:
            shift += min(max(early), (today - last).days)
        else:
            break
        timeline = replay(workflow, state, today + dt.timedelta(days=shift), gaps, visit_lead)
    return timeline


def _moment(day: dt.date, rng: random.Random) -> dt.datetime:
    """A working-hours moment (UTC) on `day`."""
    hour, minute = divmod(360 + int(rng.random() * 600), 60)  # 6.00–15.59
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


# --- many cases at once -------------------------------------------------------------------------


@dataclass
class DemoCase:
    """One case of a batch: who, where, its path dated, and (once opened) its row."""

    unit_id: int
    coach: Actor
    state: str
    identity: PatientIdentity
    channel: str
    reason: str
    timeline: Timeline
    #: The moment the case was opened, then of each step (in path order, never decreasing).
    moments: list[dt.datetime]
    row: CaseRow | None = None


def plan_case(
    workflow: Workflow,
    unit_id: int,
    coach: Actor,
    state: str,
    identity: PatientIdentity,
    today: dt.date,
    now: dt.datetime,
    rng: random.Random,
) -> DemoCase:
    """Choose a case's channel and reason and date its path."""
    timeline = plan_timeline(workflow, state, today, rng)
    moments = [min(_moment(timeline.opened, rng), now)]
    for day in timeline.days:
        moments.append(min(max(_moment(day, rng), moments[-1]), now))
    return DemoCase(
        unit_id=unit_id,
        coach=coach,
        state=state,
        identity=identity,
        channel=rng.choice(("staff_flag", "self_referral", "phone", "message_1177")),
        reason=rng.choice(REASONS),
        timeline=timeline,
        moments=moments,
    )


def seed_batch(store: Keystore, workflow: Workflow, cases: Sequence[DemoCase]) -> list[CaseRow]:
    """Bring a batch of planned cases to their states with the batch forms of the real services:
    register the patients and open the cases (as `refer_patient` does for a new patient), then
    take the paths step by step, all cases at the same step together. Raises whatever the
    services refuse; the caller's transaction then writes nothing."""
    by_unit: dict[int, list[DemoCase]] = {}
    for case in cases:
        check_referral(
            case.coach,
            unit_id=case.unit_id,
            channel=case.channel,
            contact_channel="post",
            is_consent_to_contact=True,
        )
        by_unit.setdefault(case.unit_id, []).append(case)
    patients = {}
    for unit_cases in by_unit.values():
        registered = register_patients(
            store,
            unit_cases[0].coach,
            [case.identity for case in unit_cases],
            purpose="remiss",
            unit_ids=[case.unit_id for case in unit_cases],
            at=[case.moments[0] for case in unit_cases],
        )
        patients.update({id(case): new for case, new in zip(unit_cases, registered, strict=True)})
    openings = []
    for case in cases:
        patient = patients[id(case)]
        openings.append(
            Opening(
                actor=case.coach,
                patient_id=patient.patient_id,
                data_key_id=patient.data_key_id,
                unit_id=case.unit_id,
                channel=case.channel,
                is_consent_to_contact=True,
                reason=case.reason,
                flagged_by_id=case.coach.user_id if case.channel == "staff_flag" else None,
                at=case.moments[0],
                today=case.timeline.opened,
            )
        )
    with case_rows_deferred(store):
        rows = open_cases(store, openings, workflow=workflow)
        for case, row in zip(cases, rows, strict=True):
            case.row = row
        _take_paths(store, workflow, cases)
    return rows


def _take_paths(store: Keystore, workflow: Workflow, cases: Sequence[DemoCase]) -> None:
    """Every case's path, all cases at the same step of their paths together."""
    position = 0
    while True:
        groups: dict[str, list[tuple[DemoCase, Firing]]] = {}
        for case in cases:
            steps = PATHS[case.state]
            if position >= len(steps):
                continue
            step = steps[position]
            event = STEP_EVENTS.get(step, step)
            assert case.row is not None
            firing = Firing(
                case.row,
                step_actor(step, case.coach),
                at=case.moments[position + 1],
                today=case.timeline.days[position],
                note=STEP_NOTES["record_follow_up"] if step == "follow_up" else None,
                reason=STEP_NOTES.get(event) if step != "follow_up" else None,
            )
            groups.setdefault(step, []).append((case, firing))
        if not groups:
            break
        for step, group in groups.items():
            _take_step(store, workflow, step, group)
        position += 1


def _take_step(
    store: Keystore, workflow: Workflow, step: str, group: list[tuple[DemoCase, Firing]]
) -> None:
    firings = [firing for _case, firing in group]
    if step == "book":
        bookings = []
        for case, firing in group:
            day = case.timeline.visit_day
            assert day is not None and case.row is not None
            starts_at = dt.datetime(
                day.year, day.month, day.day, 7 + case.row.id % 8, tzinfo=dt.UTC
            )
            bookings.append(Booking(firing, starts_at=starts_at, place=VISIT_PLACE))
        book_mapping_visits(store, bookings, workflow=workflow)
    elif step == "plan":
        plans = [
            PlanInput(f.case, f.actor, PLAN_GOALS, [StepInput(text=PLAN_STEP)], at=f.at)
            for f in firings
        ]
        save_action_plans(store, plans)
    elif step == "record_mapping_visit":
        record_mapping_visits(store, firings, workflow=workflow)
    elif step == "follow_up":
        record_follow_ups(store, firings, workflow=workflow)
    else:
        fire_many(store, firings, step, workflow=workflow)


def _demo_units(session: Session, wanted: int) -> list[Unit]:
    units = list(session.scalars(select(Unit).order_by(Unit.id)))
    for index in range(len(units), wanted):
        town = EXTRA_UNIT_TOWNS[index % len(EXTRA_UNIT_TOWNS)]
        unit = Unit(
            name=f"Vårdcentralen {town} {index + 1}",
            hsa_id=f"SE2321000016-SLD{index + 1:03d}",
            street=f"Vårdvägen {index + 1}",
            postcode="732 30",
            town=town,
            phone="0221-10 00 00",
            phone_hours="vardagar 8.00–10.00",
        )
        session.add(unit)
        units.append(unit)
    session.flush()
    return units[:wanted]


def _unit_coaches(session: Session, units: list[Unit], ctx: DemoContext) -> dict[int, Actor]:
    """One coach per unit (the demo user `coach` works in the first)."""
    from slussen.accounts.services import create_user

    coaches: dict[int, Actor] = {}
    shared_hash: str | None = None
    for unit in units:
        user = session.scalar(
            select(User)
            .join(Membership)
            .where(Membership.unit_id == unit.id, User.role == "coach")
            .limit(1)
        )
        if user is None:
            user = create_user(
                session,
                ctx.settings,
                username=f"coach{unit.id}",
                display_name=f"Hälsocoach {unit.name}",
                role="coach",
                password=ctx.password,
                unit_ids=[unit.id],
                password_hash=shared_hash,
            )
            # Every demo coach has the same password: hash it once (argon2 is slow on purpose).
            shared_hash = user.password_hash
        coaches[unit.id] = Actor(user.id, user.username, "coach", frozenset({unit.id}))
    return coaches


def _batches(total: int, size: int) -> Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


@demo_step
def seed_cases(session: Session, ctx: DemoContext) -> None:
    """Seed `--cases N` cases (skipped when that many demo cases exist already)."""
    from flask import current_app

    existing = int(session.scalar(select(func.count()).select_from(Case)) or 0)
    wanted = ctx.cases
    if wanted <= existing:
        if wanted:
            ctx.report.append(f"Demo cases: {existing} exist already.")
        return
    workflow: Workflow = ctx.app.extensions["slussen.content"].compiled["workflow"]
    units = _demo_units(session, ctx.units)
    coaches = _unit_coaches(session, units, ctx)
    ring = open_key_ring(ctx.settings)
    numbers = _free_numbers(set(session.scalars(select(PatientLookup.digest))), ring)
    # Commit (and so let go of SQLite's write lock) before the batches' own transactions.
    session.commit()
    rng = random.Random(20261123 + existing)  # noqa: S311 - invented demo data, not secrets
    todo = wanted - existing
    states = plan_states(todo, rng)
    factory: Callable[[], Session] = current_app.extensions["slussen.sessionmaker"]
    today = engine.today_local()
    now = dt.datetime.now(dt.UTC)
    with click.progressbar(length=todo, label="Seeding demo cases", show_pos=True) as bar:
        for batch in _batches(todo, BATCH_SIZE):
            planned = []
            for offset in batch:
                unit = units[offset % len(units)]
                number, pnr = next(numbers)
                identity = demo_identity(number, rng, pnr)
                planned.append(
                    plan_case(
                        workflow,
                        unit.id,
                        coaches[unit.id],
                        states[offset],
                        identity,
                        today,
                        now,
                        rng,
                    )
                )
            with factory() as work, work.begin():
                if work.get_bind().dialect.name == "sqlite":
                    # A bigger page cache for this connection only (memory, not durability):
                    # the random keys of the blind index and the audit pseudonyms otherwise
                    # evict each other's pages and every batch gets slower than the last.
                    # And checkpoints every 64 MiB of WAL instead of 4: index pages rewritten
                    # by every batch are copied back once, not each time (durability is the
                    # same: synchronous stays as it is).
                    connection = work.connection()
                    connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=16384")
                seed_batch(Keystore(work, ring), workflow, planned)
            bar.update(len(batch))
    ctx.report.append(f"Demo cases: {todo} seeded over {len(units)} units.")


def _free_numbers(taken: set[str], ring: vault.KeyRing) -> Iterator[tuple[int, str]]:
    """Test-series numbers whose blind index is not `taken` (not the hand-made demo patients,
    not the cases of an earlier, interrupted run)."""
    for n in itertools.count():
        pnr = test_series_personnummer(n)
        if _lookup_digest(ring, _identifier(pnr)) not in taken:
            yield n, pnr
