"""Worklists and the case page through the real pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.audit import AuditEvent
from slussen.cases.models import Case
from tests.intake.test_referral_pages import self_refer


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
    before = session.scalar(select(func.max(AuditEvent.id))) or 0
    client.get(f"/arenden/{case.id}")
    reads = session.scalars(select(AuditEvent).where(AuditEvent.id > before)).all()
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
