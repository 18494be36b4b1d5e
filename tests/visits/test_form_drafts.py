"""Nothing typed is lost (#18): the long forms keep every field when refused, take a visit note of
20,000 characters, keep a sealed draft per user and case as the coach types and restore it, the
draft renews the idle timer, and a form submitted after the session timed out is kept (sealed)
until its user has logged in again, then saved. Tests taking `backend` run on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import WebSession
from slussen.accounts.sessions import token_hash
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.db import utcnow
from slussen.errors import Invalid, NotPermitted
from slussen.keystore import Keystore
from slussen.patients import drafts
from slussen.patients.models import FormDraft, Patient
from slussen.patients.services import erase_patient
from slussen.visits import services
from slussen.visits.services import MAPPING_OPEN, current_plan, load_mapping
from tests.builders import make_case
from tests.conftest import TEST_PASSWORD

COOKIE = "slussen_session"
INTERESTS = ("nature", "music")
BARRIERS = ("cost", "anxiety")


def mapping_case(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    state = next(s for s in workflow.states if s in workflow.states_for(MAPPING_OPEN))
    return make_case(store.session, store.ring, workflow, coach, unit.id, state)


def follow_up_case(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    state = next(s for s in workflow.states if services.follow_up_kind(workflow, s) is not None)
    return make_case(store.session, store.ring, workflow, coach, unit.id, state)


def log_in(client: FlaskClient, username: str = "coach") -> None:
    response = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


def mapping_post(case: Case, *, notes: str, goals: str = "", entries: int = 8) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": str(case.version),
        "record": "0",
        "notes": notes,
        "barrier_notes": "Vill inte gå ensam första gången",
        "area": "Bäckby",
        "interest": list(INTERESTS),
        "barrier": list(BARRIERS),
        "goals": goals,
        "step-0-text": "Prova kören på torsdag",
        "step-0-actor": "patient",
        "step-0-outcome": "pending",
    }
    for i in range(entries):
        data |= {
            f"net-{i}-label": f"Kontakt nummer {i + 1}",
            f"net-{i}-relation": "friend" if i % 2 else "family",
            f"net-{i}-closeness": str(i % 3 + 1),
            f"net-{i}-frequency": "weekly",
        }
    data["net-2-deepen"] = "1"
    data["net-5-resume"] = "1"
    return data


def known(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interest areas and barriers above are the ones the forms know."""
    from slussen.visits import views

    monkeypatch.setattr(views, "interest_areas", lambda: {k: k.title() for k in INTERESTS})
    monkeypatch.setattr(views, "barrier_labels", lambda: {k: k.title() for k in BARRIERS})


def draft_rows(session: Session) -> list[FormDraft]:
    session.expire_all()
    return list(session.scalars(select(FormDraft)))


def test_a_refused_mapping_keeps_every_field_and_the_draft(
    backend: str,
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(monkeypatch)
    case = mapping_case(store, workflow, coach, unit)
    log_in(client)
    note = "Patienten berättar om sin vardag. " * 150  # 5,100 characters
    # A step without goals is refused elsewhere on the form than the long note and the network.
    response = client.post(f"/arenden/{case.id}/kartlaggning", data=mapping_post(case, notes=note))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Skriv målen." in page
    assert note.strip() in page
    for i in range(8):
        assert f'value="Kontakt nummer {i + 1}"' in page
    assert re.search(r'id="net-2-deepen"[^>]*checked', page)
    assert re.search(r'id="net-5-resume"[^>]*checked', page)
    assert not re.search(r'id="net-4-deepen"[^>]*checked', page)
    assert re.search(r'<option value="3" selected>', page)  # net-2's closeness
    for key in (*INTERESTS, *BARRIERS):
        assert re.search(rf'value="{key}" checked', page), key
    assert 'value="Bäckby"' in page and 'value="Prova kören på torsdag"' in page
    # Nothing of the refused post is saved, but it is kept as the coach's draft, sealed.
    assert load_mapping(store, case).network == []
    (row,) = draft_rows(session)
    assert row.form == "mapping" and row.user_id == coach.user_id
    assert b"Kontakt nummer" not in row.fields_enc and b"vardag" not in row.fields_enc

    # Fixed, it saves, and the draft is gone.
    fixed = mapping_post(case, notes=note, goals="Träffa andra varje vecka")
    assert client.post(f"/arenden/{case.id}/kartlaggning", data=fixed).status_code == 302
    saved = load_mapping(store, case)
    assert saved.notes == note.strip() and len(saved.network) == 8
    assert sorted(saved.interests) == sorted(INTERESTS)
    plan = current_plan(store, case)
    assert plan is not None and plan.goals == "Träffa andra varje vecka"
    assert draft_rows(session) == []


def test_a_visit_note_of_20000_characters_is_saved_and_a_longer_one_refused_in_swedish(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(monkeypatch)
    case = mapping_case(store, workflow, coach, unit)
    log_in(client)
    page = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert 'maxlength="20000"' in page and "Högst 20 000 tecken." in page
    longest = "å" * services.LONG_TEXT
    post = mapping_post(case, notes=longest, goals="Mål")
    assert client.post(f"/arenden/{case.id}/kartlaggning", data=post).status_code == 302
    assert load_mapping(store, case).notes == longest
    post = mapping_post(case, notes=longest + "x", goals="Mål")
    response = client.post(f"/arenden/{case.id}/kartlaggning", data=post)
    assert response.status_code == 422
    assert "Anteckningen får vara högst 20\u00a0000 tecken; nu är det 20001 tecken." in (
        response.get_data(as_text=True)
    )


def test_the_other_long_texts_take_20000_characters_and_short_ones_stay_short(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    steps = [services.StepInput("Promenad")]
    services.save_action_plan(
        store, coach, case, workflow=workflow, goals="m" * services.LONG_TEXT, steps=steps
    )
    with pytest.raises(Invalid, match="Målen får vara högst 20\u00a0000 tecken"):
        services.save_action_plan(
            store, coach, case, workflow=workflow, goals="m" * 20_001, steps=steps
        )
    with pytest.raises(Invalid, match="Vad steget är får vara högst 4\u00a0000 tecken"):
        services.save_action_plan(
            store, coach, case, workflow=workflow, goals="m", steps=[services.StepInput("s" * 4001)]
        )


def test_a_refused_follow_up_keeps_what_was_typed_and_its_mode(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = follow_up_case(store, workflow, coach, unit)
    log_in(client)
    response = client.post(
        f"/arenden/{case.id}/uppfoljning",
        data={
            "version": str(case.version),
            "mode": "phone",
            "how_it_went": "   ",
            "problem_solving": "Ny tid för kören; följeslagare från föreningen",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Skriv hur det har gått." in page
    assert "Ny tid för kören; följeslagare från föreningen" in page
    assert '<option value="phone" selected>' in page
    # Back on the page later, the draft is restored with a notice and a way to discard it.
    page = client.get(f"/arenden/{case.id}/uppfoljning").get_data(as_text=True)
    assert "Ett utkast som du skrev" in page and "har återställts" in page
    assert "Ny tid för kören" in page
    assert "Släng utkastet och visa det som är sparat" in page
    response = client.post(f"/arenden/{case.id}/utkast/uppfoljning/slang")
    assert response.status_code == 302
    page = client.get(response.location).get_data(as_text=True)
    assert "Utkastet är slängt." in page and "Ny tid för kören" not in page


def test_the_draft_endpoint_keeps_a_sealed_draft_per_user_and_case(
    client: FlaskClient,
    app: Any,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
    make_user: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(monkeypatch)
    case = mapping_case(store, workflow, coach, unit)
    log_in(client)
    response = client.post(
        f"/arenden/{case.id}/utkast/kartlaggning",
        data={
            "notes": "Anna i kören vill gärna följa med",
            "net-0-label": "Anna",
            "interest": "music",
        },
    )
    assert response.status_code == 200
    assert re.fullmatch(r"Utkastet sparades kl\. \d\d\.\d\d\.", response.get_json()["message"])
    (row,) = draft_rows(session)
    assert b"Anna" not in row.fields_enc
    page = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert "har återställts" in page and "Anna i kören vill gärna följa med" in page
    assert re.search(r'value="music" checked', page)

    # Another coach of the unit has no draft of it and sees what is saved.
    make_user("coach", "coach2")
    other = app.test_client()
    log_in(other, "coach2")
    page = other.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert "har återställts" not in page and "Anna i kören" not in page

    # An unknown form is no page.
    assert client.post(f"/arenden/{case.id}/utkast/plan").status_code == 404


def test_draft_refusals_say_why_in_swedish(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any, make_user: Callable[..., Any]
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    ids = {"case_id": case.id, "patient_id": case.patient_id}
    with pytest.raises(Invalid, match=r"^Okänt formulär\.$"):
        drafts.save_draft(store, coach, form="plan", fields=[], **ids)
    with pytest.raises(Invalid, match=r"^Utkastet har fler fält än formuläret\.$"):
        drafts.save_draft(store, coach, form="mapping", fields=[("x", "")] * 401, **ids)
    with pytest.raises(Invalid, match=re.escape("Utkastet får vara högst 200\u00a0000 tecken.")):
        drafts.save_draft(store, coach, form="mapping", fields=[("notes", "x" * 200_001)], **ids)
    staff = Actor.of(make_user("staff"))
    with pytest.raises(NotPermitted, match="Bara den som arbetar med ärendet"):
        drafts.save_draft(store, staff, form="mapping", fields=[("notes", "x")], **ids)


def test_erasing_the_patient_deletes_their_drafts(
    backend: str,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
    session: Session,
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    other = mapping_case(store, workflow, coach, unit)
    for c in (case, other):
        drafts.save_draft(
            store,
            coach,
            case_id=c.id,
            patient_id=c.patient_id,
            form="mapping",
            fields=[("notes", "Oro för ekonomin")],
        )
    patient = session.get(Patient, case.patient_id)
    assert patient is not None
    erase_patient(store, coordinator, patient, reason="Gallring")
    assert [row.case_id for row in draft_rows(session)] == [other.id]


def session_row(client: FlaskClient, session: Session) -> WebSession:
    found = client.get_cookie(COOKIE)
    assert found is not None
    session.expire_all()
    row = session.get(WebSession, token_hash(found.value))
    assert row is not None
    return row


def test_typing_renews_the_idle_timer_so_an_open_form_does_not_time_out(
    backend: str,
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    log_in(client)
    for _ in range(3):  # an hour of typing, a draft save every 19 minutes
        row = session_row(client, session)
        row.last_seen_at = utcnow() - dt.timedelta(minutes=19)
        session.flush()
        response = client.post(f"/arenden/{case.id}/utkast/kartlaggning", data={"notes": "…"})
        assert response.status_code == 200
        assert utcnow() - session_row(client, session).last_seen_at < dt.timedelta(minutes=1)


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.mark.settings(csrf_enabled=True)
def test_a_form_submitted_after_the_timeout_is_kept_sealed_and_saved_after_the_password(
    backend: str,
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(monkeypatch)
    case = mapping_case(store, workflow, coach, unit)
    login_page = client.get("/login").get_data(as_text=True)
    response = client.post(
        "/login",
        data={"username": "coach", "password": TEST_PASSWORD, "csrf_token": csrf_token(login_page)},
    )
    assert response.status_code == 302
    form_page = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    token = csrf_token(form_page)
    row = session_row(client, session)
    row.last_seen_at = utcnow() - dt.timedelta(minutes=45)
    session.flush()

    # The page's script saves a draft first: kept too, though the session has ended.
    response = client.post(
        f"/arenden/{case.id}/utkast/kartlaggning",
        data={"notes": "Början på anteckningen"},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 302 and response.location == "/login"
    (draft,) = draft_rows(session)
    assert not draft.is_kept_post

    note = "Lång anteckning från besöket. " * 200
    post = mapping_post(case, notes=note, goals="Träffa andra") | {"csrf_token": token}
    response = client.post(f"/arenden/{case.id}/kartlaggning", data=post)
    assert response.status_code == 302 and response.location.startswith("/login?next=")
    # Kept server-side and sealed: neither the session row nor the draft holds it in clear.
    (kept,) = draft_rows(session)
    assert kept.is_kept_post and b"Kontakt nummer" not in kept.fields_enc
    assert all("Kontakt nummer" not in r.data for r in session.scalars(select(WebSession)))
    assert load_mapping(store, case).network == []

    page = client.get(response.location).get_data(as_text=True)
    assert "Logga in igen för att spara" in page
    assert "Det du skrev finns kvar: ange ditt lösenord så sparas det." in page
    assert 'value="coach"' in page
    response = client.post(
        response.location,
        data={"username": "coach", "password": TEST_PASSWORD, "csrf_token": csrf_token(page)},
    )
    assert response.status_code == 302 and "/utkast/kartlaggning/spara" in response.location
    response = client.get(response.location)
    assert response.status_code == 302 and response.location == f"/arenden/{case.id}"
    saved = load_mapping(store, case)
    assert saved.notes == note.strip() and len(saved.network) == 8
    assert draft_rows(session) == []
    assert "Kartläggningen är sparad." in client.get(response.location).get_data(as_text=True)


@pytest.mark.settings(csrf_enabled=True)
def test_a_post_after_the_timeout_without_the_sessions_token_is_not_kept(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    login_page = client.get("/login").get_data(as_text=True)
    client.post(
        "/login",
        data={"username": "coach", "password": TEST_PASSWORD, "csrf_token": csrf_token(login_page)},
    )
    row = session_row(client, session)
    row.last_seen_at = utcnow() - dt.timedelta(minutes=45)
    session.flush()
    # Another site's form: no token, or a token of another session.
    for token in ("", csrf_token(login_page)):
        response = client.post(
            f"/arenden/{case.id}/kartlaggning",
            data=mapping_post(case, notes="Planterat av någon annan") | {"csrf_token": token},
        )
        assert response.status_code == 400
    assert draft_rows(session) == []


def test_a_kept_post_that_is_refused_stays_as_the_draft_with_the_reason(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(monkeypatch)
    case = mapping_case(store, workflow, coach, unit)
    log_in(client)
    row = session_row(client, session)
    row.last_seen_at = utcnow() - dt.timedelta(minutes=45)
    session.flush()
    response = client.post(
        f"/arenden/{case.id}/kartlaggning", data=mapping_post(case, notes="Viktigt att minnas")
    )
    assert response.status_code == 302
    log_in(client)
    response = client.get(f"/arenden/{case.id}/utkast/kartlaggning/spara")
    assert response.status_code == 302 and response.location == f"/arenden/{case.id}/kartlaggning"
    page = client.get(response.location).get_data(as_text=True)
    assert "Det du skrev finns kvar men kunde inte sparas: Skriv målen." in page
    assert "Viktigt att minnas" in page and "har återställts" in page
    (kept,) = draft_rows(session)
    assert not kept.is_kept_post


def test_a_refused_hand_over_shows_the_case_page_with_what_was_typed(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapping_case(store, workflow, coach, unit)
    services.save_action_plan(
        store, coach, case, workflow=workflow, goals="Mål", steps=[services.StepInput("Kören")]
    )
    handover = services.request_handover(
        store, coach, case, workflow=workflow, organisation_name="Kören i Bäckby"
    )
    log_in(client)
    response = client.post(
        f"/arenden/{case.id}/overlamning/{handover.id}",
        data={
            "status": "accepted",
            "companion_name": "Birgitta",
            "meeting_day": "2030-04-02",
            "meeting_time": "18:30",
            "meeting_place": "Kyrkans entré",
            "outcome": "went",
            "note": "Birgitta möter upp vid entrén och följer med in.",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Ett utfall hör till en genomförd överlämning." in page
    for typed in ("Birgitta", "2030-04-02", "18:30", "Kyrkans entré", "följer med in."):
        assert typed in page, typed
    assert re.search(r'<option value="accepted" selected>', page)
    response = client.post(f"/arenden/{case.id}/overlamning", data={"organisation": "  "})
    assert response.status_code == 422
    assert "Skriv organisationens namn." in response.get_data(as_text=True)
