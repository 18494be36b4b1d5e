"""Correcting a patient's details in a real browser: a kallelse held for a missing address goes
into the next batch once the coach adds the address; a second referral's new phone is offered to
the coach; the correction page and the coach's letters page have no serious or critical axe
finding."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious
from tests.builders import sample_pnr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NAME = "Adela Utanadress"
PNR = sample_pnr(831)


def _page(browser: Any, server: LiveServer, username: str) -> Any:
    page = browser.new_context(bypass_csp=True, locale="sv-SE").new_page()
    _login(page, server, username)
    return page


def _letters_of_case(page: Any) -> str:
    return str(page.locator("#h-letters + ul").inner_text())


def test_correcting_an_address_releases_the_held_letter_into_the_next_batch(
    browser: Any, live_server: LiveServer
) -> None:
    coach = _page(browser, live_server, "coach")
    coordinator = _page(browser, live_server, "koordinator")

    # A referral by phone, without an address; the coach invites.
    coach.goto(f"{live_server.url}/remiss")
    coach.get_by_label("Personnummer").fill(PNR)
    coach.get_by_label("Namn", exact=True).fill(NAME)
    coach.get_by_label("Varför? Vad önskar patienten?").fill("Vill träffa andra.")
    coach.get_by_label("Patienten samtycker till att bli kontaktad om programmet").check()
    coach.get_by_role("button", name="Skicka remissen").click()
    coach.goto(f"{live_server.url}/arbetslista")
    coach.get_by_role("link", name=NAME, exact=True).first.click()
    case_url = coach.url
    coach.get_by_role("button", name="Ta ärendet").click()
    coach.get_by_role("button", name="Skicka kallelse").click()
    assert "Kallelse" in _letters_of_case(coach)

    # The coordinator's batch holds the kallelse back: no address.
    coordinator.goto(f"{live_server.url}/brev")
    coordinator.get_by_role("button", name="Skriv ut brev", exact=True).click()
    coach.goto(case_url)
    assert "Adress saknas." in _letters_of_case(coach)

    # The coach corrects the address; a missing reason is refused, with everything kept.
    coach.get_by_role("link", name="Rätta uppgifterna").click()
    assert _serious(coach) == []
    coach.get_by_label("Gatuadress").fill("Nygatan 7")
    coach.get_by_label("Postnummer").fill("72215")
    coach.get_by_label("Ort", exact=True).fill("Västerås")
    coach.get_by_role("button", name="Spara rättelsen").click()
    assert "Skriv varför uppgifterna rättas." in coach.content()
    assert coach.get_by_label("Gatuadress").input_value() == "Nygatan 7"
    assert _serious(coach) == []
    coach.get_by_label("Varför rättas uppgifterna?").fill("Patienten ringde och gav sin adress.")
    coach.get_by_role("button", name="Spara rättelsen").click()
    flashes = coach.locator(".flash").all_inner_texts()
    assert any("Brev som hölls kvar och nu går med i nästa utskrift: 1." in f for f in flashes), (
        flashes
    )
    assert "Nygatan 7" in coach.content()
    assert "Adress saknas." not in _letters_of_case(coach)

    # The next batch prints it.
    coordinator.goto(f"{live_server.url}/brev")
    coordinator.get_by_role("button", name="Skriv ut brev", exact=True).click()
    printed = coordinator.locator(".flash").all_inner_texts()
    assert any("är klar" in f for f in printed), printed  # (another demo letter may be held)
    coach.goto(case_url)
    assert "Kallelse – utskrivet" in _letters_of_case(coach)

    # A second referral gives another phone: the coach sees it offered and takes it in.
    public = browser.new_context(locale="sv-SE").new_page()
    public.goto(f"{live_server.url}/anmalan")
    public.get_by_label("Personnummer").fill(PNR)
    public.get_by_label("Namn").fill(NAME)
    public.get_by_label("Telefon").fill("070-765 43 21")
    public.get_by_label("Din vårdcentral").select_option(label="Vårdcentralen Solgläntan")
    public.get_by_label("Vad skulle du vilja?").fill("Jag vill vara med.")
    public.get_by_label("Jag vill att vårdcentralen kontaktar mig om det här").check()
    public.get_by_role("button", name="Skicka").click()
    public.wait_for_url("**/anmalan/tack")
    public.context.close()
    coach.goto(case_url)
    assert "En senare remiss gav andra kontaktuppgifter." in coach.content()
    coach.get_by_role("link", name="Rätta uppgifterna").click()
    assert "070-765 43 21" in coach.locator("#h-offer + p + dl").inner_text()
    assert _serious(coach) == []
    coach.get_by_role("button", name="Använd de nya uppgifterna").click()
    assert coach.get_by_label("Telefon").input_value() == "070-765 43 21"
    history = coach.locator("#h-history + ol").inner_text()
    assert "Patienten ringde och gav sin adress." in history and "Uppgifter från" in history

    # The coach's own letters page.
    coach.goto(f"{live_server.url}/brev/mina")
    assert coach.get_by_role("heading", level=1).inner_text().startswith("Mina brev")
    assert _serious(coach) == []
    coach.context.close()
    coordinator.context.close()
