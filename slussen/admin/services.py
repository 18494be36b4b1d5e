"""The administrator's rules: units (name, HSA-id, address and phone for letters, opening hours),
user accounts (create, role and units, deactivate and reactivate) and the one-time link with
which a user sets a new password.

Every change is written to the access log with a Swedish purpose. Only an administrator (or the
system, from the command line) may make them. Services only flush; views and commands commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Membership, Unit, User
from slussen.accounts.passwords import hash_password
from slussen.accounts.roles import ROLE_LABELS, Permission, Role, grants
from slussen.accounts.services import (
    NO_PASSWORD,
    check_new_password,
    create_user,
    disable_user,
    end_user_sessions,
    has_second_factor,
    reset_totp,
    set_opening_hours,
)
from slussen.admin.models import AccountLink
from slussen.audit import Actor
from slussen.config import Settings
from slussen.db import utcnow
from slussen.errors import Invalid, NotPermitted
from slussen.identifiers import IdentifierError, normalise_postcode, validate_hsa_id

#: How long a one-time link works: time for the administrator to pass it on, not much more.
LINK_HOURS = 72
#: The blind-index kind of a link token's keyed hash.
LINK_HASH_KIND = "account-link"


class LinkRefused(Invalid):
    """The one-time link does not work (unknown, used, expired, or its account is closed)."""


def _require_admin(actor: Actor) -> None:
    if not (grants(actor.role, Permission.ADMINISTER) or actor.role == "system"):
        raise NotPermitted("Bara en administratör får ändra enheter och konton.")


def role_name(role: str) -> str:
    """The Swedish name of a role, as in the access log's purposes."""
    try:
        return ROLE_LABELS[Role(role)][0]
    except ValueError:
        return role


# --- units -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitDetails:
    """What an administrator types about a unit; the opening hours as clock times ("08.00")
    and weekdays as ISO digits ("12345")."""

    name: str
    hsa_id: str
    street: str = ""
    postcode: str = ""
    town: str = ""
    phone: str = ""
    phone_hours: str = ""
    opens: str = "08.00"
    closes: str = "17.00"
    weekdays: str = "12345"


#: The Swedish name of each unit field, for the access log's purpose of a change.
_UNIT_FIELD_NAMES = {
    "name": "namn",
    "hsa_id": "HSA-id",
    "street": "gatuadress",
    "postcode": "postnummer",
    "town": "ort",
    "phone": "telefon",
    "phone_hours": "telefontider",
    "opens_at": "öppnar",
    "closes_at": "stänger",
    "open_weekdays": "öppna dagar",
}


def _short(text: str, limit: int, what: str, field: str) -> str:
    value = text.strip()
    if len(value) > limit:
        raise Invalid(f"{what} får ha högst {limit} tecken.", field=field)
    return value


def _clean_unit(session: Session, details: UnitDetails, unit_id: int | None) -> dict[str, str]:
    name = _short(details.name, 200, "Namnet", "name")
    if not name:
        raise Invalid("Ange enhetens namn.", field="name")
    try:
        hsa_id = validate_hsa_id(details.hsa_id)
    except IdentifierError as exc:
        raise Invalid(str(exc), field="hsa_id") from None
    other = session.scalar(select(Unit).where(Unit.hsa_id == hsa_id, Unit.id != (unit_id or 0)))
    if other is not None:
        raise Invalid(
            f"Det finns redan en enhet med HSA-id {hsa_id}: {other.name}.", field="hsa_id"
        )
    postcode = ""
    if details.postcode.strip():
        try:
            postcode = normalise_postcode(details.postcode)
        except IdentifierError as exc:
            raise Invalid(str(exc), field="postcode") from None
    return {
        "name": name,
        "hsa_id": hsa_id,
        "street": _short(details.street, 200, "Gatuadressen", "street"),
        "postcode": postcode,
        "town": _short(details.town, 100, "Orten", "town"),
        "phone": _short(details.phone, 40, "Telefonnumret", "phone"),
        "phone_hours": _short(details.phone_hours, 100, "Telefontiderna", "phone_hours"),
    }


def create_unit(session: Session, ring: vault.KeyRing, actor: Actor, details: UnitDetails) -> Unit:
    """Create a unit (vårdcentral) with its letterhead and opening hours; writes the audit row
    `create unit`. Refuses (NotPermitted) an actor who is not an administrator or the system,
    and (Invalid, in Swedish) an empty name, an HSA-id of the wrong form or one another unit
    has, a postcode that is not five digits, text too long for its field, and opening hours
    `set_opening_hours` refuses."""
    _require_admin(actor)
    unit = Unit(**_clean_unit(session, details, None))
    session.add(unit)
    session.flush()
    set_opening_hours(
        session, unit, opens=details.opens, closes=details.closes, weekdays=details.weekdays
    )
    audit.record(
        session, ring, actor, "create", "unit", unit.id, purpose=f"ny enhet: {unit.name}"[:200]
    )
    session.flush()
    return unit


def update_unit(
    session: Session, ring: vault.KeyRing, actor: Actor, unit: Unit, details: UnitDetails
) -> list[str]:
    """Change a unit's details and opening hours; writes the audit row `update unit` naming
    the fields changed (in Swedish) and returns those names; nothing changed writes nothing.
    Refuses what `create_unit` refuses."""
    _require_admin(actor)
    values = _clean_unit(session, details, unit.id)
    before = {column: getattr(unit, column) for column in _UNIT_FIELD_NAMES}
    for column, value in values.items():
        setattr(unit, column, value)
    set_opening_hours(
        session, unit, opens=details.opens, closes=details.closes, weekdays=details.weekdays
    )
    changed = [
        _UNIT_FIELD_NAMES[column] for column, old in before.items() if getattr(unit, column) != old
    ]
    if changed:
        audit.record(
            session,
            ring,
            actor,
            "update",
            "unit",
            unit.id,
            purpose=f"ändrade {', '.join(changed)}"[:200],
        )
    session.flush()
    return changed


# --- users -----------------------------------------------------------------------------------


def _other_active_admins(session: Session, user: User) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.is_active.is_(True), User.id != user.id)
        )
        or 0
    )


def _refuse_last_admin(session: Session, user: User, what: str) -> None:
    if (
        user.role == Role.ADMIN.value
        and user.is_active
        and _other_active_admins(session, user) == 0
    ):
        raise Invalid(
            f"{user.display_name} är den enda aktiva administratören och kan inte {what}. "
            "Lägg först upp en administratör till.",
            field="role",
        )


def _check_units(session: Session, unit_ids: Iterable[int | None]) -> list[int]:
    wanted = sorted({i for i in unit_ids if i is not None})
    if any(not 0 < i < 2**31 for i in wanted):
        raise Invalid("En av de valda enheterna finns inte.", field="units")
    known = set(session.scalars(select(Unit.id).where(Unit.id.in_(wanted)))) if wanted else set()
    if set(wanted) - known:
        raise Invalid("En av de valda enheterna finns inte.", field="units")
    return wanted


def create_account(
    session: Session,
    settings: Settings,
    ring: vault.KeyRing,
    actor: Actor,
    *,
    username: str,
    display_name: str,
    role: str,
    unit_ids: Iterable[int | None] = (),
    now: dt.datetime | None = None,
) -> tuple[User, str]:
    """Create a user without a password, member of `unit_ids`, and a one-time link with which
    they set one (`issue_link`); return the user and the link's token. Writes the audit rows
    `create user` and `create account_link`. Refuses (NotPermitted) an actor who is not an
    administrator, and (Invalid) what `create_user` refuses: an unknown role, a taken or empty
    username, an unknown unit."""
    _require_admin(actor)
    user = create_user(
        session,
        settings,
        username=username,
        display_name=display_name,
        role=role,
        password=None,
        unit_ids=_check_units(session, unit_ids),
    )
    audit.record(
        session,
        ring,
        actor,
        "create",
        "user",
        user.id,
        purpose=f"nytt konto med rollen {role_name(user.role)}",
    )
    return user, issue_link(session, ring, actor, user, now=now)


def update_account(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    user: User,
    *,
    display_name: str,
    role: str,
    unit_ids: Iterable[int | None],
) -> list[str]:
    """Change a user's name, role and units; the user's sessions end when the role or the
    units change (the next request must not run with the old rights). Writes the audit row
    `update user` naming what changed; returns the Swedish names of what changed. Refuses
    (NotPermitted) a non-administrator, and (Invalid) an unknown role or unit, an empty name,
    and taking the role from the only active administrator."""
    _require_admin(actor)
    try:
        new_role = Role(role).value
    except ValueError:
        raise Invalid(f"Okänd roll: {role}.", field="role") from None
    name = _short(display_name, 200, "Namnet", "display_name")
    if not name:
        raise Invalid("Ange personens namn.", field="display_name")
    wanted = _check_units(session, unit_ids)
    if new_role != user.role:
        _refuse_last_admin(session, user, "få en annan roll")
    changed = []
    if name != user.display_name:
        user.display_name = name
        changed.append("namn")
    if new_role != user.role:
        changed.append(f"roll från {role_name(user.role)} till {role_name(new_role)}")
        user.role = new_role
    if set(wanted) != set(user.unit_ids):
        user.memberships[:] = [m for m in user.memberships if m.unit_id in wanted]
        for unit_id in sorted(set(wanted) - user.unit_ids):
            user.memberships.append(Membership(unit_id=unit_id))
        changed.append("enheter")
    if changed:
        if changed != ["namn"]:
            end_user_sessions(session, user)
        audit.record(
            session,
            ring,
            actor,
            "update",
            "user",
            user.id,
            purpose=f"ändrade {', '.join(changed)}"[:200],
        )
    session.flush()
    return changed


def deactivate_account(session: Session, ring: vault.KeyRing, actor: Actor, user: User) -> None:
    """Deactivate `user` (`disable_user`: no login, every session ends, the audit row
    `account_disable`). Refuses (Invalid) an account already deactivated and the only active
    administrator, and (NotPermitted) a non-administrator and an administrator deactivating
    themself."""
    _require_admin(actor)
    if not user.is_active:
        raise Invalid(f"Kontot {user.username} är redan avstängt.")
    _refuse_last_admin(session, user, "stängas av")
    disable_user(session, actor, user, ring=ring)


def reactivate_account(session: Session, ring: vault.KeyRing, actor: Actor, user: User) -> None:
    """Let a deactivated user log in again (with their old password and second factor); writes
    the audit row `update user`. Refuses (Invalid) an active account and (NotPermitted) a
    non-administrator."""
    _require_admin(actor)
    if user.is_active:
        raise Invalid(f"Kontot {user.username} är redan aktivt.")
    user.is_active = True
    audit.record(session, ring, actor, "update", "user", user.id, purpose="kontot öppnades igen")
    session.flush()


# --- the one-time link -----------------------------------------------------------------------


def link_hash(ring: vault.KeyRing, token: str) -> str:
    """The stored form of a link token: the blind index (kind "account-link") of its SHA-256,
    keyed like an answer code, so a copy of the database gives no working link away."""
    plain = hashlib.sha256(token.strip().encode()).hexdigest()
    return vault.blind_index(ring, LINK_HASH_KIND, plain)


def issue_link(
    session: Session,
    ring: vault.KeyRing,
    actor: Actor,
    user: User,
    *,
    now: dt.datetime | None = None,
) -> str:
    """Reset `user`'s password and second factor and return the token of a new one-time link
    (working `LINK_HOURS` hours) with which they set a new password; they set up two-step
    verification at their next login. The old password stops working at once, TOTP is
    reset (`reset_totp`, with its audit row), every session of the user ends, and earlier
    unused links stop working. Writes the audit row `create account_link`. Refuses
    (NotPermitted) a non-administrator and (Invalid) a deactivated account."""
    _require_admin(actor)
    if not user.is_active:
        raise Invalid("Kontot är avstängt. Öppna det igen innan du gör en engångslänk.")
    now = now or utcnow()
    if has_second_factor(user):
        reset_totp(session, ring, actor, user)
    user.password_hash = NO_PASSWORD
    end_user_sessions(session, user)
    session.execute(
        delete(AccountLink).where(AccountLink.user_id == user.id, AccountLink.used_at.is_(None))
    )
    token = secrets.token_urlsafe(32)
    session.add(
        AccountLink(
            user_id=user.id,
            created_by_id=actor.user_id,
            token_hash=link_hash(ring, token),
            created_at=now,
            expires_at=now + dt.timedelta(hours=LINK_HOURS),
        )
    )
    session.flush()
    audit.record(
        session,
        ring,
        actor,
        "create",
        "account_link",
        user.id,
        purpose=f"engångslänk till nytt lösenord, giltig {LINK_HOURS} timmar",
    )
    return token


_LINK_REFUSED = (
    "Länken fungerar inte: den är redan använd, för gammal eller ofullständig. "
    "Be Slussens administratör om en ny länk."
)


def open_link(
    session: Session, ring: vault.KeyRing, token: str, *, now: dt.datetime | None = None
) -> tuple[AccountLink, User]:
    """The link of `token` and its user, if it still works. Refuses (LinkRefused) an unknown,
    used or expired link, and one whose account is deactivated."""
    now = now or utcnow()
    link = session.scalar(
        select(AccountLink).where(AccountLink.token_hash == link_hash(ring, token))
    )
    if link is None or link.used_at is not None or link.expires_at <= now:
        raise LinkRefused(_LINK_REFUSED)
    user = session.get(User, link.user_id)
    if user is None or not user.is_active:
        raise LinkRefused(_LINK_REFUSED)
    return link, user


def set_password_with_link(
    session: Session,
    settings: Settings,
    ring: vault.KeyRing,
    token: str,
    password: str,
    *,
    now: dt.datetime | None = None,
) -> User:
    """Set the password of the link's user and spend the link (it works once, even for two
    requests at the same time); writes the audit row `update user`. Refuses (LinkRefused) what
    `open_link` refuses and (PasswordRejected) a password `check_new_password` refuses (at
    least 15 characters: the user has no second factor yet)."""
    now = now or utcnow()
    link, user = open_link(session, ring, token, now=now)
    check_new_password(
        session,
        password,
        username=user.username,
        display_name=user.display_name,
        unit_ids=user.unit_ids,
        has_second_factor=has_second_factor(user),
    )
    spent = session.execute(
        update(AccountLink)
        .where(AccountLink.id == link.id, AccountLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(spent, "rowcount", 0) != 1:
        raise LinkRefused(_LINK_REFUSED)
    link.used_at = now
    user.password_hash = hash_password(settings, password)
    audit.record(
        session,
        ring,
        Actor.of(user),
        "update",
        "user",
        user.id,
        purpose="nytt lösenord med engångslänk",
    )
    session.flush()
    return user
