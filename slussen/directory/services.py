"""The directory's rules: who may see and change which organisation and activity, moderation,
occasions, the calendar query, staleness and suggestions for the action plan.

Functions take the session and the acting user explicitly, raise a domain error (`slussen.errors`)
with a Swedish message, and only flush; the caller commits once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import Select, String, delete, exists, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session, selectinload

from slussen.accounts.models import User
from slussen.accounts.roles import Permission, Role, grants
from slussen.config import local_zone
from slussen.db import utcnow
from slussen.directory.categories import AGE_GROUPS, BARRIERS, KINDS, SECTORS
from slussen.directory.models import (
    CONTENT_FIELDS,
    Activity,
    ActivityOccasion,
    ActivityRevision,
    DirectoryState,
    Organisation,
    OrganisationMember,
)
from slussen.directory.schedule import (
    TIME_OF_DAY_MINUTES,
    Occasion,
    Schedule,
    ScheduleError,
    check_schedule,
    occasions,
    parse_dates,
)
from slussen.directory.schedule import next_occasions as schedule_next_occasions
from slussen.errors import Conflict, Invalid, NotFound, NotPermitted

#: Activities not confirmed for this long are flagged to the organisation and the coordinator.
STALE_AFTER = relativedelta(months=6)
#: … and after this long they are no longer suggested in action plans.
HIDDEN_AFTER = relativedelta(months=9)
#: How far ahead occasions are kept expanded in `activity_occasions`.
HORIZON_DAYS = 400
#: The calendar and the feed look at most this far ahead.
MAX_RANGE_DAYS = 366

#: Roles that may open the directory inside the app (read-only unless they moderate or represent).
VIEW_ROLES = frozenset({Role.COORDINATOR, Role.COACH, Role.STAFF, Role.ORG_REP})


class InvalidActivity(Invalid):
    """The submitted activity cannot be saved; `field` names the form field when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field)


class NotPending(Conflict):
    """The revision was already decided (perhaps by another coordinator)."""


# --- Access --------------------------------------------------------------------------------


def can_moderate(user: User) -> bool:
    return grants(user.role, Permission.MODERATE_DIRECTORY)


def can_view_directory(user: User) -> bool:
    return user.role in VIEW_ROLES


def member_organisation_ids(session: Session, user: User) -> set[int]:
    """The organisations `user` represents."""
    return set(
        session.scalars(
            select(OrganisationMember.organisation_id).where(OrganisationMember.user_id == user.id)
        )
    )


def may_edit_organisation(session: Session, user: User, organisation: Organisation) -> bool:
    if can_moderate(user):
        return True
    return grants(user.role, Permission.EDIT_OWN_ORGANISATION) and organisation.id in (
        member_organisation_ids(session, user)
    )


def load_organisation(
    session: Session, user: User, organisation_id: int, *, edit: bool = False
) -> Organisation:
    """The organisation if `user` may see it (and edit it, with edit=True).

    Refuses with NotFound when it does not exist or the user may not see it: an org_rep sees only
    the organisations they represent; coaches and staff see all, read-only (NotPermitted on edit).
    """
    organisation = session.get(Organisation, organisation_id)
    if organisation is None or not can_view_directory(user):
        raise NotFound()
    if can_moderate(user):
        return organisation
    if user.role == Role.ORG_REP:
        if organisation.id not in member_organisation_ids(session, user):
            raise NotFound()
        return organisation
    if edit:
        raise NotPermitted("Du kan bara läsa katalogen.")
    return organisation


def load_activity(
    session: Session, user: User, activity_id: int, *, edit: bool = False
) -> Activity:
    """The activity if `user` may see it (and edit it); NotFound otherwise, as for organisations.
    Coaches and staff see only published activities."""
    activity = session.get(Activity, activity_id)
    if activity is None:
        raise NotFound()
    load_organisation(session, user, activity.organisation_id, edit=edit)
    if user.role in (Role.COACH, Role.STAFF) and activity.published_revision_id is None:
        raise NotFound()
    return activity


def load_revision(session: Session, user: User, revision_id: int) -> ActivityRevision:
    """A revision of an activity `user` may edit or moderate; NotFound otherwise."""
    revision = session.get(ActivityRevision, revision_id)
    if revision is None:
        raise NotFound()
    load_activity(session, user, revision.activity_id, edit=True)
    return revision


# --- Organisations -------------------------------------------------------------------------

ORGANISATION_FIELDS: tuple[str, ...] = (
    "name",
    "sector",
    "description",
    "contact_name",
    "email",
    "phone",
    "website",
    "area",
)


def check_organisation(values: dict[str, Any]) -> None:
    """Refuse an organisation's details that cannot be saved: no name, an unknown sector, a
    website that is not a web address (InvalidActivity naming the field)."""
    if not str(values.get("name", "")).strip():
        raise InvalidActivity("Skriv organisationens namn.", "name")
    if values.get("sector") not in SECTORS:
        raise InvalidActivity("Välj en sektor.", "sector")
    website = str(values.get("website", ""))
    if website and not website.startswith(("https://", "http://")):
        raise InvalidActivity("Webbadressen ska börja med https://", "website")


def create_organisation(session: Session, actor: User, **values: Any) -> Organisation:
    """Create an organisation (coordinator only)."""
    if not can_moderate(actor):
        raise NotPermitted("Bara samordnaren kan lägga till organisationer.")
    check_organisation(values)
    organisation = Organisation(**{k: v for k, v in values.items() if k in ORGANISATION_FIELDS})
    session.add(organisation)
    session.flush()
    return organisation


def update_organisation(
    session: Session, actor: User, organisation: Organisation, **values: Any
) -> Organisation:
    """Change an organisation's details (its representatives or the coordinator)."""
    if not may_edit_organisation(session, actor, organisation):
        raise NotFound()
    merged = {name: getattr(organisation, name) for name in ORGANISATION_FIELDS} | values
    check_organisation(merged)
    for name in ORGANISATION_FIELDS:
        setattr(organisation, name, merged[name])
    bump_directory_version(session)
    session.flush()
    return organisation


def add_representative(
    session: Session, actor: User | None, organisation: Organisation, user: User
) -> OrganisationMember:
    """Make an org_rep user a representative of `organisation`: they edit its activities and see
    and answer the hand-over requests addressed to it (sluss 2). The coordinator or an
    administrator does it; `actor` None is the operator at the command line (`slussen user
    add-organisation`, as trusted as `slussen user create`). Idempotent.

    Refuses another actor (NotPermitted) and a user of another role."""
    if actor is not None and not (can_moderate(actor) or grants(actor.role, Permission.ADMINISTER)):
        raise NotPermitted("Bara samordnaren kan lägga till representanter.")
    if user.role != Role.ORG_REP:
        raise InvalidActivity("Användaren måste ha rollen föreningsrepresentant.", "username")
    existing = session.scalar(
        select(OrganisationMember).where(
            OrganisationMember.user_id == user.id,
            OrganisationMember.organisation_id == organisation.id,
        )
    )
    if existing is not None:
        return existing
    member = OrganisationMember(user_id=user.id, organisation_id=organisation.id)
    session.add(member)
    session.flush()
    return member


def representatives(session: Session, organisation: Organisation) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .join(OrganisationMember, OrganisationMember.user_id == User.id)
            .where(OrganisationMember.organisation_id == organisation.id)
            .order_by(User.display_name)
        )
    )


# --- Activities and moderation -------------------------------------------------------------


@dataclass
class ActivityData:
    """What an organisation submits about an activity (one revision's content)."""

    title: str
    first_date: dt.date
    start_time: dt.time
    duration_minutes: int = 60
    description: str = ""
    categories: list[str] = field(default_factory=list)
    kind: str = "leisure"
    rrule: str = ""
    extra_dates: list[str] = field(default_factory=list)
    exception_dates: list[str] = field(default_factory=list)
    place_name: str = ""
    street: str = ""
    postcode: str = ""
    town: str = ""
    area: str = ""
    accessibility_notes: str = ""
    cost_sek: int | None = None
    cost_note: str = ""
    bring: str = ""
    age_groups: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    has_companion: bool = False
    capacity: int | None = None
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""

    @classmethod
    def from_revision(cls, revision: ActivityRevision) -> ActivityData:
        return cls(**{name: getattr(revision, name) for name in CONTENT_FIELDS})

    def schedule(self) -> Schedule:
        return schedule_of(self)


def schedule_of(revision: ActivityRevision | ActivityData) -> Schedule:
    """The schedule of a stored revision or of a form's content."""
    return Schedule(
        first_date=revision.first_date,
        start_time=revision.start_time,
        duration_minutes=revision.duration_minutes,
        rrule=revision.rrule,
        extra_dates=parse_dates(revision.extra_dates),
        exception_dates=parse_dates(revision.exception_dates),
    )


def check_activity(data: ActivityData, known_categories: Iterable[str]) -> ActivityData:
    """Refuse content that cannot be published: no title, an unknown category or age group, a
    bad schedule, a negative cost or capacity. Returns the data with dates normalised."""
    if not data.title.strip():
        raise InvalidActivity("Skriv en rubrik.", "title")
    unknown = set(data.categories) - set(known_categories)
    if unknown:
        raise InvalidActivity("Okänd kategori: " + ", ".join(sorted(unknown)), "categories")
    if data.kind not in KINDS:
        raise InvalidActivity("Välj stödinsats eller fritidsaktivitet.", "kind")
    if set(data.age_groups) - set(AGE_GROUPS):
        raise InvalidActivity("Okänd åldersgrupp.", "age_groups")
    if data.cost_sek is not None and data.cost_sek <= 0:
        raise InvalidActivity(
            "Ett pris måste vara större än noll; välj annars kostnadsfritt.", "cost_sek"
        )
    if data.capacity is not None and data.capacity <= 0:
        raise InvalidActivity("Antalet platser måste vara större än noll.", "capacity")
    try:
        schedule = check_schedule(data.schedule())
    except ScheduleError as exc:
        raise InvalidActivity(str(exc), "rrule") from None
    data.extra_dates = [d.isoformat() for d in schedule.extra_dates]
    data.exception_dates = [d.isoformat() for d in schedule.exception_dates]
    return data


def _new_revision(
    session: Session, actor: User, activity: Activity, data: ActivityData, number: int
) -> ActivityRevision:
    values = {name: getattr(data, name) for name in CONTENT_FIELDS}
    revision = ActivityRevision(
        activity=activity, number=number, status="pending", author_id=actor.id, **values
    )
    session.add(revision)
    session.flush()
    return revision


def submit_activity(
    session: Session,
    actor: User,
    organisation: Organisation,
    data: ActivityData,
    *,
    known_categories: Iterable[str],
    today: dt.date,
) -> ActivityRevision:
    """A new activity of `organisation`. From an org_rep it waits for moderation; the
    coordinator's own entry is published at once. Refuses other organisations (NotFound)."""
    if not may_edit_organisation(session, actor, organisation):
        raise NotFound()
    check_activity(data, known_categories)
    activity = Activity(organisation=organisation)
    session.add(activity)
    session.flush()
    revision = _new_revision(session, actor, activity, data, 1)
    if can_moderate(actor):
        approve_revision(session, actor, revision, today=today)
    return revision


def submit_revision(
    session: Session,
    actor: User,
    activity: Activity,
    data: ActivityData,
    *,
    known_categories: Iterable[str],
    today: dt.date,
) -> ActivityRevision:
    """A change to an activity: a new pending revision (an older pending one is superseded).
    The published version stays public until the coordinator approves the change."""
    if not may_edit_organisation(session, actor, activity.organisation):
        raise NotFound()
    check_activity(data, known_categories)
    number = (
        session.scalar(
            select(func.max(ActivityRevision.number)).where(
                ActivityRevision.activity_id == activity.id
            )
        )
        or 0
    ) + 1
    for older in session.scalars(
        select(ActivityRevision).where(
            ActivityRevision.activity_id == activity.id, ActivityRevision.status == "pending"
        )
    ):
        older.status = "superseded"
    revision = _new_revision(session, actor, activity, data, number)
    if can_moderate(actor):
        approve_revision(session, actor, revision, today=today)
    return revision


def approve_revision(
    session: Session, actor: User, revision: ActivityRevision, *, today: dt.date, comment: str = ""
) -> ActivityRevision:
    """Publish a pending revision (coordinator only): it becomes the public version, the previous
    one is kept as history, the activity counts as verified today and its occasions are rebuilt.
    Refuses a revision that is not pending (NotPending)."""
    if not can_moderate(actor):
        raise NotPermitted("Bara samordnaren kan godkänna ändringar.")
    if revision.status != "pending":
        raise NotPending("Ändringen är redan granskad.")
    activity = revision.activity
    for older in session.scalars(
        select(ActivityRevision).where(
            ActivityRevision.activity_id == activity.id,
            ActivityRevision.status == "approved",
        )
    ):
        older.status = "superseded"
    revision.status = "approved"
    revision.decided_by_id = actor.id
    revision.decided_at = utcnow()
    revision.moderator_comment = comment.strip()
    activity.published_revision_id = revision.id
    activity.published = revision
    activity.last_verified_on = today
    session.flush()
    refresh_occasions(session, activity, today=today)
    return revision


def return_revision(
    session: Session, actor: User, revision: ActivityRevision, *, comment: str
) -> ActivityRevision:
    """Send a pending revision back to the organisation with a comment they see (coordinator
    only; the comment is required). The published version, if any, stays public."""
    if not can_moderate(actor):
        raise NotPermitted("Bara samordnaren kan skicka tillbaka ändringar.")
    if revision.status != "pending":
        raise NotPending("Ändringen är redan granskad.")
    if not comment.strip():
        raise InvalidActivity("Skriv vad organisationen behöver ändra.", "comment")
    revision.status = "returned"
    revision.decided_by_id = actor.id
    revision.decided_at = utcnow()
    revision.moderator_comment = comment.strip()
    session.flush()
    return revision


def verify_activity(session: Session, actor: User, activity: Activity, *, today: dt.date) -> None:
    """The organisation confirms the published content is still right (sets last verified)."""
    if not may_edit_organisation(session, actor, activity.organisation):
        raise NotFound()
    if activity.published_revision_id is None:
        raise InvalidActivity("Aktiviteten är inte publicerad än.")
    activity.last_verified_on = today
    session.flush()


def set_withdrawn(
    session: Session, actor: User, activity: Activity, withdrawn: bool, *, today: dt.date
) -> None:
    """Take an activity out of the public calendar, or put it back (history is kept)."""
    if not may_edit_organisation(session, actor, activity.organisation):
        raise NotFound()
    activity.is_withdrawn = withdrawn
    session.flush()
    refresh_occasions(session, activity, today=today)


def pending_revisions(session: Session) -> list[ActivityRevision]:
    return list(
        session.scalars(
            select(ActivityRevision)
            .where(ActivityRevision.status == "pending")
            .options(selectinload(ActivityRevision.activity).selectinload(Activity.organisation))
            .order_by(ActivityRevision.created_at, ActivityRevision.id)
        )
    )


def latest_revision(activity: Activity) -> ActivityRevision | None:
    return activity.revisions[-1] if activity.revisions else None


# --- Occasions -----------------------------------------------------------------------------


def directory_version(session: Session) -> tuple[int, str]:
    """The version of what the public sees, with the time it changed (so a restored backup or a
    rolled-back change never matches pages cached for other content)."""
    row = session.execute(
        select(DirectoryState.version, DirectoryState.changed_at).where(DirectoryState.id == 1)
    ).first()
    return (row[0], row[1].isoformat()) if row else (0, "")


def bump_directory_version(session: Session) -> None:
    """Mark the public directory as changed (in the caller's transaction)."""
    updated = session.execute(
        update(DirectoryState)
        .where(DirectoryState.id == 1)
        .values(version=DirectoryState.version + 1, changed_at=utcnow())
    )
    if not getattr(updated, "rowcount", 0):
        session.add(DirectoryState(id=1, version=1))
    session.flush()


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=local_zone())


def refresh_occasions(session: Session, activity: Activity, *, today: dt.date) -> int:
    """Rebuild the stored occasions of `activity` from a week ago to HORIZON_DAYS ahead: the
    published schedule's, or none when it is unpublished or withdrawn. Returns how many."""
    session.execute(delete(ActivityOccasion).where(ActivityOccasion.activity_id == activity.id))
    bump_directory_version(session)
    revision = activity.published
    if revision is None or activity.is_withdrawn:
        session.flush()
        return 0
    found = occasions(
        schedule_of(revision),
        _day_start(today - dt.timedelta(days=7)),
        _day_start(today + dt.timedelta(days=HORIZON_DAYS)),
    )
    session.add_all(
        ActivityOccasion(
            activity_id=activity.id,
            starts_at=o.starts_at.astimezone(dt.UTC),
            ends_at=o.ends_at.astimezone(dt.UTC),
            local_date=o.starts_at.date(),
            weekday=o.starts_at.weekday(),
            start_minute=o.starts_at.hour * 60 + o.starts_at.minute,
        )
        for o in found
    )
    session.flush()
    return len(found)


def refresh_all_occasions(session: Session, *, today: dt.date) -> int:
    """Rebuild every published activity's occasions (run daily, e.g. from `slussen tick`)."""
    total = 0
    for activity in session.scalars(
        select(Activity).options(selectinload(Activity.published)).order_by(Activity.id)
    ):
        total += refresh_occasions(session, activity, today=today)
    return total


def next_occasions(activity: Activity, after: dt.datetime, count: int) -> list[Occasion]:
    """The next `count` occasions of the activity's published version (none if unpublished or
    withdrawn), for the action plan and its letter."""
    if activity.published is None or activity.is_withdrawn:
        return []
    return schedule_next_occasions(schedule_of(activity.published), after, count)


# --- The public calendar -------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarFilters:
    """What the public calendar and the feed filter on; empty means no filter."""

    start: dt.date
    end: dt.date
    categories: tuple[str, ...] = ()
    weekdays: tuple[int, ...] = ()
    times_of_day: tuple[str, ...] = ()
    free_only: bool = False
    area: str = ""
    age_group: str = ""
    companion: bool = False
    kind: str = ""


def _tag(column: Any, code: str) -> Any:
    return type_coerce(column, String).contains(f",{code},", autoescape=True)


def _filtered(stmt: Select[Any], filters: CalendarFilters) -> Select[Any]:
    return _occasion_level(_activity_level(stmt, filters), filters)


def _activity_level(stmt: Select[Any], filters: CalendarFilters) -> Select[Any]:
    rev = ActivityRevision
    if filters.categories:
        stmt = stmt.where(or_(*(_tag(rev.categories, c) for c in filters.categories)))
    if filters.free_only:
        stmt = stmt.where(rev.cost_sek.is_(None))
    if filters.area:
        stmt = stmt.where(rev.area == filters.area)
    if filters.age_group:
        stmt = stmt.where(or_(_tag(rev.age_groups, filters.age_group), rev.age_groups == []))
    if filters.companion:
        stmt = stmt.where(rev.has_companion.is_(True))
    if filters.kind:
        stmt = stmt.where(rev.kind == filters.kind)
    return stmt


def _occasion_level(stmt: Select[Any], filters: CalendarFilters) -> Select[Any]:
    if filters.weekdays:
        stmt = stmt.where(ActivityOccasion.weekday.in_(filters.weekdays))
    if filters.times_of_day:
        stmt = stmt.where(
            or_(
                *(
                    ActivityOccasion.start_minute.between(
                        TIME_OF_DAY_MINUTES[t][0], TIME_OF_DAY_MINUTES[t][1] - 1
                    )
                    for t in filters.times_of_day
                )
            )
        )
    return stmt


def _occasion_base(columns: Sequence[Any], filters: CalendarFilters) -> Select[Any]:
    stmt = (
        select(*columns)
        .select_from(ActivityOccasion)
        .join(Activity, Activity.id == ActivityOccasion.activity_id)
        .join(ActivityRevision, ActivityRevision.id == Activity.published_revision_id)
        .where(
            ActivityOccasion.local_date >= filters.start,
            ActivityOccasion.local_date <= filters.end,
            Activity.is_withdrawn.is_(False),
        )
    )
    return _filtered(stmt, filters)


@dataclass(frozen=True)
class OccasionRow:
    activity_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    revision: ActivityRevision
    organisation_name: str


def find_occasions(
    session: Session, filters: CalendarFilters, *, offset: int = 0, limit: int = 50
) -> tuple[list[OccasionRow], int]:
    """One page of occasions matching `filters`, in time order, and how many match in all."""
    total = session.scalar(_occasion_base([func.count()], filters)) or 0
    rows = session.execute(
        _occasion_base(
            [
                ActivityOccasion.activity_id,
                ActivityOccasion.starts_at,
                ActivityOccasion.ends_at,
                ActivityRevision,
                Organisation.name,
            ],
            filters,
        )
        .join(Organisation, Organisation.id == Activity.organisation_id)
        .order_by(ActivityOccasion.starts_at, ActivityRevision.title, ActivityOccasion.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [
        OccasionRow(r[0], r[1].astimezone(local_zone()), r[2].astimezone(local_zone()), r[3], r[4])
        for r in rows
    ], total


def find_activities(session: Session, filters: CalendarFilters) -> list[Activity]:
    """Published activities with at least one occasion matching `filters` (for the feed).

    Activity-level filters run on the published revision; the occasion-level ones (dates,
    weekday, time of day) in an EXISTS on the (activity_id, local_date) index.
    """
    occasion = select(ActivityOccasion.id).where(
        ActivityOccasion.activity_id == Activity.id,
        ActivityOccasion.local_date >= filters.start,
        ActivityOccasion.local_date <= filters.end,
    )
    occasion = _occasion_level(occasion, filters)
    stmt = (
        select(Activity)
        .join(ActivityRevision, ActivityRevision.id == Activity.published_revision_id)
        .where(Activity.is_withdrawn.is_(False), exists(occasion))
        .options(selectinload(Activity.published), selectinload(Activity.organisation))
        .order_by(Activity.id)
    )
    return list(session.scalars(_activity_level(stmt, filters)))


def public_areas(session: Session) -> list[str]:
    """The areas of published activities, for the area filter."""
    return [
        a
        for a in session.scalars(
            select(ActivityRevision.area)
            .join(Activity, Activity.published_revision_id == ActivityRevision.id)
            .where(Activity.is_withdrawn.is_(False), ActivityRevision.area != "")
            .distinct()
            .order_by(ActivityRevision.area)
        )
    ]


def load_public_activity(session: Session, activity_id: int) -> Activity:
    """A published, not withdrawn activity, or NotFound (the public may see nothing else)."""
    activity = session.get(Activity, activity_id)
    if activity is None or activity.published is None or activity.is_withdrawn:
        raise NotFound()
    return activity


# --- Staleness -----------------------------------------------------------------------------


def is_stale(activity: Activity, today: dt.date) -> bool:
    """Not confirmed for six months: flagged to the organisation and the coordinator."""
    return activity.last_verified_on is None or activity.last_verified_on < today - STALE_AFTER


def is_hidden_from_suggestions(activity: Activity, today: dt.date) -> bool:
    """Not confirmed for nine months: no longer suggested in action plans."""
    return activity.last_verified_on is None or activity.last_verified_on < today - HIDDEN_AFTER


def stale_activities(
    session: Session, *, today: dt.date, organisation_ids: Iterable[int] | None = None
) -> list[Activity]:
    """Published activities not verified for six months (of some organisations, or all)."""
    stmt = (
        select(Activity)
        .where(
            Activity.published_revision_id.is_not(None),
            Activity.is_withdrawn.is_(False),
            or_(
                Activity.last_verified_on.is_(None),
                Activity.last_verified_on < today - STALE_AFTER,
            ),
        )
        .options(selectinload(Activity.published), selectinload(Activity.organisation))
        .order_by(Activity.last_verified_on, Activity.id)
    )
    if organisation_ids is not None:
        stmt = stmt.where(Activity.organisation_id.in_(list(organisation_ids)))
    return list(session.scalars(stmt))


# --- Suggestions for the action plan -------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    activity: Activity
    score: int
    #: Why it is suggested, in Swedish, shown to the coach.
    reasons: list[str]
    next_occasion: dt.datetime | None


def _same_postal_area(postcode: str, other: str) -> bool:
    """Whether two postcodes share their first three digits (the same town or part of town)."""
    a, b = (p.replace(" ", "")[:3] for p in (postcode, other))
    return len(a) == 3 and a == b


def _is_evening_or_weekend(moment: dt.datetime) -> bool:
    local = moment.astimezone(local_zone())
    return (
        local.weekday() >= 5 or local.hour * 60 + local.minute >= TIME_OF_DAY_MINUTES["evening"][0]
    )


def suggest_activities(
    session: Session,
    *,
    interests: list[str],
    barriers: list[str],
    area: str | None,
    today: dt.date,
    limit: int = 10,
    category_labels: dict[str, str] | None = None,
    postcode: str = "",
    times_of_day: Sequence[str] = (),
) -> list[Suggestion]:
    """Published activities that match the patient's interest areas and avoid their barriers,
    best first, each with its reasons in Swedish.

    Scoring: +3 for each matching interest area (an activity matching none is left out when
    interests are given). Barriers (ids from the barriers checklist):
    - `cost`: only activities free of charge (+2 "Kostnadsfritt");
    - `anxiety`: +3 when a companion can meet the patient the first time, −1 otherwise;
    - `transport` (distance): +2 in the patient's area, +1 with the same postal area (the
      first three digits of the patient's `postcode`), −2 elsewhere;
    - `language`: +1 for activities in more languages than Swedish or a language café;
    - `digital`: +1 for activities that help with computers and phones;
    - `health`: +1 when accessibility is described;
    - `time`: +1 for recurring activities (many chances to come), +1 when the next occasion
      is in the evening or at the weekend (outside working hours).
    Times of day the patient can come (`times_of_day`, "morning", "afternoon", "evening"): +2
    when the next occasion starts in one of them, −2 otherwise.
    Left out: withdrawn, unpublished, not verified for nine months, or no occasion in the next
    60 days. Ties go to the sooner next occasion.
    """
    labels = category_labels or {}
    wanted = set(interests)
    known_barriers = set(barriers) & set(BARRIERS)
    windows = [TIME_OF_DAY_MINUTES[t] for t in times_of_day if t in TIME_OF_DAY_MINUTES]
    now = _day_start(today)
    next_by_activity = dict(
        session.execute(
            select(ActivityOccasion.activity_id, func.min(ActivityOccasion.starts_at))
            .where(
                ActivityOccasion.starts_at >= now,
                ActivityOccasion.starts_at < now + dt.timedelta(days=60),
            )
            .group_by(ActivityOccasion.activity_id)
        ).all()
    )
    if not next_by_activity:
        return []
    candidates = session.scalars(
        select(Activity)
        .where(Activity.id.in_(list(next_by_activity)), Activity.is_withdrawn.is_(False))
        .options(selectinload(Activity.published), selectinload(Activity.organisation))
    )
    results: list[Suggestion] = []
    for activity in candidates:
        revision = activity.published
        if revision is None or is_hidden_from_suggestions(activity, today):
            continue
        starts = next_by_activity[activity.id].astimezone(local_zone())
        score, reasons = 0, []
        matching = [c for c in revision.categories if c in wanted]
        if wanted and not matching:
            continue
        for code in matching:
            score += 3
            reasons.append(f"Passar intresset {labels.get(code, code).lower()}")
        if "cost" in known_barriers:
            if not revision.is_free:
                continue
            score += 2
            reasons.append("Kostnadsfritt")
        if "anxiety" in known_barriers:
            if revision.has_companion:
                score += 3
                reasons.append("Någon kan möta upp och följa med första gången")
            else:
                score -= 1
        if "transport" in known_barriers and (area or postcode):
            if area and revision.area.casefold() == area.casefold():
                score += 2
                reasons.append(f"Nära: {revision.area}")
            elif postcode and _same_postal_area(postcode, revision.postcode):
                score += 1
                reasons.append(f"Nära: samma postnummerområde ({revision.postcode})")
            else:
                score -= 2
        if "language" in known_barriers and (
            set(revision.languages) - {"sv"} or "language_cafe" in revision.categories
        ):
            score += 1
            reasons.append("Flera språk eller språkträning")
        if "digital" in known_barriers and "digital_help" in revision.categories:
            score += 1
            reasons.append("Hjälp med dator och mobil")
        if "health" in known_barriers and revision.accessibility_notes.strip():
            score += 1
            reasons.append("Tillgänglighet beskriven: " + revision.accessibility_notes.strip()[:80])
        if "time" in known_barriers:
            if revision.rrule:
                score += 1
                reasons.append("Återkommer ofta, många tillfällen att välja på")
            if _is_evening_or_weekend(starts):
                score += 1
                reasons.append("På kvällen eller helgen")
        if windows:
            minute = starts.hour * 60 + starts.minute
            if any(first <= minute < last for first, last in windows):
                score += 2
                reasons.append(f"Passar tiden på dagen: kl. {starts:%H.%M}")
            else:
                score -= 2
        results.append(Suggestion(activity, score, reasons, starts))
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    results.sort(key=lambda s: (-s.score, s.next_occasion or far, s.activity.id))
    return results[:limit]


def activity_titles(session: Session, activity_ids: Iterable[int]) -> dict[int, str]:
    """The published titles of these activities (id -> title); one never published is left
    out. For a plan step whose activity is no longer suggested."""
    ids = list(activity_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Activity.id, ActivityRevision.title)
        .join(ActivityRevision, ActivityRevision.id == Activity.published_revision_id)
        .where(Activity.id.in_(ids))
    )
    return {activity_id: title for activity_id, title in rows}


def content_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(ActivityData))
