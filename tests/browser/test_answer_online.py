"""The online answering flow in a real browser: the code from a demo letter → one question group
per screen → thank you; the code then fails; an expired code fails; axe-core finds no serious or
critical accessibility violation on these pages."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.browser.conftest import LiveServer

pytestmark = pytest.mark.browser


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} – {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def test_answer_online_with_the_demo_letters_code(
    live_server: LiveServer,
    browser: Any,
) -> None:
    code = live_server.demo_code()
    page = browser.new_page()
    page.goto(f"{live_server.url}/svar")
    assert serious_violations(page) == []
    # Keyboard only on the first page: the code field, then Enter.
    page.keyboard.press("Tab")
    page.locator("#code").focus()
    page.keyboard.type(code.lower())
    page.keyboard.press("Enter")
    page.wait_for_url("**/svar/fraga/1")

    checked_pages = 0
    while "/svar/fraga/" in page.url:
        assert "Sida" in page.locator("p.meta").first.inner_text()
        for fieldset in page.locator("fieldset.question").all():
            fieldset.locator("input[type=radio]").first.check()
        ticks = page.locator("input[type=checkbox]")
        if ticks.count():
            ticks.first.check()
        if checked_pages < 3:
            assert serious_violations(page) == [], page.url
        checked_pages += 1
        page.get_by_role("button", name="Nästa").click()
        page.wait_for_load_state()
    assert page.url.endswith("/svar/skicka")
    assert checked_pages >= 8
    assert serious_violations(page) == []
    page.get_by_role("button", name="Skicka mina svar").click()
    page.wait_for_url("**/svar/tack")
    assert "Tack för dina svar" in page.content()
    assert serious_violations(page) == []

    # The code has been used.
    page.goto(f"{live_server.url}/svar/{code}")
    assert "Koden är redan använd" in page.content()
    assert serious_violations(page) == []
    page.close()


def test_an_expired_code_fails_in_the_browser(
    live_server: LiveServer,
    browser: Any,
) -> None:
    from sqlalchemy import select

    from slussen.cases.models import Case
    from slussen.db import session_scope
    from slussen.keystore import current_key_ring
    from slussen.questionnaires.codes import create_answer_code

    app = live_server.app
    with app.app_context(), session_scope(app) as session:
        case = session.scalars(select(Case).order_by(Case.id)).first()
        assert case is not None
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
        code = create_answer_code(session, current_key_ring(), case, "baseline", now=old)
    page = browser.new_page()
    page.goto(f"{live_server.url}/svar")
    page.fill("#code", code)
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_load_state()
    assert "Koden gäller inte längre" in page.content()
    assert page.locator("#code").get_attribute("aria-invalid") == "true"
    page.close()
