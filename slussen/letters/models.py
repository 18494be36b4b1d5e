"""The letter queue (filled by workflow transitions and by visit services) and print batches."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, created_at, intpk, one_of

LETTER_STATUSES = ("queued", "held", "printed", "cancelled")


class QueuedLetter(Base):
    """A letter waiting to be printed (or printed, held back, cancelled)."""

    __tablename__ = "letter_queue"
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


class LetterBatch(Base):
    """One print run: the letters it holds are those with its batch_id, in batch_position order.

    The PDF is not stored (it holds patient data): it is rendered again from the same letters,
    in the same order, dated `letter_date`, which gives the same bytes; `sha256` tells whether a
    reprint is identical to what went to the print room."""

    __tablename__ = "letter_batches"

    id: Mapped[intpk]
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[created_at]
    #: The date printed on every letter of the batch (Swedish local date at print time).
    letter_date: Mapped[dt.date] = mapped_column(Date)
    letter_count: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    #: SHA-256 (hex) of the PDF's content as first printed.
    sha256: Mapped[str] = mapped_column(String(64))
    #: Letters to patients with protected identity: no address, forwarded by hand.
    is_forwarding: Mapped[bool] = mapped_column(Boolean, default=False)
