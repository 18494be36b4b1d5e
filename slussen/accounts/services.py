"""Account rules: creating users and checking a login."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.accounts.models import Membership, Unit, User
from slussen.accounts.passwords import (
    check_password_rules,
    dummy_verify,
    hash_password,
    verify_password,
)
from slussen.accounts.roles import Role
from slussen.config import Settings
from slussen.db import utcnow


class AccountError(ValueError):
    """An account request is refused; the message says why in Swedish."""


def create_user(
    session: Session,
    settings: Settings,
    *,
    username: str,
    display_name: str,
    role: str,
    password: str,
    unit_ids: list[int] | tuple[int, ...] = (),
) -> User:
    """Create a user with an argon2id password hash. Refuses an unknown role, a taken username,
    an unknown unit, and a password that breaks the NIST rules."""
    username = username.strip().lower()
    if not username or len(username) > 80:
        raise AccountError("Användarnamnet måste ha 1–80 tecken.")
    try:
        Role(role)
    except ValueError:
        raise AccountError(f"Okänd roll: {role}.") from None
    if session.scalar(select(func.count()).where(User.username == username)):
        raise AccountError(f"Användarnamnet {username} är redan taget.")
    check_password_rules(password, has_second_factor=False, username=username)
    user = User(
        username=username,
        display_name=display_name.strip() or username,
        role=role,
        password_hash=hash_password(settings, password),
    )
    for unit_id in unit_ids:
        if session.get(Unit, unit_id) is None:
            raise AccountError(f"Enheten {unit_id} finns inte.")
        user.memberships.append(Membership(unit_id=unit_id))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, settings: Settings, username: str, password: str) -> User | None:
    """The active user with this username and password, or None. Spends the same time on an
    unknown username as on a wrong password."""
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        dummy_verify(settings)
        return None
    if not verify_password(settings, user.password_hash, password) or not user.is_active:
        return None
    user.last_login_at = utcnow()
    return user
