"""Demo sluss 2: one demo case of the first unit has had the mapping visit, and the coach has asked
Frivilligcentralen (which the demo user `forening` represents) to meet them at the first
occasion. So `make run` shows the association's start page with one request waiting for an
answer, and the coach's case with the request.

Idempotent: nothing is added when the organisation has a hand-over request already.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit
from slussen.cases.engine import screening_of
from slussen.cases.models import Case
from slussen.config import local_zone, today_local
from slussen.demo import walk
from slussen.demo.context import DemoContext
from slussen.demo.units import unit_coaches
from slussen.directory.models import Organisation
from slussen.keystore import Keystore, open_key_ring
from slussen.visits.models import Handover
from slussen.visits.services import BOOKS_MAPPING_VISIT, request_handover

#: The organisation the demo association user represents (slussen.demo.directory).
ORGANISATION = "Frivilligcentralen"


def seed_handover_request(session: Session, ctx: DemoContext) -> None:
    unit = session.scalar(select(Unit).order_by(Unit.id))
    organisation = session.scalar(select(Organisation).where(Organisation.name == ORGANISATION))
    if unit is None or organisation is None:
        return
    if session.scalar(select(Handover.id).where(Handover.organisation_id == organisation.id)):
        ctx.report.append("Demo hand-over request exists already.")
        return
    coach = unit_coaches(session, [unit], ctx)[unit.id]
    store = Keystore(session, open_key_ring(ctx.settings))
    sluss = walk.Sluss.of(ctx.app, store, today_local())
    rng = random.Random(20261208)  # noqa: S311 - invented demo data, not secrets
    # The first of the unit's demo cases (slussen.demo.questionnaires) waiting for its mapping
    # visit, with no screening left to decide: the visit is held and the coach asks for sluss 2.
    case = next(
        (
            c
            for c in session.scalars(select(Case).where(Case.unit_id == unit.id).order_by(Case.id))
            if sluss.workflow.can_fire(BOOKS_MAPPING_VISIT, c.state)
            and screening_of(store, c) != "positive"
        ),
        None,
    )
    if case is None:
        return
    now = dt.datetime.now(dt.UTC)
    walk.book_visit(sluss, coach, case, now - dt.timedelta(hours=2), now - dt.timedelta(days=7))
    walk.hold_visit(sluss, coach, case, rng)
    activity = next((a for a in organisation.activities if a.published is not None), None)
    wished = dt.datetime.combine(
        today_local() + dt.timedelta(days=9), dt.time(14, 0), tzinfo=local_zone()
    )
    request_handover(
        store,
        coach,
        case,
        workflow=sluss.workflow,
        organisation_id=organisation.id,
        activity_id=activity.id if activity else None,
        wished_at=wished.astimezone(dt.UTC),
        is_phone_shared=True,
        helps="Vill gärna bli mött vid entrén första gången och sitta nära dörren.",
    )
    session.flush()
    ctx.report.append(
        f"Demo hand-over request: case {case.reference} asks {ORGANISATION} (log in as forening)."
    )
