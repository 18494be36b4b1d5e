"""Load and authorise: the one way views get a case (404 outside the user's units)."""

from __future__ import annotations

from flask import g

from slussen.audit import Actor
from slussen.cases.engine import may_act_on
from slussen.cases.models import Case
from slussen.db import db_session, load_authorised


def current_actor() -> Actor:
    """The logged-in user as an Actor (units included)."""
    return Actor.of(g.identity)


def load_case(case_id: int) -> Case:
    """The case if the current user may act on it; refuses with NotFound (404, never 403: no
    hint that it exists) otherwise."""
    actor = current_actor()
    return load_authorised(
        db_session(),
        Case,
        case_id,
        allowed=lambda case: may_act_on(actor, case),
        message="Ärendet finns inte.",
    )
