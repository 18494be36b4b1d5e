"""The evaluator's page and downloads: who may see them, what they show, and that they are
accessible (text alternatives, tables beside charts, no inline script or style)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.audit import Actor, AuditEvent
from slussen.keystore import current_key_ring
from tests.evaluation_support import case_with_scores, context, read_csv

ROLES = ["staff", "coach", "coordinator", "org_rep", "admin"]


@pytest.fixture
def cases(app: Flask, session: Session, make_user: Any, unit: Any) -> list[Any]:
    """Eight completed cases with UCLA-3 falling by 2 and the wellbeing item rising by 1–3, and
    three cases closed without six-month answers."""
    coach = Actor.of(make_user("coach", "coach-seed"))
    with app.app_context():
        ring = current_key_ring()
    workflow = context(app).workflow
    made = []
    for i in range(8):
        scores = {"ucla3_total": (7, 5), "wellbeing_life": (4, 5 + i % 3)}
        made.append(
            case_with_scores(
                session, ring, workflow, coach, unit.id, "closed_completed", scores, n=9000 + i
            )
        )
    for i in range(3):
        scores = {"ucla3_total": (6, None)}
        made.append(
            case_with_scores(
                session, ring, workflow, coach, unit.id, "no_answer", scores, n=9100 + i
            )
        )
    return made


@pytest.mark.parametrize("role", ROLES)
def test_only_evaluators_see_the_evaluation(
    client: FlaskClient, login: Callable[..., Any], role: str
) -> None:
    login(role)
    for url in ("/utvardering", "/utvardering/data.csv", "/utvardering/rapport.pdf"):
        assert client.get(url).status_code == 403, (role, url)
    assert "/utvardering" not in client.get("/").get_data(as_text=True)


def test_evaluators_get_no_case_pages(
    client: FlaskClient, login: Callable[..., Any], cases: list[Any]
) -> None:
    login("evaluator")
    case = cases[0]
    for url in (f"/arenden/{case.id}", "/arbetslista", "/enheten", "/logg"):
        assert client.get(url).status_code in (403, 404), url


def test_anonymous_visitors_are_sent_to_login(client: FlaskClient) -> None:
    response = client.get("/utvardering")
    assert response.status_code == 302 and "/login" in response.location


def test_the_page_shows_flow_outcomes_and_charts_with_text_alternatives(
    client: FlaskClient, login: Callable[..., Any], cases: list[Any], session: Session
) -> None:
    login("evaluator")
    start = client.get("/")
    assert start.status_code == 302 and start.location.endswith("/utvardering")
    response = client.get("/utvardering")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Utvärdering" in page
    assert "Ensamhet (UCLA-3)" in page and "Nöjd med livet (test)" in page
    # Three charts per scored instrument pair or more, each an accessible image with a table.
    svgs = re.findall(r"<svg[^>]*>", page)
    assert len(svgs) >= 5
    for svg in svgs:
        assert 'role="img"' in svg and "aria-labelledby" in svg
        assert "style=" not in svg
    assert page.count("<title id=") == len(svgs) and page.count("<desc id=") == len(svgs)
    assert "<script" not in page and "style=" not in page
    assert page.count("<table") >= 6
    # UCLA-3: 8 pairs, all improved by 2 (lower is better), d_z undefined (no spread).
    assert "-2,00 (-2,00 till -2,00)" in page
    # The three non-responders are small: shown as <5 somewhere, never as a bare 3 count.
    assert "&lt;5" in page
    assert "d_z" in page and "Wilcoxon" in page
    row = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "evaluation")).one()
    assert row.action == "read" and row.patient_pseudonym is None


def test_filters_are_checked_and_explained(
    client: FlaskClient, login: Callable[..., Any], cases: list[Any]
) -> None:
    login("evaluator")
    bad = client.get("/utvardering?date_from=igår&sex=robot")
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "ÅÅÅÅ-MM-DD" in text and "Välj i listan." in text
    good = client.get("/utvardering?sex=female&date_from=2020-01-01")
    assert good.status_code == 200
    assert "Kvinnor" in good.get_data(as_text=True)


def test_downloads_state_their_choices_and_are_audited(
    client: FlaskClient, login: Callable[..., Any], cases: list[Any], session: Session
) -> None:
    login("evaluator")
    csv_response = client.get("/utvardering/data.csv?sex=male")
    assert csv_response.status_code == 200
    assert csv_response.mimetype == "text/csv"
    assert "attachment" in csv_response.headers["Content-Disposition"]
    assert csv_response.data.startswith(b"\xef\xbb\xbfpseudonym,")  # UTF-8 with a BOM
    rows = read_csv(csv_response.data.decode("utf-8-sig"))
    assert rows and {r["sex"] for r in rows} == {"male"}
    # What the download covers is in the codebook, linked from the page with the same filters.
    page = client.get("/utvardering?sex=male").get_data(as_text=True)
    assert 'href="/utvardering/kodbok.txt?sex=male"' in page
    codebook = client.get("/utvardering/kodbok.txt?sex=male")
    assert codebook.status_code == 200 and codebook.mimetype == "text/plain"
    lines = codebook.get_data(as_text=True).splitlines()
    assert any("Undertryckningsgräns k: 5" in line for line in lines)
    assert any("Kön: Män" in line for line in lines)
    assert any("d_z" in line for line in lines)
    pdf_response = client.get("/utvardering/rapport.pdf")
    assert pdf_response.status_code == 200 and pdf_response.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf_response.data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Utvärdering av slussen" in text
    assert "Undertryckningsgräns k" in text and "d_z" in text
    assert "Ensamhet (UCLA-3)" in text
    actions = session.execute(
        select(AuditEvent.action, AuditEvent.object_id).where(
            AuditEvent.object_type == "evaluation"
        )
    ).all()
    # The page is read once; the codebook holds no case data and is not an export.
    assert sorted(actions) == [
        ("export", "dataset.csv"),
        ("export", "report.pdf"),
        ("read", "report"),
    ]


def test_the_docs_document_every_column(app: Flask) -> None:
    from slussen.cases.engine import current_workflow
    from slussen.evaluation.codebook import base_columns

    text = (Path(__file__).resolve().parents[2] / "docs" / "evaluation.md").read_text()
    with app.test_request_context():
        columns = base_columns(current_workflow())
    for column in columns:
        assert f"| `{column.name}` |" in text, column.name
    assert "`<form>_<score>_baseline`" in text and "`<form>_<score>_six_month`" in text
