"""`slussen demo --cases N`: the demo drives the real services, spreads cases over every state,
keeps the access log's chain, and a rerun (after a smaller run or a crash) adds only the missing
cases, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.audit import SYSTEM, Actor, AuditEvent, patient_pseudonym, verify_chain
from slussen.cases.engine import TransitionRefused, fire, open_case
from slussen.cases.models import Case, CaseEvent, DueDate
from slussen.cases.workflow import Workflow
from slussen.config import today_local
from slussen.demo import cases as demo
from slussen.demo import walk
from slussen.demo.context import DemoContext
from slussen.keystore import Keystore, open_key_ring
from slussen.letterqueue import QueuedLetter
from slussen.patients.models import Patient
from slussen.patients.services import find_patient_id, read_patient, register_patient
from tests.builders import identity
from tests.conftest import TEST_PASSWORD


def _seed(app: Flask, cases: int, units: int = 3) -> DemoContext:
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
    return ctx


def _counts(session: Session) -> tuple[int | None, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(model))
        for model in (Patient, Case, CaseEvent, QueuedLetter, AuditEvent)
    )


def _one_case_per_patient(session: Session) -> None:
    per_patient = session.execute(
        select(Case.patient_id, func.count()).group_by(Case.patient_id)
    ).all()
    assert all(count == 1 for _patient, count in per_patient)


def test_demo_reaches_every_state_keeps_the_chain_and_reruns_add_nothing(
    backend: str, app: Flask, session: Session, client: FlaskClient, workflow: Workflow
) -> None:
    _seed(app, 30, units=4)
    states = set(session.scalars(select(Case.state)))
    assert states == set(workflow.states)
    ring = open_key_ring(app.extensions["slussen.settings"])
    assert verify_chain(session, ring).ok
    counts = _counts(session)
    assert counts[1] == 30
    _one_case_per_patient(session)

    _seed(app, 30, units=4)
    assert _counts(session) == counts

    # Every case has its history through the engine, and the access log has the patient's
    # registration, the case's opening and one row per event.
    for case in session.scalars(select(Case)):
        events = list(
            session.scalars(select(CaseEvent.to_state).where(CaseEvent.case_id == case.id))
        )
        assert events and events[-1] == case.state
        pseudonym = patient_pseudonym(ring, case.patient_id)
        audited = session.execute(
            select(AuditEvent.action, AuditEvent.object_type).where(
                AuditEvent.patient_pseudonym == pseudonym, AuditEvent.action != "read"
            )
        ).all()
        assert ("create", "patient") in audited and ("create", "case") in audited
        assert audited.count(("update", "case")) >= len(events) - 1
    # Letters were queued by the events, e.g. the invitation of every invited case.
    assert session.scalar(select(func.count()).select_from(QueuedLetter))

    # A seeded patient is found by personnummer, and the case page shows the decrypted name.
    store = Keystore(session, ring)
    patient_id = find_patient_id(store, demo._identifier(demo.case_personnummer(0)))
    assert patient_id is not None
    case = session.scalar(select(Case).where(Case.patient_id == patient_id))
    assert case is not None
    patient = session.get(Patient, patient_id)
    assert patient is not None
    name = read_patient(store, Actor(None, "test", "system"), patient, purpose="test").name
    coach = session.scalar(
        select(AuditEvent.actor_name).where(
            AuditEvent.object_id == str(case.id),
            AuditEvent.actor_role == "coach",
        )
    )
    response = client.post("/login", data={"username": coach, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    page = client.get(f"/arenden/{case.id}")
    assert page.status_code == 200
    assert name in page.get_data(as_text=True)


def test_demo_resumes_after_a_smaller_run_and_after_a_crash(
    backend: str, app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _seed(app, 12)
    assert "12 seeded now" in ctx.report[-1]
    assert session.scalar(select(func.count()).select_from(Case)) == 12

    # A crash in the third slice: the slices before it stay, the broken one leaves nothing.
    # (Slices of four cases, or fewer when one runs out of time: 6 to 9 of the 9 before it.)
    monkeypatch.setattr(demo, "SLICE", 4)
    real = demo.seed_case

    def crash_at_21(sluss: walk.Sluss, coach: Actor, unit_id: int, index: int) -> Case:
        if index == 21:
            raise RuntimeError("the power went")
        return real(sluss, coach, unit_id, index)

    monkeypatch.setattr(demo, "seed_case", crash_at_21)
    with pytest.raises(RuntimeError):
        _seed(app, 30)
    session.expire_all()
    kept = int(session.scalar(select(func.count()).select_from(Case)) or 0)
    assert 18 <= kept <= 21
    store = Keystore(session, open_key_ring(app.extensions["slussen.settings"]))
    assert demo.missing_cases(store, 30) == list(range(kept, 30))
    # No patient of the broken slice is left without its case.
    assert session.scalar(select(func.count()).select_from(Patient)) == kept

    monkeypatch.setattr(demo, "seed_case", real)
    ctx = _seed(app, 30)
    assert f"{30 - kept} seeded now" in ctx.report[-1]
    assert f"{kept} existed already" in ctx.report[-1]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Case)) == 30
    _one_case_per_patient(session)
    assert demo.missing_cases(store, 30) == []
    assert verify_chain(session, store.ring).ok


def test_demo_due_dates_spread_and_leave_todays_tick_nothing(
    backend: str, app: Flask, session: Session, workflow: Workflow
) -> None:
    """Mapping visits fall before and after today; no due date a timer acts on (`slussen
    tick`) falls today or earlier, so loading the demo does not make the tick fire at once."""
    _seed(app, 120)
    today = today_local()
    timer_dues = {timer.due for timer in workflow.timers}
    dues = session.execute(select(DueDate.name, DueDate.due_on)).all()
    assert dues
    assert all(day > today for name, day in dues if name in timer_dues)
    offsets = {(day - today).days for name, day in dues if name not in timer_dues}
    assert min(offsets) < 0 < max(offsets)


def test_the_demo_plan_is_the_same_for_a_case_number_on_every_run() -> None:
    import random

    first = [demo.plan_case(i, random.Random(f"{demo.SEED}:{i}")) for i in range(200)]
    again = [demo.plan_case(i, random.Random(f"{demo.SEED}:{i}")) for i in range(200)]
    assert first == again
    numbers = [demo.case_personnummer(i) for i in range(400)]
    assert len(set(numbers)) == len(numbers)
    from slussen.demo.patients import demo_personnummer_set

    assert not set(numbers) & demo_personnummer_set()


def test_walk_finds_the_plain_events_in_the_workflow(workflow: Workflow) -> None:
    """The demo names no event: from the initial state one event moves a case on, and every
    state the sluss passes through can be closed."""
    invitation = walk.forward_event(workflow, workflow.initial)
    assert not workflow.states[invitation.to].is_terminal
    for name, state in workflow.states.items():
        if not state.is_terminal:
            assert walk.closing_events(workflow, name), name


def test_fire_refuses_and_writes_nothing(
    backend: str, app: Flask, store: Keystore, workflow: Workflow, make_user: Any, unit: Any
) -> None:
    """The rules the demo relies on, on the one path: a guard (no consent), a state the event
    does not fire from, a missing reason; each refusal leaves no history or audit row."""
    coach = Actor.of(make_user("coach"))
    session = store.session
    cases = []
    for consent in (True, False):
        patient = register_patient(store, coach, identity(), purpose="remiss", unit_id=unit.id)
        cases.append(
            open_case(
                store,
                SYSTEM,
                workflow=workflow,
                patient_id=patient.id,
                unit_id=unit.id,
                channel="phone",
                is_consent_to_contact=consent,
            )
        )
    invitation = walk.forward_event(workflow, workflow.initial)
    answered = walk.forward_event(workflow, invitation.to)
    reasoned = next(t for t in walk.closing_events(workflow, workflow.initial) if t.requires)
    before = _counts(session)
    with pytest.raises(TransitionRefused, match="samtyckt"):
        fire(store, cases[1], invitation.event, coach, workflow=workflow)
    with pytest.raises(TransitionRefused):
        fire(store, cases[0], answered.event, coach, workflow=workflow)
    with pytest.raises(TransitionRefused, match="skäl"):
        fire(store, cases[0], reasoned.event, coach, workflow=workflow)
    assert _counts(session) == before
    assert {case.state for case in cases} == {workflow.initial}
