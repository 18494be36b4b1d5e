"""FHIR export: every form is a valid Questionnaire, a case's answers valid QuestionnaireResponses
(validated with fhir.resources' R4B models, whose Questionnaire(Response) match R4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from slussen import cli as slussen_cli
from slussen.audit import Actor
from slussen.capabilities import check_content
from slussen.cli import cli
from slussen.config import load_settings
from slussen.keystore import Keystore, current_key_ring
from slussen.questionnaires import fhir, services
from slussen.questionnaires.definitions import FormDef
from slussen.questionnaires.scoring import check_answers
from tests.builders import make_case
from tests.conftest import DemoSite

Questionnaire = pytest.importorskip("fhir.resources.R4B.questionnaire").Questionnaire
QuestionnaireResponse = pytest.importorskip(
    "fhir.resources.R4B.questionnaireresponse"
).QuestionnaireResponse

FORMS: dict[str, FormDef] = check_content(load_settings(environ={}))[0].compiled["forms"]


@pytest.mark.parametrize("form_id", sorted(FORMS))
def test_every_form_is_a_valid_fhir_questionnaire(form_id: str) -> None:
    form = FORMS[form_id]
    resource = fhir.questionnaire(form)
    model = Questionnaire.model_validate(resource)
    assert model.url.endswith(f"/Questionnaire/{fhir.fhir_id(form_id)}")
    questions = [q for group in model.item for q in group.item]
    assert [q.linkId for q in questions] == [i for g in form.groups for i in g.items]
    for question, item in zip(questions, (form.item(q.linkId) for q in questions), strict=True):
        if item.type == "choice":
            codes = [int(o.valueCoding.code) for o in question.answerOption]
            assert codes == list(item.codes)
    if form.licence != "free":
        assert model.status == "draft" and form.copyright in model.copyright


def test_export_fhir_command_writes_every_form(cli_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "fhir"
    result = CliRunner().invoke(cli, ["forms", "export-fhir", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("*.json"))
    assert files == sorted(f"Questionnaire-{fhir.fhir_id(f)}.json" for f in FORMS)
    for path in out.glob("*.json"):
        Questionnaire.model_validate(json.loads(path.read_text()))


def test_a_cases_answers_are_valid_questionnaire_responses(
    app: Flask, session: Session, make_user: Callable[..., Any], unit: Any
) -> None:
    workflow = app.extensions["slussen.content"].compiled["workflow"]
    coach = Actor.of(make_user("coach"))
    with app.app_context():
        store = Keystore(session, current_key_ring())
        case = make_case(session, store.ring, workflow, coach, unit.id, "invited")
        for form_id, raw in {
            "ucla3": {"lack_companionship": 2, "left_out": 3},
            "barriers": {"cost": 1, "in_own_words": "Bussen går sällan"},
            "ons4": {"life_satisfaction": 0, "anxious_yesterday": 10},
        }.items():
            form = FORMS[form_id]
            checked = check_answers(form, raw, require=False)
            stored = services.record_response(
                store, coach, case, form, "baseline", checked, source="paper"
            )
            resource = fhir.questionnaire_response(
                form,
                stored.response,
                services.read_answers(store, case, stored.response),
                case_reference=case.reference,
            )
            model = QuestionnaireResponse.model_validate(resource)
            assert model.questionnaire == f"{fhir.canonical(form)}|1"
            assert model.subject.identifier.value == case.reference
            answered = {q.linkId: q.answer[0] for g in model.item for q in g.item}
            if form_id == "ucla3":
                assert set(answered) == {"lack_companionship", "left_out"}
                assert answered["left_out"].valueCoding.code == "3"
            if form_id == "barriers":
                assert answered["cost"].valueBoolean is True
                assert answered["transport"].valueBoolean is False
                assert answered["in_own_words"].valueString == "Bussen går sällan"


def test_demo_cases_have_answers_and_export_as_responses(
    cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re as regex

    monkeypatch.setenv("SLUSSEN_USE_DEMO_FORMS", "1")
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    first = runner.invoke(cli, ["demo", "--password", "ett långt demolösenord"])
    assert first.exit_code == 0, first.output
    assert "Demo cases with questionnaires created now: 4." in first.output
    code = regex.search(r"Answer code of a demo letter \(case (S\d\d-\d+)\): (\S+)", first.output)
    assert code is not None
    again = runner.invoke(cli, ["demo", "--password", "ett långt demolösenord"])
    assert "Demo cases with questionnaires created now: 0." in again.output

    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{cli_env / 'slussen.sqlite3'}")
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT reference, state FROM cases")).all())
        events = {r for (r,) in conn.execute(text("SELECT event FROM case_events"))}
    engine.dispose()
    # (the first assessed one goes on to sluss 2: its hand-over request waits for the association)
    assert sorted(states.values()) == ["assessed", "evaluated", "invited", "plan_active"]
    # The demo flags and resolves a screening: the history keeps those events sealed.
    assert "sealed" in events and not {"flag_screening", "resolve_screening"} & events
    evaluated = next(ref for ref, state in states.items() if state == "evaluated")
    out = tmp_path / "fhir"
    result = runner.invoke(cli, ["forms", "export-fhir", str(out), "--case", evaluated])
    assert result.exit_code == 0, result.output
    responses = list(out.glob("QuestionnaireResponse-*.json"))
    assert len(responses) >= 10
    for path in responses:
        QuestionnaireResponse.model_validate(json.loads(path.read_text()))


def test_the_answers_export_holds_no_write_lock_and_is_audited_before_the_files(
    demo_site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While `forms export-fhir --case` reads and decrypts the answers, the case's unit can
    append to its access log chain (the one the export's audit row goes to); the files are
    written only once that audit row is committed (no audit row, no data)."""
    engine = create_engine(demo_site.url)
    with engine.connect() as conn:
        case_id, reference, unit_id = conn.execute(
            text(
                "SELECT c.id, c.reference, c.unit_id FROM cases c WHERE EXISTS "
                "(SELECT 1 FROM questionnaire_responses r WHERE r.case_id = c.id) "
                "ORDER BY c.id LIMIT 1"
            )
        ).one()
    engine.dispose()
    waits: dict[str, float] = {}
    real_response = fhir.questionnaire_response

    def response(*args: Any, **kwargs: Any) -> dict[str, Any]:
        waits["while reading the answers"] = demo_site.append_audit_row(unit_id)
        return real_response(*args, **kwargs)

    real_write_private = slussen_cli.write_private

    def write_private(path: Path, data: bytes) -> None:
        if path.name.startswith("QuestionnaireResponse-"):
            exported = demo_site.audited("export", "questionnaire_response")
            assert exported == [str(case_id)], "no audit row, no data"
            waits["while writing the files"] = demo_site.append_audit_row(unit_id)
        real_write_private(path, data)

    monkeypatch.setattr(fhir, "questionnaire_response", response)
    monkeypatch.setattr(slussen_cli, "write_private", write_private)
    out = tmp_path / "fhir"
    result = CliRunner().invoke(cli, ["forms", "export-fhir", str(out), "--case", reference])
    assert result.exit_code == 0, result.output
    assert set(waits) == {"while reading the answers", "while writing the files"}
    assert max(waits.values()) < 1.0, waits
    assert list(out.glob("QuestionnaireResponse-*.json"))
