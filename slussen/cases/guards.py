"""Guards named in the workflow file that judge the case itself (a capability above cases keeps
its own, e.g. `slussen.visits.guards`; `slussen.capabilities` gathers them all). Each takes the
cases an event is fired on (one for `fire`, many for `fire_many`) and returns, per case, None when
the event may fire or a Swedish sentence saying why not. One function serves both paths, so a
batch can never be judged by other rules.

A case here is anything with the attributes the guard reads: the ORM `Case`, or the engine's
`CaseRow` for batches (`id`, `is_consent_to_contact`, `screening_flag`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from slussen.cases.models import Case

Guard = Callable[[Session, Sequence[Any], Sequence[dict[str, Any]]], list[str | None]]


def consented_to_contact(
    session: Session, cases: Sequence[Case], data: Sequence[dict[str, Any]]
) -> list[str | None]:
    refusal = "Patienten har inte samtyckt till att bli kontaktad."
    return [None if case.is_consent_to_contact else refusal for case in cases]


def screening_resolved(
    session: Session, cases: Sequence[Case], data: Sequence[dict[str, Any]]
) -> list[str | None]:
    refusal = (
        "Screeningen visar att patienten kan behöva annat stöd. Ta ställning först: "
        "fortsätt i slussen eller hänvisa vidare."
    )
    return [refusal if case.screening_flag == "positive" else None for case in cases]


def screening_positive(
    session: Session, cases: Sequence[Case], data: Sequence[dict[str, Any]]
) -> list[str | None]:
    """For resolving a screening: there is a positive one waiting for the coach."""
    refusal = "Det finns ingen positiv screening att ta ställning till."
    return [None if case.screening_flag == "positive" else refusal for case in cases]


def screening_not_flagged(
    session: Session, cases: Sequence[Case], data: Sequence[dict[str, Any]]
) -> list[str | None]:
    """For flagging a positive screening: the case is not flagged yet. A screening the coach
    has resolved is not flagged again by later answers."""
    refusal = "Screeningen är redan flaggad för ärendet."
    return [None if case.screening_flag is None else refusal for case in cases]


GUARDS: dict[str, Guard] = {
    "consented_to_contact": consented_to_contact,
    "screening_resolved": screening_resolved,
    "screening_positive": screening_positive,
    "screening_not_flagged": screening_not_flagged,
}
