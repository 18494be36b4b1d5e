"""Load and authorise: the one way views get a case (404 outside the user's units)."""

from __future__ import annotations

from flask import abort, g

from slussen.audit import Actor
from slussen.cases.engine import may_act_on
from slussen.cases.models import Case
from slussen.db import db_session


def current_actor() -> Actor:
    """The logged-in user as an Actor (units included)."""
    return Actor.of(g.identity)


def load_case(case_id: int) -> Case:
    """The case if the current user may act on it, else 404 (never 403: no hint it exists)."""
    case = db_session().get(Case, case_id)
    if case is None or not may_act_on(current_actor(), case):
        abort(404)
    return case
