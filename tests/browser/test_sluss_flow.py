"""The sluss through the real pages: a patient self-refers, the coach finds the case in the
worklist, invites, registers the answers, books and records the mapping visit with the action
plan, and records follow-up 1."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import LiveServer

NAME = "Vera Testlund"


def test_self_referral_to_follow_up(browser: Any, live_server: LiveServer) -> None:
    context = browser.new_context(locale="sv-SE")
    patient = context.new_page()
    patient.goto(f"{live_server.url}/anmalan")
    patient.get_by_label("Personnummer").fill("19811218-9876")
    patient.get_by_label("Namn").fill(NAME)
    patient.get_by_label("Gatuadress").fill("Ekvägen 5")
    patient.get_by_label("Postnummer").fill("72219")
    patient.get_by_label("Ort").fill("Västerås")
    patient.get_by_label("Telefon").fill("070-123 45 67")
    patient.get_by_label("Din vårdcentral").select_option(label="Vårdcentralen Solgläntan")
    patient.get_by_label("Vad skulle du vilja?").fill("Jag vill gärna gå promenader med andra.")
    patient.get_by_label("Jag vill att vårdcentralen kontaktar mig om det här").check()
    patient.get_by_role("button", name="Skicka").click()
    patient.wait_for_url("**/anmalan/tack")
    assert "Tack! Vi har fått din anmälan." in patient.content()
    context.close()

    staff = browser.new_context(locale="sv-SE")
    page = staff.new_page()
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Användarnamn").fill("coach")
    page.get_by_label("Lösenord").fill(live_server.password)
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_url("**/arbetslista")
    page.get_by_role("link", name=NAME).click()
    assert "Inkommen" in page.content()

    page.get_by_role("button", name="Skicka kallelse").click()
    assert "Kallad" in page.content()
    # With no answers in, registering them is refused with the reason.
    page.get_by_role("button", name="Registrera inkomna svar").click()
    assert "Inga svar är registrerade ännu" in page.content()
    # The paper UCLA-3 keyed in (the first option of each question), then registered.
    case_url = page.url.split("/handelse/")[0]
    page.goto(f"{case_url}/formular/baseline/ucla3")
    names = page.eval_on_selector_all(
        "input[type=radio]", "els => [...new Set(els.map(e => e.name))]"
    )
    for name in names:
        page.locator(f"input[type=radio][name='{name}']").first.check()
    page.get_by_role("button", name="Spara svaren").click()
    page.goto(case_url)
    page.get_by_role("button", name="Registrera inkomna svar").click()
    assert "Bedömd" in page.content()

    page.get_by_role("link", name="Boka kartläggningsbesök").click()
    page.get_by_label("Dag").fill("2030-03-05")
    page.get_by_label("Tid").fill("10:00")
    page.get_by_label("Plats").fill("Vårdcentralen Solgläntan, rum 4")
    page.get_by_role("button", name="Boka besöket").click()
    assert "Besök bokat" in page.content()

    page.get_by_role("link", name="Öppna kartläggningen och handlingsplanen").click()
    page.locator("#net-0-label").fill("Dottern Lisa")
    page.locator("#net-0-closeness").select_option("1")
    page.locator("#net-0-deepen").check()
    page.locator("#net-1-label").fill("Gamla körkompisar")
    page.locator("#net-1-closeness").select_option("3")
    page.locator("#net-1-frequency").select_option("lost")
    page.locator("#net-1-resume").check()
    page.get_by_label("Promenader och natur").check()
    page.get_by_label("Det kostar för mycket").check()
    page.get_by_label("Mål, med patientens egna ord").fill("Komma ut och träffa folk varje vecka.")
    page.locator("#step-0-text").fill("Prova promenadgruppen på tisdagar")
    page.locator("#step-0-actor").select_option("companion")
    page.get_by_role("button", name="Spara och registrera besöket").click()
    content = page.content()
    assert "Handlingsplan pågår" in content
    assert "Prova promenadgruppen på tisdagar" in content
    assert page.locator("svg.network-map").count() == 1

    page.get_by_role("link", name="Registrera uppföljning 1").click()
    page.get_by_label("Hur har det gått?").fill("Har gått två gånger och trivs.")
    page.get_by_role("button", name="Registrera uppföljningen").click()
    assert "Uppföljd" in page.content()
    assert "Har gått två gånger och trivs." in page.content()
    staff.close()
