"""The answer-codes module on its own: making, normalising, hashing, storing, looking up and
refusing a code (slussen/questionnaires/codes.py)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.db import utcnow
from slussen.errors import Invalid
from slussen.keystore import current_key_ring
from slussen.questionnaires import codes
from slussen.questionnaires.models import AnswerCode
from tests.builders import make_case


@pytest.fixture
def case(app: Flask, session: Session, make_user: Any, unit: Any) -> Case:
    workflow: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    coach = Actor.of(make_user("coordinator", "samordnaren"))
    with app.app_context():
        return make_case(session, current_key_ring(), workflow, coach, unit.id, "invited")


def test_a_typed_code_is_normalised_before_hashing_and_grouped_for_print() -> None:
    assert codes.normalise_code(" acde-fghj km ") == "ACDEFGHJKM"
    assert codes.code_hash("acde fghj-km") == codes.code_hash("ACDEFGHJKM")
    assert len(codes.code_hash("ACDEFGHJKM")) == 64
    assert codes.format_code("ACDEFGHJKM") == "ACDE-FGHJ-KM"
    raw = codes.random_code()
    assert len(raw) == codes.CODE_LENGTH and set(raw) <= set(codes.CODE_ALPHABET)


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


def test_a_given_code_is_stored_once_and_only_as_its_hash(session: Session, case: Case) -> None:
    first = codes.create_answer_code(session, case, "baseline", code="k7qm4tzx9c", days=3)
    again = codes.create_answer_code(session, case, "baseline", code="K7QM-4TZX-9C")
    assert first == again == "K7QM-4TZX-9C"
    row = session.scalars(select(AnswerCode)).one()
    assert row.code_hash == codes.code_hash(first)
    assert row.expires_at - row.created_at == dt.timedelta(days=3)
    assert codes.open_codes(session, case) == 1


def test_a_code_that_does_not_work_is_refused_with_a_swedish_message(
    session: Session, case: Case
) -> None:
    with pytest.raises(Invalid, match="Okänt tillfälle"):
        codes.create_answer_code(session, case, "someday")
    with pytest.raises(codes.AnswerCodeError, match="10 tecken"):
        codes.redeem_code(session, "ACDE")
    with pytest.raises(codes.AnswerCodeError, match="finns inte"):
        codes.redeem_code(session, "ACDE-FGHJ-KM")
    now = utcnow()
    code = codes.create_answer_code(session, case, "baseline", days=1, now=now)
    row = codes.redeem_code(session, code, now=now)
    with pytest.raises(codes.AnswerCodeError, match="gäller inte längre"):
        codes.redeem_code(session, code, now=now + dt.timedelta(days=2))
    assert codes.open_codes(session, case, now=now + dt.timedelta(days=2)) == 0
    row.used_at = now
    with pytest.raises(codes.AnswerCodeError, match="redan använd"):
        codes.check_code(row, now=now)
    assert codes.open_codes(session, case, now=now) == 0
