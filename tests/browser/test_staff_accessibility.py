"""Staff pages: axe-core finds no serious or critical problem on any page a role works with, and a
coach does the day's work with the keyboard alone (WCAG 2.1.1), always seeing where focus is
(2.4.7).

Each role logs in to the live demo (tests/browser/conftest.py). A coach and a staff member refer a
patient through the referral form, so the worklist, the unit view and the case pages have a case
to show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser.conftest import LiveServer
from tests.browser.test_directory_flow import _login, _serious
from tests.builders import sample_pnr

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The pages each demo user works with, beyond the case page (added once a case exists).
PAGES = {
    "koordinator": [
        "/arbetslista",
        "/arbetslista?vy=vecka",
        "/enhet",
        "/remiss",
        "/atkomstlogg",
        "/atkomstlogg/utdrag",
        "/katalog",
        "/katalog/granska",
        "/katalog/organisationer/ny",
        "/konto/losenord",
        "/konto/tvastegsverifiering",
    ],
    "coach": [
        "/arbetslista",
        "/mina-arenden",
        "/enhet",
        "/sok",
        "/remiss",
        "/katalog",
        "/konto/losenord",
        "/konto/tvastegsverifiering",
    ],
    "personal": ["/mina-flaggningar", "/remiss", "/katalog", "/konto/losenord"],
    "utvarderare": ["/", "/konto/losenord", "/konto/tvastegsverifiering"],
    "forening": ["/forening", "/katalog", "/konto/losenord"],
    "admin": [
        "/",
        "/admin/enheter",
        "/admin/enheter/ny",
        "/admin/anvandare",
        "/admin/anvandare/ny",
        "/konto/losenord",
        "/konto/tvastegsverifiering",
    ],
}


@pytest.fixture(scope="module")
def as_user(browser: Any, live_server: LiveServer) -> Iterator[Callable[[str], Any]]:
    """as_user(name) gives a logged-in page for a demo user (one browser context per user)."""
    pages: dict[str, Any] = {}

    def _page(username: str) -> Any:
        if username not in pages:
            context = browser.new_context(bypass_csp=True, locale="sv-SE")
            page = context.new_page()
            _login(page, live_server, username)
            pages[username] = page
        return pages[username]

    yield _page
    for page in pages.values():
        page.context.close()


def refer(page: Any, server: LiveServer, n: int, name: str) -> None:
    """Refer a patient through the form (with the mouse; the keyboard test does it without)."""
    page.goto(f"{server.url}/remiss")
    page.get_by_label("Personnummer").fill(sample_pnr(n))
    page.get_by_label("Namn", exact=True).fill(name)
    page.get_by_label("Gatuadress").fill("Storgatan 1")
    page.get_by_label("Postnummer").fill("722 15")
    page.get_by_label("Ort", exact=True).fill("Västerås")
    page.get_by_label("Varför? Vad önskar patienten?").fill("Känner sig ensam sedan flytten.")
    page.get_by_label("Patienten samtycker till att bli kontaktad om programmet").check()
    page.get_by_role("button", name="Skicka remissen").click()
    assert "Remissen är mottagen" in page.locator(".flash").inner_text()


def case_path(page: Any, server: LiveServer, listing: str, name: str) -> str:
    page.goto(server.url + listing)
    href = page.get_by_role("link", name=name, exact=True).first.get_attribute("href")
    assert href and href.startswith("/arenden/"), href
    return str(href)


def test_every_role_s_pages_have_no_serious_violations(
    as_user: Callable[[str], Any], live_server: LiveServer
) -> None:
    coach, coordinator = as_user("coach"), as_user("koordinator")
    refer(coach, live_server, 801, "Karin Ensam")
    refer(as_user("personal"), live_server, 802, "Per Flaggad")
    first = case_path(coach, live_server, "/arbetslista", "Karin Ensam")
    second = case_path(coordinator, live_server, "/enhet", "Per Flaggad")
    # One case further along, so its page shows a timeline, letters and due dates.
    coach.goto(live_server.url + first)
    coach.get_by_role("button", name="Ta ärendet").click()
    coach.get_by_role("button", name="Skicka kallelse").click()
    extra = {"coach": [first], "koordinator": [first, second, "/enhet"]}
    problems: dict[str, list[str]] = {}
    for username, paths in PAGES.items():
        page = as_user(username)
        for path in paths + extra.get(username, []):
            response = page.goto(live_server.url + path)
            assert response.status == 200, f"{username} {path}: {response.status}"
            found = _serious(page)
            if found:
                problems[f"{username} {path}"] = found
    assert problems == {}


# --- keyboard only --------------------------------------------------------------------------------

FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const label = el.labels && el.labels.length ? el.labels[0].innerText : "";
  return {
    tag: el.tagName.toLowerCase(),
    text: (el.innerText || el.value || "").trim(),
    label: label.trim(),
    outline: style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth),
  };
}"""


def tab_to(page: Any, *, text: str = "", label: str = "", limit: int = 60) -> None:
    """Press Tab until the focused element shows `text` or has the label `label`; every element
    passed on the way must show a visible focus outline."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        name = focused["label"] or focused["text"]
        seen.append(name)
        assert focused["outline"] >= 2, f"focus on {focused['tag']} {name!r} is not visible"
        if (text and focused["text"] == text) or (label and focused["label"].startswith(label)):
            return
    raise AssertionError(f"Tab never reached {text or label!r}; passed {seen}")


def press_and_wait(page: Any, key: str) -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def test_a_coach_works_with_the_keyboard_alone(browser: Any, live_server: LiveServer) -> None:
    context = browser.new_context(bypass_csp=True, locale="sv-SE")
    page = context.new_page()
    page.goto(f"{live_server.url}/login")
    tab_to(page, label="Användarnamn")
    page.keyboard.type("coach")
    tab_to(page, label="Lösenord")
    page.keyboard.type(live_server.password)
    press_and_wait(page, "Enter")
    assert page.url.endswith("/arbetslista")

    # The referral form, field by field.
    tab_to(page, text="Remittera")
    press_and_wait(page, "Enter")
    for field, value in [
        ("Personnummer", sample_pnr(805)),
        ("Namn", "Tangent Bordsson"),
        ("Gatuadress", "Lillgatan 2"),
        ("Postnummer", "722 16"),
        ("Ort", "Västerås"),
        ("Varför?", "Vill träffa andra i närheten."),
    ]:
        tab_to(page, label=field)
        page.keyboard.type(value)
    tab_to(page, label="Patienten samtycker")
    page.keyboard.press("Space")
    tab_to(page, text="Skicka remissen")
    press_and_wait(page, "Enter")
    assert "Remissen är mottagen" in page.locator(".flash").inner_text()

    # The worklist, the case, and an event on it.
    tab_to(page, text="Arbetslista")
    press_and_wait(page, "Enter")
    tab_to(page, text="Tangent Bordsson")
    press_and_wait(page, "Enter")
    assert page.get_by_role("heading", level=1).inner_text().startswith("Tangent Bordsson")
    tab_to(page, text="Ta ärendet")
    press_and_wait(page, "Enter")
    tab_to(page, text="Skicka kallelse")
    press_and_wait(page, "Enter")
    assert page.locator(".badge").first.inner_text() == "Kallad"
    assert "Kallelse" in page.locator("#h-letters + ul").inner_text()
    context.close()
