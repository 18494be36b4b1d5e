"""Demo cases: `slussen demo --cases N` spreads N cases over the workflow through the services
the web pages call (see `walk`): each case is referred, invited, answers its forms, has its
mapping visit booked and held, is handed over to an association (sluss 2), is followed up,
evaluated and closed, or stops somewhere on the
way. Patients get Skatteverket's test personnummer (birth numbers 980–999 only) and invented
names.

`--cases N` fills the database up to N cases (the hand-made ones count). Case number i is the
same case on every run (its personnummer, unit and path come from i alone), and it exists once
its patient does: a rerun, after a crash or a smaller earlier run, seeds only the missing
numbers. Cases are committed in short slices (`db.in_slices`: 200 cases, or fewer when a slice
takes a quarter of a second), with a progress bar; a case is seeded whole or not at all.

Dates: everything happens now, as the services stamp it. Due dates spread where the services
let the caller say when: mapping visits are booked for days around today (some overdue), and the
invitation and the evaluation count their due dates from up to a few weeks back. Closed cases
are closed today.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.config import today_local
from slussen.db import in_slices, slice_commit
from slussen.demo import walk
from slussen.demo.context import DemoContext
from slussen.demo.patients import demo_personnummer_set
from slussen.demo.units import demo_units, unit_coaches
from slussen.identifiers import PersonIdentifier, luhn_check_digit
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.services import PatientIdentity, find_patient_id

#: How many steps of the sluss follow the referral (listed in `seed_case`); a case takes the
#: first `depth` of them.
DEPTHS = 8

#: How a realistic caseload is spread: (steps taken, closing choice or None for open) → weight,
#: summing to 100. A closing choice counts round the events that may end the case there (see
#: `walk.closing_events`: 0 is the one that needs no reason, such as completing).
SPREAD: dict[tuple[int, int | None], int] = {
    (0, None): 6,
    (1, None): 10,
    (2, None): 6,
    (3, None): 6,
    (4, None): 8,
    (5, None): 4,
    (6, None): 12,
    (7, None): 6,
    (8, None): 4,
    (0, 1): 2,
    (1, 0): 8,
    (1, 1): 2,
    (2, 0): 2,
    (2, 1): 1,
    (3, 1): 1,
    (4, 1): 1,
    (6, 2): 1,
    (7, 0): 4,
    (8, 0): 18,
    (8, 2): 1,
}
#: The first cases cover every place on the way and every closing there is (so a small demo
#: shows every state); then `SPREAD` decides.
FIRST_PLANS: tuple[tuple[int, int | None], ...] = (
    *((depth, None) for depth in range(DEPTHS + 1)),
    (8, 0),
    (1, 0),
    (2, 0),
    (0, 0),
    (0, 1),
)
#: Cases per transaction at most (a slice also ends after `db.SLICE_SECONDS`).
SLICE = 200
#: Seeds the per-case random numbers: case i draws from Random(f"{SEED}:{i}").
SEED = 20261123

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


def test_series_personnummer(n: int) -> str:
    """The n-th personnummer of Skatteverket's test series (birth numbers 980–999 only):
    20 per birth date, dates from 1944 on."""
    birth = dt.date(1944, 1, 1) + dt.timedelta(days=n // 20)
    serial = 980 + n % 20
    nine = f"{birth:%y%m%d}{serial}"
    return f"{birth:%Y%m%d}{serial}{luhn_check_digit(nine)}"


def _identifier(value: str) -> PersonIdentifier:
    return PersonIdentifier(kind="pnr", value=value, issuer="1.2.752.129.2.1.3.1")


@functools.cache
def _hand_made_numbers() -> tuple[int, ...]:
    """Positions in the test series of the hand-made demo patients (demo/patients.py)."""
    taken = demo_personnummer_set()
    found = []
    for pnr in taken:
        birth = dt.date(int(pnr[:4]), int(pnr[4:6]), int(pnr[6:8]))
        n = (birth - dt.date(1944, 1, 1)).days * 20 + int(pnr[8:11]) - 980
        if n >= 0 and test_series_personnummer(n) == pnr:
            found.append(n)
    return tuple(sorted(found))


def case_personnummer(index: int) -> str:
    """Case `index`'s personnummer: the index-th number of the test series that is not a
    hand-made demo patient's."""
    n = index
    for skip in _hand_made_numbers():
        if skip <= n:
            n += 1
    return test_series_personnummer(n)


def demo_identity(index: int, rng: random.Random) -> PatientIdentity:
    """Case `index`'s invented patient."""
    postcode, town = TOWNS[index % len(TOWNS)]
    return PatientIdentity(
        identifier=_identifier(case_personnummer(index)),
        name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        street=f"{rng.choice(STREETS)} {rng.randint(1, 60)}",
        postcode=postcode,
        town=town,
        phone=f"070-{rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        preferred_language="en" if index % 17 == 0 else "sv",
    )


@dataclass(frozen=True)
class Plan:
    """Where case `index` goes: how many steps of the sluss it takes, and how it ends."""

    index: int
    depth: int
    #: None: the case stays open; else which of the closing events ends it.
    closing: int | None


def plan_case(index: int, rng: random.Random) -> Plan:
    """Case `index`'s plan: the first cases cover every place and closing (`FIRST_PLANS`), the
    rest are drawn with `SPREAD`."""
    if index < len(FIRST_PLANS):
        depth, closing = FIRST_PLANS[index]
    else:
        depth, closing = rng.choices(list(SPREAD), weights=list(SPREAD.values()))[0]
    return Plan(index, depth, closing)


def _visit_times(depth: int, today: dt.date, rng: random.Random) -> tuple[dt.datetime, dt.datetime]:
    """When the mapping visit is and when it was booked: a visit still to be held falls from ten
    days ago (overdue on the worklist) to three weeks ahead, a held one in the last two months."""
    days = rng.randint(-10, 21) if depth <= 3 else rng.randint(-60, -1)
    day = today + dt.timedelta(days=days)
    starts_at = dt.datetime(day.year, day.month, day.day, rng.randint(7, 14), tzinfo=dt.UTC)
    return starts_at, min(starts_at, dt.datetime.now(dt.UTC)) - dt.timedelta(
        days=rng.randint(3, 14)
    )


def seed_case(sluss: walk.Sluss, coach: Actor, unit_id: int, index: int) -> Case:
    """Case number `index`, referred and taken along its plan through the services. Raises
    whatever the services refuse (the caller rolls back)."""
    rng = random.Random(f"{SEED}:{index}")  # noqa: S311 - invented demo data, not secrets
    plan = plan_case(index, rng)
    case = walk.refer(sluss, coach, unit_id, demo_identity(index, rng), rng)
    steps: list[Callable[[], None]] = [
        lambda: walk.invite(sluss, coach, case, rng),
        # Some stay screened positive (when the DEMO Mini-SPIN is on), waiting for the coach.
        lambda: walk.key_in(
            sluss,
            coach,
            case,
            "baseline",
            rng.choice(("lonely", "middle", "better")),
            screening_profile="lonely" if plan.depth == 2 and rng.random() < 0.3 else "better",
        ),
        lambda: walk.book_visit(sluss, coach, case, *_visit_times(plan.depth, sluss.today, rng)),
        lambda: walk.hold_visit(sluss, coach, case, rng),
        lambda: walk.hand_over(sluss, coach, case, rng),
        lambda: walk.follow_up(sluss, coach, case, rng),
        lambda: walk.send_evaluation(sluss, coach, case, rng),
        lambda: walk.key_in(sluss, coach, case, "six_month", rng.choice(("middle", "better"))),
    ]
    assert len(steps) == DEPTHS
    for step in steps[: plan.depth]:
        step()
    if plan.depth == 6 and plan.closing is None and rng.random() < 0.4:
        walk.follow_up(sluss, coach, case, rng)  # the phone follow-up too
    if plan.closing is not None:
        walk.close(sluss, coach, case, plan.closing, rng)
    return case


def missing_cases(store: Keystore, wanted: int) -> list[int]:
    """The case numbers below `wanted` not seeded yet (their patient is not registered)."""
    return [
        index
        for index in range(wanted)
        if find_patient_id(store, _identifier(case_personnummer(index))) is None
    ]


def seed_cases(session: Session, ctx: DemoContext) -> None:
    """Seed demo cases until the database holds `--cases N` cases (the hand-made ones count):
    the lowest case numbers not seeded yet."""
    if not ctx.cases:
        return
    ring = open_key_ring(ctx.settings)
    total = int(session.scalar(select(func.count()).select_from(Case)) or 0)
    if total >= ctx.cases:
        ctx.report.append(f"Demo cases: {total} exist already.")
        return
    units = demo_units(session, ctx.units)
    coaches = unit_coaches(session, units, ctx)
    unit_ids = [unit.id for unit in units]
    missing = missing_cases(Keystore(session, ring), ctx.cases)
    # Cases that are not numbered demo cases (the hand-made ones, a user's) count towards N.
    others = total - (ctx.cases - len(missing))
    todo = [index for index in missing if index < ctx.cases - others]
    # Commit (and so let go of SQLite's write lock) before the slices' own transactions.
    session.commit()
    today = today_local()
    sluss = walk.Sluss.of(ctx.app, Keystore(session, ring), today)
    commit = slice_commit(session)

    def seed_one(index: int) -> tuple[int]:
        unit_id = unit_ids[index % len(unit_ids)]
        seed_case(sluss, coaches[unit_id], unit_id, index)
        return (index,)

    def end_slice() -> None:
        nonlocal sluss
        commit()
        # A fresh key cache each slice: it would otherwise grow with the run.
        sluss = dataclasses.replace(sluss, store=Keystore(session, ring))

    with click.progressbar(length=len(todo), label="Seeding demo cases", show_pos=True) as bar:
        # A slice that raises is not committed: the caller's session_scope rolls it back.
        for _index in in_slices(todo, seed_one, commit=end_slice, size=SLICE):
            bar.update(1)
    ctx.report.append(
        f"Demo cases: {len(todo)} seeded now over {len(unit_ids)} units ({total} existed already)."
    )
