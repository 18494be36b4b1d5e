"""Units (vårdcentraler), users and the units each user works in."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from slussen.accounts.roles import Role
from slussen.db import Base, created_at, intpk, str200

ROLE_VALUES = ", ".join(f"'{r.value}'" for r in Role)


class Unit(Base):
    """A vårdcentral: the boundary of who may see which case, and the letterhead of its letters."""

    __tablename__ = "units"

    id: Mapped[intpk]
    name: Mapped[str200]
    #: HSA-id, e.g. SE2321000016-ABCD (validated by slussen.identifiers.validate_hsa_id).
    hsa_id: Mapped[str] = mapped_column(String(31), unique=True)
    street: Mapped[str200]
    #: Stored formatted "NNN NN".
    postcode: Mapped[str] = mapped_column(String(6))
    town: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(40))
    #: When the phone is answered, printed in letters ("vardagar 8.00–10.00").
    phone_hours: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[created_at]


class User(Base):
    """A person who logs in. Exactly one role; units through memberships."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN ({ROLE_VALUES})", name="role_known"),)

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str200]
    role: Mapped[str] = mapped_column(String(20))
    #: argon2id hash (PHC string).
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[created_at]
    last_login_at: Mapped[dt.datetime | None]

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def unit_ids(self) -> frozenset[int]:
        return frozenset(m.unit_id for m in self.memberships)


class Membership(Base):
    """A user works in a unit; a coach sees only the cases of their units (inre sekretess)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "unit_id"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)

    user: Mapped[User] = relationship(back_populates="memberships")
    unit: Mapped[Unit] = relationship(lazy="joined")
