"""Build cases in a given state by firing the real workflow events, never by setting columns."""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor
from slussen.cases.engine import fire, screening_of
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.directory.models import ActivityRevision
from slussen.directory.schedule import WEEKDAY_CODES
from slussen.directory.services import ActivityData, create_organisation, submit_activity
from slussen.identifiers import luhn_check_digit, parse_person_identifier
from slussen.intake.services import refer_patient
from slussen.keystore import Keystore, current_key_ring
from slussen.paths import shipped_dir
from slussen.patients.services import PatientIdentity
from slussen.questionnaires.definitions import FormDef, compile_form
from slussen.questionnaires.scoring import check_answers
from slussen.questionnaires.services import REGISTERED_BY, find_response, record_response
from slussen.visits.services import (
    BOOKS_MAPPING_VISIT,
    RECORDS_FOLLOW_UP_1,
    RECORDS_FOLLOW_UP_2,
    RECORDS_HANDOVER_OUTCOME,
    RECORDS_MAPPING_VISIT,
    StepInput,
    answer_handover,
    book_mapping_visit,
    record_follow_up,
    record_handover_outcome,
    record_mapping_visit,
    request_handover,
    save_action_plan,
)

FUTURE = dt.datetime(2030, 3, 5, 9, 0, tzinfo=dt.UTC)
_serial = iter(range(10**6))


def sample_pnr(n: int) -> str:
    """The n-th test personnummer of Skatteverket's test series (birth numbers 980–999)."""
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=n // 20)
    serial = 980 + n % 20
    nine = f"{birth:%y%m%d}{serial}"
    return f"{birth:%Y%m%d}{serial}{luhn_check_digit(nine)}"


def identity(n: int | None = None, **changes: Any) -> PatientIdentity:
    n = next(_serial) if n is None else n
    values: dict[str, Any] = {
        "identifier": parse_person_identifier(sample_pnr(n)),
        "name": f"Testperson {n}",
        "street": f"Provgatan {n % 90 + 1}",
        "postcode": "722 15",
        "town": "Västerås",
        "phone": "070-000 00 00",
    }
    values.update(changes)
    return PatientIdentity(**values)


def path_to(workflow: Workflow, state: str) -> list[str]:
    """The shortest list of events leading from the initial state to `state` (in file order
    where paths are equally short), found in the workflow itself, so that it works on any
    workflow, a renamed one too."""
    paths: dict[str, list[str]] = {workflow.initial: []}
    frontier = [workflow.initial]
    while frontier and state not in paths:
        following = []
        for current in frontier:
            for t in workflow.events_from(current):
                target = t.target(current)
                if target not in paths:
                    paths[target] = [*paths[current], t.event]
                    following.append(target)
        frontier = following
    return paths[state]


@functools.cache
def shipped_form(form_id: str) -> FormDef:
    """A shipped form's definition (forms/<id>.toml), without an app."""
    path = shipped_dir("forms") / f"{form_id}.toml"
    with path.open("rb") as fh:
        form, problems = compile_form(tomllib.load(fh), path)
    assert form is not None, [str(p) for p in problems]
    return form


def key_in_first_form(
    store: Keystore, actor: Actor, case: Case, workflow: Workflow, occasion: str
) -> None:
    """Key in the occasion's first form on paper with every item left empty (the answers the
    event registering the occasion needs, without the answer service moving the case)."""
    first = workflow.questionnaires["baseline" if occasion == "baseline" else "six_month"][0]
    form = shipped_form(first)
    if find_response(store.session, case, form.id, occasion) is not None:
        return
    record_response(
        store, actor, case, form, occasion, check_answers(form, {}, require=False), source="paper"
    )


def make_case(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit_id: int,
    state: str | None = None,
    **identity_changes: Any,
) -> Case:
    """A case in `state` (default: the initial state), reached by the real events and the
    services that fire them (the visit's booking, the plan and its visit, the follow-ups; which
    events those are the workflow's parts say); `coach` must work in `unit_id`."""
    store = Keystore(session, ring)
    case = refer_patient(
        store,
        coach,
        workflow=workflow,
        identity=identity(**identity_changes),
        unit_id=unit_id,
        channel="phone",
        reason="Ringde själv och vill träffa fler",
        is_consent_to_contact=True,
    ).case
    state = state or workflow.initial
    books = workflow.event_for(BOOKS_MAPPING_VISIT)
    records_visit = workflow.event_for(RECORDS_MAPPING_VISIT)
    follow_ups = {workflow.event_for(RECORDS_FOLLOW_UP_1), workflow.event_for(RECORDS_FOLLOW_UP_2)}
    handed_over = workflow.event_for(RECORDS_HANDOVER_OUTCOME)
    registers = {workflow.event_for(part): occasion for occasion, part in REGISTERED_BY.items()}
    for event in path_to(workflow, state):
        if event == books:
            book_mapping_visit(
                store,
                coach,
                case,
                workflow=workflow,
                starts_at=FUTURE,
                place="Vårdcentralen, rum 3",
            )
        elif event == records_visit:
            save_action_plan(
                store,
                coach,
                case,
                workflow=workflow,
                goals="Träffa andra en gång i veckan",
                steps=[StepInput(text="Gå med i promenadgruppen")],
            )
            record_mapping_visit(store, coach, case, workflow=workflow)
        elif event == handed_over:
            # Sluss 2: an association is asked, accepts, and the patient came.
            handover = request_handover(
                store, coach, case, workflow=workflow, organisation_name="Träffpunkten"
            )
            answer_handover(store, coach, case, handover, workflow=workflow, is_accepted=True)
            record_handover_outcome(store, coach, case, handover, workflow=workflow, outcome="went")
        elif event in follow_ups:
            record_follow_up(store, coach, case, workflow=workflow, how_it_went="Bra")
        elif event in registers:
            key_in_first_form(store, coach, case, workflow, registers[event])
            fire(store, case, event, coach, workflow=workflow)
        else:
            fire(
                store,
                case,
                event,
                coach,
                workflow=workflow,
                reason="Skäl",
                note="Anteckning",
                confirmed=True,
            )
    session.flush()
    assert case.state == state
    return case


def screening(app: Flask, session: Session, case: Case) -> str | None:
    """The case's screening result, unsealed (what the case page shows)."""
    with app.app_context():
        return screening_of(Keystore(session, current_key_ring()), case)


def publish_activity(session: Session, coordinator: Any, **changes: Any) -> ActivityRevision:
    """A published directory activity (with its own organisation), through the directory's
    services: the coordinator's own entry is published at once. By default a walk every week
    on the weekday of FUTURE at 14.00 from the week before it, free of charge."""
    first = FUTURE.date() - dt.timedelta(days=7)
    values: dict[str, Any] = {
        "title": "Promenad med fika",
        "description": "Vi går en lugn runda och fikar efteråt.",
        "categories": ["nature_walks"],
        "first_date": first,
        "start_time": dt.time(14, 0),
        "duration_minutes": 90,
        "rrule": "FREQ=WEEKLY;BYDAY=" + WEEKDAY_CODES[first.weekday()],
        "place_name": "Stadsparken",
        "street": "Parkgatan 1",
        "postcode": "722 11",
        "town": "Västerås",
        "area": "Centrum",
        "languages": ["sv"],
        "contact_name": "Eva Ek",
        "contact_phone": "021-12 34 56",
    }
    values.update(changes)
    organisation = create_organisation(
        session, coordinator, name=f"Förening {next(_serial)}", sector="ideburen"
    )
    return submit_activity(
        session,
        coordinator,
        organisation,
        ActivityData(**values),
        known_categories=values["categories"],
        # Checked the day before its first occasion: occasions are kept from then on.
        today=values["first_date"] - dt.timedelta(days=1),
    )


def demo_app(folder: Path, password: str, **settings: Any) -> tuple[Flask, list[str]]:
    """A development app on a SQLite file in `folder` holding the demo data (migrated, seeded
    with `password` for every demo login), with `settings` added; and what the demo reported."""
    from slussen import demo, migrate
    from slussen.app import create_app
    from slussen.db import engine

    app = create_app(
        {
            "env": "development",
            "instance_dir": str(folder / "instance"),
            "secret_key": "demo-test-secret-that-is-long-enough-12345",
            "database_url": f"sqlite:///{folder / 'demo.sqlite3'}",
            "argon2_time_cost": 1,
            "argon2_memory_kib": 8,
            "use_demo_forms": True,
            **settings,
        }
    )
    with app.app_context():
        migrate.upgrade(engine())
        report = demo.seed(app, password=password)
    return app, report
