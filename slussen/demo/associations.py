"""Demo sluss 2: one patient of the first unit has had the mapping visit, and the coach has asked
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
from slussen.config import local_zone, today_local
from slussen.demo import walk
from slussen.demo.context import DemoContext
from slussen.demo.patients import test_personnummer
from slussen.demo.units import unit_coaches
from slussen.directory.models import Organisation
from slussen.identifiers import parse_person_identifier
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.services import PatientIdentity
from slussen.visits.models import Handover
from slussen.visits.services import request_handover, resolve_screening

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
    identity = PatientIdentity(
        identifier=parse_person_identifier(test_personnummer("19500612", 988)),
        name="Sven Nyberg",
        street="Björkvägen 7",
        postcode="722 31",
        town="Västerås",
        phone="070-111 22 31",
    )
    case = walk.refer(sluss, coach, unit.id, identity, rng)
    walk.invite(sluss, coach, case, rng)
    walk.key_in(sluss, coach, case, "baseline", "lonely")
    if screening_of(store, case) == "positive":  # the coach decides to go on
        resolve_screening(store, coach, case, workflow=sluss.workflow, decision="continue")
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
