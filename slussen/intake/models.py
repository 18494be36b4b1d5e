"""A referral made in one unit for a patient whose open case is in another: it waits for that
unit's coordinator, who accepts it (attached to the case) or declines it (with a reason)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.cases.models import CHANNELS
from slussen.db import Base, created_at, intpk, one_of
from slussen.sensitivity import REFERENCES, classify

FORWARD_STATUSES = ("pending", "accepted", "declined")


class ForwardedReferral(Base):
    """A referral forwarded to the unit of the patient's open case. The referring unit is told
    nothing (no case, no reference); only the receiving unit's coordinators see it. Its texts are
    sealed with the patient's data key, bound to this row."""

    __tablename__ = "forwarded_referrals"
    __sensitivity__ = classify(
        sealed=("reason_enc", "decision_reason_enc"),
        clear={
            REFERENCES: (
                "id",
                "case_id",
                "to_unit_id",
                "from_unit_id",
                "created_by_id",
                "decided_by_id",
                "referral_id",
            ),
            "how it came and the request's state": (
                "channel",
                "status",
                "created_at",
                "decided_at",
            ),
        },
    )
    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), "channel_known"),
        CheckConstraint(one_of("status", FORWARD_STATUSES), "status_known"),
        # The coordinator's list: the pending ones of their units, oldest first.
        Index("ix_forwarded_referrals_to_unit_id_status", "to_unit_id", "status"),
    )

    id: Mapped[intpk]
    #: The receiving unit's open case the referral is about (never shown to the referrer).
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    to_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    from_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    channel: Mapped[str] = mapped_column(String(20))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[created_at]
    reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None]
    #: Why the coordinator declined, sealed like the referral text.
    decision_reason_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The referral row an accepted request became on the case.
    referral_id: Mapped[int | None] = mapped_column(ForeignKey("referrals.id"))
