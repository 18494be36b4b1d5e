"""Demo cases: `slussen demo --cases N` spreads N cases over every state by firing real events.

Patients get Skatteverket's test personnummer (birth numbers 980–999 only) and invented names.
Work is committed in batches, with a progress bar, so a region-sized demo (100,000 cases over 50
units) is seeded in minutes, not hours.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, Unit, User
from slussen.audit import Actor
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.demo import DemoContext, demo_step
from slussen.identifiers import PersonIdentifier, luhn_check_digit
from slussen.intake.services import refer_patient
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.services import PatientIdentity
from slussen.visits.services import (
    StepInput,
    book_mapping_visit,
    record_follow_up,
    record_mapping_visit,
    save_action_plan,
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

#: The events leading from `referred` to each state ("book", "plan" and "follow_up" are the
#: visit services that fire their events).
PATHS: dict[str, tuple[str, ...]] = {
    "referred": (),
    "invited": ("invite",),
    "assessed": ("invite", "register_baseline"),
    "mapping_booked": ("invite", "register_baseline", "book"),
    "plan_active": ("invite", "register_baseline", "book", "plan", "record_mapping_visit"),
    "followed_up": (
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "follow_up",
    ),
    "evaluation_sent": (
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "follow_up",
        "send_evaluation",
    ),
    "evaluated": (
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "follow_up",
        "send_evaluation",
        "register_evaluation",
    ),
    "closed_completed": (
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "follow_up",
        "send_evaluation",
        "register_evaluation",
        "complete",
    ),
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


def seed_case(
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit_id: int,
    state: str,
    number: int,
    rng: random.Random,
) -> Case:
    """One demo case brought to `state` by the real services and events."""
    postcode, town = TOWNS[number % len(TOWNS)]
    identity = PatientIdentity(
        identifier=_identifier(test_series_personnummer(number)),
        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        street=f"{rng.choice(STREETS)} {rng.randint(1, 60)}",
        postcode=postcode,
        town=town,
        phone=f"070-{rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        preferred_language="en" if number % 17 == 0 else "sv",
    )
    case = refer_patient(
        store,
        coach,
        workflow=workflow,
        identity=identity,
        unit_id=unit_id,
        channel=rng.choice(("staff_flag", "self_referral", "phone", "message_1177")),
        reason="Vill gärna träffa fler människor.",
        is_consent_to_contact=True,
    ).case
    visit_day = dt.datetime(2030, 1, 7, 9, tzinfo=dt.UTC) + dt.timedelta(hours=number % 500)
    for step in PATHS[state]:
        if step == "book":
            book_mapping_visit(
                store,
                coach,
                case,
                workflow=workflow,
                starts_at=visit_day,
                place="Vårdcentralen, samtalsrum 2",
            )
        elif step == "plan":
            save_action_plan(
                store,
                coach,
                case,
                goals="Träffa andra varje vecka.",
                steps=[StepInput(text="Prova promenadgruppen på tisdagar.")],
            )
        elif step == "record_mapping_visit":
            record_mapping_visit(store, coach, case, workflow=workflow)
        elif step == "follow_up":
            record_follow_up(
                store, coach, case, workflow=workflow, how_it_went="Har varit med två gånger."
            )
        else:
            fire(store, case, step, coach, workflow=workflow, reason="Flyttar till annan ort.")
    return case


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
    session.commit()
    ring = open_key_ring(ctx.settings)
    rng = random.Random(20261123 + existing)  # noqa: S311 - invented demo data, not secrets
    todo = wanted - existing
    states = plan_states(todo, rng)
    factory: Callable[[], Session] = current_app.extensions["slussen.sessionmaker"]
    from slussen.patients.demo import DEMO_PATIENTS
    from slussen.patients.demo import test_personnummer as demo_pnr

    taken = {demo_pnr(birth, serial) for birth, serial, *_rest in DEMO_PATIENTS}
    numbers = (
        n
        for n in range(existing, existing + 10 * todo + 100)
        if test_series_personnummer(n) not in taken
    )
    with click.progressbar(length=todo, label="Seeding demo cases", show_pos=True) as bar:
        for batch in _batches(todo, 500):
            with factory() as work, work.begin():
                store = Keystore(work, ring)
                for offset in batch:
                    unit = units[offset % len(units)]
                    seed_case(
                        store,
                        workflow,
                        coaches[unit.id],
                        unit.id,
                        states[offset],
                        next(numbers),
                        rng,
                    )
            bar.update(len(batch))
    ctx.report.append(f"Demo cases: {todo} seeded over {len(units)} units.")
