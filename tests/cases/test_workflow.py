"""The workflow: content checks, every (state, event, role) triple, units, guards, concurrency,
the daily tick."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor, AuditEvent
from slussen.cases.engine import (
    StaleCase,
    TransitionRefused,
    allowed_events,
    fire,
    previous_state,
    screening_of,
)
from slussen.cases.models import Case, CaseEvent, StateWriteRefused
from slussen.cases.workflow import Workflow
from slussen.errors import NotFound
from slussen.keystore import Keystore
from slussen.letterqueue import QueuedLetter
from slussen.visits.services import StepInput, save_action_plan
from tests.builders import key_in_first_form, make_case, path_to
from tests.conftest import ROLES

#: The guards that ask for registered answers, by occasion.
ANSWERED_GUARDS = {"baseline": "baseline_answered", "six_month": "six_month_answered"}


def snapshot(session: Session, case: Case) -> tuple[Any, ...]:
    count = lambda model: session.scalar(  # noqa: E731
        select(func.count()).select_from(model).where(model.case_id == case.id)
    )
    return (
        case.state,
        case.version,
        count(CaseEvent),
        count(QueuedLetter),
        session.scalar(select(func.count()).select_from(AuditEvent)),
    )


def test_every_state_event_role_triple(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    """Allowed triples move the case and write history and audit; refused ones change nothing."""
    store = Keystore(session, ring)
    checked = allowed = 0
    for state in workflow.states:
        case = make_case(session, ring, workflow, actors["coach"], unit.id, state)
        if state == "mapping_booked":  # so the has_action_plan guard passes
            save_action_plan(
                store,
                actors["coach"],
                case,
                workflow=workflow,
                goals="Mål",
                steps=[StepInput("Steg")],
            )
        for event, transition in workflow.transitions.items():
            for role in ROLES:
                outer = session.begin_nested()
                if (
                    "screening_positive" in transition.guards
                    and not workflow.states[state].is_terminal
                ):
                    # Resolving needs a positive screening to resolve.
                    fire(store, case, "flag_screening", actors["system"], workflow=workflow)
                for occasion, guard in ANSWERED_GUARDS.items():
                    if guard in transition.guards:  # registering answers needs some
                        key_in_first_form(store, actors["coach"], case, workflow, occasion)
                previous = previous_state(session, case)
                before = snapshot(session, case)
                nested = session.begin_nested()
                should_work = state in transition.from_states and role in transition.roles
                # An association's user acts only on a case granted for the request (a
                # hand-over addressed to their organisation; slussen.associations grants it).
                actor = actors[role]
                if role == "org_rep":
                    actor = dataclasses.replace(actor, case_ids=frozenset({case.id}))
                try:
                    fire(
                        store,
                        case,
                        event,
                        actor,
                        workflow=workflow,
                        reason="skäl",
                        note="anteckning",
                        visit=object(),
                        handover=object(),
                        confirmed=True,
                    )
                except (TransitionRefused, NotFound) as refused:
                    assert not should_work, f"{state} {event} {role}: {refused}"
                    assert str(refused)  # a reason a person can read
                    nested.rollback()
                    session.refresh(case)
                    assert snapshot(session, case) == before
                else:
                    assert should_work, f"{state} {event} {role} should be refused"
                    assert case.state == transition.target(state, previous)
                    after = snapshot(session, case)
                    assert after[1] > before[1]  # a new version
                    assert after[2] == before[2] + 1  # one history row
                    assert after[3] == before[3] + len(transition.letters)
                    assert after[4] == before[4] + 1  # one audit row
                    if transition.screening:
                        assert screening_of(store, case) == transition.screening
                    allowed += 1
                    nested.rollback()
                    session.refresh(case)
                outer.rollback()
                session.refresh(case)
                checked += 1
    assert checked == len(workflow.states) * len(workflow.transitions) * len(ROLES)
    assert allowed > 20


def test_refusals_say_why_in_swedish(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "referred")
    with pytest.raises(TransitionRefused, match="när ärendet är ”Inkommen”"):
        fire(store, case, "record_follow_up", actors["coach"], workflow=workflow, note="x")
    with pytest.raises(TransitionRefused, match="Din roll får inte"):
        fire(store, case, "invite", actors["staff"], workflow=workflow)
    with pytest.raises(TransitionRefused, match="Ange ett skäl"):
        fire(store, case, "decline", actors["coach"], workflow=workflow, reason="  ")
    with pytest.raises(TransitionRefused, match="finns inte"):
        fire(store, case, "fly_away", actors["coach"], workflow=workflow)


def test_guards_at_their_boundaries(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    coach = actors["coach"]
    case = make_case(session, ring, workflow, coach, unit.id, "referred")
    case.is_consent_to_contact = False
    with pytest.raises(TransitionRefused, match="samtyckt"):
        fire(store, case, "invite", coach, workflow=workflow)
    case.is_consent_to_contact = True
    fire(store, case, "invite", coach, workflow=workflow)

    booked = make_case(session, ring, workflow, coach, unit.id, "assessed")
    with pytest.raises(TransitionRefused, match="ingen positiv screening"):
        fire(store, booked, "resolve_screening", coach, workflow=workflow)
    fire(store, booked, "flag_screening", actors["patient"], workflow=workflow)
    with pytest.raises(TransitionRefused, match="redan flaggad"):
        fire(store, booked, "flag_screening", actors["patient"], workflow=workflow)
    with pytest.raises(TransitionRefused, match="Screeningen"):
        fire(store, booked, "book_mapping_visit", coach, workflow=workflow, visit=object())
    fire(store, booked, "resolve_screening", coach, workflow=workflow)
    # A resolved screening is not flagged again.
    with pytest.raises(TransitionRefused, match="redan flaggad"):
        fire(store, booked, "flag_screening", actors["system"], workflow=workflow)
    fire(store, booked, "book_mapping_visit", coach, workflow=workflow, visit=object())
    with pytest.raises(TransitionRefused, match="handlingsplanen"):
        fire(store, booked, "record_mapping_visit", coach, workflow=workflow)
    save_action_plan(
        store, coach, booked, workflow=workflow, goals="Mål", steps=[StepInput(text="Steg")]
    )
    fire(store, booked, "record_mapping_visit", coach, workflow=workflow)
    assert booked.state == "plan_active"


def test_coach_of_another_unit_is_not_permitted(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    actors: dict[str, Actor],
    unit: Any,
    make_user: Any,
) -> None:
    from slussen.accounts.models import Unit

    other = Unit(
        name="Annan VC",
        hsa_id="SE2321000016-OTH1",
        street="Gata 1",
        postcode="111 22",
        town="Stockholm",
        phone="08-1",
    )
    session.add(other)
    session.flush()
    stranger = Actor.of(make_user("coach", "coach_b", units=[other]))
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "referred")
    with pytest.raises(NotFound):  # 404, never a hint that the case exists
        fire(Keystore(session, ring), case, "invite", stranger, workflow=workflow)
    assert allowed_events(workflow, case, stranger) == []
    assert case.state == "referred"


def test_state_cannot_be_assigned_outside_the_engine(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "referred")
    with pytest.raises(StateWriteRefused):
        case.state = "closed_completed"
    with pytest.raises(StateWriteRefused):
        case.screening_enc = b"resolved"


def test_stale_version_is_refused(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "referred")
    seen = case.version
    fire(Keystore(session, ring), case, "invite", actors["coach"], workflow=workflow)
    with pytest.raises(StaleCase):
        fire(
            Keystore(session, ring),
            case,
            "decline",
            actors["coach"],
            workflow=workflow,
            reason="x",
            expected_version=seen,
        )


def test_due_dates_and_letters_follow_the_file(
    session: Session, ring: vault.KeyRing, workflow: Workflow, actors: dict[str, Actor], unit: Any
) -> None:
    store = Keystore(session, ring)
    case = make_case(session, ring, workflow, actors["coach"], unit.id, "referred")
    fire(store, case, "invite", actors["coach"], workflow=workflow, today=dt.date(2026, 3, 2))
    dues = {d.name: d.due_on for d in case.due_dates}
    assert dues == {"reminder": dt.date(2026, 3, 16), "no_response": dt.date(2026, 3, 30)}
    assert case.next_due_on == dt.date(2026, 3, 16)
    letters = session.scalars(select(QueuedLetter.letter).where(QueuedLetter.case_id == case.id))
    assert list(letters) == ["kallelse"]


def test_the_paths_cover_every_state(workflow: Workflow) -> None:
    assert path_to(workflow, "closed_completed")[-1] == "complete"
    for state in workflow.states:
        assert path_to(workflow, state) or state == workflow.initial


BROKEN = [
    ('to = "invited"', 'to = "invitd"', "unknown state 'invitd' in to"),
    (
        'roles = ["coach", "coordinator"]\nguards = ["consented_to_contact"]',
        'roles = ["coach", "wizard"]\nguards = ["consented_to_contact"]',
        "unknown role 'wizard'",
    ),
    (
        'guards = ["consented_to_contact"]',
        'guards = ["moon_is_full"]',
        "unknown guard 'moon_is_full'",
    ),
    ('letters = ["kallelse"]', 'letters = ["kalle"]', "letter 'kalle' has no template"),
    (
        'requires = ["note"]\nclear = ["follow_up_1"]',
        'requires = ["photo"]\nclear = ["follow_up_1"]',
        "unknown data 'photo'",
    ),
    (
        "[states.referred]",
        '[states.lost]\nlabel = { sv = "Borta", en = "Lost" }\n\n[states.referred]',
        "state 'lost' cannot be reached",
    ),
    (
        'en = "Closed – other reason" }\nterminal = true',
        'en = "Closed – other reason" }',
        "state 'closed_other' is not terminal but has no way out",
    ),
    ('event = "remind"\nlabel', 'event = "invite"\nlabel', "event 'invite' is declared twice"),
    ('event = "remind"\nlabel', 'event = "Remind me"\nlabel', "transition needs event"),
    ('to = "invited"\nroles', 'when = "always"\nto = "invited"\nroles', "unknown key 'when'"),
    ('screening = "positive"', 'screening = "maybe"', "screening = 'positive' | 'resolved'"),
    (
        'from = ["invited"]\nto = "invited"',
        'from = ["invited", "lost"]\nto = "invited"',
        "unknown state 'lost' in from",
    ),
    (
        'from = ["invited"]\nto = "invited"',
        'from = ["closed_other"]\nto = "invited"',
        "'closed_other' is terminal",
    ),
    (
        'roles = ["coach", "coordinator", "system"]\nletters = ["reminder"]',
        'roles = []\nletters = ["reminder"]',
        'roles = ["coach", …] is missing',
    ),
    (
        'due = { reminder = "14d", no_response = "28d" }',
        'due = { reminder = "two weeks" }',
        'due = { name = "14d"',
    ),
    (
        'initial = "referred"',
        'initial = "nowhere"',
        "initial state 'nowhere' is not a declared state",
    ),
    (
        'opening_due = { first_contact = "3d" }',
        'opening_due = { first_contact = "soon" }',
        "opening_due = { name =",
    ),
    (
        'due = "reminder"\nstates = ["invited"]\nevent = "remind"',
        'event = "shout"\ndue = "reminder"\nstates = ["invited"]',
        "timer: unknown event 'shout'",
    ),
    (
        'due = "reminder"\nstates = ["invited"]\nevent = "remind"',
        'due = "someday"\nstates = ["invited"]\nevent = "remind"',
        "timer: no transition sets the due date 'someday'",
    ),
    (
        'due = "reminder"\nstates = ["invited"]\nevent = "remind"',
        'states = ["assessed"]\ndue = "reminder"\nevent = "remind"',
        "timer: event 'remind' cannot fire in state 'assessed'",
    ),
    (
        'books_mapping_visit = "book_mapping_visit"',
        'books_mapping_visit = "book_visit"',
        "books_mapping_visit = 'book_visit' is not a declared event",
    ),
    (
        'mapping_open = ["mapping_booked", "plan_active", "handed_over", "followed_up"]',
        'mapping_open = ["mapping_booked", "daydreaming"]',
        "unknown state(s) 'daydreaming'",
    ),
    (
        'screening = ["mini_spin"]',
        'screening = ["mini_spin", "tarot"]',
        "form 'tarot' does not exist",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN)
def test_broken_workflow_gives_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    from slussen.capabilities import check_content
    from slussen.config import load_settings
    from slussen.paths import shipped_dir

    text = (shipped_dir("workflows") / "sluss.toml").read_text()
    assert old in text, old
    broken = text.replace(old, new, 1)
    (tmp_path / "workflows").mkdir()
    path = tmp_path / "workflows" / "sluss.toml"
    path.write_text(broken)
    _content, problems = check_content(load_settings(environ={}), tmp_path)
    matching = [p for p in problems if message in p.message]
    assert matching, [str(p) for p in problems]
    problem = matching[0]
    assert problem.path == path
    # The line points at the offending table or key.
    line = broken.splitlines()[problem.line - 1]
    first_new_line = new.split("\n")[0]
    assert first_new_line.split("=")[0].strip() in line or line.startswith("[")


def test_app_refuses_to_start_on_a_broken_workflow(tmp_path: Path) -> None:
    from slussen.app import create_app
    from slussen.content import ContentError
    from slussen.paths import shipped_dir

    (tmp_path / "workflows").mkdir()
    text = (shipped_dir("workflows") / "sluss.toml").read_text()
    (tmp_path / "workflows" / "sluss.toml").write_text(text.replace('to = "assessed"', 'to = "x"'))
    with pytest.raises(ContentError, match=r"sluss\.toml:\d+: error: event 'register_baseline'"):
        create_app(
            {"env": "testing", "instance_dir": str(tmp_path / "i"), "content_dir": str(tmp_path)}
        )


def test_tick_moves_exactly_the_due_cases_and_twice_is_a_no_op(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    actors: dict[str, Actor],
    unit: Any,
) -> None:
    from slussen.cases.timers import run_timers

    store = Keystore(session, ring)
    coach = actors["coach"]
    early = make_case(session, ring, workflow, coach, unit.id, "referred")
    late = make_case(session, ring, workflow, coach, unit.id, "referred")
    fire(store, early, "invite", coach, workflow=workflow, today=dt.date(2026, 1, 1))
    fire(store, late, "invite", coach, workflow=workflow, today=dt.date(2026, 1, 10))
    factory = app.extensions["slussen.sessionmaker"]

    report = run_timers(factory, ring, workflow, today=dt.date(2026, 1, 15))
    assert dict(report.fired) == {"remind": 1}
    session.expire_all()
    assert {d.name for d in session.get(Case, early.id).due_dates} == {"no_response"}  # type: ignore[union-attr]
    assert {d.name for d in session.get(Case, late.id).due_dates} == {"reminder", "no_response"}  # type: ignore[union-attr]
    again = run_timers(factory, ring, workflow, today=dt.date(2026, 1, 15))
    assert not again.fired

    closing = run_timers(factory, ring, workflow, today=dt.date(2026, 1, 30))
    assert dict(closing.fired) == {"remind": 1, "close_no_response": 1}
    session.expire_all()
    assert session.get(Case, early.id).state == "closed_no_response"  # type: ignore[union-attr]
    assert session.get(Case, late.id).state == "invited"  # type: ignore[union-attr]
    letters = list(
        session.scalars(select(QueuedLetter.letter).where(QueuedLetter.case_id == early.id))
    )
    assert letters == ["kallelse", "reminder"]
    assert not run_timers(factory, ring, workflow, today=dt.date(2026, 1, 30)).fired
