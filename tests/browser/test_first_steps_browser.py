"""A first-time patient finds their health centre by typing its town, sends the form and reads
on the receipt where it went, its phone and when they will hear; without script the grouped list
works alone. axe-core finds no serious or critical problem on either page, nor on the
evaluator's page with its new download."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _fill_the_rest(page: Any) -> None:
    page.get_by_label("Personnummer").fill("19811218-9876")
    page.get_by_label("Namn").fill("Sten Provsson")
    page.get_by_label("Telefon").fill("070-123 45 68")
    page.get_by_label("Vad skulle du vilja?").fill("Jag vill gärna sjunga i kör.")
    page.get_by_label("Jag vill att vårdcentralen kontaktar mig om det här").check()


def test_search_by_town_choose_send_and_read_the_receipt(
    browser: Any, live_server: LiveServer
) -> None:
    page = browser.new_context(locale="sv-SE").new_page()
    page.goto(f"{live_server.url}/anmalan")
    assert page.title() == "Anmälan – Slussen"
    units = page.get_by_label("Din vårdcentral")
    assert units.input_value() == ""  # nothing chosen for the person
    assert _serious(page) == []

    # Sending without a choice is refused in Swedish, with everything typed kept.
    _fill_the_rest(page)
    page.get_by_role("button", name="Skicka").click()
    assert "Välj din vårdcentral." in page.locator(".field.has-error").first.inner_text()
    assert page.get_by_label("Namn").input_value() == "Sten Provsson"
    assert _serious(page) == []

    search = page.get_by_label("Sök på stad eller vårdcentral")
    search.fill("köp")
    offered = page.locator("select[name=unit] option[data-town]").all_inner_texts()
    assert offered == ["Vårdcentralen Åkerbo"]
    assert page.locator("#unit-search-count").inner_text() == "En vårdcentral passar sökningen."
    search.fill("a")
    assert page.locator("#unit-search-count").inner_text() == "3 vårdcentraler passar sökningen."
    search.fill("")
    assert len(page.locator("select[name=unit] option[data-town]").all_inner_texts()) == 3
    search.fill("åker")
    units.select_option(label="Vårdcentralen Åkerbo")
    page.get_by_label("Jag vill att vårdcentralen kontaktar mig om det här").check()
    page.get_by_role("button", name="Skicka").click()
    page.wait_for_url("**/anmalan/tack")
    text = page.locator("main").inner_text()
    assert "Din anmälan har gått till Vårdcentralen Åkerbo." in text
    assert "0221-40 50 60" in text and "vardagar 9.00–11.00" in text
    assert "senast" in text
    assert page.title() == "Din anmälan är skickad – Slussen"
    assert _serious(page) == []
    page.context.close()


def test_without_script_the_list_is_grouped_by_town(browser: Any, live_server: LiveServer) -> None:
    page = browser.new_context(locale="sv-SE", java_script_enabled=False).new_page()
    page.goto(f"{live_server.url}/anmalan")
    assert page.get_by_label("Sök på stad eller vårdcentral").count() == 0
    groups = page.locator("select[name=unit] optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert groups == sorted(groups) and {"Köping", "Sala", "Västerås"} <= set(groups)
    page.context.close()


def test_the_evaluator_s_page_and_favicon(browser: Any, live_server: LiveServer) -> None:
    page = browser.new_context(locale="sv-SE").new_page()
    _login(page, live_server, "utvarderare")
    page.goto(f"{live_server.url}/utvardering")
    assert page.get_by_role("link", name="Ladda ner kodboken (text)").count() == 1
    assert _serious(page) == []
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page.context.close()
