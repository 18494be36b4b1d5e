"""Workflow guards that judge what the visits capability holds (the action plan). Same form as
`slussen.cases.guards`: each takes the cases an event is fired on and returns, per case, None when
the event may fire or a Swedish sentence saying why not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from slussen.cases.guards import Guard
from slussen.cases.models import Case
from slussen.visits.models import ActionPlan, PlanStep

#: How many ids go into one `IN (...)` (well below SQLite's limit on bound parameters).
_IN_CHUNK = 900


def has_action_plan(
    session: Session, cases: Sequence[Case], data: Sequence[dict[str, Any]]
) -> list[str | None]:
    query = (
        select(ActionPlan.case_id)
        .join(PlanStep, PlanStep.plan_id == ActionPlan.id)
        .where(ActionPlan.case_id.in_(bindparam("ids", expanding=True)))
        .group_by(ActionPlan.case_id)
        .having(func.count(PlanStep.id) > 0)
    )
    ids = [case.id for case in cases]
    with_steps: set[int] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        with_steps.update(session.scalars(query, {"ids": ids[start : start + _IN_CHUNK]}))
    refusal = "Skriv handlingsplanen med minst ett mål och ett steg först."
    return [None if case.id in with_steps else refusal for case in cases]


GUARDS: dict[str, Guard] = {"has_action_plan": has_action_plan}
