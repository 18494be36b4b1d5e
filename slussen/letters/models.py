"""The letter queue: a row per letter a transition asked for; printing is the letters issue."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, created_at, intpk

LETTER_STATUSES = ("queued", "held", "printed", "cancelled")


class QueuedLetter(Base):
    """A letter waiting to be printed (or printed, held back, cancelled)."""

    __tablename__ = "letter_queue"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in LETTER_STATUSES) + ")", "status_known"
        ),
        Index("ix_letter_queue_unit_id_status", "unit_id", "status"),
    )

    id: Mapped[intpk]
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    #: Template id in letters/ (e.g. "kallelse").
    letter: Mapped[str] = mapped_column(String(40))
    #: The workflow event that queued it.
    event: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), default="queued")
    #: Why a letter is held back (no address…), in Swedish for the coordinator.
    hold_reason: Mapped[str | None] = mapped_column(String(200))
    queued_at: Mapped[created_at]
    printed_at: Mapped[dt.datetime | None]
    batch_id: Mapped[int | None] = mapped_column(index=True)
