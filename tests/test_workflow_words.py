"""The workflow's words live only in workflows/: no code outside the engine names a state or an
event, the content check names the code needing a part the workflow does not play, and the whole
chain runs on a copy of sluss.toml with every state and event renamed. The screening flag goes
through the engine (history, access log, version)."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.cases.models import Case, CaseEvent
from slussen.cases.workflow import (
    Need,
    Workflow,
    declared_needs,
    needs_event,
    unplayed_parts,
)
from slussen.paths import shipped_dir
from tests.builders import screening
from tests.chain import ChainWalk, PlanStepRow
from tests.conftest import settings_for_tests
from tests.intake.test_referral_pages import self_refer

SLUSSEN = Path(__file__).resolve().parent.parent / "slussen"
SHIPPED = shipped_dir("workflows") / "sluss.toml"
#: The engine and the workflow's loader may name states and events (they interpret the file).
ENGINE = {SLUSSEN / "cases" / "engine.py", SLUSSEN / "cases" / "workflow.py"}


def workflow_words(path: Path = SHIPPED) -> set[str]:
    """Every state and event name of the workflow file."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    return set(doc["states"]) | {t["event"] for t in doc["transitions"]}


def python_literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string constant of a module, the constant parts of f-strings
    included. A docstring or message is one constant, so it only matches a word that is the
    whole string."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


_QUOTED = re.compile(r"""(["'])([a-z][a-z0-9_]*)\1""")


def template_literals(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every quoted identifier-like literal of a Jinja template: in expressions
    (`case.state == "invited"`) and in HTML attributes (`value="refer_elsewhere"`) alike."""
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _QUOTED.finditer(line):
            yield number, match.group(2)


def named_words(words: set[str]) -> list[str]:
    """`file:line: word` for each workflow word written as a literal in slussen/."""
    found = []
    for path in sorted(SLUSSEN.rglob("*.py")):
        if path in ENGINE:
            continue
        for line, text in python_literals(path.read_text(encoding="utf-8")):
            if text in words:
                found.append(f"{path.relative_to(SLUSSEN.parent)}:{line}: {text}")
    for path in sorted(SLUSSEN.rglob("*.html")):
        for line, text in template_literals(path.read_text(encoding="utf-8")):
            if text in words:
                found.append(f"{path.relative_to(SLUSSEN.parent)}:{line}: {text}")
    return found


def test_no_code_outside_the_engine_names_a_state_or_an_event() -> None:
    """What counts as naming one: a Python string constant (any position: a comparison, a dict
    key, an argument) or a quoted literal in a template that is exactly a state or event name of
    the shipped sluss.toml. A word that only appears inside longer text (a docstring, a message,
    a CSV column description) is not a use. Ordinary words that happen to be workflow names are
    renamed where they mean something else (the evaluation's steps are "referral" and
    "invitation"; the screening choice is "continue" or "refer"), so the rule stays exact: the
    code asks the workflow for the parts it needs instead (`needs_event`, `needs_states`)."""
    words = workflow_words()
    assert {"invited", "book_mapping_visit", "flag_screening"} <= words
    assert named_words(words) == []


def test_the_literal_scan_finds_what_it_looks_for() -> None:
    code = 'x = case.state == "invited"\nf"{a}" + "done"\n'
    assert [text for _line, text in python_literals(code) if text in {"invited"}] == ["invited"]
    template = """{% if case.state in ('mapping_booked', "plan_active") %}<input value="x">"""
    found = [text for _line, text in template_literals(template)]
    assert {"mapping_booked", "plan_active"} <= set(found)


def test_every_needed_part_is_declared_with_its_kind(app: Flask) -> None:
    workflow: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    needs = declared_needs()
    assert {n.part for n in needs} == set(workflow.parts.events) | set(workflow.parts.states)
    assert unplayed_parts(workflow, needs) == []
    # Each declaration knows where it is.
    visits = next(n for n in needs if n.part == "books_mapping_visit")
    assert visits.path.name in {"services.py", "views.py"} and visits.line > 1


def test_a_part_the_workflow_does_not_play_is_named_with_file_and_line(app: Flask) -> None:
    workflow: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    line = _this_line() + 1
    part = needs_event("teleports_the_patient")  # declared here, played nowhere
    need = next(n for n in declared_needs() if n.part == part.name)
    try:
        assert need == Need("event", "teleports_the_patient", Path(__file__), line)
        problems = unplayed_parts(workflow, [need])
        assert [str(p) for p in problems if not p.is_warning] == [
            f"{__file__}:{line}: error: the code needs the part 'teleports_the_patient', but "
            f"{workflow.source} does not declare it in [parts.events]"
        ]
        # The wrong kind is named too.
        states_need = Need("states", "books_mapping_visit", Path(__file__), line)
        (problem,) = [p for p in unplayed_parts(workflow, [states_need]) if not p.is_warning]
        assert "declared in the other table" in problem.message
    finally:
        from slussen.cases import workflow as module

        module._NEEDS.remove(need)


def _this_line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_the_content_check_refuses_a_part_naming_no_event(tmp_path: Path) -> None:
    from slussen.capabilities import check_content
    from slussen.config import load_settings

    text = SHIPPED.read_text(encoding="utf-8")
    broken = text.replace(
        'books_mapping_visit = "book_mapping_visit"', 'books_mapping_visit = "book_visit"'
    )
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "sluss.toml").write_text(broken, encoding="utf-8")
    _content, problems = check_content(load_settings(environ={}), tmp_path)
    (problem,) = [p for p in problems if "book_visit" in p.message]
    assert "is not a declared event" in problem.message
    assert "books_mapping_visit" in broken.splitlines()[problem.line - 1]


# --- the whole chain on a renamed workflow ---------------------------------------------------


def renamed_workflow(directory: Path, suffix: str = "_x") -> dict[str, str]:
    """Copy sluss.toml into `directory`/workflows with every state and event renamed (name +
    suffix) wherever it appears: tables, initial, from/to, timers, parts. Returns old -> new."""
    text = SHIPPED.read_text(encoding="utf-8")
    words = workflow_words()
    renamed = {word: word + suffix for word in words}
    text = re.sub(
        r"""(["'])([a-z][a-z0-9_]*)\1""",
        lambda m: f'"{renamed[m.group(2)]}"' if m.group(2) in words else m.group(0),
        text,
    )
    text = re.sub(
        r"^\[states\.([a-z0-9_]+)\]",
        lambda m: f"[states.{renamed[m.group(1)]}]",
        text,
        flags=re.MULTILINE,
    )
    (directory / "workflows").mkdir(parents=True)
    (directory / "workflows" / "sluss.toml").write_text(text, encoding="utf-8")
    assert workflow_words(directory / "workflows" / "sluss.toml") == set(renamed.values())
    return renamed


@pytest.fixture
def app_settings(tmp_path: Path) -> dict[str, Any]:
    renamed_workflow(tmp_path / "content")
    return settings_for_tests(tmp_path, content_dir=str(tmp_path / "content"), use_demo_forms=True)


def test_the_whole_chain_runs_on_a_renamed_workflow(
    app: Flask, client: FlaskClient, login: Callable[..., Any], session: Session, unit: Any
) -> None:
    """Refer, invite, answer the baseline online (screen-positive), resolve the screening,
    book, record the visit with a plan, follow up, send the evaluation, answer it, complete:
    every step through the pages (tests/chain.py), on a workflow whose every state and event is
    renamed."""
    workflow: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    assert workflow.initial == "referred_x"

    def page() -> str:
        session.expire_all()
        return walk.page()

    def state() -> str:
        session.refresh(case)
        return case.state

    assert self_refer(client, unit).status_code == 302
    login("coach")
    case = session.scalars(select(Case)).one()
    walk = ChainWalk(app, client, app.test_client(), case.id, event=lambda name: name + "_x")
    assert state() == "referred_x" and "Inkommen" in page()
    assert "Skicka kallelse" in client.get("/arbetslista").get_data(as_text=True)

    walk.fire("invite")
    assert state() == "invited_x" and "Kallad" in page()
    walk.answer("baseline", lambda item: item.max_code)
    assert state() == "assessed_x" and screening(app, session, case) == "positive"
    shown = page()
    assert "Bedömd" in shown and 'name="decision" value="continue"' in shown
    # The screening's events are never buttons.
    assert "/handelse/flag_screening_x" not in shown
    assert "/handelse/resolve_screening_x" not in shown

    walk.resolve_screening()
    assert state() == "assessed_x" and screening(app, session, case) == "resolved"
    walk.book("Rum 3")
    assert state() == "mapping_booked_x" and "Besök bokat" in page()
    mapping = client.get(f"/arenden/{case.id}/kartlaggning").get_data(as_text=True)
    assert 'name="record" value="1"' in mapping
    walk.map_and_plan(goals="Träffa andra", steps=[PlanStepRow("Promenadgruppen")])
    assert state() == "plan_active_x" and "Handlingsplan pågår" in page()
    walk.follow_up("Bra")
    assert state() == "followed_up_x" and "Uppföljd" in page()
    assert "uppföljning 2" in walk.page("/uppfoljning").lower()
    walk.fire("send_evaluation")
    assert state() == "evaluation_sent_x" and "Utvärdering skickad" in page()
    walk.answer("six_month", lambda item: item.min_code)
    assert state() == "evaluated_x" and "Utvärderad" in page()
    # Closing asks for a confirmation and a reason (confirm = true in the file).
    walk.confirm("complete", "Klart")
    assert state() == "closed_completed_x" and "Avslutat – genomfört" in page()

    events = list(
        session.scalars(
            select(CaseEvent.event).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )
    assert events == [
        "open",
        "invite_x",
        "sealed",  # flag_screening_x: the history keeps screening events sealed
        "register_baseline_x",
        "sealed",  # resolve_screening_x
        "book_mapping_visit_x",
        "record_mapping_visit_x",
        "record_follow_up_x",
        "send_evaluation_x",
        "register_evaluation_x",
        "complete_x",
    ]
