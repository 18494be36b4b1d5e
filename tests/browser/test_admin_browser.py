"""A new vårdcentral without SQL: the administrator creates a unit and a coach in the browser;
the coach sets a password with the one-time link, logs in, sets up TOTP (required here, as in
production), refers a patient to the new unit and opens the case. axe finds no serious or
critical problem on any of the new pages."""

from __future__ import annotations

import re
from typing import Any

import pyotp
import pytest
from sqlalchemy import select

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious
from tests.browser.test_staff_accessibility import case_path, refer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: TOTP is required for the roles that see patient data, as in production.
LIVE_SERVER_SETTINGS = {"require_totp": True}

UNIT_NAME = "Vårdcentralen Björkhagen"
HSA_ID = "SE2321000016-BJK1"
PASSWORD = "björkarna står tätt vid ån i maj"


def _no_problems(page: Any, where: str, problems: dict[str, list[str]]) -> None:
    found = _serious(page)
    if found:
        problems[where] = found


def test_admin_starts_a_new_vardcentral_and_its_coach_works_a_case(
    browser: Any, live_server: LiveServer
) -> None:
    problems: dict[str, list[str]] = {}
    admin = browser.new_context(bypass_csp=True, locale="sv-SE").new_page()
    _login(admin, live_server, "admin")
    _no_problems(admin, "start", problems)
    admin.get_by_role("link", name="Enheter").first.click()
    _no_problems(admin, "units", problems)
    admin.get_by_role("link", name="Lägg till en enhet").click()
    _no_problems(admin, "new unit", problems)
    admin.get_by_label("Namn", exact=True).fill(UNIT_NAME)
    admin.get_by_label("HSA-id", exact=True).fill("SE2321000016")
    admin.get_by_role("button", name="Skapa enheten").click()
    # A refused HSA-id says why, next to the field, and keeps what was typed.
    assert "HSA-id" in admin.locator(".field.has-error").first.inner_text()
    assert admin.get_by_label("Namn", exact=True).input_value() == UNIT_NAME
    _no_problems(admin, "new unit refused", problems)
    admin.get_by_label("HSA-id", exact=True).fill(HSA_ID)
    admin.get_by_label("Gatuadress").fill("Björkvägen 3")
    admin.get_by_label("Postnummer").fill("72219")
    admin.get_by_label("Ort", exact=True).fill("Västerås")
    admin.get_by_label("Telefon", exact=True).fill("021-44 55 66")
    admin.get_by_label("Telefontider").fill("vardagar 8.00–9.30")
    admin.get_by_label("Lördag").check()
    admin.get_by_role("button", name="Skapa enheten").click()
    assert f"Enheten {UNIT_NAME} är skapad." in admin.locator(".flash").inner_text()
    row = admin.get_by_role("row").filter(has_text=UNIT_NAME)
    assert "722 19" in row.inner_text() and "Lördag" in row.inner_text()
    row.get_by_role("link", name=UNIT_NAME).click()
    _no_problems(admin, "edit unit", problems)

    admin.get_by_role("link", name="Användare").first.click()
    _no_problems(admin, "users", problems)
    admin.get_by_role("link", name="Lägg till en användare").click()
    _no_problems(admin, "new user", problems)
    admin.get_by_label("Namn", exact=True).fill("Bodil Björk")
    admin.get_by_label("Användarnamn").fill("bodil")
    admin.get_by_label("Roll").select_option(label="Hälsocoach")
    admin.get_by_label(UNIT_NAME).check()
    admin.get_by_role("button", name="Skapa kontot").click()
    assert "Kontot för Bodil Björk är skapat" in admin.get_by_role("heading", level=1).inner_text()
    _no_problems(admin, "link issued", problems)
    shown = admin.get_by_label("Engångslänk").input_value()
    # The link is on Slussen's configured public address (never the request's Host header).
    base = live_server.app.extensions["slussen.settings"].base_url
    found = re.fullmatch(rf"{re.escape(base)}(/konto/engangslank/[\w-]+)", shown)
    assert found, shown
    link = live_server.url + found.group(1)
    admin.get_by_role("link", name="Tillbaka till kontot").click()
    _no_problems(admin, "user", problems)
    admin.get_by_role("link", name="Användare").first.click()
    admin.get_by_label("Enhet").select_option(label=UNIT_NAME)
    admin.get_by_role("button", name="Filtrera").click()
    listed = admin.get_by_role("table").inner_text()
    assert "Bodil Björk" in listed and "Hälsocoach" in listed and "\tcoach" not in listed
    admin.context.close()

    coach = browser.new_context(bypass_csp=True, locale="sv-SE").new_page()
    coach.goto(link)
    _no_problems(coach, "link password", problems)
    coach.get_by_label("Nytt lösenord", exact=True).fill(PASSWORD)
    coach.get_by_label("Nytt lösenord igen").fill(PASSWORD)
    coach.get_by_role("button", name="Spara lösenordet").click()
    assert "Ditt lösenord är sparat" in coach.locator(".flash").inner_text()
    coach.get_by_label("Användarnamn").fill("bodil")
    coach.get_by_label("Lösenord").fill(PASSWORD)
    coach.get_by_role("button", name="Logga in").click()
    # TOTP is required for a coach: the login goes on to set it up.
    coach.wait_for_url("**/konto/tvastegsverifiering")
    secret = coach.locator("code").first.inner_text().replace(" ", "")
    coach.get_by_label("Koden i appen").fill(pyotp.TOTP(secret).now())
    coach.get_by_role("button", name="Slå på tvåstegsverifiering").click()
    coach.get_by_role("link", name="Jag har sparat koderna – fortsätt").click()
    coach.wait_for_url("**/arbetslista")

    # The link worked once.
    again = coach.context.new_page()
    assert again.goto(link).status == 404
    again.close()

    refer(coach, live_server, 861, "Sara Nyanmäld")
    path = case_path(coach, live_server, "/arbetslista", "Sara Nyanmäld")
    response = coach.goto(live_server.url + path)
    assert response.status == 200
    assert "Sara Nyanmäld" in coach.get_by_role("main").inner_text()
    coach.context.close()

    from slussen.accounts.models import Unit
    from slussen.cases.models import Case
    from slussen.db import session_scope

    app = live_server.app
    with app.app_context(), session_scope(app) as session:
        unit_id = session.scalar(select(Unit.id).where(Unit.hsa_id == HSA_ID))
        case_id = int(path.strip("/").split("/")[1])
        assert session.get(Case, case_id).unit_id == unit_id  # type: ignore[union-attr]
    assert problems == {}
