"""Guards named in the workflow file. Each takes the session, the case an event is fired on and
the event's data (note, reason, visit), and returns None when the event may fire or a Swedish
sentence saying why not. `engine.fire` calls them; nothing else decides these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.cases.models import Case

Guard = Callable[[Session, Case, dict[str, Any]], str | None]


def consented_to_contact(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses contacting a patient who has not consented to it."""
    if case.is_consent_to_contact:
        return None
    return "Patienten har inte samtyckt till att bli kontaktad."


def screening_resolved(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses going on while a positive screening waits for the coach's decision."""
    if case.screening_flag != "positive":
        return None
    return (
        "Screeningen visar att patienten kan behöva annat stöd. Ta ställning först: "
        "fortsätt i slussen eller hänvisa vidare."
    )


def has_action_plan(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses a case whose action plan has no step yet."""
    from slussen.visits.models import ActionPlan, PlanStep

    steps = session.scalar(
        select(func.count(PlanStep.id))
        .join(ActionPlan, PlanStep.plan_id == ActionPlan.id)
        .where(ActionPlan.case_id == case.id)
    )
    if steps:
        return None
    return "Skriv handlingsplanen med minst ett mål och ett steg först."


GUARDS: dict[str, Guard] = {
    "consented_to_contact": consented_to_contact,
    "screening_resolved": screening_resolved,
    "has_action_plan": has_action_plan,
}
