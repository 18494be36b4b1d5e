"""Units (vårdcentraler), users, the units each user works in, web sessions and recovery codes."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from slussen.accounts.roles import Role
from slussen.db import Base, UtcDateTime, created_at, intpk, one_of, str200
from slussen.sensitivity import REFERENCES, classify


class Unit(Base):
    """A vårdcentral: the boundary of who may see which case, and the letterhead of its letters."""

    __tablename__ = "units"
    __sensitivity__ = classify(
        clear={
            REFERENCES: ("id",),
            "the vårdcentral's public name, HSA-id, address and phone printed on letters": (
                "name",
                "hsa_id",
                "street",
                "postcode",
                "town",
                "phone",
                "phone_hours",
                "created_at",
            ),
            "the vårdcentral's opening hours, for warnings when a visit is booked": (
                "opens_at",
                "closes_at",
                "open_weekdays",
            ),
        },
    )

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
    #: Opening hours (local time): a visit booked outside them, or on a public holiday, warns.
    opens_at: Mapped[dt.time] = mapped_column(Time, default=dt.time(8, 0))
    closes_at: Mapped[dt.time] = mapped_column(Time, default=dt.time(17, 0))
    #: The open weekdays as ISO digits, 1 = Monday ("12345": Monday to Friday).
    open_weekdays: Mapped[str] = mapped_column(String(7), default="12345")
    created_at: Mapped[created_at]


class User(Base):
    """A person who logs in. Exactly one role; units through memberships."""

    __tablename__ = "users"
    __sensitivity__ = classify(
        sealed=("totp_secret_enc",),
        clear={
            REFERENCES: ("id", "data_key_id"),
            "staff accounts: who may log in, with which role": (
                "username",
                "display_name",
                "role",
                "is_active",
                "created_at",
                "last_login_at",
            ),
            "an argon2id hash, made to be stored": ("password_hash",),
            "TOTP replay guard and enrolment time (no secret)": (
                "totp_last_counter",
                "totp_enrolled_at",
            ),
            "the region's identifiers of a staff member (OpenID subject, personal HSA-id), "
            "matched at federated login, and whether they may use a local password": (
                "oidc_subject",
                "hsa_id",
                "is_local_password_disabled",
            ),
        },
    )
    __table_args__ = (CheckConstraint(one_of("role", [r.value for r in Role]), name="role_known"),)

    id: Mapped[intpk]
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str200]
    role: Mapped[str] = mapped_column(String(20))
    #: argon2id hash (PHC string).
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[created_at]
    last_login_at: Mapped[dt.datetime | None]
    #: The user's data key, made when they start TOTP enrolment; destroyed when TOTP is reset.
    data_key_id: Mapped[int | None] = mapped_column(ForeignKey("data_keys.id"))
    #: The TOTP shared secret (base32) sealed with the user's data key, bound to
    #: users/totp_secret/<user id>; NULL until the user enrols.
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The last accepted TOTP time step (unix time // 30): a code is accepted only for a later step,
    #: so each code works once even inside its validity window.
    totp_last_counter: Mapped[int | None] = mapped_column(Integer)
    totp_enrolled_at: Mapped[dt.datetime | None]
    #: The region's identity provider's `sub` for this person: a federated login with it is
    #: this user. NULL until linked (by the administrator, or at just-in-time provisioning).
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True, index=True)
    #: The person's own HSA-id (e.g. SE2321000016-1234), when the login is matched on it.
    hsa_id: Mapped[str | None] = mapped_column(String(31), unique=True, index=True)
    #: This user may not log in with a local password (federated login only).
    is_local_password_disabled: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def unit_ids(self) -> frozenset[int]:
        return frozenset(m.unit_id for m in self.memberships)


class Membership(Base):
    """A user works in a unit; a coach sees only the cases of their units (inre sekretess)."""

    __tablename__ = "memberships"
    __sensitivity__ = classify(clear={REFERENCES: ("id", "user_id", "unit_id")})
    __table_args__ = (UniqueConstraint("user_id", "unit_id"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)

    user: Mapped[User] = relationship(back_populates="memberships")
    unit: Mapped[Unit] = relationship(lazy="joined")


class WebSession(Base):
    """A server-side session. The browser's cookie holds only a random token; this row holds the
    session's data. Deleting the row ends the session at once (logout, timeout, disabled user)."""

    __tablename__ = "web_sessions"
    __sensitivity__ = classify(
        clear={
            "SHA-256 of a random cookie token (a copy cannot be replayed)": ("id",),
            REFERENCES: ("user_id",),
            "login state: user id, CSRF token, language; a pending TOTP secret in it is sealed": (
                "data",
            ),
            "timeouts": ("created_at", "last_seen_at"),
        },
    )

    #: SHA-256 (hex) of the cookie token: a copy of the database cannot be replayed as a cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The logged-in user, NULL for an anonymous visitor (e.g. a CSRF token on the login page).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    #: The session's content as Flask's tagged JSON.
    data: Mapped[str] = mapped_column(Text)
    #: Start of the session; the absolute timeout counts from here.
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    #: Last request seen, written at most once a minute; the idle timeout counts from here.
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class RecoveryCode(Base):
    """A one-time recovery code for logging in without the authenticator app."""

    __tablename__ = "recovery_codes"
    __sensitivity__ = classify(
        blind_index=("code_hash",),
        clear={
            REFERENCES: ("id", "user_id"),
            "when made and used (a used code is refused)": ("created_at", "used_at"),
        },
    )

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: Keyed hash (hex) of the normalised code: HMAC-SHA256 under the key ring's blind-index key
    #: of its SHA-256; the code itself is shown once and never stored.
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[created_at]
    #: When the code was used; a used code is refused.
    used_at: Mapped[dt.datetime | None]
