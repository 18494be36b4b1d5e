"""Workflow guards that judge what the visits capability holds (the action plan). Same form as
`slussen.cases.guards`: each takes the session, the case an event is fired on and the event's
data, and returns None when the event may fire or a Swedish sentence saying why not."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.cases.guards import Guard
from slussen.cases.models import Case
from slussen.visits.models import ActionPlan, PlanStep


def has_action_plan(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses a case whose action plan has no step yet."""
    steps = session.scalar(
        select(func.count(PlanStep.id))
        .join(ActionPlan, PlanStep.plan_id == ActionPlan.id)
        .where(ActionPlan.case_id == case.id)
    )
    if steps:
        return None
    return "Skriv handlingsplanen med minst ett mål och ett steg först."


GUARDS: dict[str, Guard] = {"has_action_plan": has_action_plan}
