"""The action plan from the directory in a real browser: the coach maps an interest, picks a step
from the directory's suggestions, and the plan letter's PDF lists that activity with its next
occasion, place and what to bring. Booking on a Saturday and a follow-up on julafton warns first
and books once the coach confirms; rebooking the follow-up replaces its unprinted letter. axe finds
nothing serious or critical on the pages on the way."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from typing import Any

import pypdf
import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _serious
from tests.browser.test_staff_accessibility import as_user, refer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["as_user"]

NAME = "Plan Katalogsson"
#: The demo's walking group: every Thursday at 10.00 from this week's Thursday, with what to
#: bring (slussen/demo/directory.py).
WALK = "Promenadgrupp med fika"
WEEKDAYS = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")
MONTHS = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
]


def _swedish(day: dt.date) -> str:
    """ "torsdag 10 december 2026", written out here rather than by the code under test."""
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


def _following(day: dt.date, weekday: int) -> dt.date:
    return day + dt.timedelta(days=(weekday - day.weekday()) % 7)


def _ordinary_weekday(after: dt.date) -> dt.date:
    """A Tuesday or Wednesday at least a week ahead, clear of Christmas and the New Year."""
    day = _following(after + dt.timedelta(days=7), 1)
    while (day.month, day.day) >= (12, 20) or (day.month, day.day) <= (1, 7) or day.month == 6:
        day += dt.timedelta(days=7)
    return day


def _letters(page: Any) -> str:
    return str(page.locator("#h-letters + ul").inner_text())


def test_a_step_from_the_suggestions_is_in_the_plan_letter_with_its_next_occasion(
    as_user: Callable[[str], Any], live_server: LiveServer
) -> None:
    today = dt.date.today()
    coach = as_user("coach")
    problems: dict[str, list[str]] = {}
    refer(coach, live_server, 871, NAME)
    coach.goto(f"{live_server.url}/arbetslista")
    coach.get_by_role("link", name=NAME, exact=True).first.click()
    case_url = coach.url
    coach.get_by_role("button", name="Ta ärendet").click()
    coach.get_by_role("button", name="Skicka kallelse").click()
    coach.goto(f"{case_url}/formular/baseline/ucla3")
    for name in coach.eval_on_selector_all(
        "input[type=radio]", "els => [...new Set(els.map(e => e.name))]"
    ):
        coach.locator(f"input[type=radio][name='{name}']").first.check()
    coach.get_by_role("button", name="Spara svaren").click()
    coach.goto(case_url)
    coach.get_by_role("button", name="Registrera inkomna svar").click()

    # A Saturday: the booking page warns and books nothing until the coach decides.
    coach.get_by_role("link", name="Boka kartläggningsbesök").click()
    saturday = _following(today + dt.timedelta(days=7), 5)
    coach.get_by_label("Dag", exact=True).fill(saturday.isoformat())
    coach.get_by_label("Tid", exact=True).fill("10:00")
    coach.get_by_label("Plats", exact=True).fill("Vårdcentralen Solgläntan, rum 4")
    coach.get_by_role("button", name="Boka besöket").click()
    assert "Vårdcentralen har stängt på lördagar." in coach.content()
    assert coach.get_by_role("button", name="Boka ändå").count() == 1
    problems["booking warned"] = _serious(coach)
    coach.get_by_label("Dag", exact=True).fill(_ordinary_weekday(today).isoformat())
    coach.get_by_role("button", name="Boka besöket").click()
    coach.wait_for_url(case_url)
    assert "Besök bokat" in coach.content()

    # The mapping: an interest in walks, saved; then the plan form suggests the walking group.
    coach.get_by_role("link", name="Öppna kartläggningen och handlingsplanen").click()
    coach.get_by_label("Promenader och natur").check()
    coach.get_by_role("button", name="Spara", exact=True).click()
    coach.wait_for_url(case_url)
    coach.get_by_role("link", name="Öppna kartläggningen och handlingsplanen").click()
    suggestions = coach.locator("ol.suggestions").inner_text()
    assert WALK in suggestions and "Passar intresset promenader och natur" in suggestions
    problems["plan form"] = _serious(coach)
    coach.get_by_label("Mål, med patientens egna ord").fill("Komma ut och träffa folk.")
    choice = coach.locator("#step-0-activity option", has_text=WALK).first.get_attribute("value")
    coach.locator("#step-0-activity").select_option(choice)
    coach.get_by_role("button", name="Spara och registrera besöket").click()
    coach.wait_for_url(case_url)
    assert "Handlingsplan pågår" in coach.content()
    assert WALK in coach.locator("#h-plan ~ table").first.inner_text()

    # The plan letter's PDF: the activity, its next occasion, place and what to bring.
    letter = coach.locator("#h-letters + ul li", has_text=re.compile("plan", re.I)).last
    href = letter.locator("a").first.get_attribute("href")
    response = coach.request.get(live_server.url + href)
    assert response.ok and response.headers["content-type"].startswith("application/pdf")
    reader = pypdf.PdfReader(io.BytesIO(response.body()))
    text = "\n".join(p.extract_text() or "" for p in reader.pages)
    first = _following(today, 3)
    for expected in (
        "Komma ut och träffa folk.",
        WALK,
        "Nästa tillfällen:",
        f"{_swedish(first)} kl. 10.00",
        f"{_swedish(first + dt.timedelta(days=7))} kl. 10.00",
        "Ta med: Bekväma skor och kläder efter väder.",
        "Kostnad: Det kostar inget",
    ):
        assert expected in text, (expected, text)
    assert "Plats: " in text

    # Follow-up 1 on julafton: a warning first, then booked when the coach confirms.
    coach.goto(case_url)
    coach.get_by_role("link", name="Boka uppföljning 1").click()
    eve = dt.date(today.year if today < dt.date(today.year, 12, 24) else today.year + 1, 12, 24)
    coach.get_by_label("Dag", exact=True).fill(eve.isoformat())
    coach.get_by_label("Tid", exact=True).fill("10:00")
    coach.get_by_label("Plats (på vårdcentralen)").fill("Rum 4")
    coach.get_by_role("button", name="Boka uppföljningen").click()
    assert f"{_swedish(eve).capitalize()} är en helgdag (Julafton)." in coach.content()
    problems["follow-up warned"] = _serious(coach)
    coach.get_by_role("button", name="Boka ändå").click()
    coach.wait_for_url(case_url)
    assert "Uppföljningen är bokad och brevet ligger i kön." in coach.content()
    problems["case page"] = _serious(coach)

    # Rebooking replaces the letter that has not been printed: one waits, the other is off.
    coach.get_by_role("link", name="Boka uppföljning 1").click()
    problems["follow-up form"] = _serious(coach)
    coach.get_by_label("Dag", exact=True).fill(_ordinary_weekday(eve).isoformat())
    coach.get_by_label("Tid", exact=True).fill("13:00")
    coach.get_by_label("Plats (på vårdcentralen)").fill("Rum 4")
    coach.get_by_role("button", name="Boka uppföljningen").click()
    coach.wait_for_url(case_url)
    follow_ups = [
        line for line in _letters(coach).splitlines() if re.search("follow|uppfölj", line, re.I)
    ]
    assert len(follow_ups) == 2, follow_ups
    assert sum("väntar på utskrift" in line for line in follow_ups) == 1, follow_ups
    assert sum("avbokat" in line for line in follow_ups) == 1, follow_ups
    assert {where: found for where, found in problems.items() if found} == {}


def test_an_activity_says_what_to_bring_and_its_form_has_no_serious_violations(
    as_user: Callable[[str], Any], live_server: LiveServer
) -> None:
    coordinator = as_user("koordinator")
    coordinator.goto(f"{live_server.url}/katalog")
    coordinator.get_by_role("link", name="Frivilligcentralen", exact=True).first.click()
    organisation = coordinator.url
    coordinator.get_by_role("link", name="Lägg till en aktivitet").click()
    assert coordinator.get_by_label("Ta med", exact=True).count() == 1
    problems = {"activity form": _serious(coordinator)}
    # The demo's walking group says what to bring, on its page and the public one.
    coordinator.goto(organisation)
    coordinator.get_by_role("link", name=WALK, exact=True).first.click()
    facts = coordinator.locator("dl.facts").first.inner_text()
    assert "Ta med" in facts and "Bekväma skor och kläder efter väder." in facts
    problems["activity page"] = _serious(coordinator)
    coordinator.get_by_role("link", name="Den öppna sidan").click()
    assert "Bekväma skor och kläder efter väder." in coordinator.content()
    assert {where: found for where, found in problems.items() if found} == {}
