"""Log review rules: who may read the access log, which rows they see, what counts as unusual.

The access log itself is `slussen.audit`; this module only reads it, and writes the audit rows
that reviewing it requires: finding a patient by personnummer is a search of patient data, and
showing who accessed a patient is patient-related data (PDL 4 kap. 3 §). The patient's log extract
(PDL 8 kap. 5 §) lists every access to the patient's record: when, which unit, what, which role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, exists, func, or_, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Membership, Unit, User
from slussen.accounts.roles import Permission, grants
from slussen.audit import Actor, AuditEvent
from slussen.db import utcnow
from slussen.errors import NotFound, NotPermitted
from slussen.identifiers import PersonIdentifier
from slussen.keystore import Keystore
from slussen.patients.models import Patient
from slussen.patients.services import find_patient_id, read_patient
from slussen.text import is_digits

PAGE_SIZE = 50
REVIEW_PURPOSE = "granskning av åtkomstlogg"
EXTRACT_PURPOSE = "loggutdrag till patienten"
#: How many patients a reviewer may have looked up at once in their session.
REMEMBERED_PATIENTS = 20
#: Actions on a patient's record that the unusual-access rule looks at.
WATCHED_ACTIONS = frozenset({"read", "update", "print", "export"})
#: Object types that are the review itself, not the patient's record: never "unusual".
REVIEW_OBJECTS = frozenset({"access_log"})


class PatientNotFound(NotFound):
    """No patient has the personnummer the reviewer typed."""

    def __init__(self) -> None:
        super().__init__("Det finns ingen patient med det numret i Slussen.")


@dataclass(frozen=True)
class LogQuery:
    """What the reviewer asked for. Dates are local (Europe/Stockholm) calendar days, inclusive."""

    patient_id: int | None = None
    user_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


@dataclass(frozen=True)
class LogRow:
    #: The row's id, the page cursor (ids grow in append order over every chain).
    seq: int
    occurred_at: dt.datetime
    actor_id: int | None
    actor_name: str
    actor_role: str
    unit_name: str | None
    action: str
    object_type: str
    object_id: str
    purpose: str
    client_address: str
    #: The unusual-access rule fired (see `has_relation`).
    is_unusual: bool


@dataclass(frozen=True)
class LogPage:
    rows: list[LogRow]
    #: Pass as `before` to get the next, older page; None on the last page.
    older: int | None
    #: Pass as `after` to get the previous, newer page; None on the first page.
    newer: int | None


@dataclass(frozen=True)
class ExtractEntry:
    occurred_at: dt.datetime
    unit_name: str | None
    action: str
    object_type: str
    actor_role: str
    #: Why: the list a patient was shown in reads from it (`patients.services.SHOWN_IN`).
    purpose: str = ""


@dataclass(frozen=True)
class PatientExtract:
    """A patient's log extract, in memory for one request: it holds the name and personnummer."""

    name: str
    identifier: str
    generated_at: dt.datetime
    entries: list[ExtractEntry]


def _check_reviewer(user: User) -> None:
    if not user.is_active or not grants(user.role, Permission.REVIEW_ACCESS_LOG):
        raise NotPermitted("Din roll får inte granska åtkomstloggen.")


def acting_unit_id(user: User) -> int | None:
    """The unit recorded on the reviewer's own audit rows: their (first) unit.

    Until a session knows which unit a user works in right now, a user in several units acts
    for the one with the lowest id; a user without units acts for none."""
    return min(user.unit_ids) if user.unit_ids else None


def reviewable_users(session: Session, reviewer: User) -> list[User]:
    """The users of the reviewer's units, by display name: the ones they may filter on."""
    if not reviewer.unit_ids:
        return []
    members = select(Membership.user_id).where(Membership.unit_id.in_(reviewer.unit_ids))
    return list(session.scalars(select(User).where(User.id.in_(members)).order_by(User.username)))


def has_relation(session: Session, user_id: int, patient_id: int) -> bool:
    """Whether the user has a care relationship to the patient (PDL 4 kap. 1 §).

    Today a relation means: the patient's registered unit is one of the user's units. The
    workflow issue will extend this to "an open case in one of the user's units". The rule is
    checked as things are now, not as they were when the access happened."""
    related = (
        select(Patient.id)
        .join(Membership, Membership.unit_id == Patient.registered_unit_id)
        .where(Patient.id == patient_id, Membership.user_id == user_id)
    )
    return bool(session.scalar(select(exists(related))))


def find_patient_for_review(store: Keystore, reviewer: User, identifier: PersonIdentifier) -> int:
    """Find a patient by identifier (blind index) for log review and record the search.

    Any patient can be found, whatever their unit: a patient may ask any unit for their log
    extract. Refuses a reviewer without the log-review permission (NotPermitted) and an
    identifier no patient has (PatientNotFound; nothing is recorded then, nothing was revealed
    beyond "no such patient")."""
    _check_reviewer(reviewer)
    patient_id = find_patient_id(store, identifier)
    if patient_id is None:
        raise PatientNotFound()
    audit.record(
        store.session,
        store.ring,
        Actor.of(reviewer),
        "search",
        "patient",
        patient_id,
        purpose=REVIEW_PURPOSE,
        patient_id=patient_id,
        unit_id=acting_unit_id(reviewer),
    )
    return patient_id


def _day_start(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def _conditions(
    ring: vault.KeyRing, reviewer: User, query: LogQuery, zone: ZoneInfo
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a log query; each uses an indexed column or the sequence order."""
    conditions: list[ColumnElement[bool]] = []
    if query.patient_id is not None:
        # The point of a per-patient selection: every unit's accesses to this patient.
        pseudonym = audit.patient_pseudonym(ring, query.patient_id)
        conditions.append(AuditEvent.patient_pseudonym == pseudonym)
    else:
        conditions.append(
            or_(AuditEvent.unit_id.in_(reviewer.unit_ids), AuditEvent.unit_id.is_(None))
        )
    if query.user_id is not None:
        conditions.append(AuditEvent.actor_id == query.user_id)
    if query.date_from is not None:
        conditions.append(AuditEvent.occurred_at >= _day_start(query.date_from, zone))
    if query.date_to is not None:
        end = _day_start(query.date_to + dt.timedelta(days=1), zone)
        conditions.append(AuditEvent.occurred_at < end)
    return conditions


def review_log(
    store: Keystore,
    reviewer: User,
    query: LogQuery,
    *,
    timezone: str,
    before: int | None = None,
    after: int | None = None,
    page_size: int = PAGE_SIZE,
) -> LogPage:
    """One page of the access log, newest first, paged by row id (keyset: no offset,
    never all rows). Without a patient the reviewer sees rows of their own units and rows with no
    unit (logins, system jobs); with a patient, every unit's accesses to that patient, and the
    review itself is recorded (action read, object access_log).

    Refuses a reviewer without the log-review permission, and a user filter naming someone
    outside the reviewer's units (NotPermitted)."""
    _check_reviewer(reviewer)
    session = store.session
    if query.user_id is not None and query.user_id not in {
        u.id for u in reviewable_users(session, reviewer)
    }:
        raise NotPermitted("Användaren arbetar inte på någon av dina enheter.")
    if query.patient_id is not None:
        if session.get(Patient, query.patient_id) is None:
            raise PatientNotFound()
        audit.record(
            session,
            store.ring,
            Actor.of(reviewer),
            "read",
            "access_log",
            query.patient_id,
            purpose=REVIEW_PURPOSE,
            patient_id=query.patient_id,
            unit_id=acting_unit_id(reviewer),
        )
    # The keyset is the row id: sequence numbers count within one chain (a unit's or the
    # region's), ids grow in append order over all chains.
    statement = select(
        AuditEvent.id.label("seq"),
        AuditEvent.occurred_at,
        AuditEvent.actor_id,
        AuditEvent.actor_name,
        AuditEvent.actor_role,
        Unit.name,
        AuditEvent.action,
        AuditEvent.object_type,
        AuditEvent.object_id,
        AuditEvent.purpose,
        AuditEvent.client_address,
        AuditEvent.patient_pseudonym,
    ).outerjoin(Unit, Unit.id == AuditEvent.unit_id)
    statement = statement.where(*_conditions(store.ring, reviewer, query, ZoneInfo(timezone)))
    if after is not None:
        statement = statement.where(AuditEvent.id > after).order_by(AuditEvent.id.asc())
    else:
        if before is not None:
            statement = statement.where(AuditEvent.id < before)
        statement = statement.order_by(AuditEvent.id.desc())
    fetched = list(session.execute(statement.limit(page_size + 1)))
    more = len(fetched) > page_size
    fetched = fetched[:page_size]
    if after is not None:
        fetched.reverse()
    rows = _with_flags(session, fetched, query.patient_id)
    if after is not None:
        older = rows[-1].seq if rows else None
        newer = rows[0].seq if rows and more else None
    else:
        older = rows[-1].seq if rows and more else None
        newer = rows[0].seq if rows and before is not None else None
    return LogPage(rows=rows, older=older, newer=newer)


def _patient_ids(session: Session, pseudonyms: Iterable[str]) -> dict[str, int]:
    """Map pseudonyms back to patient ids through the log's own rows about patient objects
    (every patient has at least its `create patient <id>` row). The pseudonym is a keyed hash,
    so there is no other way back without trying every patient."""
    wanted = set(pseudonyms)
    if not wanted:
        return {}
    rows = session.execute(
        select(AuditEvent.patient_pseudonym, func.min(AuditEvent.object_id))
        .where(AuditEvent.patient_pseudonym.in_(wanted), AuditEvent.object_type == "patient")
        .group_by(AuditEvent.patient_pseudonym)
    )
    return {str(p): int(o) for p, o in rows if is_digits(str(o))}


def _with_flags(
    session: Session, fetched: list[Row[*tuple[Any, ...]]], patient_id: int | None
) -> list[LogRow]:
    watched = [
        r
        for r in fetched
        if r.action in WATCHED_ACTIONS
        and r.object_type not in REVIEW_OBJECTS
        and r.actor_id is not None
        and r.patient_pseudonym is not None
    ]
    ids = (
        {r.patient_pseudonym: patient_id for r in watched}
        if patient_id is not None
        else _patient_ids(session, (r.patient_pseudonym for r in watched))
    )
    relations: dict[tuple[int, int], bool] = {}
    unusual: set[int] = set()
    for r in watched:
        pid = ids.get(r.patient_pseudonym)
        if pid is None:
            continue
        pair = (r.actor_id, pid)
        if pair not in relations:
            relations[pair] = has_relation(session, *pair)
        if not relations[pair]:
            unusual.add(r.seq)
    return [
        LogRow(
            seq=r.seq,
            occurred_at=r.occurred_at,
            actor_id=r.actor_id,
            actor_name=r.actor_name,
            actor_role=r.actor_role,
            unit_name=r.name,
            action=r.action,
            object_type=r.object_type,
            object_id=r.object_id,
            purpose=r.purpose,
            client_address=r.client_address,
            is_unusual=r.seq in unusual,
        )
        for r in fetched
    ]


def build_patient_extract(
    store: Keystore, reviewer: User, identifier: PersonIdentifier
) -> PatientExtract:
    """Build a patient's log extract: every recorded access to the patient, oldest first, with
    the unit, the action and the role (not the users' names). Decrypts the patient's name and
    identifier through `read_patient` (audited as read) and records the export itself, so the
    extract lists its own making.

    Refuses a reviewer without the log-review permission (NotPermitted), an identifier no
    patient has (PatientNotFound), and an erased patient (PatientErased from read_patient)."""
    _check_reviewer(reviewer)
    session = store.session
    patient_id = find_patient_id(store, identifier)
    patient = session.get(Patient, patient_id) if patient_id is not None else None
    if patient is None:
        raise PatientNotFound()
    actor = Actor.of(reviewer)
    unit_id = acting_unit_id(reviewer)
    identity = read_patient(store, actor, patient, purpose=EXTRACT_PURPOSE, unit_id=unit_id)
    audit.record(
        session,
        store.ring,
        actor,
        "export",
        "patient_log_extract",
        patient.id,
        purpose=EXTRACT_PURPOSE,
        patient_id=patient.id,
        unit_id=unit_id,
    )
    pseudonym = audit.patient_pseudonym(store.ring, patient.id)
    rows = session.execute(
        select(
            AuditEvent.occurred_at,
            Unit.name,
            AuditEvent.action,
            AuditEvent.object_type,
            AuditEvent.actor_role,
            AuditEvent.purpose,
        )
        .outerjoin(Unit, Unit.id == AuditEvent.unit_id)
        .where(AuditEvent.patient_pseudonym == pseudonym)
        .order_by(AuditEvent.id)
    )
    return PatientExtract(
        name=identity.name,
        identifier=identity.identifier.display(),
        generated_at=utcnow(),
        entries=[ExtractEntry(*row) for row in rows],
    )
