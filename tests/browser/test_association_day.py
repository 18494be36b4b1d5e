"""The association's day (sluss 2) through the real pages: a coach asks an association to meet a
patient; the association's user logs in, sees only that request and only what the patient agreed
to share (on every page they can reach: the personnummer, the address, the answers and the notes
are on none), accepts, names the companion and the meeting, and records how the first occasion
went; the coach's case shows it and the case has moved on. axe finds no serious or critical
problem on the association's pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
from sqlalchemy import select

from slussen.accounts.models import User
from slussen.accounts.services import create_user
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.db import session_scope
from slussen.directory.models import Organisation
from slussen.directory.services import add_representative
from slussen.keystore import current_key_ring
from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious
from tests.builders import make_case, sample_pnr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N = 6101
NAME = "Greta Överlund"
STREET = "Hemliga gatan 9"
HELPS = "Vill bli mött vid entrén och sitta nära dörren"
NOTE = "Coachens anteckning om oro inför första gången"
ORGANISATION = "Korpen"


@pytest.fixture(scope="module")
def case_id(live_server: LiveServer) -> int:
    """A case of the demo coach with a held mapping visit and an action plan, and an association
    user `traffpunkt` who represents Korpen (and nothing else)."""
    app = live_server.app
    with app.app_context(), session_scope(app) as session:
        coach = session.scalars(select(User).where(User.username == "coach")).one()
        (unit_id,) = coach.unit_ids
        workflow = app.extensions["slussen.content"].compiled["workflow"]
        case = make_case(
            session,
            current_key_ring(),
            workflow,
            Actor.of(coach),
            unit_id,
            "plan_active",
            n=N,
            name=NAME,
            street=STREET,
            phone="070-555 12 34",
        )
        rep = create_user(
            session,
            app.extensions["slussen.settings"],
            username="traffpunkt",
            display_name="Tove Träffpunkt",
            role="org_rep",
            password=live_server.password,
            unit_ids=[],
        )
        korpen = session.scalars(
            select(Organisation).where(Organisation.name == ORGANISATION)
        ).one()
        add_representative(session, None, korpen, rep)
        session.flush()
        return case.id


@pytest.fixture
def pages(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def _new() -> Any:
        context = browser.new_context(bypass_csp=True, locale="sv-SE")
        contexts.append(context)
        return context.new_page()

    yield _new
    for context in contexts:
        context.close()


def _reachable(page: Any, server: LiveServer, start: str) -> dict[str, str]:
    """Every page of the app the logged-in user reaches by following links from `start` (GET
    only; the public calendar and static files are not the user's own)."""
    seen: dict[str, str] = {}
    queue = [start]
    while queue:
        path = queue.pop(0)
        if path in seen or len(seen) > 60:
            continue
        response = page.goto(server.url + path)
        assert response is not None
        seen[path] = page.content() if response.ok else f"({response.status})"
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            target = urlparse(urljoin(server.url + path, href))
            if target.netloc != urlparse(server.url).netloc:
                continue
            link = target.path + (f"?{target.query}" if target.query else "")
            if link.startswith(("/static", "/aktiviteter")) or link in seen:
                continue
            queue.append(link)
    return seen


def test_the_association_answers_and_the_coach_sees_it(
    live_server: LiveServer, case_id: int, pages: Any
) -> None:
    coach = pages()
    _login(coach, live_server, "coach")
    coach.goto(f"{live_server.url}/arenden/{case_id}")
    assert "Handlingsplan pågår" in coach.content()
    coach.locator("#ho-orgid").select_option(label=ORGANISATION)
    coach.locator("#ho-wday").fill("2030-05-06")
    coach.locator("#ho-wtime").fill("14:00")
    coach.locator("#ho-phone").check()
    coach.locator("#ho-helps").fill(HELPS)
    coach.get_by_role("button", name="Be om överlämning").click()
    assert "Begäran om överlämning är registrerad." in coach.content()
    # The coach's own note on the hand-over, which the association must never see.
    note = coach.locator("textarea[id^='hn-']")
    note.fill(NOTE)
    coach.get_by_role("button", name="Spara överlämningen").click()
    assert "Överlämningen är uppdaterad." in coach.content()

    rep = pages()
    _login(rep, live_server, "traffpunkt")
    assert rep.url.endswith("/forening")
    rows = rep.locator("table tbody tr")
    assert rows.count() == 1  # only the request to Korpen; Frivilligcentralen's is not theirs
    assert "Greta" in rows.first.inner_text()
    assert _serious(rep) == []

    rep.get_by_role("link", name="Greta").click()
    request_url = rep.url
    content = rep.content()
    assert HELPS in content and "070-555 12 34" in content
    assert "måndag 6 maj 2030 kl. 14.00" in content
    assert _serious(rep) == []

    pnr = sample_pnr(N)
    secrets = [
        pnr,
        pnr[2:],
        f"{pnr[:8]}-{pnr[8:]}",
        f"{pnr[2:8]}-{pnr[8:]}",
        "Överlund",
        STREET,
        NOTE,
        "Ringde själv och vill träffa fler",  # the referral's reason
        "Träffa andra en gång i veckan",  # the action plan's goals
        "UCLA",  # no questionnaire, no answer
        "Mini-SPIN",
    ]
    reached = _reachable(rep, live_server, "/forening")
    assert urlparse(request_url).path in reached and len(reached) >= 3
    for path, page_text in reached.items():
        for secret in secrets:
            assert secret not in page_text, f"{secret!r} on {path}"

    rep.goto(request_url)
    rep.get_by_label("Ja, vi kan").check()
    rep.get_by_label("Skäl (behövs när ni tackar nej)").fill("Välkommen till oss!")
    rep.get_by_role("button", name="Skicka svaret").click()
    assert "Tack! Hälsocoachen ser ert svar." in rep.content()
    rep.get_by_label("Följeslagarens förnamn").fill("Eva")
    rep.get_by_label("Datum").fill("2030-05-06")
    rep.get_by_label("Tid").fill("14.00")
    rep.get_by_label("Var ni möts").fill("Entrén till Sporthallen")
    rep.get_by_role("button", name="Bekräfta mötet").click()
    assert "Mötet är bekräftat." in rep.content()
    assert _serious(rep) == []
    rep.get_by_label("Patienten kom och fortsätter").check()
    rep.get_by_role("button", name="Spara hur det gick").click()
    assert "Tack! Hälsocoachen ser hur det gick." in rep.content()
    assert "Patienten kom och fortsätter" in rep.content()

    coach.goto(f"{live_server.url}/arenden/{case_id}")
    shown = coach.content()
    assert "Slussad till förening" in shown  # the state moved
    assert "Kom och fortsätter" in shown and "Välkommen till oss!" in shown
    assert "Entrén till Sporthallen" in shown and "Eva" in shown
    app = live_server.app
    with app.app_context(), session_scope(app) as session:
        case = session.get(Case, case_id)
        assert case is not None and case.state == "handed_over"
