"""The administrator's screens: units, users, one-time links; each refusal with its Swedish
message, every change in the access log, and nobody else may use them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Unit, User
from slussen.admin import services
from slussen.admin.models import AccountLink
from slussen.audit import AuditEvent
from slussen.errors import Invalid, NotPermitted
from tests.conftest import TEST_PASSWORD

NEW_PASSWORD = "en lång mening som ingen gissar i år"
UNIT_FORM = {
    "name": "Vårdcentralen Norra",
    "hsa_id": "SE2321000016-NRA1",
    "street": "Norra vägen 4",
    "postcode": "72215",
    "town": "Västerås",
    "phone": "021-12 34 56",
    "phone_hours": "vardagar 8.00–10.00",
    "opens": "07.30",
    "closes": "16.00",
    "weekdays": ["1", "2", "3", "4"],
}


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _audit_rows(session: Session, object_type: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == object_type).order_by(AuditEvent.id)
        )
    )


def _token(page: str) -> str:
    found = re.search(r"/konto/engangslank/([A-Za-z0-9_-]+)", page)
    assert found, page
    return found.group(1)


# --- units ---------------------------------------------------------------------------------


def test_admin_creates_and_edits_a_unit(
    client: FlaskClient, login: Callable[..., Any], session: Session
) -> None:
    login("admin")
    response = client.post("/admin/enheter/ny", data=UNIT_FORM)
    assert response.status_code == 302, _text(response)
    unit = session.scalar(select(Unit).where(Unit.hsa_id == "SE2321000016-NRA1"))
    assert unit is not None
    assert (unit.postcode, unit.phone_hours, unit.open_weekdays) == (
        "722 15",
        "vardagar 8.00–10.00",
        "1234",
    )
    assert (unit.opens_at, unit.closes_at) == (dt.time(7, 30), dt.time(16, 0))
    listing = _text(client.get("/admin/enheter"))
    assert "Vårdcentralen Norra" in listing and "07.30–16.00" in listing
    assert "måndag" in listing.lower()

    edit = client.post(
        f"/admin/enheter/{unit.id}", data={**UNIT_FORM, "phone": "021-65 43 21", "weekdays": ["1"]}
    )
    assert edit.status_code == 302
    session.expire_all()
    assert (unit.phone, unit.open_weekdays) == ("021-65 43 21", "1")
    rows = _audit_rows(session, "unit")
    assert [r.action for r in rows] == ["create", "update"]
    assert rows[0].purpose == "ny enhet: Vårdcentralen Norra"
    assert rows[1].purpose == "ändrade telefon, öppna dagar"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hsa_id": "SE232-ABC"}, "HSA-id"),
        ({"hsa_id": "SE2321000016-TST1"}, "Det finns redan en enhet med HSA-id SE2321000016-TST1"),
        ({"postcode": "0123"}, "ostnummer"),
        ({"opens": "17.00", "closes": "08.00"}, "Vårdcentralen måste stänga senare än den öppnar."),
        ({"weekdays": []}, "Ange öppna veckodagar"),
    ],
)
def test_a_refused_unit_shows_why_and_saves_nothing(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    change: dict[str, Any],
    message: str,
) -> None:
    login("admin")
    response = client.post("/admin/enheter/ny", data={**UNIT_FORM, **change})
    assert response.status_code == 400
    assert message in _text(response)
    assert session.scalar(select(Unit).where(Unit.name == "Vårdcentralen Norra")) is None
    assert _audit_rows(session, "unit") == []


def test_the_unit_service_refuses_bad_and_taken_hsa_ids(
    session: Session, ring: vault.KeyRing, unit: Unit
) -> None:
    with pytest.raises(Invalid, match="HSA-id"):
        services.create_unit(
            session, ring, audit.SYSTEM, services.UnitDetails(name="X", hsa_id="SE12-A")
        )
    with pytest.raises(Invalid, match="Det finns redan en enhet med HSA-id SE2321000016-TST1"):
        services.create_unit(
            session,
            ring,
            audit.SYSTEM,
            services.UnitDetails(name="X", hsa_id="SE2321000016-TST1"),
        )
    with pytest.raises(Invalid, match="Ange enhetens namn"):
        services.create_unit(
            session, ring, audit.SYSTEM, services.UnitDetails(name=" ", hsa_id="SE2321000016-X")
        )


# --- users ---------------------------------------------------------------------------------


def test_admin_creates_a_coach_who_sets_a_password_with_the_link(
    app: Flask, client: FlaskClient, login: Callable[..., Any], session: Session, unit: Unit
) -> None:
    login("admin")
    response = client.post(
        "/admin/anvandare/ny",
        data={
            "display_name": "Anna Berg",
            "username": "Anna.Berg",
            "role": "coach",
            "units": [str(unit.id)],
        },
    )
    assert response.status_code == 200, _text(response)
    assert response.headers["Cache-Control"] == "no-store"
    page = _text(response)
    assert "Kontot för Anna Berg är skapat" in page
    token = _token(page)
    user = session.scalar(select(User).where(User.username == "anna.berg"))
    assert user is not None and user.role == "coach" and user.unit_ids == {unit.id}
    link = session.scalar(select(AccountLink).where(AccountLink.user_id == user.id))
    assert link is not None and token not in link.token_hash
    assert link.expires_at - link.created_at == dt.timedelta(hours=services.LINK_HOURS)
    purposes = [r.purpose for r in _audit_rows(session, "user") if r.action == "create"]
    assert purposes == ["nytt konto med rollen Hälsocoach"]
    assert [r.action for r in _audit_rows(session, "account_link")] == ["create"]

    client.post("/logout")
    assert client.post("/login", data={"username": "anna.berg", "password": ""}).status_code != 302
    form = client.get(f"/konto/engangslank/{token}")
    assert form.status_code == 200 and "Välj ditt lösenord" in _text(form)
    short = client.post(
        f"/konto/engangslank/{token}",
        data={"new_password": "kort", "new_password_again": "kort"},
    )
    assert short.status_code == 400 and "15" in _text(short)
    saved = client.post(
        f"/konto/engangslank/{token}",
        data={"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
    )
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/login")
    logged_in = client.post("/login", data={"username": "anna.berg", "password": NEW_PASSWORD})
    assert logged_in.status_code == 302
    client.post("/logout")

    again = client.get(f"/konto/engangslank/{token}")
    assert again.status_code == 404
    assert "Länken fungerar inte" in _text(again)
    assert "nytt lösenord med engångslänk" in [r.purpose for r in _audit_rows(session, "user")]


def test_a_link_expires_and_an_unknown_one_is_refused(
    app: Flask, session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    settings = app.extensions["slussen.settings"]
    user = make_user("coach")
    then = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    token = services.issue_link(session, ring, audit.SYSTEM, user, now=then)
    late = then + dt.timedelta(hours=services.LINK_HOURS, seconds=1)
    with pytest.raises(services.LinkRefused, match="Länken fungerar inte"):
        services.set_password_with_link(session, settings, ring, token, NEW_PASSWORD, now=late)
    with pytest.raises(services.LinkRefused):
        services.open_link(session, ring, token + "x")
    # A newer link replaces the older one.
    first = services.issue_link(session, ring, audit.SYSTEM, user)
    second = services.issue_link(session, ring, audit.SYSTEM, user)
    with pytest.raises(services.LinkRefused):
        services.open_link(session, ring, first)
    assert services.open_link(session, ring, second)[1].id == user.id


def test_a_reset_ends_the_old_password_and_totp(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    make_user: Callable[..., Any],
    ring: vault.KeyRing,
) -> None:
    import pyotp

    from slussen.accounts.services import enrol_totp, has_second_factor, new_totp_secret

    coach = make_user("coach")
    secret = new_totp_secret()
    enrol_totp(session, ring, coach, secret, pyotp.TOTP(secret).now())
    assert has_second_factor(coach)
    login("admin")
    response = client.post(f"/admin/anvandare/{coach.id}/engangslank")
    assert response.status_code == 200
    assert "Ny engångslänk för Test coach" in _text(response)
    session.expire_all()
    assert not has_second_factor(coach)
    assert [r.action for r in _audit_rows(session, "user") if r.object_id == str(coach.id)][
        -1:
    ] == ["totp_reset"]
    client.post("/logout")
    refused = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert refused.status_code == 401


def test_a_taken_username_is_refused(
    client: FlaskClient, login: Callable[..., Any], make_user: Callable[..., Any], unit: Unit
) -> None:
    make_user("coach")
    login("admin")
    response = client.post(
        "/admin/anvandare/ny",
        data={"display_name": "Någon", "username": "Coach", "role": "coach"},
    )
    assert response.status_code == 400
    assert "Användarnamnet coach är redan taget." in _text(response)


def test_admin_changes_role_and_units_and_filters_the_list(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    make_user: Callable[..., Any],
    unit: Unit,
) -> None:
    other = Unit(
        name="Vårdcentralen Söder",
        hsa_id="SE2321000016-SDR1",
        street="Södra 1",
        postcode="722 16",
        town="Västerås",
        phone="021-1",
    )
    session.add(other)
    session.flush()
    coach = make_user("coach")
    make_user("staff", "personal")
    login("admin")
    response = client.post(
        f"/admin/anvandare/{coach.id}",
        data={"display_name": "Test coach", "role": "coordinator", "units": [str(other.id)]},
    )
    assert response.status_code == 302
    session.expire_all()
    assert coach.role == "coordinator" and coach.unit_ids == {other.id}
    row = _audit_rows(session, "user")[-1]
    assert (row.action, row.purpose) == (
        "update",
        "ändrade roll från Hälsocoach till Samordnare, enheter",
    )
    by_unit = _text(client.get(f"/admin/anvandare?unit={other.id}"))
    assert "Test coach" in by_unit and "Test staff" not in by_unit
    by_role = _text(client.get("/admin/anvandare?role=staff"))
    assert "Test staff" in by_role and "Test coach" not in by_role
    visible = re.sub(r"<[^>]+>", " ", by_role)
    assert "coordinator" not in visible and "Samordnare" in visible  # labels, not codes


def test_deactivate_and_reactivate(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    make_user: Callable[..., Any],
) -> None:
    coach = make_user("coach")
    login("admin")
    client.post(f"/admin/anvandare/{coach.id}/stang-av")
    session.expire_all()
    assert not coach.is_active
    page = _text(client.get(f"/admin/anvandare/{coach.id}"))
    assert "Kontot är avstängt." in page and "Öppna kontot igen" in page
    client.post(f"/admin/anvandare/{coach.id}/oppna")
    session.expire_all()
    assert coach.is_active
    actions = [r.action for r in _audit_rows(session, "user") if r.object_id == str(coach.id)]
    assert actions[-2:] == ["account_disable", "update"]


def test_the_last_admin_stays(
    client: FlaskClient,
    login: Callable[..., Any],
    session: Session,
    ring: vault.KeyRing,
) -> None:
    admin = login("admin")
    own = client.post(f"/admin/anvandare/{admin.id}/stang-av", follow_redirects=True)
    assert "Test admin är den enda aktiva administratören och kan inte stängas av." in _text(own)
    assert admin.is_active
    demote = client.post(
        f"/admin/anvandare/{admin.id}",
        data={"display_name": "Test admin", "role": "coach"},
    )
    assert demote.status_code == 400
    assert "kan inte få en annan roll" in _text(demote)
    session.expire_all()
    assert admin.role == "admin"
    with pytest.raises(Invalid, match="den enda aktiva administratören"):
        services.deactivate_account(session, ring, audit.SYSTEM, admin)


def test_an_admin_cannot_deactivate_themself_while_another_exists(
    client: FlaskClient, login: Callable[..., Any], make_user: Callable[..., Any]
) -> None:
    make_user("admin", "admin2")
    admin = login("admin")
    page = _text(client.post(f"/admin/anvandare/{admin.id}/stang-av", follow_redirects=True))
    assert "Du kan inte stänga av ditt eget konto." in page
    assert admin.is_active


def test_only_an_administrator_may(
    session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    from slussen.audit import Actor

    coach = Actor.of(make_user("coordinator"))
    with pytest.raises(NotPermitted, match="Bara en administratör"):
        services.create_unit(
            session, ring, coach, services.UnitDetails(name="X", hsa_id="SE2321000016-X1")
        )
    target = make_user("coach")
    with pytest.raises(NotPermitted):
        services.deactivate_account(session, ring, coach, target)
    with pytest.raises(NotPermitted):
        services.issue_link(session, ring, coach, target)


@pytest.mark.parametrize("role", ["coach", "coordinator", "staff", "evaluator", "org_rep"])
def test_other_roles_get_403_on_every_admin_page(
    app: Flask, client: FlaskClient, login: Callable[..., Any], session: Session, role: str
) -> None:
    user = login(role)
    unit_id = next(iter(user.unit_ids))
    for url in (
        "/admin/enheter",
        "/admin/enheter/ny",
        f"/admin/enheter/{unit_id}",
        "/admin/anvandare",
        "/admin/anvandare/ny",
        f"/admin/anvandare/{user.id}",
    ):
        assert client.get(url).status_code == 403, url
    for url in (
        "/admin/enheter/ny",
        f"/admin/enheter/{unit_id}",
        "/admin/anvandare/ny",
        f"/admin/anvandare/{user.id}",
        f"/admin/anvandare/{user.id}/stang-av",
        f"/admin/anvandare/{user.id}/oppna",
        f"/admin/anvandare/{user.id}/engangslank",
    ):
        assert client.post(url, data=UNIT_FORM).status_code == 403, url
    assert user.is_active and _audit_rows(session, "account_link") == []


def test_unknown_objects_are_404(client: FlaskClient, login: Callable[..., Any]) -> None:
    login("admin")
    assert client.get("/admin/enheter/99999").status_code == 404
    assert client.get("/admin/anvandare/99999").status_code == 404
    assert client.post("/admin/anvandare/99999/stang-av").status_code == 404


@pytest.mark.settings(csrf_enabled=True)
def test_changes_need_the_csrf_token(
    client: FlaskClient, make_user: Callable[..., Any], session: Session
) -> None:
    admin = make_user("admin")
    coach = make_user("coach")
    page = _text(client.get("/login"))
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert csrf
    client.post(
        "/login",
        data={"username": admin.username, "password": TEST_PASSWORD, "csrf_token": csrf.group(1)},
    )
    assert client.post(f"/admin/anvandare/{coach.id}/stang-av").status_code == 400
    assert client.post("/admin/enheter/ny", data=UNIT_FORM).status_code == 400
    assert coach.is_active
    assert session.scalar(select(Unit).where(Unit.name == "Vårdcentralen Norra")) is None


def test_the_admin_start_page_links_the_screens(
    client: FlaskClient, login: Callable[..., Any]
) -> None:
    login("admin")
    page = _text(client.get("/"))
    assert 'href="/admin/enheter"' in page and 'href="/admin/anvandare"' in page
    assert "Enheter" in page and "Användare" in page


def test_unknown_or_huge_unit_ids_are_refused_in_swedish(
    client: FlaskClient, login: Callable[..., Any], session: Session
) -> None:
    login("admin")
    for value in ("99999999999999999999999", "abc", "424242"):
        response = client.post(
            "/admin/anvandare/ny",
            data={"display_name": "Ny", "username": "ny", "role": "coach", "units": [value]},
        )
        assert response.status_code == 400, value
        assert "En av de valda enheterna finns inte." in _text(response)
        assert client.get(f"/admin/anvandare?unit={value}&role=x").status_code == 200
    assert session.scalar(select(User).where(User.username == "ny")) is None
