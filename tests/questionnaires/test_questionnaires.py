"""Answer codes, answering online at /svar, paper entry with double keying, and the workflow
events the answers fire."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.cases.engine import event_name, screening_of
from slussen.cases.models import Case, CaseEvent
from slussen.cases.workflow import Workflow
from slussen.keystore import Keystore, current_key_ring
from slussen.questionnaires import codes, services
from slussen.questionnaires.definitions import FormDef
from slussen.questionnaires.models import AnswerCode, QuestionnaireResponse, QuestionnaireScore
from tests.builders import make_case, screening

pytestmark = pytest.mark.settings(use_demo_forms=True)


@pytest.fixture
def forms(app: Flask) -> dict[str, FormDef]:
    result: dict[str, FormDef] = app.extensions["slussen.content"].compiled["forms"]
    return result


@pytest.fixture
def case_in(
    app: Flask, session: Session, workflow: Workflow, coordinator: Actor, unit: Any
) -> Iterator[Callable[[str], Case]]:
    with app.app_context():
        ring = current_key_ring()

        def build(state: str) -> Case:
            return make_case(
                session, ring, workflow, coordinator, unit.id, state, name="Vera Hemlig"
            )

        yield build


def baseline_forms(workflow: Workflow, forms: dict[str, FormDef]) -> list[FormDef]:
    return services.occasion_forms(workflow, forms, "baseline", demo_forms=True)


def stored_score(app: Flask, session: Session, case: Case, row: QuestionnaireScore) -> Any:
    """A stored score unsealed with the patient's data key, after checking it is sealed."""
    assert row.score_enc is not None and b"value" not in row.score_enc
    with app.app_context():
        return services.read_score(Keystore(session, current_key_ring()), case, row)


def answers_for(form: FormDef, pick: Callable[[Any], int] = lambda item: item.min_code) -> dict:
    return {item.id: ("Lite text" if item.type == "text" else pick(item)) for item in form.items}


def answer_every_step(
    client: FlaskClient,
    forms: list[FormDef],
    pick: Callable[[Any], int],
    start: Any,
    *,
    text: str = "Jag tycker om att gå i skogen",
) -> list[str]:
    """Walk the online form from the page `start` redirected to, answering each item with
    `pick` and each free-text item with `text`; return every page's text."""
    pages = []
    location = start.location
    groups = [(form, group) for form in forms for group in form.groups]
    for form, group in groups:
        assert "/svar/fraga/" in location, location
        page = client.get(location)
        assert page.status_code == 200
        pages.append(page.get_data(as_text=True))
        data = {}
        for item_id in group.items:
            item = form.item(item_id)
            if item.type == "text":
                data[f"item-{item_id}"] = text
            elif item.type == "tick":
                if pick(item):
                    data[f"item-{item_id}"] = "1"
            else:
                data[f"item-{item_id}"] = str(pick(item))
        response = client.post(location, data={**data, "go": "next"})
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.location
    assert location.endswith("/svar/skicka")
    pages.append(client.get(location).get_data(as_text=True))
    return pages


# --- codes ---------------------------------------------------------------------------------------


def test_code_is_unambiguous_hashed_and_expires_after_the_setting(
    app: Flask, session: Session, case_in: Callable[[str], Case]
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    assert re.fullmatch(r"[ACDEFGHJKMNPQRTUVWXY34679]{4}-[A-Z0-9]{4}-[A-Z0-9]{2}", code)
    row = session.scalars(select(AnswerCode)).one()
    assert code.replace("-", "") not in repr(vars(row))
    with app.app_context():
        ring = current_key_ring()
    assert row.code_hash == codes.code_hash(ring, code)
    assert row.expires_at - row.created_at == dt.timedelta(days=60)
    assert codes.redeem_code(session, ring, code.lower().replace("-", " ")) is row
    assert codes.answer_url(code, "https://slussen.example.se/") == (
        f"https://slussen.example.se/svar/{code}"
    )


# --- answering online ----------------------------------------------------------------------------


def test_online_answers_move_the_case_and_the_code_then_fails(
    backend: str,
    app: Flask,
    client: FlaskClient,
    session: Session,
    case_in: Callable[[str], Case],
    workflow: Workflow,
    forms: dict[str, FormDef],
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    start = client.post("/svar", data={"code": code})
    assert start.status_code == 302
    wanted = baseline_forms(workflow, forms)
    assert [f.id for f in wanted] == [
        "ucla3", "ons_loneliness", "ons4", "hlv_social", "interest_mapping", "mini_spin",
    ]  # fmt: skip
    pages = answer_every_step(client, wanted, lambda item: item.min_code, start)
    for page in pages:
        assert "Vera" not in page and "Hemlig" not in page and case.reference not in page
    done = client.post("/svar/skicka")
    assert done.status_code == 302 and done.location.endswith("/svar/tack")
    assert "Tack" in client.get("/svar/tack").get_data(as_text=True)

    session.refresh(case)
    assert case.state == "assessed" and screening(app, session, case) is None
    last = session.scalars(select(CaseEvent).order_by(CaseEvent.id.desc())).first()
    assert last is not None and last.event == "register_baseline"
    assert last.actor_role == "patient"
    responses = session.scalars(select(QuestionnaireResponse)).all()
    assert {r.form_id for r in responses} == {f.id for f in wanted}
    assert all(r.source == "online" and r.keyed_by_id is None for r in responses)
    ucla = next(r for r in responses if r.form_id == "ucla3")
    assert b"lack_companionship" not in ucla.answers_enc
    total = session.scalars(
        select(QuestionnaireScore).where(QuestionnaireScore.response_id == ucla.id)
    ).one()
    score = stored_score(app, session, case, total)
    assert (score.value, score.is_positive) == (3, False)

    again = client.post("/svar", data={"code": code})
    assert again.status_code == 422
    assert "Koden är redan använd" in again.get_data(as_text=True)


def test_a_screen_positive_answer_flags_but_never_excludes(
    app: Flask,
    client: FlaskClient,
    session: Session,
    case_in: Callable[[str], Case],
    workflow: Workflow,
    forms: dict[str, FormDef],
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    start = client.get(f"/svar/{code}")
    answer_every_step(client, baseline_forms(workflow, forms), lambda i: i.max_code, start)
    assert client.post("/svar/skicka").status_code == 302
    session.refresh(case)
    assert case.state == "assessed" and screening(app, session, case) == "positive"


def test_an_expired_code_fails(
    app: Flask, client: FlaskClient, session: Session, case_in: Callable[[str], Case]
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(
            session,
            current_key_ring(),
            case,
            "baseline",
            now=dt.datetime.now(dt.UTC) - dt.timedelta(days=61),
        )
    page = client.get(f"/svar/{code}")
    assert page.status_code == 422
    assert "Koden gäller inte längre" in page.get_data(as_text=True)


def test_a_required_question_must_be_answered_online(
    app: Flask, client: FlaskClient, session: Session, case_in: Callable[[str], Case]
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    start = client.post("/svar", data={"code": code})
    page = client.post(start.location, data={"item-left_out": "2", "go": "next"})
    assert page.status_code == 422
    text = page.get_data(as_text=True)
    assert "Välj ett svar." in text and 'role="alert"' in text
    # What was answered is kept on the page and on the server.
    assert 'value="2" checked' in text


def test_five_wrong_codes_make_the_address_wait(
    app: Flask, client: FlaskClient, session: Session, case_in: Callable[[str], Case]
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    for _ in range(5):
        assert client.post("/svar", data={"code": "AAAA-AAAA-AA"}).status_code == 422
    assert client.post("/svar", data={"code": code}).status_code == 429
    assert client.get(f"/svar/{code}").status_code == 429


def test_answers_are_saved_step_by_step(
    app: Flask,
    client: FlaskClient,
    session: Session,
    case_in: Callable[[str], Case],
) -> None:
    case = case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    start = client.post("/svar", data={"code": code})
    data = {"item-lack_companionship": "3", "item-left_out": "2", "item-isolated": "1"}
    client.post(start.location, data={**data, "go": "next"})
    row = session.scalars(select(AnswerCode)).one()
    session.refresh(row)
    assert row.draft_enc is not None and b"left_out" not in row.draft_enc
    # A new visit with the same code finds the answers again.
    other = app.test_client()
    again = other.post("/svar", data={"code": code})
    page = other.get(again.location).get_data(as_text=True)
    assert 'id="i-lack_companionship-3" name="item-lack_companionship" value="3" checked' in page


# --- paper entry ---------------------------------------------------------------------------------


def test_paper_entry_flags_out_of_range_and_saves_with_missing_items(
    app: Flask,
    client: FlaskClient,
    session: Session,
    login: Callable[..., Any],
    case_in: Callable[[str], Case],
) -> None:
    login("coach")
    case = case_in("invited")
    url = f"/arenden/{case.id}/formular/baseline/ucla3"
    page = client.get(url).get_data(as_text=True)
    assert 'inputmode="numeric"' in page and "entry.js" in page
    bad = client.post(url, data={"item-lack_companionship": "7", "item-left_out": "2"})
    assert bad.status_code == 422
    assert "7 går inte att svara här (1–3)." in bad.get_data(as_text=True)
    assert session.scalars(select(QuestionnaireResponse)).all() == []

    preview = client.post(
        url + "/poang",
        data={"item-lack_companionship": "3", "item-left_out": "3", "item-isolated": "2"},
    )
    assert preview.get_json()["scores"][0]["value"] == 8

    saved = client.post(url, data={"item-lack_companionship": "3", "item-left_out": "2"})
    assert saved.status_code == 302
    response = session.scalars(select(QuestionnaireResponse)).one()
    assert response.source == "paper" and response.keyed_by_id is not None
    page = client.get(saved.location).get_data(as_text=True)
    assert "not answered" in page or "inte besvarad" in page
    score = session.scalars(select(QuestionnaireScore)).one()
    assert stored_score(app, session, case, score).value is None


def test_paper_entry_of_the_whole_baseline_moves_the_case_as_the_coach(
    client: FlaskClient,
    session: Session,
    login: Callable[..., Any],
    case_in: Callable[[str], Case],
    workflow: Workflow,
    forms: dict[str, FormDef],
) -> None:
    login("coach")
    case = case_in("invited")
    for form in baseline_forms(workflow, forms):
        data = {f"item-{k}": str(v) for k, v in answers_for(form).items()}
        response = client.post(f"/arenden/{case.id}/formular/baseline/{form.id}", data=data)
        assert response.status_code == 302, response.get_data(as_text=True)
    session.refresh(case)
    assert case.state == "assessed"
    last = session.scalars(select(CaseEvent).order_by(CaseEvent.id.desc())).first()
    assert last is not None and (last.event, last.actor_role) == ("register_baseline", "coach")
    page = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert "Ensamhet (UCLA-3): 3" in page


def test_six_month_answers_move_the_case_to_evaluated(
    client: FlaskClient,
    session: Session,
    login: Callable[..., Any],
    case_in: Callable[[str], Case],
    workflow: Workflow,
    forms: dict[str, FormDef],
) -> None:
    login("coach")
    case = case_in("evaluation_sent")
    six = services.occasion_forms(workflow, forms, "six_month", demo_forms=True)
    assert "programme_feedback" in [f.id for f in six]
    for form in six:
        data = {f"item-{k}": str(v) for k, v in answers_for(form, lambda i: i.max_code).items()}
        assert (
            client.post(f"/arenden/{case.id}/formular/six_month/{form.id}", data=data).status_code
            == 302
        )
    session.refresh(case)
    assert case.state == "evaluated"


def test_double_keying_by_another_person_reports_mismatches(
    backend: str,
    app: Flask,
    client: FlaskClient,
    session: Session,
    login: Callable[..., Any],
    case_in: Callable[[str], Case],
) -> None:
    first = login("coach")
    case = case_in("invited")
    url = f"/arenden/{case.id}/formular/baseline/ucla3"
    client.post(
        url, data={"item-lack_companionship": "3", "item-left_out": "2", "item-isolated": "2"}
    )
    response = session.scalars(select(QuestionnaireResponse)).one()
    again = f"/arenden/{case.id}/svar/{response.id}/andra"
    same = client.post(again, data={"item-lack_companionship": "3"})
    assert same.status_code == 422
    assert "annan person" in same.get_data(as_text=True)

    client.post("/logout")
    login("coach", "coach2")
    page = client.post(
        again,
        data={"item-lack_companionship": "3", "item-left_out": "1", "item-isolated": "2"},
        follow_redirects=True,
    ).get_data(as_text=True)
    session.refresh(response)
    assert response.is_verified is False and response.second_keyed_by_id not in (None, first.id)
    assert "Hur ofta känner du dig utanför?" in page.split('id="h-mismatch"')[1]
    settled = client.post(
        f"/arenden/{case.id}/svar/{response.id}/los",
        data={"item-lack_companionship": "3", "item-left_out": "1", "item-isolated": "2"},
    )
    assert settled.status_code == 302
    session.refresh(response)
    assert response.is_verified and response.second_answers_enc is None
    score = session.scalars(select(QuestionnaireScore)).one()
    assert stored_score(app, session, case, score).value == 6


def test_another_units_coach_gets_404(
    client: FlaskClient,
    make_user: Callable[..., Any],
    session: Session,
    case_in: Callable[[str], Case],
) -> None:
    from slussen.accounts.models import Unit
    from tests.conftest import TEST_PASSWORD

    case = case_in("invited")
    other = Unit(
        name="Annan", hsa_id="SE2321000016-OTH1", street="", postcode="", town="", phone=""
    )
    session.add(other)
    session.flush()
    make_user("coach", "fremling", units=[other])
    client.post("/login", data={"username": "fremling", "password": TEST_PASSWORD})
    assert client.get(f"/arenden/{case.id}/formular/baseline/ucla3").status_code == 404


# --- no input gives a server error ---------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(-5, 20).map(str),
    st.sampled_from(["", " ", "1", "3", "10", "on", "١", "1.5", "-1", "0x1"]),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    form_id=st.sampled_from(["ucla3", "ons4", "barriers", "hlv_social", "programme_feedback"]),
    values=st.dictionaries(
        st.sampled_from(
            ["lack_companionship", "left_out", "isolated", "life_satisfaction", "trust",
             "transport", "in_own_words", "meets_others", "anxious_yesterday", "bogus"]
        ),
        ANY_VALUE,
    ),
)  # fmt: skip
def test_any_posted_paper_form_stores_a_valid_response_or_says_why(
    client: FlaskClient,
    session: Session,
    login: Callable[..., Any],
    case_in: Callable[[str], Case],
    forms: dict[str, FormDef],
    form_id: str,
    values: dict[str, str | None],
) -> None:
    from slussen.keystore import Keystore

    if client.get("/arbetslista").status_code != 200:
        login("coach", "hypo")
    case = session.scalars(select(Case)).first() or case_in("invited")
    data = {f"item-{k}": v for k, v in values.items() if v is not None}
    response = client.post(f"/arenden/{case.id}/formular/baseline/{form_id}", data=data)
    if any("\x00" in v for v in data.values()):  # refused before any view reads it
        assert response.status_code == 400
        return
    assert response.status_code in (302, 422), response.status_code
    stored = session.scalars(
        select(QuestionnaireResponse).where(QuestionnaireResponse.case_id == case.id)
    ).all()
    if response.status_code == 302:
        [row] = stored
        with client.application.app_context():
            answers = services.read_answers(Keystore(session, current_key_ring()), case, row)
        form = forms[form_id]
        assert set(answers) <= set(form.item_ids)
        for item_id, answer in answers.items():
            item = form.item(item_id)
            assert isinstance(answer, str) if item.type == "text" else answer in item.codes
        session.execute(delete(QuestionnaireScore))
        session.execute(delete(QuestionnaireResponse))
        session.expire_all()
    else:
        assert stored == []
        text = response.get_data(as_text=True)
        assert "går inte att svara här" in text or "ska vara en siffra" in text


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.dictionaries(
        st.sampled_from(["item-lack_companionship", "item-left_out", "item-isolated", "go", "x"]),
        st.one_of(st.text(max_size=8), st.sampled_from(["1", "2", "3", "back", "next"])),
    ),
    number=st.integers(-1, 30),
)
def test_any_posted_online_step_is_saved_or_explained(
    app: Flask,
    session: Session,
    case_in: Callable[[str], Case],
    values: dict[str, str],
    number: int,
) -> None:
    case = session.scalars(select(Case)).first() or case_in("invited")
    with app.app_context():
        code = codes.create_answer_code(session, current_key_ring(), case, "baseline")
    client = app.test_client()
    client.post("/svar", data={"code": code})
    response = client.post(f"/svar/fraga/{number}", data=values)
    if any("\x00" in v for v in values.values()):  # refused before any view reads it
        assert response.status_code == 400
        return
    assert response.status_code in (302, 404, 422), response.status_code
    if response.status_code == 422:
        # Refused answers are explained next to the question (missing, or not an option).
        assert 'class="error"' in response.get_data(as_text=True)


def test_positive_screening_and_its_resolution_are_case_events(
    backend: str,
    app: Flask,
    session: Session,
    case_in: Callable[[str], Case],
    workflow: Workflow,
    forms: dict[str, FormDef],
    coordinator: Actor,
) -> None:
    """A screen-positive Mini-SPIN and the coach's decision to go on each go through the
    engine: a history row, an access-log row and a new version; a resolved screening is not
    flagged again by later answers."""
    from slussen.audit import AuditEvent
    from slussen.keystore import Keystore
    from slussen.visits.services import resolve_screening

    case = case_in("invited")
    mini_spin = forms["mini_spin"]
    wanted = baseline_forms(workflow, forms)

    def last_event() -> CaseEvent:
        row = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc())
        ).first()
        assert row is not None
        return row

    def last_audit() -> AuditEvent:
        row = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert row is not None
        return row

    with app.app_context():
        store = Keystore(session, current_key_ring())
        before = case.version
        services.key_in_paper(
            store,
            coordinator,
            case,
            mini_spin,
            "baseline",
            answers_for(mini_spin, lambda item: item.max_code),
            workflow=workflow,
            forms=wanted,
        )
        session.flush()
        assert case.state == "invited" and screening_of(store, case) == "positive"
        assert case.version > before
        flagged = last_event()
        # The history keeps a screening event's name sealed: its name would tell who screened
        # positive.
        assert (flagged.event, flagged.from_state, flagged.to_state) == (
            "sealed",
            "invited",
            "invited",
        )
        assert event_name(store, flagged, case.patient_id) == "flag_screening"
        assert flagged.actor_role == "coordinator"
        audit_row = last_audit()
        assert (audit_row.object_type, audit_row.object_id, audit_row.action) == (
            "case",
            str(case.id),
            "update",
        )
        assert audit_row.purpose == "ändring av ärendet"

        before = case.version
        resolve_screening(
            store,
            coordinator,
            case,
            workflow=workflow,
            decision="continue",
            expected_version=before,
        )
        session.flush()
        assert screening_of(store, case) == "resolved" and case.version > before
        assert event_name(store, last_event(), case.patient_id) == "resolve_screening"
        assert last_audit().purpose == "ändring av ärendet"

        # Answers coming in later (the paper keyed in again after a mix-up) do not flag again.
        session.execute(
            delete(QuestionnaireResponse).where(QuestionnaireResponse.form_id == mini_spin.id)
        )
        services.key_in_paper(
            store,
            coordinator,
            case,
            mini_spin,
            "baseline",
            answers_for(mini_spin, lambda item: item.max_code),
            workflow=workflow,
            forms=wanted,
        )
        session.flush()
        assert screening_of(store, case) == "resolved"
        assert event_name(store, last_event(), case.patient_id) == "resolve_screening"


@pytest.mark.settings(use_demo_forms=True, public_base_url="https://slussen.example.se")
def test_a_new_codes_answer_link_uses_the_configured_address_not_the_host_header(
    client: FlaskClient, login: Callable[..., Any], case_in: Callable[[str], Case]
) -> None:
    login("coach")
    case = case_in("invited")
    response = client.post(
        f"/arenden/{case.id}/svarskod",
        data={"occasion": "baseline"},
        headers={"Host": "evil.example"},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert re.search(r"https://slussen\.example\.se/svar/[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{2}", page)
    assert "evil.example" not in page
