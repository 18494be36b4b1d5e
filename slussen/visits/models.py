"""What a coach records at the visits. Every health fact and every free text is sealed with the
patient's data key (`slussen.patients.services.seal`, bound to table/column/row): the network's
entries, the interests, barriers and home area, notes, plan goals and steps, visit places and the
hand-overs' names and places. Clear are only what a query needs: ids, kinds, states and the times
worklists, letters and reminders look for; each such column says why."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
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
#: How the first occasion went: the patient came, did not come, came and will continue (the
#: association's three answers), or the coach found a barrier.
HANDOVER_OUTCOMES = ("went", "did_not_go", "will_continue", "barrier_found")


class Visit(Base):
    """A booked or held visit: the 45-minute mapping visit or a follow-up."""

    __tablename__ = "visits"
    __sensitivity__ = classify(
        sealed=("notes_enc", "place_enc"),
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
    #: Clear: which visit of the sluss; the booking, the letters and the follow-ups query it.
    kind: Mapped[str] = mapped_column(String(20))
    #: Clear: the booked visit is found by it (letters, rebooking).
    status: Mapped[str] = mapped_column(String(10), default="booked")
    mode: Mapped[str] = mapped_column(String(10), default="at_unit")
    #: Clear: a date worklists and letters order and look up by.
    starts_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=45)
    #: Where, e.g. "Vårdcentralen Solgläntan, rum 12" — sealed (visits/place); printed in
    #: letters. NULL only for an erased patient's visit, whose place migration 0015 dropped.
    place_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    coach_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: How has it gone / problem solving / notes — encrypted.
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]


class NetworkEntry(Base):
    """A person or context in the patient's social network, for the network map."""

    __tablename__ = "network_entries"
    __sensitivity__ = classify(
        sealed=("label_enc", "facts_enc"), clear={REFERENCES: ("id", "case_id")}
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    #: Who or what ("dottern Anna", "kören") — sealed (network_entries/label).
    label_enc: Mapped[bytes] = mapped_column(LargeBinary)
    #: The entry's structured facts as one sealed JSON object (network_entries/facts):
    #: relation_type (RELATION_TYPES), closeness (1 = closest ring of the map, 3 = outermost),
    #: contact_frequency (CONTACT_FREQUENCIES), could_deepen, could_resume. No query needs
    #: them; the service checks them. NULL only for an erased patient's entry (migration 0015).
    facts_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


class MappingRecord(Base):
    """What the mapping holds besides the network, all sealed: the interest areas and barriers
    ticked, barriers in the patient's words, notes and the home area. One row per mapped case."""

    __tablename__ = "mapping_records"
    __sensitivity__ = classify(
        sealed=("barrier_notes_enc", "notes_enc", "interests_enc", "barriers_enc", "area_enc"),
        clear={REFERENCES: ("id", "case_id")},
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    barrier_notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The interest areas ticked (ids from forms/interest_mapping.toml), a sealed JSON list
    #: (mapping_records/interests). NULL: none ticked.
    interests_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The barriers ticked (ids from forms/barriers.toml: cost, anxiety, health …), a sealed
    #: JSON list (mapping_records/barriers). NULL: none ticked.
    barriers_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The patient's home area, for suggesting activities nearby — sealed
    #: (mapping_records/area). NULL: not given.
    area_enc: Mapped[bytes | None] = mapped_column(LargeBinary)


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
    #: Clear: who acts (patient, coach, companion), a state of the step with no health fact.
    actor: Mapped[str] = mapped_column(String(10))
    #: Clear: a date, no health fact (dates may stay clear); printed in the plan letter.
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    #: Clear: the step's state (pending, done, not done, barrier); what happened is in the sealed
    #: outcome note.
    outcome: Mapped[str] = mapped_column(String(10), default="pending")
    outcome_note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    plan: Mapped[ActionPlan] = relationship(back_populates="steps")


class Handover(Base):
    """Sluss 2: an organisation is asked to meet the patient and go along the first time."""

    __tablename__ = "handovers"
    __sensitivity__ = classify(
        sealed=(
            "notes_enc",
            "organisation_name_enc",
            "companion_name_enc",
            "meeting_place_enc",
            "shared_enc",
            "answer_reason_enc",
        ),
        clear={
            # The organisation asked stays clear: its representatives must find the requests
            # addressed to it (sluss 2). Its name as written is sealed.
            REFERENCES: ("id", "case_id", "step_id", "organisation_id", "activity_id"),
            "the request's state and the meeting's time, which the association's list queries": (
                "status",
                "meeting_at",
                "wished_at",
                "outcome",
                "created_at",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("status", HANDOVER_STATUSES), "status_known"),
        CheckConstraint(one_of("outcome", HANDOVER_OUTCOMES, nullable=True), "outcome_known"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    step_id: Mapped[int | None] = mapped_column(ForeignKey("plan_steps.id"))
    #: Clear: the directory's organisation when known, so that the association's users can find
    #: the requests addressed to it (a query by organisation); it names no patient.
    organisation_id: Mapped[int | None] = mapped_column(Integer)
    #: The organisation's name as written — sealed (handovers/organisation_name). NULL only for
    #: an erased patient's hand-over (migration 0015).
    organisation_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Clear: a state name; the letters and the organisation's requests are found by it.
    status: Mapped[str] = mapped_column(String(10), default="requested")
    #: First name of the companion who accepted — sealed (handovers/companion_name); NULL: none.
    companion_name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Clear: a date; the letters' hold check asks whether it is set without decrypting.
    meeting_at: Mapped[dt.datetime | None]
    #: Where they meet — sealed (handovers/meeting_place); NULL: not agreed yet (a letter
    #: needs one, and checks for it without decrypting).
    meeting_place_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    outcome: Mapped[str | None] = mapped_column(String(20))
    #: The coach's note — sealed (handovers/notes); never shown to the association.
    notes_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[created_at]
    #: Clear: the directory's activity the patient is to try, when chosen from it (a reference,
    #: like `organisation_id`; the association's page shows its title).
    activity_id: Mapped[int | None] = mapped_column(Integer)
    #: Clear: the wished first occasion (a date and time, no health fact); the association's
    #: list orders by it. NULL: none wished.
    wished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: What the patient agreed to share with the association, as the coach recorded it with the
    #: request: a sealed JSON object {first_name, phone ("" without consent), helps}
    #: (handovers/shared). The association sees this and nothing else about the patient. NULL:
    #: a request made before revision 0019c, or an erased patient's.
    shared_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The association's reason for declining (or a word with its answer) — sealed
    #: (handovers/answer_reason); NULL: none given.
    answer_reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
