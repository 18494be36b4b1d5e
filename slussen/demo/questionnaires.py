"""Demo questionnaires: a few demo patients of the first unit get cases with answered forms, so the
case page, the evaluation and the letters have data; one invited case gets an answer code, printed
in the demo output, for trying /svar.

Idempotent: a patient who has a case already is left alone; only the printed code is new on each
run (a code is stored as a hash, so an earlier one cannot be shown again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, Unit, User
from slussen.audit import SYSTEM, Actor
from slussen.cases.engine import fire, open_case
from slussen.cases.models import Case
from slussen.demo import DemoContext, demo_step
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.models import Patient
from slussen.questionnaires import services
from slussen.questionnaires.definitions import FormDef, Item
from slussen.questionnaires.models import AnswerCode, QuestionnaireResponse
from slussen.questionnaires.scoring import check_answers

#: Demo answers per profile: (item code chooser) → lonelier or less lonely patients.
_PROFILES: dict[str, Callable[[Item], int]] = {
    "lonely": lambda item: item.max_code if item.id != "anxious_yesterday" else 7,
    "middle": lambda item: (item.min_code + item.max_code) // 2,
    "better": lambda item: item.min_code + (item.max_code - item.min_code) // 3,
}


def _answers(form: FormDef, profile: str) -> dict[str, Any]:
    pick = _PROFILES[profile]
    answers: dict[str, Any] = {}
    for index, item in enumerate(form.items):
        if item.type == "text":
            answers[item.id] = "Jag vill gärna hitta något att göra på dagarna."
        elif item.type == "tick":
            answers[item.id] = 1 if index % 3 == 0 else 0
        elif form.id == "ons4":
            # ONS4: low well-being and high anxiety for "lonely", the reverse for "better".
            high = profile == "lonely"
            if item.id == "anxious_yesterday":
                answers[item.id] = 7 if high else 3
            else:
                answers[item.id] = {"lonely": 3, "middle": 5, "better": 7}[profile]
        elif form.id == "ons_loneliness":
            answers[item.id] = {"lonely": 1, "middle": 2, "better": 4}[profile]
        else:
            answers[item.id] = pick(item)
    return answers


def _coach(session: Session, unit: Unit) -> Actor | None:
    user = session.scalar(
        select(User)
        .join(Membership)
        .where(Membership.unit_id == unit.id, User.role == "coach")
        .order_by(User.id)
    )
    return Actor.of(user) if user is not None else None


def _open(store: Keystore, workflow: Any, patient: Patient, unit: Unit, coach: Actor) -> Case:
    case = open_case(
        store,
        SYSTEM,
        workflow=workflow,
        patient_id=patient.id,
        unit_id=unit.id,
        channel="staff_flag",
        is_consent_to_contact=True,
        reason="Berättade vid sitt läkarbesök att hon eller han sällan träffar någon.",
    )
    case.coach_id = coach.user_id
    fire(store, case, "invite", coach, workflow=workflow)
    return case


def _key_in(
    store: Keystore,
    coach: Actor,
    case: Case,
    occasion: str,
    profile: str,
    *,
    workflow: Any,
    forms: list[FormDef],
) -> None:
    for form in forms:
        services.key_in_paper(
            store,
            coach,
            case,
            form,
            occasion,
            _answers(form, profile),
            workflow=workflow,
            forms=forms,
        )


def _answer_online(
    store: Keystore, case: Case, profile: str, *, workflow: Any, forms: list[FormDef]
) -> None:
    services.create_answer_code(store.session, case, "baseline")
    row = store.session.scalars(
        select(AnswerCode).where(AnswerCode.case_id == case.id).order_by(AnswerCode.id.desc())
    ).first()
    assert row is not None
    for form in forms:
        checked = check_answers(form, _answers(form, profile), require=True)
        services.save_draft(store, row, form, checked.answers)
    services.submit_online(store, row, workflow=workflow, forms=forms)


@demo_step
def seed_questionnaires(session: Session, ctx: DemoContext) -> None:
    from slussen.visits.services import (
        StepInput,
        book_mapping_visit,
        record_mapping_visit,
        resolve_screening,
        save_action_plan,
    )

    content = ctx.app.extensions["slussen.content"]
    workflow = content.compiled["workflow"]
    all_forms = content.compiled["forms"]
    demo_forms = ctx.settings.use_demo_forms
    baseline = services.occasion_forms(workflow, all_forms, "baseline", demo_forms=demo_forms)
    six_month = services.occasion_forms(workflow, all_forms, "six_month", demo_forms=demo_forms)
    unit = session.scalar(select(Unit).order_by(Unit.id))
    if unit is None:
        return
    coach = _coach(session, unit)
    if coach is None:
        return
    store = Keystore(session, open_key_ring(ctx.settings))
    patients = list(
        session.scalars(
            select(Patient).where(Patient.registered_unit_id == unit.id).order_by(Patient.id)
        )
    )[:4]
    has_case = set(
        session.scalars(
            select(Case.patient_id).where(Case.patient_id.in_([p.id for p in patients]))
        )
    )
    created = 0
    invited: Case | None = None
    for index, patient in enumerate(patients):
        if patient.id in has_case:
            continue
        created += 1
        case = _open(store, workflow, patient, unit, coach)
        if index == 0:  # paper answers, middle scores: assessed
            _key_in(store, coach, case, "baseline", "middle", workflow=workflow, forms=baseline)
        elif index == 1:  # online answers, screen positive when the DEMO Mini-SPIN is on
            _answer_online(store, case, "lonely", workflow=workflow, forms=baseline)
        elif index == 2:  # the whole sluss: baseline lonely, six months later better
            _key_in(store, coach, case, "baseline", "lonely", workflow=workflow, forms=baseline)
            if case.screening_flag == "positive":  # the coach decides to go on
                resolve_screening(store, coach, case, workflow=workflow, decision="continue")
            book_mapping_visit(
                store,
                coach,
                case,
                workflow=workflow,
                starts_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                place="Vårdcentralen, rum 3",
            )
            save_action_plan(
                store,
                coach,
                case,
                goals="Träffa andra en gång i veckan",
                steps=[StepInput(text="Gå med i promenadgruppen på torsdagar")],
            )
            record_mapping_visit(store, coach, case, workflow=workflow)
            fire(store, case, "send_evaluation", coach, workflow=workflow)
            _key_in(store, coach, case, "six_month", "better", workflow=workflow, forms=six_month)
        else:  # invited, waiting: the printed code answers for this one
            invited = case
        session.flush()
    if invited is None:
        invited = next(
            (
                c
                for c in session.scalars(
                    select(Case)
                    .where(Case.unit_id == unit.id, Case.state == "invited")
                    .order_by(Case.id)
                )
                if session.scalar(
                    select(QuestionnaireResponse.id).where(QuestionnaireResponse.case_id == c.id)
                )
                is None
            ),
            None,
        )
    ctx.report.append(f"Demo cases with questionnaires created now: {created}.")
    if invited is not None:
        code = services.create_answer_code(session, invited, "baseline")
        ctx.report.append(
            f"Answer code of a demo letter (case {invited.reference}): {code} "
            f"(try it at /svar or {services.answer_url(code, 'http://127.0.0.1:5000')})."
        )
