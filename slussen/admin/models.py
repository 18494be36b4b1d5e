"""The one-time link an administrator gives a user to set a new password."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from slussen.db import Base, UtcDateTime, created_at, intpk
from slussen.sensitivity import REFERENCES, classify


class AccountLink(Base):
    """A single-use, expiring link (/konto/engangslank/<token>) with which a user sets a new
    password: made by an administrator for a new account or a reset one. Only the token's keyed
    hash is stored; the link itself is shown once to the administrator."""

    __tablename__ = "account_links"
    __sensitivity__ = classify(
        blind_index=("token_hash",),
        clear={
            REFERENCES: ("id", "user_id", "created_by_id"),
            "when made, until when it works, when used (a used or old link is refused)": (
                "created_at",
                "expires_at",
                "used_at",
            ),
        },
    )

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: The administrator who made the link (NULL when made from the command line).
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: Keyed hash (hex) of the token: the blind index (kind "account-link") of its SHA-256.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    #: When the link was used; a used link is refused.
    used_at: Mapped[dt.datetime | None]
