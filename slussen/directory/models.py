"""Organisations, their representatives, activities with moderated revisions, and the occasions
expanded from the published schedules.

An activity's content lives in `ActivityRevision` rows: every change an organisation makes is a
new revision that waits for the coordinator; approving one publishes it (`Activity.published_
revision_id`) and keeps the older ones as history. `ActivityOccasion` holds the dated occasions of
the published revision for the next months, so the public calendar is one indexed query.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from slussen.accounts.models import User
from slussen.db import Base, created_at, intpk, one_of, str200, utcnow
from slussen.directory.categories import KINDS, SECTORS
from slussen.sensitivity import REFERENCES, classify

REVISION_STATUSES = ("pending", "approved", "returned", "superseded")


def new_public_id() -> str:
    return str(uuid.uuid4())


class TagList(TypeDecorator[list[str]]):
    """A list of short codes stored as ",a,b," so `LIKE '%,a,%'` filters on every database."""

    impl = String(500)
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if not value:
            return ""
        return "," + ",".join(value) + ","

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str]:
        if not value:
            return []
        return [part for part in str(value).split(",") if part]


class Organisation(Base):
    """An association, church, library or municipal service offering activities."""

    __tablename__ = "organisations"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "public_id"),
            "the directory: public information about an association": (
                "name",
                "sector",
                "description",
                "contact_name",
                "email",
                "phone",
                "website",
                "area",
                "created_at",
                "updated_at",
            ),
        },
    )
    __table_args__ = (CheckConstraint(one_of("sector", SECTORS), name="sector_known"),)

    id: Mapped[intpk]
    #: Stable identifier for open-data exchange (HSDS organization.id).
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_public_id)
    name: Mapped[str200]
    sector: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    website: Mapped[str] = mapped_column(String(300), default="")
    #: The part of town or municipality it works in ("Centrum", "Skarptorp").
    area: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[created_at]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    activities: Mapped[list[Activity]] = relationship(
        back_populates="organisation", order_by="Activity.id"
    )


class OrganisationMember(Base):
    """An org_rep user represents an organisation and may edit only its activities."""

    __tablename__ = "organisation_members"
    __sensitivity__ = classify(clear={REFERENCES: ("id", "user_id", "organisation_id")})
    __table_args__ = (UniqueConstraint("user_id", "organisation_id"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )

    user: Mapped[User] = relationship()
    organisation: Mapped[Organisation] = relationship()


class Activity(Base):
    """Something an organisation offers, once or recurring; its content is in revisions."""

    __tablename__ = "activities"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "public_id", "organisation_id", "published_revision_id"),
            "the directory: public information about an activity": (
                "is_withdrawn",
                "last_verified_on",
                "created_at",
            ),
        },
    )

    id: Mapped[intpk]
    #: Stable identifier for open data and calendar programs (HSDS service.id, iCalendar UID).
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_public_id)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="RESTRICT"), index=True
    )
    #: The approved revision the public sees; None until the coordinator approves one.
    published_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("activity_revisions.id", use_alter=True, ondelete="SET NULL"), index=True
    )
    #: The organisation took it out of the calendar (the history stays).
    is_withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When the organisation last confirmed the published content is right.
    last_verified_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[created_at]

    organisation: Mapped[Organisation] = relationship(back_populates="activities")
    published: Mapped[ActivityRevision | None] = relationship(
        foreign_keys=[published_revision_id], post_update=True
    )
    revisions: Mapped[list[ActivityRevision]] = relationship(
        back_populates="activity",
        foreign_keys="ActivityRevision.activity_id",
        order_by="ActivityRevision.number",
    )


class ActivityRevision(Base):
    """One version of an activity's content, as submitted; moderated, never edited afterwards."""

    __tablename__ = "activity_revisions"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "activity_id", "author_id", "decided_by_id"),
            "moderation of the public directory": (
                "number",
                "status",
                "created_at",
                "decided_at",
                "moderator_comment",
            ),
            "the directory: public information about an activity": (
                "title",
                "description",
                "categories",
                "kind",
                "first_date",
                "start_time",
                "duration_minutes",
                "rrule",
                "extra_dates",
                "exception_dates",
                "place_name",
                "street",
                "postcode",
                "town",
                "area",
                "accessibility_notes",
                "cost_sek",
                "cost_note",
                "bring",
                "age_groups",
                "languages",
                "has_companion",
                "capacity",
                "contact_name",
                "contact_phone",
                "contact_email",
            ),
        },
    )
    __table_args__ = (
        UniqueConstraint("activity_id", "number"),
        CheckConstraint(one_of("status", REVISION_STATUSES), name="status_known"),
        CheckConstraint(one_of("kind", KINDS), name="kind_known"),
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        CheckConstraint("cost_sek IS NULL OR cost_sek > 0", name="cost_positive"),
    )

    id: Mapped[intpk]
    activity_id: Mapped[int] = mapped_column(
        ForeignKey("activities.id", ondelete="CASCADE"), index=True
    )
    #: 1, 2, 3… per activity.
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[dt.datetime | None]
    #: The coordinator's comment when returning (or approving) a revision; the org_rep sees it.
    moderator_comment: Mapped[str] = mapped_column(Text, default="")

    title: Mapped[str200]
    #: Plain Swedish, for the public.
    description: Mapped[str] = mapped_column(Text, default="")
    #: Interest category ids from forms/interest_mapping.toml.
    categories: Mapped[list[str]] = mapped_column(TagList(), default=list)
    kind: Mapped[str] = mapped_column(String(20), default="leisure")
    #: Date of the first (or only) occasion, local time Europe/Stockholm.
    first_date: Mapped[dt.date] = mapped_column(Date)
    start_time: Mapped[dt.time] = mapped_column(Time)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    #: RFC 5545 RRULE value ("FREQ=WEEKLY;BYDAY=TU"); empty for one-off dates.
    rrule: Mapped[str] = mapped_column(String(500), default="")
    #: Further one-off dates (RDATE), ISO dates.
    extra_dates: Mapped[list[str]] = mapped_column(TagList(), default=list)
    #: Dates on which a recurring activity does not take place (EXDATE), ISO dates.
    exception_dates: Mapped[list[str]] = mapped_column(TagList(), default=list)
    place_name: Mapped[str] = mapped_column(String(200), default="")
    street: Mapped[str] = mapped_column(String(200), default="")
    postcode: Mapped[str] = mapped_column(String(6), default="")
    town: Mapped[str] = mapped_column(String(100), default="")
    area: Mapped[str] = mapped_column(String(100), default="", index=True)
    accessibility_notes: Mapped[str] = mapped_column(Text, default="")
    #: None means free of charge.
    cost_sek: Mapped[int | None] = mapped_column(Integer)
    cost_note: Mapped[str] = mapped_column(String(200), default="")
    #: What a newcomer brings ("inneskor och kaffepengar"), printed in the action plan letter.
    bring: Mapped[str] = mapped_column(String(200), default="")
    age_groups: Mapped[list[str]] = mapped_column(TagList(), default=list)
    #: ISO 639-1 codes of the languages spoken.
    languages: Mapped[list[str]] = mapped_column(TagList(), default=list)
    #: Someone can meet a newcomer and go along the first time (sluss 2).
    has_companion: Mapped[bool] = mapped_column(Boolean, default=False)
    capacity: Mapped[int | None] = mapped_column(Integer)
    contact_name: Mapped[str] = mapped_column(String(200), default="")
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    contact_email: Mapped[str] = mapped_column(String(200), default="")

    activity: Mapped[Activity] = relationship(
        back_populates="revisions", foreign_keys=[activity_id]
    )
    author: Mapped[User | None] = relationship(foreign_keys=[author_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    @property
    def is_free(self) -> bool:
        return self.cost_sek is None


#: The content fields a revision copies from the form (and from the previous revision).
CONTENT_FIELDS = (
    "title",
    "description",
    "categories",
    "kind",
    "first_date",
    "start_time",
    "duration_minutes",
    "rrule",
    "extra_dates",
    "exception_dates",
    "place_name",
    "street",
    "postcode",
    "town",
    "area",
    "accessibility_notes",
    "cost_sek",
    "cost_note",
    "bring",
    "age_groups",
    "languages",
    "has_companion",
    "capacity",
    "contact_name",
    "contact_phone",
    "contact_email",
)


class ActivityOccasion(Base):
    """One dated occasion of a published activity, expanded from its schedule."""

    __tablename__ = "activity_occasions"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "activity_id"),
            "when a public activity takes place (the calendar's index)": (
                "starts_at",
                "ends_at",
                "local_date",
                "weekday",
                "start_minute",
            ),
        },
    )
    __table_args__ = (
        Index("ix_activity_occasions_local_date_starts_at", "local_date", "starts_at"),
        Index("ix_activity_occasions_activity_id_local_date", "activity_id", "local_date"),
    )

    id: Mapped[intpk]
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    #: The local (Europe/Stockholm) date, weekday (0 = Monday) and minute of the day it starts.
    local_date: Mapped[dt.date] = mapped_column(Date)
    weekday: Mapped[int] = mapped_column(SmallInteger)
    start_minute: Mapped[int] = mapped_column(SmallInteger)

    activity: Mapped[Activity] = relationship()


class DirectoryState(Base):
    """One row whose version goes up whenever what the public calendar shows changes, so every
    app process can tell whether its cached calendar pages are still current."""

    __tablename__ = "directory_state"
    __sensitivity__ = classify(
        clear={"the directory's version, for caches": ("id", "version", "changed_at")}
    )

    id: Mapped[intpk]
    version: Mapped[int] = mapped_column(Integer, default=0)
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
