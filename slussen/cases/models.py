"""A case is one patient's path through the sluss, driven only by the workflow engine."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TypeVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from slussen.db import Base, UtcDateTime, created_at, intpk, one_of
from slussen.sensitivity import REFERENCES, classify

T = TypeVar("T")

CHANNELS = ("staff_flag", "self_referral", "phone", "message_1177")
CONTACT_CHANNELS = ("post", "phone", "1177")


#: Set only while the workflow engine writes a new state (see `state_writer`).
_WRITING_STATE: ContextVar[bool] = ContextVar("slussen_writing_state", default=False)


class StateWriteRefused(RuntimeError):
    """Someone assigned Case.state or Case.screening_enc outside the workflow engine."""


@contextlib.contextmanager
def state_writer() -> Iterator[None]:
    """Allow assigning `Case.state` inside the block. Only the workflow engine uses it; the
    validator below refuses every other assignment."""
    token = _WRITING_STATE.set(True)
    try:
        yield
    finally:
        _WRITING_STATE.reset(token)


class Case(Base):
    """One patient's sluss. `state` and `screening_enc` are written only by
    slussen.cases.engine (a validator refuses any other assignment); `version` makes two
    concurrent changes collide instead of mixing."""

    __tablename__ = "cases"
    __sensitivity__ = classify(
        sealed=("screening_enc",),
        clear={
            REFERENCES: ("id", "unit_id", "patient_id", "coach_id", "flagged_by_id"),
            "printed on letters instead of any identifier": ("reference",),
            "the workflow's state and its times, which worklists and timers query": (
                "state",
                "opened_at",
                "state_entered_at",
                "closed_at",
                "next_due_on",
                "version",
            ),
            "how the case came in and how the patient wants to be reached": (
                "channel",
                "contact_channel",
                "is_consent_to_contact",
            ),
        },
    )
    __table_args__ = (
        # States are data (workflows/sluss.toml), so the database checks their form; the engine
        # checks that they exist in the loaded workflow.
        CheckConstraint("state <> '' AND length(state) <= 40", "state_present"),
        CheckConstraint(one_of("channel", CHANNELS), "channel_known"),
        CheckConstraint(one_of("contact_channel", CONTACT_CHANNELS), "contact_channel_known"),
        # The worklist and the per-state counts read only this index (PostgreSQL: index-only,
        # with the id included; SQLite's rowid is in every index).
        Index(
            "ix_cases_worklist",
            "unit_id",
            "state",
            "next_due_on",
            "coach_id",
            postgresql_include=["id"],
        ),
        Index("ix_cases_coach_id_next_due_on", "coach_id", "next_due_on"),
    )

    id: Mapped[intpk]
    #: Printed on letters instead of any identifier, e.g. "S26-000123".
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    state: Mapped[str] = mapped_column(String(40))
    #: The coach responsible; NULL until someone takes the case.
    coach_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: Who flagged the patient (staff view "cases I flagged").
    flagged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    #: How the patient prefers to be contacted (post, phone, 1177).
    contact_channel: Mapped[str] = mapped_column(String(10), default="post")
    is_consent_to_contact: Mapped[bool] = mapped_column(Boolean)
    #: The screening result needing the coach ("", "positive" = flag open, or "resolved"),
    #: sealed with the patient's data key and padded to one length, so a copy of the database
    #: tells no flagged case from another. Written only by the engine (`engine.screening_of`
    #: reads it): at opening, and by a transition that declares `screening = "…"`.
    screening_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    opened_at: Mapped[created_at]
    state_entered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    closed_at: Mapped[dt.datetime | None]
    #: The earliest open due date, kept by the engine so worklists are one indexed query.
    next_due_on: Mapped[dt.date | None] = mapped_column(Date)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    due_dates: Mapped[list[DueDate]] = relationship(
        back_populates="case", cascade="all, delete-orphan", lazy="selectin"
    )

    @validates("state", "screening_enc")
    def _only_the_engine(self, key: str, value: T) -> T:
        if not _WRITING_STATE.get():
            raise StateWriteRefused(f"a case's {key} changes only through the workflow engine")
        return value


class CaseEvent(Base):
    """The case's history: one row per event, appended by the engine, never changed."""

    __tablename__ = "case_events"
    __sensitivity__ = classify(
        sealed=("note_enc", "event_enc"),
        clear={
            REFERENCES: ("id", "case_id", "actor_id"),
            "the history: events (a screening one only as 'sealed'), states, who, when": (
                "event",
                "from_state",
                "to_state",
                "actor_name",
                "actor_role",
                "occurred_at",
            ),
        },
    )
    __table_args__ = (
        # The evaluation reads each milestone event's (case, moment) from this index alone.
        Index("ix_case_events_event_case_id_occurred_at", "event", "case_id", "occurred_at"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(40))
    to_state: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(80))
    actor_role: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[created_at]
    #: The actor's note, encrypted with the patient's data key.
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The event's name when `event` says only "sealed" (a screening result), sealed like the
    #: note (see `engine.SEALED_EVENT`).
    event_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class DueDate(Base):
    """A named due date of a case ("reminder", "follow_up_1"…), set and cleared by the engine."""

    __tablename__ = "case_due_dates"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "case_id"),
            "a timer's name and date, which the daily tick queries": ("name", "due_on"),
        },
    )
    __table_args__ = (UniqueConstraint("case_id", "name"),)

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(40))
    due_on: Mapped[dt.date] = mapped_column(Date, index=True)

    case: Mapped[Case] = relationship(back_populates="due_dates")


class Referral(Base):
    """A referral: the one that opened the case, or a later one attached to the open case."""

    __tablename__ = "referrals"
    __sensitivity__ = classify(
        sealed=("reason_enc",),
        clear={
            REFERENCES: ("id", "case_id", "created_by_id"),
            "how and when it came, and whether the coach has seen it": (
                "channel",
                "created_at",
                "is_seen",
            ),
        },
    )
    __table_args__ = (CheckConstraint(one_of("channel", CHANNELS), "channel_known"),)

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[created_at]
    reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: A later referral waits until the coach has seen it.
    is_seen: Mapped[bool] = mapped_column(Boolean, default=False)
