"""Guards named in the workflow file: each returns None when the event may fire, or a Swedish
sentence saying why not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.cases.models import Case

Guard = Callable[[Session, Case, dict[str, Any]], str | None]


def consented_to_contact(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    if not case.is_consent_to_contact:
        return "Patienten har inte samtyckt till att bli kontaktad."
    return None


def screening_resolved(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    if case.screening_flag == "positive":
        return (
            "Screeningen visar att patienten kan behöva annat stöd. Ta ställning först: "
            "fortsätt i slussen eller hänvisa vidare."
        )
    return None


def has_action_plan(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    from slussen.visits.models import ActionPlan, PlanStep

    steps = session.scalar(
        select(func.count())
        .select_from(PlanStep)
        .join(ActionPlan, ActionPlan.id == PlanStep.plan_id)
        .where(ActionPlan.case_id == case.id)
    )
    if not steps:
        return "Skriv handlingsplanen med minst ett mål och ett steg först."
    return None


GUARDS: dict[str, Guard] = {
    "consented_to_contact": consented_to_contact,
    "screening_resolved": screening_resolved,
    "has_action_plan": has_action_plan,
}
