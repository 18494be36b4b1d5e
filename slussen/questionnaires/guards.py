"""Workflow guards that judge what the questionnaires capability holds (the answers). Same form
as `slussen.cases.guards`: each takes the session, the case an event is fired on and the event's
data, and returns None when the event may fire or a Swedish sentence saying why not.

The answer service fires the events registering an occasion's answers itself when the last form
is in; a coach may also register them by hand (a form the patient left out), but never with no
answers at all: the case would move on without its baseline and screening."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.cases.guards import Guard
from slussen.cases.models import Case
from slussen.questionnaires.models import QuestionnaireResponse


def _has_answers(session: Session, case: Case, occasion: str) -> bool:
    return (
        session.scalar(
            select(QuestionnaireResponse.id)
            .where(
                QuestionnaireResponse.case_id == case.id,
                QuestionnaireResponse.occasion == occasion,
            )
            .limit(1)
        )
        is not None
    )


def baseline_answered(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses registering the baseline answers when no baseline form has been answered or
    keyed in for the case."""
    if _has_answers(session, case, "baseline"):
        return None
    return (
        "Inga svar är registrerade ännu. Registrera patientens svar på formulären först "
        "(på papper eller via svarskoden)."
    )


def six_month_answered(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """Refuses registering the six-month answers when no six-month form has been answered or
    keyed in for the case."""
    if _has_answers(session, case, "six_month"):
        return None
    return (
        "Inga svar på sexmånadersuppföljningen är registrerade ännu. Registrera patientens svar "
        "först (på papper eller via svarskoden)."
    )


GUARDS: dict[str, Guard] = {
    "baseline_answered": baseline_answered,
    "six_month_answered": six_month_answered,
}
