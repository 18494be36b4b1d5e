"""`slussen demo --cases N`: the batch path fires the same events, with the same effects, as the
one-case services, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.audit import Actor, AuditEvent, patient_pseudonym, verify_chain
from slussen.cases.engine import (
    CaseRow,
    Firing,
    Opening,
    TransitionRefused,
    fire_many,
    open_cases,
    today_local,
)
from slussen.cases.models import Case, CaseEvent, DueDate
from slussen.cases.workflow import Workflow
from slussen.demo import DemoContext
from slussen.demo import cases as demo
from slussen.keystore import Keystore, open_key_ring
from slussen.letters.models import QueuedLetter
from slussen.patients.models import Patient
from slussen.patients.services import find_patient_id, read_patient, register_patients
from slussen.visits.models import ActionPlan, Visit
from tests.builders import identity
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def workflow(app: Flask) -> Workflow:
    result: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    return result


@pytest.fixture
def store(app: Flask, session: Session) -> Keystore:
    return Keystore(session, open_key_ring(app.extensions["slussen.settings"]))


def summary(store: Keystore, case_id: int) -> dict[str, Any]:
    """What a user (or the access log) would notice about a case."""
    session = store.session
    case = session.get(Case, case_id)
    assert case is not None
    session.refresh(case)
    pseudonym = patient_pseudonym(store.ring, case.patient_id)
    return {
        "state": case.state,
        "history": session.execute(
            select(CaseEvent.event, CaseEvent.from_state, CaseEvent.to_state, CaseEvent.actor_role)
            .where(CaseEvent.case_id == case_id)
            .order_by(CaseEvent.id)
        ).all(),
        "notes": [
            blob is not None
            for blob in session.scalars(
                select(CaseEvent.note_enc)
                .where(CaseEvent.case_id == case_id)
                .order_by(CaseEvent.id)
            )
        ],
        "due": sorted(session.scalars(select(DueDate.name).where(DueDate.case_id == case_id))),
        "next_due": case.next_due_on is not None,
        "closed": case.closed_at is not None,
        "coach": case.coach_id is not None,
        "letters": session.execute(
            select(QueuedLetter.letter, QueuedLetter.event, QueuedLetter.status)
            .where(QueuedLetter.case_id == case_id)
            .order_by(QueuedLetter.id)
        ).all(),
        "audit": session.execute(
            select(AuditEvent.action, AuditEvent.object_type, AuditEvent.purpose)
            .where(AuditEvent.patient_pseudonym == pseudonym)
            .order_by(AuditEvent.seq)
        ).all(),
        "visits": sorted(
            session.execute(
                select(Visit.kind, Visit.status, Visit.notes_enc.is_not(None)).where(
                    Visit.case_id == case_id
                )
            ).all()
        ),
        "plans": session.scalar(
            select(func.count()).select_from(ActionPlan).where(ActionPlan.case_id == case_id)
        ),
    }


def test_batch_path_matches_the_one_case_services_in_every_state(
    backend: str, app: Flask, store: Keystore, workflow: Workflow, make_user: Any, unit: Any
) -> None:
    coach = Actor.of(make_user("coach"))
    rng = random.Random(4)
    today, now = today_local(), dt.datetime.now(dt.UTC)
    states = list(demo.PATHS)
    assert set(states) == set(workflow.states)
    one_by_one = [
        demo.seed_case(store, workflow, coach, unit.id, state, 500 + i, rng).id
        for i, state in enumerate(states)
    ]
    planned = [
        demo.plan_case(
            workflow, unit.id, coach, state, demo.demo_identity(700 + i, rng), today, now, rng
        )
        for i, state in enumerate(states)
    ]
    batched = [row.id for row in demo.seed_batch(store, workflow, planned)]
    for state, single, batch in zip(states, one_by_one, batched, strict=True):
        expected, got = summary(store, single), summary(store, batch)
        assert got == expected, state
        assert got["state"] == state


def test_batch_dates_are_realistic(app: Flask, workflow: Workflow) -> None:
    """Open cases' next due dates spread around today; no timer's due date falls today or
    earlier (today's `slussen tick` would act on it); nothing happened after today."""
    rng = random.Random(7)
    today = dt.date(2026, 11, 23)
    timer_dues = {timer.due for timer in workflow.timers}
    offsets = []
    for state in demo.plan_states(600, rng):
        timeline = demo.plan_timeline(workflow, state, today, rng)
        assert all(day <= today for day in [timeline.opened, *timeline.days])
        assert all(d > today for name, d in timeline.due.items() if name in timer_dues), state
        if timeline.due:
            offsets.append((min(timeline.due.values()) - today).days)
    assert any(o < 0 for o in offsets) and 0 in offsets and any(1 <= o <= 7 for o in offsets)
    assert any(o > 7 for o in offsets)


def test_fire_many_refuses_like_fire_and_writes_nothing(
    backend: str, app: Flask, store: Keystore, workflow: Workflow, make_user: Any, unit: Any
) -> None:
    coach = Actor.of(make_user("coach"))
    session = store.session
    patients = register_patients(
        store, coach, [identity(), identity()], purpose="remiss", unit_ids=[unit.id, unit.id]
    )
    rows: list[CaseRow] = open_cases(
        store,
        [
            Opening(coach, p.patient_id, p.data_key_id, unit.id, "phone", is_consent_to_contact=c)
            for p, c in zip(patients, (True, False), strict=True)
        ],
        workflow=workflow,
    )
    before = (
        session.scalar(select(func.count()).select_from(CaseEvent)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )
    # The second case has no consent: the guard refuses, and the first is not invited either.
    with pytest.raises(TransitionRefused, match="samtyckt"):
        fire_many(store, [Firing(r, coach) for r in rows], "invite", workflow=workflow)
    with pytest.raises(TransitionRefused, match=r"Kallad|Inkommen"):
        fire_many(store, [Firing(rows[0], coach)], "register_baseline", workflow=workflow)
    with pytest.raises(TransitionRefused, match="skäl"):
        fire_many(store, [Firing(rows[0], coach)], "decline", workflow=workflow)
    after = (
        session.scalar(select(func.count()).select_from(CaseEvent)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )
    assert after == before
    assert {session.get(Case, r.id).state for r in rows} == {"referred"}  # type: ignore[union-attr]


def _seed(app: Flask, cases: int, units: int = 3) -> None:
    ctx = DemoContext(
        app=app,
        settings=app.extensions["slussen.settings"],
        password=TEST_PASSWORD,
        cases=cases,
        units=units,
    )
    factory = app.extensions["slussen.sessionmaker"]
    with app.app_context(), factory() as work:
        demo.seed_cases(work, ctx)
        work.commit()


def test_demo_reaches_every_state_keeps_the_chain_and_reruns_add_nothing(
    backend: str, app: Flask, session: Session, client: FlaskClient, workflow: Workflow
) -> None:
    _seed(app, 30, units=4)
    states = set(session.scalars(select(Case.state)))
    assert states == set(workflow.states)
    ring = open_key_ring(app.extensions["slussen.settings"])
    assert verify_chain(session, ring).ok
    counts = (
        session.scalar(select(func.count()).select_from(Case)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )
    assert counts[0] == 30

    _seed(app, 30, units=4)
    assert counts == (
        session.scalar(select(func.count()).select_from(Case)),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )

    # A seeded patient is found by personnummer, and the case page shows the decrypted name.
    store = Keystore(session, ring)
    patient_id = find_patient_id(store, demo._identifier(demo.test_series_personnummer(0)))
    assert patient_id is not None
    case = session.scalar(select(Case).where(Case.patient_id == patient_id))
    assert case is not None
    patient = session.get(Patient, patient_id)
    assert patient is not None
    name = read_patient(store, Actor(None, "test", "system"), patient, purpose="test").name
    coach = session.scalar(
        select(AuditEvent.actor_name).where(
            AuditEvent.object_id == str(case.id), AuditEvent.purpose == "ny remiss"
        )
    )
    response = client.post("/login", data={"username": coach, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(f"/arenden/{case.id}")
    assert page.status_code == 200
    assert name in page.get_data(as_text=True)
