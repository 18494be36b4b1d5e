"""Helpers for the evaluation tests: a content directory with a lower-is-better and a
higher-is-better instrument, scores written into the research records of real cases, and reading
the exported CSV."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.evaluation.services import Context
from slussen.keystore import Keystore
from slussen.paths import shipped_dir
from slussen.research import services as research
from slussen.vault import KeyRing
from tests.builders import make_case

#: A higher-is-better test instrument (0–10) with reliability, beside the shipped UCLA-3.
WELLBEING = """
id = "wellbeing"
version = 1
kind = "instrument"
title = { sv = "Välbefinnande (test)", en = "Wellbeing (test)" }
instructions = { sv = "Testformulär.", en = "Test form." }
licence = "free"
copyright = "Test instrument for Slussen's tests."
citation = "None: invented for tests."

[[groups]]
id = "all"
title = { sv = "Allt", en = "All" }
items = ["life"]

[[items]]
id = "life"
text = { sv = "Hur nöjd är du med livet?", en = "How satisfied are you with life?" }
options = [
  { code = 0, sv = "0", en = "0" }, { code = 1, sv = "1", en = "1" },
  { code = 2, sv = "2", en = "2" }, { code = 3, sv = "3", en = "3" },
  { code = 4, sv = "4", en = "4" }, { code = 5, sv = "5", en = "5" },
  { code = 6, sv = "6", en = "6" }, { code = 7, sv = "7", en = "7" },
  { code = 8, sv = "8", en = "8" }, { code = 9, sv = "9", en = "9" },
  { code = 10, sv = "10", en = "10" },
]

[[scores]]
id = "life"
label = { sv = "Nöjd med livet (test)", en = "Life satisfaction (test)" }
method = "item"
items = ["life"]
range = [0, 10]
direction = "higher_better"
missing = { max_missing = 0 }
reliability = { sd = 2.0, rxx = 0.8, source = "invented for tests" }
"""


def content_dir(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    forms = root / "forms"
    forms.mkdir(parents=True)
    shutil.copy(shipped_dir("forms") / "ucla3.toml", forms / "ucla3.toml")
    (forms / "wellbeing.toml").write_text(WELLBEING, encoding="utf-8")
    return root


def context(app: Flask) -> Context:
    content = app.extensions["slussen.content"]
    return Context(content, content.compiled["workflow"], app.extensions["slussen.settings"])


def add_score(
    store: Keystore,
    case_id: int,
    form_id: str,
    score_id: str,
    occasion: str,
    value: float | None,
    *,
    is_positive: bool | None = None,
) -> None:
    """A score of the case in its research records, through the one writer (as scoring an
    answered form writes it): what the evaluation reads."""
    research.record(
        store, case_id, research.Scored(form_id, score_id, occasion, value, is_positive)
    )


def case_with_scores(
    session: Session,
    ring: KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit_id: int,
    state: str,
    scores: dict[str, tuple[float | None, float | None]],
    **identity: Any,
) -> Case:
    """A case in `state` (or "no_answer": six-month evaluation sent, never answered, closed) with
    scores {"ucla3_total": (baseline, six_month)}."""
    if state == "no_answer":
        case = make_case(session, ring, workflow, coach, unit_id, "evaluation_sent", **identity)
        fire(
            Keystore(session, ring),
            case,
            "complete",
            coach,
            workflow=workflow,
            reason="Inga svar",
            confirmed=True,
        )
    else:
        case = make_case(session, ring, workflow, coach, unit_id, state, **identity)
    store = Keystore(session, ring)
    for key, (baseline, six_month) in scores.items():
        form_id, score_id = key.split("_", 1)
        for occasion, value in (("baseline", baseline), ("six_month", six_month)):
            if value is not None:
                add_score(store, case.id, form_id, score_id, occasion, value)
    return case


def read_csv(text: str) -> list[dict[str, str]]:
    """The rows as dicts, checking the file is one header row and data rows only."""
    assert not any(line.startswith("#") for line in text.splitlines()), "a comment line"
    return list(csv.DictReader(io.StringIO(text)))
