"""`slussen demo`: realistic demo data, loaded once (development only).

`seed` runs the steps in `STEPS` in order, each in its own transaction: units and users, the
hand-made patients, the activity directory, a few cases with answered questionnaires, a hand-over
request waiting for the demo association, and
`--cases N` cases spread over the workflow. Every step goes through the same services the web
pages call, and is idempotent: it checks whether its data exists before creating it, so a rerun
(or a rerun after a crash) adds only what is missing. Demo patients use Skatteverket's test
personnummer only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session

from slussen.config import Settings
from slussen.db import session_scope
from slussen.demo.associations import seed_handover_request
from slussen.demo.cases import seed_cases
from slussen.demo.context import DemoContext
from slussen.demo.directory import seed_directory
from slussen.demo.patients import seed_patients
from slussen.demo.questionnaires import seed_questionnaires
from slussen.demo.units import DEMO_UNITS, DEMO_USERS, seed_units_and_users

DemoStep = Callable[[Session, DemoContext], None]

#: The demo's steps, in order: the demo cases come after the hand-made patients, whose numbers
#: they avoid.
STEPS: tuple[DemoStep, ...] = (
    seed_units_and_users,
    seed_patients,
    seed_directory,
    seed_questionnaires,
    seed_handover_request,
    seed_cases,
)


def logins_file(settings: Settings) -> Path:
    return settings.instance_path / "demo-logins.txt"


def _saved_password(path: Path) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("password: "):
            return line.removeprefix("password: ")
    return None


def seed(app: Flask, *, password: str | None = None, cases: int = 0, units: int = 3) -> list[str]:
    """Run every demo step once and write where the demo logins are; returns the report lines.
    Idempotent. Refuses nothing itself (the CLI refuses a production configuration)."""
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
    for step in STEPS:
        with session_scope(app) as session:
            step(session, ctx)
    users = ", ".join(u[0] for u in DEMO_USERS)
    text = f"Demo logins (development only)\nusers: {users}\npassword: {password}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    ctx.report.append(text.rstrip())
    return ctx.report


__all__ = ["STEPS", "DemoContext", "logins_file", "seed"]
