"""Answer codes, the one place: how a code is made (random for the phone, derived for a letter),
normalised, hashed, grouped for print, stored, looked up and refused, and where it is used
(/svar/<code>).

Only a keyed hash of the normalised code is stored (`answer_codes.code_hash`, see `code_hash`);
the code itself is shown once on screen or printed on the letter. A code is single-use and
expires.

Services only flush; views and commands commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.cases.models import Case
from slussen.db import utcnow
from slussen.errors import Invalid
from slussen.questionnaires.models import OCCASIONS, AnswerCode
from slussen.vault import KeyRing, blind_index

#: Letters that cannot be mistaken for each other on paper or when read aloud (no 0/O, 1/I/L,
#: 2/Z, 5/S, 8/B): the alphabet of a random code shown on screen or read out on the phone.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
#: Crockford's base 32 (no I, L, O or U): the alphabet of a code derived for a letter. Kept as it
#: is because a reprinted letter must give the same bytes as its first print.
LETTER_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
#: How long a code works when the setting `answer_code_days` is not at hand.
DEFAULT_CODE_DAYS = 60
#: The blind-index kind of an answer code's keyed hash; migration 0016 writes it too.
CODE_HASH_KIND = "answer-code"


class AnswerCodeError(Invalid):
    """The code does not work (unknown, used or expired); views count it as a failed try."""


#: Letters a person may type for a digit they read (Crockford's decoding): neither alphabet has
#: them, so reading them as the digit only ever finds the code that was meant.
_READ_AS_DIGIT = str.maketrans("OIL", "011")


def normalise_code(text: str) -> str:
    """What a person typed, as stored: capitals, without spaces and dashes, with O read as 0 and
    I or L as 1."""
    return re.sub(r"[^A-Z0-9]", "", text.upper().translate(_READ_AS_DIGIT))[:40]


def code_hash(ring: KeyRing, text: str) -> str:
    """The stored form of a code, the one place it is computed for storing and for looking up:
    the blind index (HMAC-SHA256 under the ring's blind-index key, kind "answer-code") of the
    SHA-256 hex of the normalised code.

    Why keyed: a code has only 25^10 or 32^10 values (about 46 and 50 bits), so a plain hash in a
    copy of the database is found by hashing every code of the alphabet; without the key ring
    nobody can compute this one. Why over the SHA-256 and not the code: migration 0016 turns the
    hashes stored before it into these without knowing the codes. The kind keeps it apart from a
    personnummer's blind index; letter codes and audit pseudonyms use another key."""
    plain = hashlib.sha256(normalise_code(text).encode()).hexdigest()
    return blind_index(ring, CODE_HASH_KIND, plain)


def format_code(raw: str) -> str:
    """ "ACDEFGHJKM" → "ACDE-FGHJ-KM", as shown and printed."""
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def random_code() -> str:
    """A fresh random code, not yet stored (normalised, CODE_LENGTH characters)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def letter_code(ring: KeyRing, letter_id: int) -> str:
    """The answer code printed on letter `letter_id`, e.g. "K7QM-4TZX-9C".

    Why derived and not random: rendering must be deterministic (a reprint and a preview give the
    same bytes), yet only the code's hash may be stored. A keyed HMAC of the letter id gives the
    same code every time without storing it; without the key ring's pseudonym key nobody can
    compute it, and the database holds only its keyed hash (`code_hash`). The input is prefixed with
    "answer-code:" so it can never equal an audit pseudonym of the same key."""
    digest = hmac.new(ring.pseudonym_key, f"answer-code:{letter_id}".encode(), hashlib.sha256)
    value = int.from_bytes(digest.digest()[:8], "big")
    chars = []
    for _ in range(CODE_LENGTH):
        value, index = divmod(value, 32)
        chars.append(LETTER_CODE_ALPHABET[index])
    return format_code("".join(chars))


def answer_url(code: str, base_url: str = "", *, grouped: bool = True) -> str:
    """Where a patient answers with `code`: BASE/svar/ACDE-FGHJ-KM (`grouped`, as shown on
    screen) or BASE/svar/ACDEFGHJKM (as in a letter's QR code); the path alone without a base."""
    normal = normalise_code(code)
    return f"{base_url.rstrip('/')}/svar/{format_code(normal) if grouped else normal}"


def create_answer_code(
    session: Session,
    ring: KeyRing,
    case: Case,
    occasion: str,
    letter_id: int | None = None,
    *,
    days: int = DEFAULT_CODE_DAYS,
    now: dt.datetime | None = None,
    code: str | None = None,
) -> str:
    """Create a single-use code for answering the `occasion`'s forms online and return its text
    ("ACDE-FGHJ-KM"). Only its keyed hash (`code_hash` under `ring`) is stored; it expires after
    `days` (callers pass the setting `answer_code_days`). A letter passes its own derived `code`
    (the same on every render); that code is stored once, so the call is idempotent for it.
    Refuses an unknown occasion."""
    if occasion not in OCCASIONS:
        raise Invalid(f"Okänt tillfälle {occasion!r}.")
    now = now or utcnow()
    if code is not None:
        raw = normalise_code(code)
        digest = code_hash(ring, raw)
        if session.scalar(select(AnswerCode.id).where(AnswerCode.code_hash == digest)):
            return format_code(raw)
    while code is None:
        raw = random_code()
        digest = code_hash(ring, raw)
        if session.scalar(select(AnswerCode.id).where(AnswerCode.code_hash == digest)) is None:
            break
    session.add(
        AnswerCode(
            code_hash=digest,
            case_id=case.id,
            occasion=occasion,
            letter_id=letter_id,
            created_at=now,
            expires_at=now + dt.timedelta(days=days),
        )
    )
    session.flush()
    return format_code(raw)


def redeem_code(
    session: Session, ring: KeyRing, text: str, *, now: dt.datetime | None = None
) -> AnswerCode:
    """The answer code a person typed, if it still works, looked up by its keyed hash under
    `ring`. Refuses (AnswerCodeError) a code of the wrong length, an unknown, used or expired
    code."""
    normal = normalise_code(text)
    if len(normal) != CODE_LENGTH:
        raise AnswerCodeError("Koden ska ha 10 tecken. Titta i ditt brev och försök igen.")
    row = session.scalar(select(AnswerCode).where(AnswerCode.code_hash == code_hash(ring, normal)))
    if row is None:
        raise AnswerCodeError("Koden finns inte. Titta i ditt brev och försök igen.")
    return check_code(row, now=now)


def check_code(row: AnswerCode, *, now: dt.datetime | None = None) -> AnswerCode:
    """Refuse a used or expired code (AnswerCodeError)."""
    now = now or utcnow()
    if row.used_at is not None:
        raise AnswerCodeError("Koden är redan använd. Dina svar har kommit fram till oss.")
    if row.expires_at <= now:
        raise AnswerCodeError(
            "Koden gäller inte längre. Ring din vårdcentral om du vill svara ändå."
        )
    return row


def open_codes(session: Session, case: Case, *, now: dt.datetime | None = None) -> int:
    """How many answer codes of the case still work."""
    now = now or utcnow()
    return (
        session.scalar(
            select(func.count(AnswerCode.id)).where(
                AnswerCode.case_id == case.id,
                AnswerCode.used_at.is_(None),
                AnswerCode.expires_at > now,
            )
        )
        or 0
    )
