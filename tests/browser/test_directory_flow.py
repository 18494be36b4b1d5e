"""An org_rep adds a recurring activity, the coordinator approves it, and it appears in the public
calendar; axe-core finds no serious or critical accessibility problem on the public pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from slussen.config import local_zone
from tests.browser.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TITLE = "Kvällspromenad längs ån"


def _login(page: Any, server: LiveServer, username: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Användarnamn").fill(username)
    page.get_by_label("Lösenord").fill(server.password)
    page.get_by_role("button", name="Logga in").click()
    # Each role lands on its own start page (a coordinator on the worklist).
    page.wait_for_url(lambda url: not url.endswith("/login"))


def _serious(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} – {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def test_org_rep_adds_coordinator_approves_public_sees(
    browser: Any, live_server: LiveServer
) -> None:
    now = dt.datetime.now(local_zone())
    next_monday = now.date() + dt.timedelta(days=7 - now.weekday())
    rep = browser.new_context(bypass_csp=True, locale="sv-SE")
    page = rep.new_page()
    _login(page, live_server, "forening")
    page.get_by_role("link", name="Aktivitetskatalog").click()
    page.get_by_role("link", name="Frivilligcentralen").click()
    page.get_by_role("link", name="Lägg till en aktivitet").click()
    page.get_by_label("Rubrik").fill(TITLE)
    page.get_by_label("Beskrivning på lättläst svenska").fill(
        "Vi går en timme längs ån. Alla är välkomna."
    )
    page.get_by_label("Promenader och natur").check()
    page.get_by_label("Första datum").fill(next_monday.isoformat())
    page.get_by_label("Börjar klockan").fill("18:00")
    page.get_by_label("Längd i minuter").fill("60")
    page.get_by_label("Varje vecka").check()
    page.get_by_label("Måndag").check()
    page.get_by_label("Onsdag").check()
    page.get_by_label("Plats", exact=True).fill("Bron vid Strömparken")
    page.get_by_label("Område").fill("Centrum")
    page.get_by_label("Någon kan möta en ny deltagare och följa med första gången").check()
    page.get_by_role("button", name="Skicka för granskning").click()
    assert "Samordnaren granskar aktiviteten" in page.content()
    rep.close()

    public = browser.new_context(bypass_csp=True, locale="sv-SE")
    visitor = public.new_page()
    visitor.goto(f"{live_server.url}/aktiviteter?period=next_week")
    assert TITLE not in visitor.content()

    coordinator = browser.new_context(bypass_csp=True, locale="sv-SE")
    page = coordinator.new_page()
    _login(page, live_server, "koordinator")
    page.get_by_role("link", name="Granska ändringar").click()
    page.get_by_role("link", name=TITLE).click()
    page.get_by_role("button", name="Godkänn och publicera").click()
    assert "Godkänd" in page.content()
    coordinator.close()

    visitor.goto(f"{live_server.url}/aktiviteter?period=next_week")
    visitor.get_by_label("Någon kan följa med första gången").check()
    visitor.get_by_role("button", name="Visa aktiviteter").click()
    assert visitor.get_by_role("link", name=TITLE).count() == 2  # Monday and Wednesday
    visitor.get_by_role("link", name=TITLE).first.click()
    assert "Varje måndag och onsdag" in visitor.content()
    public.close()


@pytest.mark.parametrize(
    "path",
    [
        "/aktiviteter",
        "/aktiviteter?period=range&fran=2026-01-01&till=igår",
        "/aktiviteter/utskrift",
        "/login",
    ],
)
def test_public_pages_have_no_serious_accessibility_violations(
    browser: Any, live_server: LiveServer, path: str
) -> None:
    context = browser.new_context(bypass_csp=True, locale="sv-SE")
    page = context.new_page()
    page.goto(live_server.url + path)
    assert _serious(page) == []
    if path == "/aktiviteter":
        page.get_by_role("link").filter(has_text="Promenadgrupp med fika").first.click()
        assert _serious(page) == []
    context.close()
