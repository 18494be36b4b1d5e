"""Password hashing (argon2id) and the NIST SP 800-63B length and block-list rules."""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from slussen.config import Settings

#: NIST 800-63B: at least 15 characters with a password alone, 8 with a second factor.
MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_SECOND_FACTOR = 8
MAX_LENGTH = 128


class PasswordRejected(ValueError):
    """The password breaks a rule; the message is Swedish and says which."""


@cache
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hasher(settings: Settings) -> PasswordHasher:
    return _hasher(settings.argon2_time_cost, settings.argon2_memory_kib)


@cache
def common_passwords() -> frozenset[str]:
    """The bundled block list of common and breached passwords, lower-cased."""
    text = resources.files("slussen.accounts").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def check_password_rules(password: str, *, has_second_factor: bool, username: str = "") -> None:
    """Refuse a password that is too short, too long, common, or the username; no composition
    rules (NIST 800-63B §3.1.1.2)."""
    minimum = MIN_LENGTH_WITH_SECOND_FACTOR if has_second_factor else MIN_LENGTH_SINGLE_FACTOR
    if len(password) < minimum:
        raise PasswordRejected(f"Lösenordet måste ha minst {minimum} tecken.")
    if len(password) > MAX_LENGTH:
        raise PasswordRejected(f"Lösenordet får ha högst {MAX_LENGTH} tecken.")
    lowered = password.lower()
    if lowered in common_passwords() or (username and lowered == username.lower()):
        raise PasswordRejected("Lösenordet är för vanligt. Välj ett annat, gärna en hel mening.")


def hash_password(settings: Settings, password: str) -> str:
    return hasher(settings).hash(password)


def verify_password(settings: Settings, password_hash: str, password: str) -> bool:
    """True when `password` matches; never raises on a malformed hash."""
    try:
        return hasher(settings).verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(settings: Settings) -> None:
    """Spend the time of one verification so an unknown username is not faster to reject."""
    verify_password(
        settings, _dummy_hash(settings.argon2_time_cost, settings.argon2_memory_kib), "x"
    )


@cache
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash("not-a-real-password")
