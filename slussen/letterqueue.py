"""The letter queue: letters waiting for the print room, and the one way a letter is queued.

The workflow engine queues the letters a transition names, and the visits capability queues the
hand-over and follow-up letters; both call `queue_letter`, in the caller's transaction. The queue
lives below the cases layer so the engine may write to it without importing the letters
capability (which prints the queue and sits above cases).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from slussen.db import Base, created_at, intpk, one_of
from slussen.sensitivity import REFERENCES, classify

LETTER_STATUSES = ("queued", "held", "printed", "cancelled")
#: The hold reasons of a letter whose address is missing or unusable (the print run's
#: `letters.services.recipient_of` gives them); a corrected address releases such letters.
NO_ADDRESS = "Adress saknas."
BAD_POSTAL_LINE = "Postnumret eller orten är felaktig."
ADDRESS_TOO_LONG = "Adressen får inte plats i kuvertets fönster."
ADDRESS_HOLDS = (NO_ADDRESS, BAD_POSTAL_LINE, ADDRESS_TOO_LONG)


class QueuedLetter(Base):
    """A letter waiting to be printed (or printed, held back, cancelled)."""

    __tablename__ = "letter_queue"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "case_id", "unit_id", "batch_id"),
            "which letter, queued by which workflow event: the print queue's state": (
                "letter",
                "event",
                "status",
                "batch_position",
            ),
            "why a letter waits, in the system's words (no address, protected identity)": (
                "hold_reason",
            ),
            "queue times": ("queued_at", "printed_at"),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("status", LETTER_STATUSES), "status_known"),
        Index("ix_letter_queue_unit_id_status", "unit_id", "status"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    #: Template id in letters/ (e.g. "kallelse").
    letter: Mapped[str] = mapped_column(String(40))
    #: The workflow event that queued it (or "handover_accepted", "follow_up_booked").
    event: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="queued")
    #: Why a letter is held back (no address…), in Swedish for the coordinator.
    hold_reason: Mapped[str | None] = mapped_column(String(200))
    queued_at: Mapped[created_at]
    printed_at: Mapped[dt.datetime | None]
    batch_id: Mapped[int | None] = mapped_column(index=True)
    #: Place in its batch's PDF (postcode order at print time), so a reprint keeps the order.
    batch_position: Mapped[int | None] = mapped_column(Integer)


class _CaseLike(Protocol):
    """What queueing reads of a case (the ORM `Case`; typed here to keep the queue below cases)."""

    @property
    def id(self) -> int: ...

    @property
    def unit_id(self) -> int: ...


def queue_letter(session: Session | Any, case: _CaseLike, letter: str, event: str) -> QueuedLetter:
    """Queue `letter` for `case`, naming the `event` that caused it; only adds the row to the
    session (the caller's transaction writes it with everything else the event changed).

    Refuses nothing itself: which letters an event queues is the workflow's or the caller's rule;
    an unknown template is caught by the content check and held at print time."""
    row = QueuedLetter(case_id=case.id, unit_id=case.unit_id, letter=letter, event=event)
    session.add(row)
    return row


def release_address_holds(session: Session | Any, case_ids: Iterable[int]) -> int:
    """Put the letters of these cases that are held for their address (ADDRESS_HOLDS) back in
    the queue, for the next batch; returns how many. The caller has just corrected the address;
    a letter the new address still cannot carry is held again, with the reason, at print time.
    Refuses nothing; letters held for another reason stay held."""
    ids = list(case_ids)
    if not ids:
        return 0
    result = session.execute(
        update(QueuedLetter)
        .where(
            QueuedLetter.case_id.in_(ids),
            QueuedLetter.status == "held",
            QueuedLetter.hold_reason.in_(ADDRESS_HOLDS),
        )
        .values(status="queued", hold_reason=None)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)
