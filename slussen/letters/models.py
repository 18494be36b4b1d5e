"""Print batches. The letter queue itself is `slussen.letterqueue` (below the cases layer)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, created_at, intpk
from slussen.sensitivity import REFERENCES, classify


class LetterBatch(Base):
    """One print run: the letters it holds are those with its batch_id, in batch_position order.

    The PDF is not stored (it holds patient data): it is rendered again from the same letters,
    in the same order, dated `letter_date`, which gives the same bytes; `sha256` tells whether a
    reprint is identical to what went to the print room."""

    __tablename__ = "letter_batches"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id", "unit_id", "created_by_id"),
            "a print run: when, how many letters and pages, the PDF's checksum": (
                "created_at",
                "letter_date",
                "letter_count",
                "page_count",
                "sha256",
                "is_forwarding",
            ),
        },
    )

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
