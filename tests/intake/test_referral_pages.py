"""Referrals through the real pages: self-referral (refusals, honeypot, rate limit, CSRF) and the
staff flag."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.cases.models import Case, Referral
from slussen.patients.models import Patient
from tests.builders import sample_pnr

SELF = {
    "personnummer": "19811218-9876",
    "name": "Margit Ekholm",
    "street": "Solrosvägen 3",
    "postcode": "72219",
    "town": "Västerås",
    "phone": "070-111 22 01",
    "wish": "Jag vill gärna träffa andra och gå promenader.",
    "contact_channel": "post",
    "consent": "y",
}


def count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def self_refer(client: FlaskClient, unit: Any, **changes: str) -> Any:
    return client.post("/anmalan", data={**SELF, "unit": str(unit.id), **changes})


def test_self_referral_creates_one_referred_case(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    page = client.get("/anmalan").get_data(as_text=True)
    assert "Vill du träffa fler människor?" in page
    response = self_refer(client, unit)
    assert response.status_code == 302 and response.location.endswith("/anmalan/tack")
    receipt = client.get("/anmalan/tack").get_data(as_text=True)
    assert "Tack" in receipt
    for secret in ("Margit", "9876", "Solrosvägen", "promenader"):
        assert secret not in receipt
    case = session.scalars(select(Case)).one()
    assert case.state == "referred" and case.channel == "self_referral"
    assert case.unit_id == unit.id


def test_second_referral_attaches_to_the_open_case(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    self_refer(client, unit)
    self_refer(client, unit, personnummer="811218-9876", name="M. Ekholm")
    assert count(session, Case) == 1
    assert count(session, Patient) == 1
    unseen = session.scalars(select(Referral).where(Referral.is_seen.is_(False))).all()
    assert len(unseen) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"personnummer": "19811218-9875"}, "Kontrollsiffran"),
        ({"personnummer": "hej"}, "personnummer"),
        ({"consent": ""}, "samtycke"),
        ({"wish": "x" * 2001}, "högst 2000 tecken"),
        ({"name": ""}, "Skriv namnet"),
        ({"postcode": "0123"}, "fem siffror"),
    ],
)
def test_self_referral_refusals_store_nothing(
    client: FlaskClient, session: Session, unit: Any, changes: dict[str, str], message: str
) -> None:
    response = self_refer(client, unit, **changes)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert count(session, Case) == 0 and count(session, Patient) == 0


def test_honeypot_stores_nothing_but_looks_fine(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    response = self_refer(client, unit, website="http://spam.example")
    assert response.status_code == 302
    assert count(session, Case) == 0


def test_wrong_content_type_is_a_clear_refusal(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    response = client.post("/anmalan", data='{"name": "x"}', content_type="application/json")
    assert response.status_code == 422
    assert count(session, Case) == 0


def test_thirty_first_self_referral_is_refused(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    for n in range(30):
        response = self_refer(client, unit, personnummer=sample_pnr(n), name=f"Person {n}")
        assert response.status_code == 302, n
    refused = self_refer(client, unit, personnummer=sample_pnr(31))
    assert refused.status_code == 429
    assert "För många försök" in refused.get_data(as_text=True)
    assert count(session, Case) == 30


@pytest.mark.settings(csrf_enabled=True)
class TestSelfReferralCsrf:
    def test_missing_token_is_refused(
        self, client: FlaskClient, session: Session, unit: Any
    ) -> None:
        response = self_refer(client, unit)
        assert response.status_code == 400
        assert count(session, Case) == 0

    def test_with_token_works(self, client: FlaskClient, session: Session, unit: Any) -> None:
        page = client.get("/anmalan").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert token
        response = self_refer(client, unit, csrf_token=token.group(1))
        assert response.status_code == 302
        assert count(session, Case) == 1


def staff_referral(client: FlaskClient, unit: Any, **changes: str) -> Any:
    data = {
        **SELF,
        "unit": str(unit.id),
        "channel": "staff_flag",
        "preferred_language": "sv",
        "reason": "Berättade om ensamhet vid diabeteskontrollen",
        **changes,
    }
    data.pop("wish")
    return client.post("/remiss", data=data)


def test_staff_flag_and_see_only_state(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    login("staff")
    response = staff_referral(client, unit)
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get("/mina-flaggningar").get_data(as_text=True)
    assert "Inkommen" in page
    assert "Margit" not in page and "diabetes" not in page
    assert client.get(f"/arenden/{session.scalars(select(Case)).one().id}").status_code == 403


@pytest.mark.settings(
    reserve_number_issuer="1.2.752.97.3.1.3",
    reserve_number_pattern="99[0-9]{8}",
    reserve_number_check="luhn",
    reserve_number_example="9912345676",
)
def test_a_reservnummer_is_entered_in_the_regions_format(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    login("coach")
    form = client.get("/remiss").get_data(as_text=True)
    assert "Patienten har ett reservnummer i stället" in form and "9912345676" in form
    assert "12 eller 10 siffror" in form
    refused = staff_referral(client, unit, personnummer="9912345675", is_reserve_number="y")
    assert refused.status_code == 422
    assert "Reservnumrets kontrollsiffra stämmer inte." in refused.get_data(as_text=True)
    assert (
        staff_referral(client, unit, personnummer="9912345676", is_reserve_number="y").status_code
        == 302
    )
    patient = session.scalars(select(Patient)).one()
    assert (patient.identifier_kind, patient.identifier_issuer) == ("reserv", "1.2.752.97.3.1.3")
