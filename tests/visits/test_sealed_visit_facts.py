"""The visits' health facts and free text are sealed: for each field, the stored row (read with a
raw SELECT, on SQLite and PostgreSQL) holds no trace of the clear value, and the services give it
back; the case page and the mapping form show and keep every value."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from slussen import vault
from slussen.audit import Actor
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.directory.models import Organisation
from slussen.keystore import Keystore
from slussen.visits.models import MappingRecord, NetworkEntry
from slussen.visits.services import (
    BOOKS_MAPPING_VISIT,
    MAPPING_OPEN,
    Mapping,
    NetworkInput,
    StepInput,
    book_follow_up,
    book_mapping_visit,
    booked_visit,
    case_handovers,
    case_visits,
    current_plan,
    follow_up_kind,
    handover_details,
    load_mapping,
    record_follow_up,
    request_handover,
    save_action_plan,
    save_mapping,
    update_handover,
    visit_place,
)
from tests.builders import FUTURE, make_case, publish_activity
from tests.conftest import TEST_PASSWORD

INTERESTS = {"music", "faith", "nature"}
BARRIERS = {"anxiety", "health", "cost"}
MAPPING = Mapping(
    network=[
        NetworkInput("Dottern Anna", "family", 1, "weekly", is_could_deepen=True),
        NetworkInput("Kören i Bäckby", "association", 3, "lost", is_could_resume=True),
    ],
    interests=["faith", "music"],  # sorted, as the service keeps them
    barriers=["anxiety", "health"],
    barrier_notes="Orolig i stora grupper",
    notes="Vill börja på dagtid",
    area="Bäckby",
)


def stored(session: Session, table: str, row_id: int) -> dict[str, Any]:
    """The row as the database holds it: a raw SELECT, every column."""
    row = session.execute(
        text(f"SELECT * FROM {table} WHERE id = :id"),  # noqa: S608 - the tests' own table names
        {"id": row_id},
    )
    return dict(row.mappings().one())


def assert_absent(row: dict[str, Any], *clear: str) -> None:
    """No column of `row` holds any of `clear`, as text or as UTF-8 bytes inside a blob."""
    for column, value in row.items():
        for needle in clear:
            if isinstance(value, bytes | memoryview):
                assert needle.encode() not in bytes(value), (column, needle)
            else:
                assert needle not in str(value), (column, needle)


def case_in(store: Keystore, workflow: Workflow, coach: Actor, unit: Any, part: str) -> Case:
    state = next(name for name in workflow.states if name in workflow.states_for(part))
    return make_case(store.session, store.ring, workflow, coach, unit.id, state)


def mapped_case(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    case = case_in(store, workflow, coach, unit, MAPPING_OPEN)
    save_mapping(
        store,
        coach,
        case,
        MAPPING,
        workflow=workflow,
        known_interests=INTERESTS,
        known_barriers=BARRIERS,
    )
    store.session.flush()
    return case


def active_case(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Case:
    """A case in the first state in which a follow-up is due (its plan has begun)."""
    state = next(s for s in workflow.states if follow_up_kind(workflow, s) is not None)
    return make_case(store.session, store.ring, workflow, coach, unit.id, state)


def test_the_network_interests_barriers_and_area_are_sealed(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapped_case(store, workflow, coach, unit)
    session = store.session
    entries = session.query(NetworkEntry).filter_by(case_id=case.id).order_by(NetworkEntry.id)
    for entry in entries:
        row = stored(session, "network_entries", entry.id)
        # Ids and sealed blobs only: no relation, closeness, frequency or flag in clear.
        assert set(row) == {"id", "case_id", "label_enc", "facts_enc"}
        assert_absent(row, "Dottern", "Kören", "family", "association", "weekly", "lost")
    record = session.query(MappingRecord).filter_by(case_id=case.id).one()
    row = stored(session, "mapping_records", record.id)
    assert set(row) == {
        "id",
        "case_id",
        "barrier_notes_enc",
        "notes_enc",
        "interests_enc",
        "barriers_enc",
        "area_enc",
    }
    assert_absent(row, "music", "faith", "anxiety", "health", "Bäckby", "Orolig", "dagtid")
    # The one-row-per-code tables, which said in clear who is anxious, are gone.
    tables = set(inspect(session.connection()).get_table_names())
    assert not tables & {"case_interests", "case_barriers"}
    assert load_mapping(store, case) == MAPPING


def test_a_sealed_list_moved_to_another_column_is_refused(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    """The seal names table, column and row: a copy of the database cannot pass a patient's
    barriers off as their interests (or move them to another row)."""
    case = mapped_case(store, workflow, coach, unit)
    record = store.session.query(MappingRecord).filter_by(case_id=case.id).one()
    record.interests_enc = record.barriers_enc
    store.session.flush()
    with pytest.raises(vault.DecryptionError, match=r"mapping_records\.interests"):
        load_mapping(store, case)


def test_saving_the_mapping_again_replaces_it(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapped_case(store, workflow, coach, unit)
    fewer = Mapping(network=[NetworkInput("Grannen", "neighbour", 2, "monthly")])
    save_mapping(
        store,
        coach,
        case,
        fewer,
        workflow=workflow,
        known_interests=INTERESTS,
        known_barriers=BARRIERS,
    )
    assert load_mapping(store, case) == fewer
    record = store.session.query(MappingRecord).filter_by(case_id=case.id).one()
    # Nothing ticked, no area: no sealed value at all, not a sealed empty list.
    assert (record.interests_enc, record.barriers_enc, record.area_enc) == (None, None, None)


def test_visit_places_are_sealed(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    books = workflow.transitions[workflow.event_for(BOOKS_MAPPING_VISIT)]
    state = next(name for name in workflow.states if name in books.from_states)
    first = make_case(store.session, store.ring, workflow, coach, unit.id, state)
    visit = book_mapping_visit(
        store, coach, first, workflow=workflow, starts_at=FUTURE, place="Solgläntan, rum 12"
    )
    booked = booked_visit(store, first)
    assert booked is not None and booked.id == visit.id
    assert visit_place(store, first.patient_id, booked) == "Solgläntan, rum 12"

    case = active_case(store, workflow, coach, unit)
    follow = book_follow_up(
        store, coach, case, workflow=workflow, starts_at=FUTURE, place="Hälsans hus, plan 2"
    )
    record_follow_up(store, coach, case, workflow=workflow, how_it_went="Bra, går på kören")
    # The second follow-up by phone, never booked: the service makes its visit, place and all.
    record_follow_up(store, coach, case, workflow=workflow, how_it_went="Fint", mode="phone")
    store.session.flush()
    for row_id, place in ((visit.id, "Solgläntan"), (follow.id, "Hälsans hus")):
        row = stored(store.session, "visits", row_id)
        assert "place" not in row and row["place_enc"] is not None
        assert_absent(row, place, "kören")
    shown = {v.place: v for v in case_visits(store, case)}
    # make_case's mapping visit, the booked follow-up, and the phone follow-up made when held.
    assert set(shown) == {"Vårdcentralen, rum 3", "Hälsans hus, plan 2", "Telefon"}
    assert shown["Hälsans hus, plan 2"].id == follow.id
    assert {v.status for v in shown.values()} == {"done"}
    assert_absent(stored(store.session, "visits", shown["Telefon"].id), "Telefon")


def test_hand_over_names_and_places_are_sealed(
    backend: str, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = active_case(store, workflow, coach, unit)
    organisation = Organisation(name="Sorgegruppen i Bäckby", sector="ideburen")
    store.session.add(organisation)
    store.session.flush()
    handover = request_handover(
        store,
        coach,
        case,
        workflow=workflow,
        organisation_id=organisation.id,
        is_phone_shared=True,
        helps="Vill bli mött vid dörren",
    )
    row = stored(store.session, "handovers", handover.id)
    # What the patient agreed to share (first name, phone, what helps) is sealed too.
    assert_absent(row, "Sorgegruppen", "Testperson", "070-000", "dörren")
    assert row["organisation_id"] == organisation.id and row["companion_name_enc"] is None
    shared = handover_details(store, case.patient_id, handover)
    assert (shared.first_name, shared.phone, shared.helps) == (
        "Testperson",
        "070-000 00 00",
        "Vill bli mött vid dörren",
    )
    meeting = FUTURE + dt.timedelta(days=2)
    update_handover(
        store,
        coach,
        case,
        handover,
        workflow=workflow,
        status="accepted",
        companion_name="Eva",
        meeting_at=meeting,
        meeting_place="Träffpunkten, Storgatan 2",
    )
    row = stored(store.session, "handovers", handover.id)
    assert not {"organisation_name", "companion_name", "meeting_place"} & set(row)
    assert_absent(row, "Sorgegruppen", "Eva", "Träffpunkten", "Storgatan")
    assert row["status"] == "accepted"  # clear: the organisation's requests are found by it
    shown = handover_details(store, case.patient_id, handover)
    assert (shown.organisation_name, shown.companion_name, shown.meeting_place) == (
        "Sorgegruppen i Bäckby",
        "Eva",
        "Träffpunkten, Storgatan 2",
    )
    assert shown.meeting_at == meeting and case_handovers(store, case) == [shown]
    # Cleared again: no sealed value is left behind (a letter asks whether a place is agreed).
    update_handover(
        store, coach, case, handover, workflow=workflow, status="accepted", meeting_at=meeting
    )
    row = stored(store.session, "handovers", handover.id)
    assert (row["companion_name_enc"], row["meeting_place_enc"]) == (None, None)
    assert case_handovers(store, case)[0].meeting_place == ""


# --- the pages ----------------------------------------------------------------------------------


class FormValues(HTMLParser):
    """What a browser would send for each form of a page: text inputs and hidden fields as they
    are, ticked checkboxes, each select's selected option (else its first), textareas' text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._select: str | None = None
        self._first: str | None = None
        self._chosen: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name")
        if tag == "form":
            self.forms.append([])
        elif tag == "input" and name and a.get("type") != "checkbox":
            self.forms[-1].append((name, a.get("value", "")))
        elif tag == "input" and name and "checked" in a:
            self.forms[-1].append((name, a.get("value", "on")))
        elif tag == "select":
            self._select, self._first, self._chosen = name, None, None
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._first = value if self._first is None else self._first
            if "selected" in a:
                self._chosen = value
        elif tag == "textarea":
            self._textarea, self._text = name, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            self.forms[-1].append((self._select, self._chosen or self._first or ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.forms[-1].append((self._textarea, self._text))
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text += data


def case_form_values(html: str) -> list[tuple[str, str]]:
    """The values of the page's form that carries the case's version."""
    parser = FormValues()
    parser.feed(html)
    return next(form for form in parser.forms if any(name == "version" for name, _ in form))


def test_the_mapping_form_keeps_every_value_when_saved_again(
    client: FlaskClient,
    store: Keystore,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
    make_user: Any,
) -> None:
    case = mapped_case(store, workflow, coach, unit)
    choir = publish_activity(store.session, make_user("coordinator", "katalogen"), title="Kören")
    save_action_plan(
        store,
        coach,
        case,
        workflow=workflow,
        goals="Träffa andra",
        steps=[
            StepInput(
                "Kören på torsdagar", due_on=dt.date(2030, 4, 1), activity_id=choir.activity_id
            ),
            StepInput("Ringa dottern", actor="coach", outcome="barrier", outcome_note="Sjuk"),
        ],
    )
    store.session.flush()
    before_mapping, before_plan = load_mapping(store, case), current_plan(store, case)
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    page = client.get(f"/arenden/{case.id}/kartlaggning")
    assert page.status_code == 200
    values = [(k, v) for k, v in case_form_values(page.get_data(as_text=True)) if k != "record"]
    response = client.post(
        f"/arenden/{case.id}/kartlaggning", data=MultiDict([*values, ("record", "0")])
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    store.session.expire_all()
    assert load_mapping(store, case) == before_mapping == MAPPING
    after = current_plan(store, case)
    assert before_plan is not None and after is not None
    assert after.revision == before_plan.revision + 1
    assert (after.goals, after.steps) == (before_plan.goals, before_plan.steps)


def test_the_case_page_shows_the_sealed_facts(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = mapped_case(store, workflow, coach, unit)
    save_action_plan(
        store, coach, case, workflow=workflow, goals="Träffa andra", steps=[StepInput("Kören")]
    )
    handover = request_handover(
        store, coach, case, workflow=workflow, organisation_name="Röda Korset Bäckby"
    )
    update_handover(
        store,
        coach,
        case,
        handover,
        workflow=workflow,
        status="accepted",
        companion_name="Eva",
        meeting_at=FUTURE,
        meeting_place="Träffpunkten, Storgatan 2",
    )
    store.session.flush()
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    page = client.get(f"/arenden/{case.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for shown in (
        "Vårdcentralen, rum 3",  # the mapping visit make_case booked
        "Dottern Anna",
        "Kören i Bäckby",
        "Orolig i stora grupper",
        "Röda Korset Bäckby",
        'value="Eva"',
        'value="Träffpunkten, Storgatan 2"',
    ):
        assert shown in html, shown
