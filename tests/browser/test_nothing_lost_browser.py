"""Nothing typed is lost, in a real browser (#18): a mapping visit with a 5,000-character note and
8 network entries survives a refusal elsewhere on the form and is then saved; a draft typed and
left is restored on return and can be discarded; a session that idles past the timeout during the
visit still saves the form once the coach has entered the password again. The pages touched have
no serious or critical axe finding."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious
from tests.builders import make_case, sample_pnr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTE = ("Patienten berättar om veckan, om grannen och om kören hon sjöng i förr. " * 70)[:5000]
NBSP = "\u00a0"


def _mapping_case(server: LiveServer, n: int, name: str, *, follow_up: bool = False) -> int:
    """A case of the demo coach, in a state where the mapping is written (or, with
    `follow_up`, where a follow-up is recorded)."""
    from sqlalchemy import select

    from slussen.accounts.models import User
    from slussen.audit import Actor
    from slussen.cases.engine import current_workflow
    from slussen.db import session_scope
    from slussen.identifiers import parse_person_identifier
    from slussen.keystore import current_key_ring
    from slussen.visits.services import MAPPING_OPEN, follow_up_kind

    app = server.app
    with app.app_context(), session_scope(app) as session:
        coach = session.scalars(select(User).where(User.username == "coach")).one()
        workflow = current_workflow()
        state = next(
            s
            for s in workflow.states
            if (
                follow_up_kind(workflow, s) if follow_up else s in workflow.states_for(MAPPING_OPEN)
            )
        )
        case = make_case(
            session,
            current_key_ring(),
            workflow,
            Actor.of(coach),
            sorted(coach.unit_ids)[0],
            state,
            identifier=parse_person_identifier(sample_pnr(n)),
            name=name,
        )
        return case.id


def _coach(browser: Any, server: LiveServer) -> Any:
    page = browser.new_context(bypass_csp=True, locale="sv-SE").new_page()
    _login(page, server, "coach")
    return page


def _fill_network(page: Any, entries: int = 8) -> None:
    for i in range(entries):
        page.locator(f"#net-{i}-label").fill(f"Kontakt {i + 1}")
        page.locator(f"#net-{i}-closeness").select_option(str(i % 3 + 1))
        page.locator(f"#net-{i}-frequency").select_option("lost" if i == 7 else "weekly")
    page.locator("#net-1-deepen").check()
    page.locator("#net-7-resume").check()


def _assert_network_kept(page: Any, entries: int = 8) -> None:
    for i in range(entries):
        assert page.locator(f"#net-{i}-label").input_value() == f"Kontakt {i + 1}"
        assert page.locator(f"#net-{i}-closeness").input_value() == str(i % 3 + 1)
    assert page.locator("#net-7-frequency").input_value() == "lost"
    assert page.locator("#net-1-deepen").is_checked()
    assert page.locator("#net-7-resume").is_checked()
    assert not page.locator("#net-2-deepen").is_checked()


def _draft_saved(page: Any) -> None:
    page.locator("#draft-status").filter(has_text="Utkastet sparades kl.").wait_for()


def test_a_long_mapping_visit_survives_a_refusal_and_is_saved(
    browser: Any, live_server: LiveServer
) -> None:
    case_id = _mapping_case(live_server, 901, "Greta Långanteckning")
    page = _coach(browser, live_server)
    page.goto(f"{live_server.url}/arenden/{case_id}/kartlaggning")
    assert _serious(page) == []
    page.locator("#notes").fill(NOTE)
    assert page.locator('[data-counter-for="notes"]').inner_text() == (
        f"(5{NBSP}000 av 20{NBSP}000 tecken)"
    )
    _fill_network(page)
    page.get_by_label("Promenader och natur").check()
    page.get_by_label("Det kostar för mycket").check()
    page.locator("#area").fill("Bäckby")
    # A step without goals: refused, elsewhere on the form than the note and the network.
    page.locator("#step-0-text").fill("Prova kören på torsdag")
    _draft_saved(page)
    page.get_by_role("button", name="Spara", exact=True).click()
    page.get_by_text("Skriv målen.").wait_for()
    assert page.locator("#notes").input_value() == NOTE.strip()
    _assert_network_kept(page)
    assert page.get_by_label("Promenader och natur").is_checked()
    assert page.get_by_label("Det kostar för mycket").is_checked()
    assert page.locator("#step-0-text").input_value() == "Prova kören på torsdag"
    assert page.locator("#area").input_value() == "Bäckby"
    assert _serious(page) == []

    page.get_by_label("Mål, med patientens egna ord").fill("Sjunga med andra igen.")
    page.get_by_role("button", name="Spara", exact=True).click()
    page.get_by_text("Kartläggningen är sparad.").wait_for()
    page.goto(f"{live_server.url}/arenden/{case_id}/kartlaggning")
    assert page.locator(".draft-restored").count() == 0
    assert page.locator("#notes").input_value() == NOTE.strip()
    _assert_network_kept(page)
    page.context.close()


def test_a_draft_left_behind_is_restored_and_can_be_discarded(
    browser: Any, live_server: LiveServer
) -> None:
    case_id = _mapping_case(live_server, 902, "Hugo Utkastsson")
    page = _coach(browser, live_server)
    url = f"{live_server.url}/arenden/{case_id}/kartlaggning"
    page.goto(url)
    page.locator("#barrier_notes").fill("Rädd att gå dit ensam första gången.")
    page.locator("#net-0-label").fill("Brodern Sven")
    _draft_saved(page)
    page.goto(f"{live_server.url}/arenden/{case_id}")
    page.goto(url)
    notice = page.locator(".draft-restored")
    assert "har återställts" in notice.inner_text()
    assert page.locator("#barrier_notes").input_value() == "Rädd att gå dit ensam första gången."
    assert page.locator("#net-0-label").input_value() == "Brodern Sven"
    assert _serious(page) == []
    page.get_by_role("button", name="Släng utkastet och visa det som är sparat").click()
    page.get_by_text("Utkastet är slängt.").wait_for()
    assert page.locator("#barrier_notes").input_value() == ""
    assert page.locator("#net-0-label").input_value() == ""
    page.context.close()


def test_a_session_that_idles_past_the_timeout_still_saves_after_the_password(
    browser: Any, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = 8
    settings = live_server.app.extensions["slussen.settings"]
    monkeypatch.setitem(
        live_server.app.extensions,
        "slussen.settings",
        dataclasses.replace(settings, session_idle_seconds=idle),
    )
    case_id = _mapping_case(live_server, 903, "Ines Tidsgräns")
    page = _coach(browser, live_server)
    page.goto(f"{live_server.url}/arenden/{case_id}/kartlaggning")
    page.locator("#notes").fill(NOTE)
    _fill_network(page)
    page.get_by_label("Mål, med patientens egna ord").fill("Gå på kören varje vecka.")
    page.locator("#step-0-text").fill("Ringa körledaren")
    _draft_saved(page)
    # The coach talks with the patient and types nothing for longer than the idle timeout.
    page.wait_for_timeout((idle + 3) * 1000)
    page.get_by_role("button", name="Spara", exact=True).click()
    page.wait_for_url("**/login?next=**")
    assert page.get_by_role("heading", name="Logga in igen för att spara").is_visible()
    assert "Det du skrev finns kvar" in page.content()
    assert page.get_by_label("Användarnamn").input_value() == "coach"
    assert _serious(page) == []
    page.get_by_label("Lösenord").fill(live_server.password)
    page.get_by_role("button", name="Logga in och spara").click()
    page.get_by_text("Kartläggningen är sparad.").wait_for()
    assert page.url.endswith(f"/arenden/{case_id}")
    page.goto(f"{live_server.url}/arenden/{case_id}/kartlaggning")
    assert page.locator(".draft-restored").count() == 0
    assert page.locator("#notes").input_value() == NOTE.strip()
    assert page.locator("#goals").input_value() == "Gå på kören varje vecka."
    _assert_network_kept(page)
    page.context.close()


def test_a_refused_follow_up_keeps_what_was_typed(browser: Any, live_server: LiveServer) -> None:
    case_id = _mapping_case(live_server, 904, "Jonas Uppföljd", follow_up=True)
    page = _coach(browser, live_server)
    page.goto(f"{live_server.url}/arenden/{case_id}/uppfoljning")
    assert _serious(page) == []
    page.get_by_label("Hur", exact=True).select_option("phone")
    page.get_by_label("Problemlösning", exact=False).fill(
        "Följeslagare från föreningen nästa gång."
    )
    page.get_by_role("button", name="Registrera uppföljningen").click()
    page.get_by_text("Skriv hur det har gått.").wait_for()
    assert page.get_by_label("Hur", exact=True).input_value() == "phone"
    assert "Följeslagare från föreningen" in page.locator("#ps").input_value()
    assert _serious(page) == []
    page.locator("#how").fill("Har varit på kören två gånger.")
    assert page.locator('[data-counter-for="how"]').inner_text() == f"(30 av 20{NBSP}000 tecken)"
    page.get_by_role("button", name="Registrera uppföljningen").click()
    page.get_by_text("Uppföljningen är registrerad.").wait_for()
    page.context.close()
