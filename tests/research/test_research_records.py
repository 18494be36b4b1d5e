"""Research records: written by the engine, the scoring, the plan and the hand-over in the same
transaction as the fact; keyed pseudonyms that name no case or patient; erased with the patient.
On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.audit import Actor
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.config import local_zone
from slussen.identifiers import PersonIdentifier
from slussen.keystore import Keystore
from slussen.patients.models import Patient
from slussen.patients.services import erase_patient
from slussen.questionnaires import services as answers
from slussen.questionnaires.definitions import forms
from slussen.questionnaires.models import QuestionnaireScore
from slussen.research import services as research
from slussen.research.models import ResearchScore, ResearchSubject
from slussen.visits.services import request_handover, update_handover
from tests.builders import identity, make_case

pytestmark = pytest.mark.usefixtures("backend")


def subject_of(session: Session, ring: vault.KeyRing, case: Case) -> ResearchSubject:
    found = session.get(ResearchSubject, research.subject_pseudonym(ring, case.id))
    assert found is not None
    return found


def today(app: Flask) -> dt.date:
    with app.app_context():
        return dt.datetime.now(local_zone()).date()


def test_a_case_gets_its_subject_when_it_is_opened_and_its_steps_as_they_happen(
    app: Flask, session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "followed_up", n=4100)
    subject = subject_of(session, ring, case)
    day = today(app)
    sex = identity(4100).identifier.sex()
    assert (subject.unit_id, subject.channel, subject.sex) == (unit.id, "phone", sex)
    assert subject.age_band == "80+"  # the builders' test series were born 1940
    assert subject.status == "open" and not subject.is_flagged
    assert subject.referred_on == day
    reached = {step: getattr(subject, f"{step}_on") for step in research.MILESTONES}
    assert reached == {
        "invitation": day,
        "baseline": day,
        "mapping_visit": day,
        "action_plan": day,
        "handover_done": None,
        "follow_up_1": day,
        "six_month": None,
    }

    fire(
        Keystore(session, ring),
        case,
        "decline",
        coach,
        workflow=workflow,
        reason="Vill inte",
        confirmed=True,
    )
    assert subject_of(session, ring, case).status == "closed_declined"


def test_a_step_keeps_its_earliest_day_and_a_flag_stays(
    session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "invited", n=4101)
    store = Keystore(session, ring)
    early = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    late = dt.datetime(2026, 4, 7, 10, tzinfo=dt.UTC)
    # A day in Swedish time: 23:30 UTC on 31 March is already 1 April in Sweden.
    for at in (late, dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC), early, late):
        research.record(store, case.id, research.Reached("handover_done", at))
    subject = subject_of(session, ring, case)
    assert subject.handover_done_on == dt.date(2026, 3, 2)
    research.record(store, case.id, research.Flagged(), research.Status("open"))
    research.record(store, case.id, research.Status("open"))
    assert subject_of(session, ring, case).is_flagged
    with pytest.raises(ValueError, match="unknown step"):
        research.Reached("interests", early)


def test_scores_are_written_with_the_answers_and_sealed_in_the_clinical_table(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit: Any,
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "invited", n=4102)
    store = Keystore(session, ring)
    with app.app_context():
        ucla3 = forms()["ucla3"]
    answered = {item.id: 3 for item in ucla3.items}
    answers.key_in_paper(
        store, coach, case, ucla3, "baseline", answered, workflow=workflow, forms=[ucla3]
    )
    row = session.scalars(select(ResearchScore)).one()
    assert (row.form_id, row.score_id, row.occasion, row.value, row.is_positive) == (
        "ucla3",
        "total",
        "baseline",
        9,
        True,
    )
    assert row.subject_pseudonym == research.subject_pseudonym(ring, case.id)
    # The clinical table holds no value in clear: one sealed field, unsealed for the case page.
    raw = session.execute(text("SELECT * FROM questionnaire_scores")).mappings().one()
    assert "value" not in raw and "is_positive" not in raw
    assert b"value" not in bytes(raw["score_enc"]) and b"true" not in bytes(raw["score_enc"])
    [summary] = answers.case_responses(store, case, {"ucla3": ucla3})["baseline"]
    assert [(s.score_id, s.value, s.is_positive) for s in summary.scores] == [("total", 9, True)]
    with pytest.raises(vault.VaultError):  # another patient's key cannot open it
        other = make_case(session, ring, workflow, coach, unit.id, "invited", n=4103)
        answers.read_score(store, other, session.scalars(select(QuestionnaireScore)).one())


def test_the_plan_and_a_done_hand_over_are_steps(
    session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    case = make_case(session, ring, workflow, coach, unit.id, "plan_active", n=4104)
    store = Keystore(session, ring)
    handover = request_handover(
        store, coach, case, workflow=workflow, organisation_name="Röda Korset"
    )
    meeting = dt.datetime(2030, 5, 6, 22, 30, tzinfo=dt.UTC)  # 7 May in Sweden
    update_handover(
        store, coach, case, handover, workflow=workflow, status="accepted", meeting_at=meeting
    )
    assert subject_of(session, ring, case).handover_done_on is None
    update_handover(
        store, coach, case, handover, workflow=workflow, status="done", meeting_at=meeting
    )
    subject = subject_of(session, ring, case)
    assert subject.handover_done_on == dt.date(2030, 5, 7)
    assert subject.action_plan_on == subject.mapping_visit_on is not None


def test_nothing_in_the_research_tables_names_a_case_or_a_patient(
    session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    cases = [
        make_case(session, ring, workflow, coach, unit.id, "invited", n=4110 + i) for i in range(3)
    ]
    subjects = session.scalars(select(ResearchSubject)).all()
    assert len(subjects) == 3
    for case in cases:
        subject = subject_of(session, ring, case)
        assert re.fullmatch("[0-9a-f]{64}", subject.pseudonym)
        assert subject.pseudonym == vault.blind_index(ring, research.CASE_PURPOSE, str(case.id))
        assert subject.patient_pseudonym == research.patient_pseudonym(ring, case.patient_id)
        # Not the access log's pseudonyms, and not computable without the ring.
        assert audit.patient_pseudonym(ring, case.patient_id)[2:] not in subject.patient_pseudonym
        assert research.subject_pseudonym(vault.KeyRing.generate(), case.id) != subject.pseudonym
    # No column is a sequential id, and SQLite keeps no rowid that would be the order of writing.
    for name in ("research_subjects", "research_scores"):
        columns = {c["name"] for c in inspect(session.connection()).get_columns(name)}
        assert not {"id", "case_id", "patient_id", "response_id"} & columns
    if session.connection().dialect.name == "sqlite":
        with pytest.raises(OperationalError, match="rowid"), session.begin_nested():
            session.execute(text("SELECT rowid FROM research_subjects"))


def test_erasing_a_patient_erases_their_research_records_and_no_one_elses(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    coordinator: Actor,
    unit: Any,
) -> None:
    store = Keystore(session, ring)
    erased, kept = (
        make_case(session, ring, workflow, coach, unit.id, "invited", n=4120 + i) for i in range(2)
    )
    for case in (erased, kept):
        research.record(store, case.id, research.Scored("ucla3", "total", "baseline", 5, False))
    patient = session.get(Patient, erased.patient_id)
    assert patient is not None
    erase_patient(store, coordinator, patient, reason="raderas efter begäran")
    assert session.get(ResearchSubject, research.subject_pseudonym(ring, erased.id)) is None
    remaining = session.scalars(select(ResearchScore.subject_pseudonym)).all()
    assert remaining == [research.subject_pseudonym(ring, kept.id)]
    assert session.scalar(select(func.count()).select_from(ResearchSubject)) == 1
    # Nothing more can be recorded about the erased patient's case.
    with pytest.raises(research.MissingSubject):
        research.record(store, erased.id, research.Status("closed_other"))


def test_a_reserve_number_gives_unknown_covariates(
    session: Session, ring: vault.KeyRing, workflow: Workflow, coach: Actor, unit: Any
) -> None:
    reserve = PersonIdentifier(kind="reserv", value="19810829M071", issuer="1.2.752.97.3.1.3")
    case = make_case(session, ring, workflow, coach, unit.id, identifier=reserve)
    subject = subject_of(session, ring, case)
    assert (subject.age_band, subject.sex) == ("unknown", "unknown")


@pytest.mark.parametrize(
    ("age", "band"),
    [(None, "unknown"), (-1, "unknown"), (0, "0-17"), (17, "0-17"), (18, "18-29"), (29, "18-29"),
     (30, "30-44"), (44, "30-44"), (45, "45-64"), (64, "45-64"), (65, "65-79"), (79, "65-79"),
     (80, "80+"), (104, "80+")],
)  # fmt: skip
def test_age_bands_at_their_boundaries(age: int | None, band: str) -> None:
    assert research.age_band(age) == band
