"""Password hashing (argon2id) and the NIST SP 800-63B rules for a new password: length, no
context words (the username, the product, the user's units), not the current one, not common or
guessable (a bundled block list and zxcvbn's estimate)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from slussen.config import Settings

#: NIST 800-63B: at least 15 characters with a password alone, 8 with a second factor.
MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_SECOND_FACTOR = 8
MAX_LENGTH = 128
#: The product's name, which NIST 800-63B §3.1.1.2 names as a context-specific word to refuse.
PRODUCT_NAME = "slussen"
#: A username or unit name shorter than this is refused only as the whole password, not inside
#: one: a short name is part of too many words ("bo" in "boka").
MIN_NAME_LENGTH = 4
#: Refused when zxcvbn estimates fewer guesses than this. zxcvbn's score 3 ("safely unguessable",
#: at least 10^8 guesses) with one difference: zxcvbn puts any 8 characters it can only
#: brute-force at 10^8 + 1 guesses, a hair below its score 3, and NIST allows 8 characters with
#: a second factor; score 3 would refuse every 8-character password.
MIN_GUESSES = 10**8


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


def check_password_rules(
    password: str,
    *,
    has_second_factor: bool,
    username: str = "",
    display_name: str = "",
    unit_names: Iterable[str] = (),
    current_password: str | None = None,
) -> None:
    """Refuse (PasswordRejected, saying which rule) a new password that is too short or too long,
    is `current_password`, contains the username, the product's name or one of `unit_names`
    (case-insensitive), is on the block list, or is easy to guess by zxcvbn's estimate, which
    also counts the username, `display_name` and the unit names as known words. No composition
    rules (NIST 800-63B §3.1.1.2)."""
    minimum = MIN_LENGTH_WITH_SECOND_FACTOR if has_second_factor else MIN_LENGTH_SINGLE_FACTOR
    if len(password) < minimum:
        raise PasswordRejected(f"Lösenordet måste ha minst {minimum} tecken.")
    if len(password) > MAX_LENGTH:
        raise PasswordRejected(f"Lösenordet får ha högst {MAX_LENGTH} tecken.")
    if current_password is not None and password == current_password:
        raise PasswordRejected("Det nya lösenordet måste vara ett annat än det nuvarande.")
    lowered = password.lower()
    units = [name.strip() for name in unit_names if name.strip()]
    if _contains(lowered, username):
        raise PasswordRejected("Lösenordet får inte innehålla användarnamnet.")
    if PRODUCT_NAME in lowered:
        raise PasswordRejected("Lösenordet får inte innehålla ordet Slussen.")
    for unit in units:
        if _contains(lowered, unit):
            raise PasswordRejected(f"Lösenordet får inte innehålla enhetens namn ({unit}).")
    if lowered in common_passwords():
        raise PasswordRejected("Lösenordet är för vanligt. Välj ett annat, gärna en hel mening.")
    known = [username, display_name, PRODUCT_NAME, *units]
    known += [word for text in (display_name, *units) for word in text.split()]
    estimate = zxcvbn(password, user_inputs=[w for w in known if w], max_length=MAX_LENGTH)
    if estimate["guesses"] < MIN_GUESSES:
        raise PasswordRejected(
            "Lösenordet är för lätt att gissa. Välj ett annat, gärna en hel mening med ord som "
            "inte hör ihop."
        )


def _contains(lowered_password: str, name: str) -> bool:
    name = name.strip().lower()
    if len(name) < MIN_NAME_LENGTH:
        return bool(name) and lowered_password == name
    return name in lowered_password


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
