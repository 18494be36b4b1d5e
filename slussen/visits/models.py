"""What a coach records at the visits. Free text is encrypted with the patient's data key."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from slussen.db import Base, UtcDateTime, created_at, intpk, one_of
from slussen.sensitivity import REFERENCES, classify

VISIT_KINDS = ("mapping", "follow_up_1", "follow_up_2")
VISIT_STATUSES = ("booked", "done", "cancelled")
VISIT_MODES = ("at_unit", "phone")
RELATION_TYPES = ("family", "friend", "neighbour", "colleague", "association", "care", "other")
CONTACT_FREQUENCIES = ("daily", "weekly", "monthly", "rarely", "lost")
STEP_ACTORS = ("patient", "coach", "companion")
STEP_OUTCOMES = ("pending", "done", "not_done", "barrier")
HANDOVER_STATUSES = ("requested", "accepted", "declined", "done")
HANDOVER_OUTCOMES = ("went", "did_not_go", "barrier_found")


class Visit(Base):
    """A booked or held visit: the 45-minute mapping visit or a follow-up."""

    __tablename__ = "visits"
    __sensitivity__ = classify(
        sealed=("notes_enc",),
        clear={
            REFERENCES: ("id", "case_id", "coach_id"),
            "the coach's calendar and worklist need what kind of visit, when and its state": (
                "kind",
                "status",
                "mode",
                "starts_at",
                "duration_minutes",
                "created_at",
            ),
            "not yet sealed (#17)": ("place",),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("kind", VISIT_KINDS), "kind_known"),
        CheckConstraint(one_of("status", VISIT_STATUSES), "status_known"),
        CheckConstraint(one_of("mode", VISIT_MODES), "mode_known"),
        CheckConstraint("duration_minutes BETWEEN 5 AND 240", "duration_sane"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="booked")
    mode: Mapped[str] = mapped_column(String(10), default="at_unit")
    starts_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=45)
    #: Where, e.g. "Vårdcentralen Solgläntan, rum 12" (not sensitive, printed in letters).
    place: Mapped[str] = mapped_column(String(200))
    coach_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: How has it gone / problem solving / notes — encrypted.
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]


class NetworkEntry(Base):
    """A person or context in the patient's social network, for the network map."""

    __tablename__ = "network_entries"
    __sensitivity__ = classify(
        sealed=("label_enc",),
        clear={
            REFERENCES: ("id", "case_id"),
            "not yet sealed (#17)": (
                "relation_type",
                "closeness",
                "contact_frequency",
                "is_could_deepen",
                "is_could_resume",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("relation_type", RELATION_TYPES), "relation_type_known"),
        CheckConstraint(
            one_of("contact_frequency", CONTACT_FREQUENCIES), "contact_frequency_known"
        ),
        CheckConstraint("closeness BETWEEN 1 AND 3", "closeness_range"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    #: Who or what ("dottern Anna", "kören") — encrypted.
    label_enc: Mapped[bytes] = mapped_column(LargeBinary)
    relation_type: Mapped[str] = mapped_column(String(20))
    #: 1 = closest ring of the map, 3 = outermost.
    closeness: Mapped[int] = mapped_column(Integer)
    contact_frequency: Mapped[str] = mapped_column(String(10))
    is_could_deepen: Mapped[bool] = mapped_column(Boolean, default=False)
    is_could_resume: Mapped[bool] = mapped_column(Boolean, default=False)


class CaseInterest(Base):
    """An interest area mapped at the visit (ids from forms/interest_mapping.toml)."""

    __tablename__ = "case_interests"
    __sensitivity__ = classify(
        clear={REFERENCES: ("id", "case_id"), "not yet sealed (#17)": ("interest",)}
    )
    __table_args__ = (UniqueConstraint("case_id", "interest"),)

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    interest: Mapped[str] = mapped_column(String(40))


class CaseBarrier(Base):
    """A barrier to community (ids: cost, anxiety, transport, language, digital, health, time…)."""

    __tablename__ = "case_barriers"
    __sensitivity__ = classify(
        clear={REFERENCES: ("id", "case_id"), "not yet sealed (#17)": ("barrier",)}
    )
    __table_args__ = (UniqueConstraint("case_id", "barrier"),)

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    barrier: Mapped[str] = mapped_column(String(40))


class MappingRecord(Base):
    """The free-text parts of the mapping: barriers in the patient's words and notes."""

    __tablename__ = "mapping_records"
    __sensitivity__ = classify(
        sealed=("barrier_notes_enc", "notes_enc"),
        clear={REFERENCES: ("id", "case_id"), "not yet sealed (#17)": ("area",)},
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    barrier_notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The patient's home area, for suggesting activities nearby (not identifying).
    area: Mapped[str | None] = mapped_column(String(100))


class ActionPlan(Base):
    """One revision of the action plan; revisions are kept, the highest is current."""

    __tablename__ = "action_plans"
    __sensitivity__ = classify(
        sealed=("goals_enc",),
        clear={
            REFERENCES: ("id", "case_id", "created_by_id"),
            "which revision, when": ("revision", "created_at"),
        },
    )
    __table_args__ = (UniqueConstraint("case_id", "revision"),)

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    #: Goals in the patient's own words — encrypted.
    goals_enc: Mapped[bytes] = mapped_column(LargeBinary)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[created_at]

    steps: Mapped[list[PlanStep]] = relationship(
        back_populates="plan",
        cascade="all, delete-orphan",
        order_by="PlanStep.position",
        lazy="selectin",
    )


class PlanStep(Base):
    """A step of the plan: an activity, who acts, when, and how it went."""

    __tablename__ = "plan_steps"
    __sensitivity__ = classify(
        sealed=("text_enc", "outcome_note_enc"),
        clear={
            REFERENCES: ("id", "plan_id", "activity_id"),
            "the step's order, who acts, its date and state (no fact about the patient)": (
                "position",
                "actor",
                "due_on",
                "outcome",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("actor", STEP_ACTORS), "actor_known"),
        CheckConstraint(one_of("outcome", STEP_OUTCOMES), "outcome_known"),
    )

    id: Mapped[intpk]
    plan_id: Mapped[int] = mapped_column(ForeignKey("action_plans.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    #: An activity of the directory, when chosen from it.
    activity_id: Mapped[int | None] = mapped_column(Integer)
    #: What to do, in words (free text or the activity's title) — encrypted.
    text_enc: Mapped[bytes] = mapped_column(LargeBinary)
    actor: Mapped[str] = mapped_column(String(10))
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(10), default="pending")
    outcome_note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    plan: Mapped[ActionPlan] = relationship(back_populates="steps")


class Handover(Base):
    """Sluss 2: an organisation is asked to meet the patient and go along the first time."""

    __tablename__ = "handovers"
    __sensitivity__ = classify(
        sealed=("notes_enc",),
        clear={
            REFERENCES: ("id", "case_id", "step_id", "organisation_id"),
            "the request's state and the meeting's time, which the association's list queries": (
                "status",
                "meeting_at",
                "outcome",
                "created_at",
            ),
            "not yet sealed (#17)": ("organisation_name", "companion_name", "meeting_place"),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("status", HANDOVER_STATUSES), "status_known"),
        CheckConstraint(one_of("outcome", HANDOVER_OUTCOMES, nullable=True), "outcome_known"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    step_id: Mapped[int | None] = mapped_column(ForeignKey("plan_steps.id"))
    #: The organisation (directory id when known) and its name as written.
    organisation_id: Mapped[int | None] = mapped_column(Integer)
    organisation_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="requested")
    #: First name of the companion who accepted (what the org_rep may see of the patient too).
    companion_name: Mapped[str | None] = mapped_column(String(100))
    meeting_at: Mapped[dt.datetime | None]
    meeting_place: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(20))
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]
