"""Intake, worklists and the case page through the real pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.audit import AuditEvent
from slussen.cases.models import Case, Referral
from slussen.patients.models import Patient
from tests.builders import sample_pnr
from tests.conftest import settings_for_tests

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


class TestSelfReferralCsrf:
    @pytest.fixture
    def app_settings(self, tmp_path: Path) -> dict[str, Any]:
        return settings_for_tests(tmp_path, csrf_enabled=True)

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


def test_coach_works_the_case_through_the_pages(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    self_refer(client, unit)
    login("coach")
    case = session.scalars(select(Case)).one()
    worklist = client.get("/arbetslista").get_data(as_text=True)
    assert "Margit Ekholm" in worklist and "Skicka kallelse" in worklist
    page = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert "19811218-9876" in page and "promenader" in page
    assert "Registrera uppföljning 1" not in page  # only the events allowed now
    response = client.post(f"/arenden/{case.id}/handelse/invite", data={"version": case.version})
    assert response.status_code == 302
    session.refresh(case)
    assert case.state == "invited"


def test_worklist_shows_a_new_referral_until_the_case_page_is_opened(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    self_refer(client, unit)
    self_refer(client, unit, wish="Jag har ringt också.")
    login("coach")
    case = session.scalars(select(Case)).one()
    worklist = client.get("/arbetslista").get_data(as_text=True)
    assert "Ny remiss" in worklist
    # The next step is a one-click form for this case at its current version.
    assert f'action="/arenden/{case.id}/handelse/invite"' in worklist
    assert f'name="version" value="{case.version}"' in worklist
    assert f'href="/arenden/{case.id}"' in worklist
    client.get(f"/arenden/{case.id}")
    assert "Ny remiss" not in client.get("/arbetslista").get_data(as_text=True)
    client.post("/logout")
    login("coordinator")
    unit_page = client.get("/enhet").get_data(as_text=True)
    assert "Margit Ekholm" in unit_page and case.reference in unit_page


def test_stale_form_gets_409_and_keeps_the_text(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    self_refer(client, unit)
    login("coach")
    case = session.scalars(select(Case)).one()
    old = case.version
    client.post(f"/arenden/{case.id}/handelse/invite", data={"version": old})
    response = client.post(
        f"/arenden/{case.id}/handelse/decline",
        data={"version": old, "text": "Vill vänta till våren"},
    )
    assert response.status_code == 409
    assert "Vill vänta till våren" in response.get_data(as_text=True)
    session.refresh(case)
    assert case.state == "invited"


def test_case_page_writes_an_audit_row(
    client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    self_refer(client, unit)
    login("coach")
    case = session.scalars(select(Case)).one()
    before = count(session, AuditEvent)
    client.get(f"/arenden/{case.id}")
    reads = session.scalars(select(AuditEvent).where(AuditEvent.seq > before)).all()
    assert [r.action for r in reads if r.object_type == "patient"] == ["read"]


def test_coach_of_another_unit_gets_404_everywhere(
    app: Flask, client: FlaskClient, make_user: Callable[..., Any], session: Session, unit: Any
) -> None:
    from slussen.accounts.models import Unit
    from tests.conftest import TEST_PASSWORD

    self_refer(client, unit)
    case = session.scalars(select(Case)).one()
    other = Unit(
        name="Annan VC",
        hsa_id="SE2321000016-OTH2",
        street="Gata 2",
        postcode="111 22",
        town="Stockholm",
        phone="08-2",
    )
    session.add(other)
    session.flush()
    make_user("coach", "coach_b", units=[other])
    client.post("/login", data={"username": "coach_b", "password": TEST_PASSWORD})
    checked = 0
    for rule in app.url_map.iter_rules():
        if "case_id" not in rule.arguments:
            continue
        url = rule.rule.replace("<int:case_id>", str(case.id)).replace("<event>", "invite")
        url = url.replace("<int:handover_id>", "1")
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            response = client.open(url, method=method, data={"version": case.version})
            assert response.status_code == 404, (method, url, response.status_code)
            checked += 1
    assert checked >= 8
    session.refresh(case)
    assert case.state == "referred"
