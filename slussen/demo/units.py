"""Demo units and users: the three hand-made units with the demo users the README lists, and for a
region-sized demo (`--units U`) more units with one coach each."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, Unit, User
from slussen.accounts.services import create_user
from slussen.audit import Actor
from slussen.demo.context import DemoContext

DEMO_UNITS = [
    # Fictional units: the HSA-ids follow the format but belong to no real unit.
    (
        "Vårdcentralen Solgläntan",
        "SE2321000016-SLS1",
        "Gläntvägen 4",
        "722 15",
        "Västerås",
        "021-10 20 30",
        "vardagar 8.00–10.00",
    ),
    (
        "Vårdcentralen Åkerbo",
        "SE2321000016-SLS2",
        "Åkervägen 12",
        "731 30",
        "Köping",
        "0221-40 50 60",
        "vardagar 9.00–11.00",
    ),
    (
        "Hälsocentralen Norrbro",
        "SE2321000016-SLS3",
        "Brogatan 7",
        "733 31",
        "Sala",
        "0224-70 80 90",
        "måndag–torsdag 8.30–10.00",
    ),
]

#: The demo users the README lists: (username, display name, role, units by index into DEMO_UNITS).
DEMO_USERS = [
    ("koordinator", "Karin Samordnare", "coordinator", (0,)),
    ("coach", "Cecilia Hälsocoach", "coach", (0,)),
    ("personal", "Per Sjuksköterska", "staff", (0,)),
    ("utvarderare", "Ulla Utvärderare", "evaluator", ()),
    ("forening", "Fredrik Föreningsrepresentant", "org_rep", ()),
    ("admin", "Ada Administratör", "admin", ()),
]

EXTRA_UNIT_TOWNS = ("Arboga", "Fagersta", "Kungsör", "Norberg", "Skinnskatteberg", "Hallstahammar")


def seed_units_and_users(session: Session, ctx: DemoContext) -> None:
    units = []
    for name, hsa_id, street, postcode, town, phone, hours in DEMO_UNITS:
        unit = session.scalar(select(Unit).where(Unit.hsa_id == hsa_id))
        if unit is None:
            unit = Unit(
                name=name,
                hsa_id=hsa_id,
                street=street,
                postcode=postcode,
                town=town,
                phone=phone,
                phone_hours=hours,
            )
            session.add(unit)
            session.flush()
        units.append(unit)
    created = 0
    for username, display_name, role, unit_indexes in DEMO_USERS:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            continue
        create_user(
            session,
            ctx.settings,
            username=username,
            display_name=display_name,
            role=role,
            password=ctx.password,
            unit_ids=[units[i].id for i in unit_indexes],
        )
        created += 1
    ctx.report.append(f"Units: {len(units)}; demo users created now: {created}.")


def demo_units(session: Session, wanted: int) -> list[Unit]:
    """The first `wanted` units, made up as needed beyond the hand-made ones."""
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


def unit_coaches(session: Session, units: list[Unit], ctx: DemoContext) -> dict[int, Actor]:
    """One coach per unit (the demo user `coach` works in the first), created as needed."""
    coaches: dict[int, Actor] = {}
    shared_hash: str | None = None
    for unit in units:
        user = session.scalar(
            select(User)
            .join(Membership)
            .where(Membership.unit_id == unit.id, User.role == "coach")
            .order_by(User.id)
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
