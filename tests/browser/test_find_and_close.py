"""A coach finds a case that is not due this week, by personnummer and by name, from the search
box on the worklist; closing it asks for a confirmation and a reason; a coordinator reopens it
and it is back where it was. axe finds nothing serious on the pages on the way."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _serious
from tests.browser.test_staff_accessibility import as_user, refer
from tests.builders import sample_pnr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["as_user"]

NAME = "Märta Sökbarsson"


def _search(page: Any, server: LiveServer, typed: str) -> None:
    page.goto(f"{server.url}/arbetslista")
    page.get_by_label("Hitta ett ärende: personnummer eller namn").fill(typed)
    page.get_by_role("button", name="Sök", exact=True).click()
    page.wait_for_url(re.compile(r"/sok$"))
    # What was typed is never in the address (posted, not in a URL).
    assert typed not in page.url


def test_find_by_personnummer_and_name_close_with_confirmation_and_reopen(
    as_user: Callable[[str], Any], live_server: LiveServer
) -> None:
    coach, coordinator = as_user("coach"), as_user("koordinator")
    refer(coach, live_server, 851, NAME)
    pnr = sample_pnr(851)
    problems: dict[str, list[str]] = {}

    # By name: lower case, no accents, the words in another order.
    _search(coach, live_server, "sokbarsson marta")
    link = coach.get_by_role("link", name=NAME, exact=True)
    assert link.count() == 1
    problems["/sok (name)"] = _serious(coach)
    # By personnummer, in the 10-digit form with the hyphen.
    _search(coach, live_server, f"{pnr[2:8]}-{pnr[8:]}")
    assert coach.get_by_role("link", name=NAME, exact=True).count() == 1
    coach.get_by_role("link", name=NAME, exact=True).click()
    case_url = coach.url

    # Closing asks first, with a reason.
    coach.get_by_role("link", name="Avsluta – annat skäl").click()
    assert "Det här avslutar ärendet." in coach.content()
    problems["confirm"] = _serious(coach)
    coach.get_by_role("button", name=re.compile("^Ja: avsluta")).click()
    # The reason is required: the browser keeps the page until it is given.
    assert "/bekrafta" in coach.url
    coach.get_by_label("Skäl").fill("Patienten har flyttat från orten.")
    coach.get_by_role("button", name=re.compile("^Ja: avsluta")).click()
    coach.wait_for_url(case_url)
    assert coach.locator(".badge").first.inner_text() == "Avslutat – annat skäl"
    assert "Patienten har flyttat från orten." in coach.content()

    # The coach's caseload and the unit's list show the closed case too.
    for path in ("/mina-arenden?state=closed", "/enhet"):
        coach.goto(live_server.url + path)
        problems[path] = _serious(coach)

    # A coordinator reopens it: back in the state it was closed in, the history kept.
    coordinator.goto(case_url)
    coordinator.get_by_label("Skäl").fill("Patienten ringde och vill ändå vara med.")
    coordinator.get_by_role("button", name="Öppna ärendet igen").click()
    assert "Klart: Öppna ärendet igen." in coordinator.locator(".flash").inner_text()
    assert coordinator.locator(".badge").first.inner_text() == "Inkommen"
    timeline = coordinator.locator(".timeline").inner_text()
    assert "Avsluta – annat skäl" in timeline and "Öppna ärendet igen" in timeline
    problems["case page"] = _serious(coordinator)
    assert {where: found for where, found in problems.items() if found} == {}
