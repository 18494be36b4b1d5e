"""The patient's first steps at /anmalan: the health centre is chosen (by name or town, never
for them), the receipt names it with its phone and the day they hear from it; and every page has
an icon and a title of its own."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit
from slussen.cases.models import Case
from slussen.config import today_local
from slussen.i18n import format_day
from tests.conftest import TEST_PASSWORD
from tests.intake.test_referral_pages import SELF


def other_unit(session: Session) -> Unit:
    unit = Unit(
        name="Vårdcentralen Björkparken",
        hsa_id="SE2321000016-TST9",
        street="Björkgatan 2",
        postcode="731 30",
        town="Köping",
        phone="0221-12 34 56",
        phone_hours="vardagar 8.00–10.00",
    )
    session.add(unit)
    session.flush()
    return unit


def test_the_list_offers_every_unit_by_town_and_chooses_none(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    other = other_unit(session)
    page = client.get("/anmalan").get_data(as_text=True)
    select_html = re.search(r'<select[^>]*name="unit".*?</select>', page, re.S)
    assert select_html is not None
    html = select_html.group(0)
    # Only the empty "choose" option may be selected: no health centre is chosen for the person.
    assert re.findall(r"<option[^>]*selected[^>]*>", html) == ['<option selected value="">']
    assert '<option selected value="">Välj en vårdcentral</option>' in html
    # Grouped by town, so the town is found without script; the script's hooks are there.
    assert re.search(rf'<optgroup label="Köping">\s*<option[^>]*value="{other.id}"', html)
    assert re.search(rf'<optgroup label="Västerås">\s*<option[^>]*value="{unit.id}"', html)
    assert 'data-search-label="Sök på stad eller vårdcentral"' in html
    assert "unit_search.js" in page


def test_no_choice_is_refused_in_swedish(client: FlaskClient, session: Session, unit: Any) -> None:
    response = client.post("/anmalan", data={**SELF, "unit": ""})
    assert response.status_code == 422
    assert "Välj din vårdcentral." in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Case)) == 0
    missing = client.post("/anmalan", data=SELF)
    assert missing.status_code == 422
    assert "Välj din vårdcentral." in missing.get_data(as_text=True)


def test_the_receipt_names_the_unit_its_phone_and_the_day(
    client: FlaskClient, session: Session, unit: Any
) -> None:
    other = other_unit(session)
    response = client.post("/anmalan", data={**SELF, "unit": str(other.id)})
    assert response.status_code == 302
    assert response.location.endswith("/anmalan/tack")  # no unit in the address
    receipt = client.get("/anmalan/tack").get_data(as_text=True)
    assert "Din anmälan har gått till Vårdcentralen Björkparken." in receipt
    assert "0221-12 34 56" in receipt and "vardagar 8.00–10.00" in receipt
    assert "Vårdcentralen Test" not in receipt
    # The workflow's first due date (three days in sluss.toml), as a Swedish date.
    with client.application.test_request_context():
        day = format_day(today_local() + dt.timedelta(days=3))
    assert f"senast {day}" in receipt
    for secret in ("Margit", "9876", "Solrosvägen", "promenader"):
        assert secret not in receipt
    assert session.scalars(select(Case)).one().unit_id == other.id


def test_the_receipt_without_a_referral_names_no_unit(client: FlaskClient, unit: Any) -> None:
    receipt = client.get("/anmalan/tack").get_data(as_text=True)
    assert "Vårdcentralen Test" not in receipt
    assert "ringa din vårdcentral" in receipt


def test_favicon_is_linked_and_answers(client: FlaskClient) -> None:
    page = client.get("/anmalan").get_data(as_text=True)
    assert re.search(r'<link rel="icon" href="/static/favicon.svg" type="image/svg\+xml">', page)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.get_data(as_text=True).startswith("<svg")
    static = client.get("/static/favicon.svg")
    assert static.status_code == 200 and static.get_data() == icon.get_data()
    static.close()


TITLE = re.compile(r"<title>(.*?)</title>", re.S)


def _titles(app: Flask, client: FlaskClient) -> dict[str, str]:
    """The title of every page without parameters that answers 200 with HTML."""
    titles = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or set()) or rule.arguments or rule.endpoint == "static":
            continue
        response = client.get(rule.rule)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        match = TITLE.search(response.get_data(as_text=True))
        titles[rule.rule] = match.group(1).strip() if match else ""
    return titles


def _check(titles: dict[str, str]) -> None:
    for url, title in titles.items():
        assert title, f"{url} has no title"
        specific = title.removesuffix("– Slussen").strip()
        assert specific and specific != "Slussen", f"{url} has only the app's name: {title!r}"
    # Different pages are told apart by their title (a tab, a bookmark, a screen reader).
    by_title: dict[str, list[str]] = {}
    for url, title in titles.items():
        by_title.setdefault(title, []).append(url)
    assert {t: urls for t, urls in by_title.items() if len(urls) > 1} == {}


def test_every_public_page_has_a_title_of_its_own(app: Flask, client: FlaskClient) -> None:
    titles = _titles(app, client)
    assert {"/anmalan", "/anmalan/tack", "/login", "/aktiviteter"} <= set(titles)
    _check(titles)


def test_every_staff_page_has_a_title_of_its_own(
    app: Flask, make_user: Callable[..., Any], unit: Any
) -> None:
    crawled = 0
    for role in ("coordinator", "coach", "staff", "evaluator"):
        user = make_user(role, f"title-{role}")
        own = app.test_client()
        response = own.post("/login", data={"username": user.username, "password": TEST_PASSWORD})
        assert response.status_code == 302
        titles = _titles(app, own)
        _check({url: t for url, t in titles.items() if not url.startswith("/anmalan")})
        crawled += len(titles)
    assert crawled > 20
