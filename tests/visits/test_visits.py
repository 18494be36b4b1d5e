"""Visits: booking the mapping visit through its page, and the action plan kept sealed and in
revisions. The events these fire are the workflow's (its parts say which); the engine's own
rules are in tests/cases/test_workflow.py."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from slussen.audit import Actor
from slussen.cases.workflow import Workflow
from slussen.errors import Invalid
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter
from slussen.visits.models import Visit
from slussen.visits.services import (
    BOOKS_MAPPING_VISIT,
    MAPPING_OPEN,
    StepInput,
    booked_visit,
    current_plan,
    save_action_plan,
)
from tests.builders import make_case
from tests.conftest import TEST_PASSWORD


def ready_to_book(store: Keystore, workflow: Workflow, coach: Actor, unit: Any) -> Any:
    """A case in the first state from which the mapping visit can be booked."""
    books = workflow.transitions[workflow.event_for(BOOKS_MAPPING_VISIT)]
    state = next(name for name in workflow.states if name in books.from_states)
    return make_case(store.session, store.ring, workflow, coach, unit.id, state)


def test_booking_the_mapping_visit_through_the_page(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = ready_to_book(store, workflow, coach, unit)
    state, letters_before = case.state, len(case_letters(store, case.id))
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    page = client.get(f"/arenden/{case.id}/boka")
    assert page.status_code == 200
    response = client.post(
        f"/arenden/{case.id}/boka",
        data={
            "day": "2030-03-05",
            "time": "10:30",
            "place": "Vårdcentralen, rum 3",
            "duration": "45",
            "version": str(case.version),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    store.session.refresh(case)
    transition = workflow.transitions[workflow.event_for(BOOKS_MAPPING_VISIT)]
    assert case.state == transition.target(state)
    visit = booked_visit(store, case)
    assert visit is not None and visit.duration_minutes == 45
    assert len(case_letters(store, case.id)) == letters_before + len(transition.letters)


def test_a_booking_without_a_time_is_refused_and_changes_nothing(
    client: FlaskClient, store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = ready_to_book(store, workflow, coach, unit)
    state, version = case.state, case.version
    client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    response = client.post(
        f"/arenden/{case.id}/boka",
        data={"day": "2030-03-05", "time": "", "place": "Rum 3", "version": str(version)},
    )
    assert response.status_code == 422
    assert "Ange datum (ÅÅÅÅ-MM-DD) och tid (TT:MM)." in response.get_data(as_text=True)
    store.session.refresh(case)
    assert (case.state, case.version) == (state, version)
    assert store.session.scalars(select(Visit).where(Visit.case_id == case.id)).all() == []


def test_the_action_plan_is_kept_in_revisions(
    store: Keystore, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    early = ready_to_book(store, workflow, coach, unit)
    with pytest.raises(Invalid, match="kartläggningsbesöket"):
        save_action_plan(
            store, coach, early, workflow=workflow, goals="Mål", steps=[StepInput("Steg")]
        )
    state = next(name for name in workflow.states if name in workflow.states_for(MAPPING_OPEN))
    case = make_case(store.session, store.ring, workflow, coach, unit.id, state)
    assert current_plan(store, case) is None
    save_action_plan(
        store, coach, case, workflow=workflow, goals="Träffa andra", steps=[StepInput("Promenad")]
    )
    save_action_plan(
        store,
        coach,
        case,
        workflow=workflow,
        goals="Träffa andra varje vecka",
        steps=[StepInput("Promenad"), StepInput("Kafé på torsdagar")],
    )
    plan = current_plan(store, case)
    assert plan is not None and plan.revision == 2
    assert plan.goals == "Träffa andra varje vecka"
    assert [step.text for step in plan.steps] == ["Promenad", "Kafé på torsdagar"]


def case_letters(store: Keystore, case_id: int) -> list[QueuedLetter]:
    return list(store.session.scalars(select(QueuedLetter).where(QueuedLetter.case_id == case_id)))
