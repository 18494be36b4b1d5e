"""Guards named in the workflow file that judge the case itself (a capability above cases keeps
its own, e.g. `slussen.visits.guards`; `slussen.capabilities` gathers them all). Each takes the
session, the case an event is fired on and the event's data (note, reason, visit, and the case's
unsealed screening result, see `engine.screening_of`), and returns None
when the event may fire or a Swedish sentence saying why not. `engine.fire` calls them; nothing
else decides these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    if data["screening"] != "positive":
        return None
    return (
        "Screeningen visar att patienten kan behöva annat stöd. Ta ställning först: "
        "fortsätt i slussen eller hänvisa vidare."
    )


def screening_positive(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """For resolving a screening: there is a positive one waiting for the coach."""
    if data["screening"] == "positive":
        return None
    return "Det finns ingen positiv screening att ta ställning till."


def screening_not_flagged(session: Session, case: Case, data: dict[str, Any]) -> str | None:
    """For flagging a positive screening: the case is not flagged yet. A screening the coach
    has resolved is not flagged again by later answers."""
    if data["screening"] is None:
        return None
    return "Screeningen är redan flaggad för ärendet."


GUARDS: dict[str, Guard] = {
    "consented_to_contact": consented_to_contact,
    "screening_resolved": screening_resolved,
    "screening_positive": screening_positive,
    "screening_not_flagged": screening_not_flagged,
}
