"""The answer-codes module on its own: making, normalising, hashing, storing, looking up and
refusing a code (slussen/questionnaires/codes.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import WebSession
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.db import utcnow
from slussen.errors import Invalid
from slussen.keystore import current_key_ring
from slussen.questionnaires import codes
from slussen.questionnaires.models import AnswerCode
from slussen.vault import KeyRing
from tests.builders import make_case


@pytest.fixture
def case(app: Flask, session: Session, make_user: Any, unit: Any) -> Case:
    workflow: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    coach = Actor.of(make_user("coordinator", "samordnaren"))
    with app.app_context():
        return make_case(session, current_key_ring(), workflow, coach, unit.id, "invited")


@pytest.fixture
def ring(app: Flask) -> KeyRing:
    with app.app_context():
        return current_key_ring()


def test_a_typed_code_is_normalised_before_hashing_and_grouped_for_print(ring: KeyRing) -> None:
    assert codes.normalise_code(" acde-fghj km ") == "ACDEFGHJKM"
    assert codes.code_hash(ring, "acde fghj-km") == codes.code_hash(ring, "ACDEFGHJKM")
    assert len(codes.code_hash(ring, "ACDEFGHJKM")) == 64
    assert codes.format_code("ACDEFGHJKM") == "ACDE-FGHJ-KM"
    raw = codes.random_code()
    assert len(raw) == codes.CODE_LENGTH and set(raw) <= set(codes.CODE_ALPHABET)


def test_a_code_typed_with_o_for_0_or_i_for_1_is_read_as_meant(
    session: Session, ring: KeyRing, case: Case
) -> None:
    assert not set("OIL") & set(codes.CODE_ALPHABET + codes.LETTER_CODE_ALPHABET)
    code = codes.create_answer_code(session, ring, case, "baseline", code="K7QM-40TZ-1C")
    typed = "k7qm-4otz-ic"
    assert codes.normalise_code(typed) == "K7QM40TZ1C"
    assert codes.redeem_code(session, ring, typed).id == (codes.redeem_code(session, ring, code).id)
    assert codes.redeem_code(session, ring, "K7QM 4OTZ LC").case_id == case.id


def test_the_answer_address_is_grouped_on_screen_and_plain_in_a_letter() -> None:
    assert codes.answer_url("acdefghjkm", "https://x.se/") == "https://x.se/svar/ACDE-FGHJ-KM"
    assert codes.answer_url("ACDE-FGHJ-KM", "https://x.se", grouped=False) == (
        "https://x.se/svar/ACDEFGHJKM"
    )
    assert codes.answer_url("ACDEFGHJKM") == "/svar/ACDE-FGHJ-KM"


def test_a_letter_code_is_derived_from_the_key_ring_and_the_letter(app: Flask) -> None:
    with app.app_context():
        ring = current_key_ring()
    code = codes.letter_code(ring, 7)
    assert code == codes.letter_code(ring, 7) != codes.letter_code(ring, 8)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{2}", code)


def test_a_given_code_is_stored_once_and_only_as_its_hash(
    session: Session, ring: KeyRing, case: Case
) -> None:
    first = codes.create_answer_code(session, ring, case, "baseline", code="k7qm4tzx9c", days=3)
    again = codes.create_answer_code(session, ring, case, "baseline", code="K7QM-4TZX-9C")
    assert first == again == "K7QM-4TZX-9C"
    row = session.scalars(select(AnswerCode)).one()
    assert row.code_hash == codes.code_hash(ring, first)
    assert row.expires_at - row.created_at == dt.timedelta(days=3)
    assert codes.open_codes(session, case) == 1


def test_a_code_that_does_not_work_is_refused_with_a_swedish_message(
    session: Session, ring: KeyRing, case: Case
) -> None:
    with pytest.raises(Invalid, match="Okänt tillfälle"):
        codes.create_answer_code(session, ring, case, "someday")
    with pytest.raises(codes.AnswerCodeError, match="10 tecken"):
        codes.redeem_code(session, ring, "ACDE")
    with pytest.raises(codes.AnswerCodeError, match="finns inte"):
        codes.redeem_code(session, ring, "ACDE-FGHJ-KM")
    now = utcnow()
    code = codes.create_answer_code(session, ring, case, "baseline", days=1, now=now)
    with pytest.raises(codes.AnswerCodeError, match="finns inte"):  # another ring's hash
        codes.redeem_code(session, KeyRing.generate(), code, now=now)
    row = codes.redeem_code(session, ring, code, now=now)
    with pytest.raises(codes.AnswerCodeError, match="gäller inte längre"):
        codes.redeem_code(session, ring, code, now=now + dt.timedelta(days=2))
    assert codes.open_codes(session, case, now=now + dt.timedelta(days=2)) == 0
    row.used_at = now
    with pytest.raises(codes.AnswerCodeError, match="redan använd"):
        codes.check_code(row, now=now)
    assert codes.open_codes(session, case, now=now) == 0


# --- a copy of the table cannot be searched -----------------------------------------------------

#: The slice an attacker searches here: every code with these first seven characters (25^3 =
#: 15,625 codes), standing in for the whole alphabet, 25^10 codes, with the same question.
SLICE_PREFIX = "KM4TQ7X"


def _slice() -> list[str]:
    tails = itertools.product(codes.CODE_ALPHABET, repeat=codes.CODE_LENGTH - len(SLICE_PREFIX))
    return [SLICE_PREFIX + "".join(tail) for tail in tails]


def test_the_stored_hash_is_not_the_sha256_of_the_code(
    backend: str, session: Session, ring: KeyRing, case: Case
) -> None:
    code = codes.create_answer_code(session, ring, case, "baseline")
    raw = codes.normalise_code(code)
    stored = session.scalars(select(AnswerCode.code_hash)).one()
    assert stored != hashlib.sha256(raw.encode()).hexdigest()
    assert stored != hashlib.sha256(code.encode()).hexdigest()
    assert raw not in stored and len(stored) == 64


def test_hashing_every_code_of_a_slice_finds_the_code_only_with_the_key(
    backend: str, session: Session, ring: KeyRing, case: Case
) -> None:
    """What an attacker with a copy of `answer_codes` and no key ring can do: hash every code of
    the alphabet and look for the hash in the table. Plain SHA-256, SHA-256 of the grouped form,
    and the right construction under a ring of their own all find nothing; the key ring finds
    the code, so the search itself is sound."""
    wanted = SLICE_PREFIX + "".join(secrets.choice(codes.CODE_ALPHABET) for _ in range(3))
    codes.create_answer_code(session, ring, case, "baseline", code=wanted)
    codes.create_answer_code(session, ring, case, "six_month")  # one outside the slice
    stored = set(session.scalars(select(AnswerCode.code_hash)))
    candidates = _slice()
    assert len(candidates) == 25**3 and wanted in candidates
    own_ring = KeyRing.generate()
    without_key = [
        c
        for c in candidates
        if hashlib.sha256(c.encode()).hexdigest() in stored
        or hashlib.sha256(codes.format_code(c).encode()).hexdigest() in stored
        or codes.code_hash(own_ring, c) in stored
    ]
    assert without_key == []
    with_key = [c for c in candidates if codes.code_hash(ring, c) in stored]
    assert with_key == [wanted]


def test_the_answer_page_takes_a_code_stored_keyed(
    backend: str, app: Flask, session: Session, ring: KeyRing, case: Case
) -> None:
    code = codes.create_answer_code(session, ring, case, "baseline")
    client = app.test_client()
    start = client.post("/svar", data={"code": code.lower()})
    assert start.status_code == 302 and start.location.endswith("/svar/fraga/1")
    assert client.get(start.location).status_code == 200
    assert app.test_client().get(f"/svar/{codes.normalise_code(code)}").status_code == 302
    wrong = app.test_client().post("/svar", data={"code": "KM4T-Q7XA-AA"})
    assert wrong.status_code == 422 and "Koden finns inte" in wrong.get_data(as_text=True)


def test_a_new_code_is_shown_on_its_page_and_kept_nowhere_in_clear(
    backend: str,
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: KeyRing,
    case: Case,
) -> None:
    """Read out on the phone: the page shows the code once; the session's row (where a flash
    message would wait for the next page) never holds it."""
    login("coach")
    response = client.post(f"/arenden/{case.id}/svarskod", data={"occasion": "baseline"})
    assert response.status_code == 200
    found = re.search(r"Svarskod ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}):", response.get_data(True))
    assert found is not None
    code = found.group(1)
    kept = " ".join(session.scalars(select(WebSession.data)))  # before any other page
    assert "csrf" in kept or "_user_id" in kept  # the logged-in session's row
    assert code not in kept and codes.normalise_code(code) not in kept
    assert codes.redeem_code(session, ring, code).case_id == case.id
