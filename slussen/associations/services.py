"""Sluss 2 for the associations: a representative of an organisation (role org_rep, a member of
it through `organisation_members`) sees the hand-over requests addressed to their organisations
and answers them.

What they see of a patient is only what the patient agreed to share when the coach made the
request (first name, phone number with consent, what helps them): never the personnummer,
the address, diagnoses, answers or the coach's notes. Every request shown is in the access log
(one row per request, a list too). `load_request` is the one "load and authorise" helper: a
request of another organisation, or of a closed case, is NotFound (404). The rules of answering
are the visits capability's (`accept`, `arrange`, `record` call them), with the actor granted
the one case for the request (`Actor.case_ids`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case as when
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import audit
from slussen.accounts.models import Unit
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.directory.models import Activity, Organisation, OrganisationMember
from slussen.errors import NotFound
from slussen.keystore import Keystore
from slussen.visits import services as visits
from slussen.visits.models import Handover

#: The access log's purpose of every read of a request by its association.
PURPOSE = "förfrågan om överlämning (sluss 2)"
#: The most requests one list shows (open ones first, then the newest).
LISTED = 100


@dataclass(frozen=True)
class Request:
    """A hand-over request as its association sees it: the activity, the wished first occasion,
    what the patient agreed to share, the answer and the meeting, and whom to call."""

    id: int
    organisation: str
    activity: str
    wished_at: dt.datetime | None
    first_name: str
    phone: str
    helps: str
    status: str
    answer_reason: str
    companion_name: str
    meeting_at: dt.datetime | None
    meeting_place: str
    outcome: str | None
    unit_name: str
    unit_phone: str
    unit_phone_hours: str


def organisation_ids(session: Session, actor: Actor) -> set[int]:
    """The organisations `actor` represents; none for any other role."""
    if actor.role != "org_rep" or actor.user_id is None:
        return set()
    return set(
        session.scalars(
            select(OrganisationMember.organisation_id).where(
                OrganisationMember.user_id == actor.user_id
            )
        )
    )


def load_request(session: Session, actor: Actor, handover_id: int) -> tuple[Handover, Case]:
    """The request and its case if it is addressed to one of the actor's organisations and the
    case is open; refuses with NotFound (404, no hint that it exists) otherwise."""
    handover = session.get(Handover, handover_id)
    if handover is None or handover.organisation_id not in organisation_ids(session, actor):
        raise NotFound("Förfrågan finns inte.")
    case = session.get(Case, handover.case_id)
    if case is None or case.closed_at is not None:
        raise NotFound("Förfrågan finns inte.")
    return handover, case


def _granted(actor: Actor, case: Case) -> Actor:
    """The actor allowed to act on this one case (its request was authorised above)."""
    return dataclasses.replace(actor, case_ids=actor.case_ids | {case.id})


def _view(store: Keystore, handover: Handover, case: Case) -> Request:
    session = store.session
    details = visits.handover_details(store, case.patient_id, handover)
    organisation = session.get(Organisation, handover.organisation_id or 0)
    activity = session.get(Activity, handover.activity_id) if handover.activity_id else None
    unit = session.get(Unit, case.unit_id)
    return Request(
        id=handover.id,
        organisation=organisation.name if organisation else details.organisation_name,
        activity=activity.published.title if activity and activity.published else "",
        wished_at=handover.wished_at,
        first_name=details.first_name,
        phone=details.phone,
        helps=details.helps,
        status=handover.status,
        answer_reason=details.answer_reason,
        companion_name=details.companion_name,
        meeting_at=details.meeting_at,
        meeting_place=details.meeting_place,
        outcome=handover.outcome,
        unit_name=unit.name if unit else "",
        unit_phone=unit.phone if unit else "",
        unit_phone_hours=unit.phone_hours if unit else "",
    )


def _entry(handover: Handover, case: Case) -> audit.Entry:
    return audit.Entry("read", "handover", handover.id, PURPOSE, case.patient_id, case.unit_id)


def list_requests(store: Keystore, actor: Actor) -> list[Request]:
    """The requests addressed to the actor's organisations, of open cases: those waiting for an
    answer first, then by wished occasion, newest first (at most `LISTED`). Writes one access-log
    row per request shown, in the caller's transaction."""
    ids = organisation_ids(store.session, actor)
    if not ids:
        return []
    rows = store.session.execute(
        select(Handover, Case)
        .join(Case, Case.id == Handover.case_id)
        .where(Handover.organisation_id.in_(ids), Case.closed_at.is_(None))
        .order_by(
            when((Handover.status == "requested", 0), (Handover.status == "accepted", 1), else_=2),
            Handover.id.desc(),
        )
        .limit(LISTED)
    ).all()
    shown = [_view(store, handover, case) for handover, case in rows]
    audit.record_entries(
        store.session, store.ring, actor, [_entry(handover, case) for handover, case in rows]
    )
    return shown


def show_request(store: Keystore, actor: Actor, handover_id: int) -> Request:
    """One request (NotFound outside the actor's organisations), with its access-log row."""
    handover, case = load_request(store.session, actor, handover_id)
    shown = _view(store, handover, case)
    audit.record_entries(store.session, store.ring, actor, [_entry(handover, case)])
    return shown


def accept_request(
    store: Keystore,
    actor: Actor,
    handover_id: int,
    *,
    workflow: Workflow,
    is_accepted: bool,
    reason: str = "",
) -> None:
    """Accept the request, or decline it with a reason (visits.answer_handover's rules)."""
    handover, case = load_request(store.session, actor, handover_id)
    visits.answer_handover(
        store,
        _granted(actor, case),
        case,
        handover,
        workflow=workflow,
        is_accepted=is_accepted,
        reason=reason,
    )


def arrange_meeting(
    store: Keystore,
    actor: Actor,
    handover_id: int,
    *,
    companion_name: str,
    meeting_at: dt.datetime | None,
    meeting_place: str,
) -> None:
    """Name the companion and confirm the meeting (visits.arrange_handover_meeting's rules)."""
    handover, case = load_request(store.session, actor, handover_id)
    visits.arrange_handover_meeting(
        store,
        _granted(actor, case),
        case,
        handover,
        companion_name=companion_name,
        meeting_at=meeting_at,
        meeting_place=meeting_place,
    )


def record_outcome(
    store: Keystore, actor: Actor, handover_id: int, *, workflow: Workflow, outcome: str
) -> None:
    """How the first occasion went; moves the case on (visits.record_handover_outcome)."""
    handover, case = load_request(store.session, actor, handover_id)
    visits.record_handover_outcome(
        store, _granted(actor, case), case, handover, workflow=workflow, outcome=outcome
    )
