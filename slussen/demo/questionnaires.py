"""Demo questionnaires: a few demo patients of the first unit get cases with answered forms, so the
case page, the evaluation and the letters have data; one invited case gets an answer code, printed
in the demo output, for trying /svar.

Idempotent: a patient who has a case already is left alone; only the printed code is new on each
run (a code is stored as a hash, so an earlier one cannot be shown again).
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit
from slussen.cases.engine import screening_of
from slussen.cases.models import Case
from slussen.config import today_local
from slussen.demo import walk
from slussen.demo.context import DemoContext
from slussen.demo.units import unit_coaches
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from slussen.questionnaires import codes
from slussen.questionnaires.models import QuestionnaireResponse
from slussen.visits.services import resolve_screening

#: How many of the first unit's hand-made patients get a case here.
PATIENTS = 4


def seed_questionnaires(session: Session, ctx: DemoContext) -> None:
    unit = session.scalar(select(Unit).order_by(Unit.id))
    if unit is None:
        return
    coach = unit_coaches(session, [unit], ctx)[unit.id]
    store = Keystore(session, open_key_ring(ctx.settings))
    sluss = walk.Sluss.of(ctx.app, store, today_local())
    rng = random.Random(20261123)  # noqa: S311 - invented demo data, not secrets
    patients = list(
        session.scalars(
            select(Patient).where(Patient.registered_unit_id == unit.id).order_by(Patient.id)
        )
    )[:PATIENTS]
    cases = {
        case.patient_id: case
        for case in session.scalars(
            select(Case).where(Case.patient_id.in_([p.id for p in patients])).order_by(Case.id)
        )
    }
    created = 0
    for index, patient in enumerate(patients):
        if patient.id in cases:
            continue
        created += 1
        # The coach refers a patient the unit knows, as the intake page does (the identity is
        # read, audited, to refer by personnummer).
        identity = read_patient(store, coach, patient, purpose="demo data", unit_id=unit.id)
        case = walk.refer(sluss, coach, unit.id, identity, rng)
        cases[patient.id] = case
        walk.invite(sluss, coach, case, rng)
        if index == 0:  # paper answers, middle scores: assessed
            walk.key_in(sluss, coach, case, "baseline", "middle")
        elif index == 1:  # online answers, screen positive when the DEMO Mini-SPIN is on
            walk.answer_online(sluss, case, "lonely")
        elif index == 2:  # the whole sluss: baseline lonely, six months later better
            walk.key_in(sluss, coach, case, "baseline", "lonely", screening_profile="lonely")
            if screening_of(store, case) == "positive":  # the coach decides to go on
                resolve_screening(store, coach, case, workflow=sluss.workflow, decision="continue")
            starts_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            walk.book_visit(sluss, coach, case, starts_at, dt.datetime.now(dt.UTC))
            walk.hold_visit(sluss, coach, case, rng)
            walk.send_evaluation(sluss, coach, case, rng)
            walk.key_in(sluss, coach, case, "six_month", "better")
        # the fourth stays invited, waiting: the printed code answers for it
        session.flush()
    ctx.report.append(f"Demo cases with questionnaires created now: {created}.")
    waiting = cases.get(patients[-1].id) if len(patients) == PATIENTS else None
    if waiting is None or session.scalar(
        select(QuestionnaireResponse.id).where(QuestionnaireResponse.case_id == waiting.id)
    ):
        return
    code = codes.create_answer_code(session, store.ring, waiting, "baseline")
    ctx.report.append(
        f"Answer code of a demo letter (case {waiting.reference}): {code} "
        f"(try it at /svar or {codes.answer_url(code, 'http://127.0.0.1:5000')})."
    )
