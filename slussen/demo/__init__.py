"""`slussen demo`: realistic demo data, loaded once.

Every capability adds its part as a function registered with `demo_step`; `seed` runs them in
order. Each step must be idempotent: it checks whether its data exists before creating it. Demo
patients use Skatteverket's test personnummer only.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit, User
from slussen.accounts.services import create_user
from slussen.config import Settings
from slussen.db import session_scope


@dataclass
class DemoContext:
    app: Flask
    settings: Settings
    password: str
    cases: int
    #: How many units the demo region has (at least the three hand-made ones).
    units: int = 3
    report: list[str] = field(default_factory=list)


DemoStep = Callable[[Session, DemoContext], None]
_STEPS: list[DemoStep] = []


def demo_step(step: DemoStep) -> DemoStep:
    """Register a demo step; steps run in the order of DEMO_MODULES (this module's first), in
    registration order within a module, each in its own transaction."""
    _STEPS.append(step)
    return step


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

#: The demo users of SPEC §9: (username, display name, role, units by index into DEMO_UNITS).
DEMO_USERS = [
    ("koordinator", "Karin Samordnare", "coordinator", (0,)),
    ("coach", "Cecilia Hälsocoach", "coach", (0,)),
    ("personal", "Per Sjuksköterska", "staff", (0,)),
    ("utvarderare", "Ulla Utvärderare", "evaluator", ()),
    ("forening", "Fredrik Föreningsrepresentant", "org_rep", ()),
    ("admin", "Ada Administratör", "admin", ()),
]


@demo_step
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


def logins_file(settings: Settings) -> Path:
    return settings.instance_path / "demo-logins.txt"


def _saved_password(path: Path) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("password: "):
            return line.removeprefix("password: ")
    return None


#: Modules whose import registers their demo steps, in order. Each capability adds one line.
DEMO_MODULES = (
    "slussen.demo.patients",
    "slussen.demo.directory",
    "slussen.demo.questionnaires",
    "slussen.demo.cases",
)


def _ordered_steps() -> list[DemoStep]:
    # Import order is not enough: a test (or any code) may import a later module first, and the
    # demo cases must come after the hand-made patients, whose numbers they avoid.
    order = [__name__, *DEMO_MODULES]
    return sorted(
        _STEPS, key=lambda step: order.index(step.__module__) if step.__module__ in order else 0
    )


def seed(app: Flask, *, password: str | None = None, cases: int = 0, units: int = 3) -> list[str]:
    """Run every demo step once; print where the demo logins are. Idempotent."""
    for module in DEMO_MODULES:
        importlib.import_module(module)
    settings: Settings = app.extensions["slussen.settings"]
    path = logins_file(settings)
    if password is None:
        password = _saved_password(path) or secrets.token_urlsafe(15)
    ctx = DemoContext(
        app=app,
        settings=settings,
        password=password,
        cases=cases,
        units=max(units, len(DEMO_UNITS)),
    )
    for step in _ordered_steps():
        with session_scope(app) as session:
            step(session, ctx)
    users = ", ".join(u[0] for u in DEMO_USERS)
    text = f"Demo logins (development only)\nusers: {users}\npassword: {password}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    ctx.report.append(text.rstrip())
    return ctx.report
