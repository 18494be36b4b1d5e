"""The evaluator's files: the CSV is one header row and one row per case, read alike by Python's
csv module, pandas and R, with exactly the codebook's columns; the codebook file and the PDF's
appendix describe every column."""

from __future__ import annotations

import csv
import io
import itertools
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.evaluation.codebook import columns
from slussen.keystore import current_key_ring
from tests.evaluation_support import case_with_scores, context

#: Cases made by the `cases` fixture: eight complete pairs, three without six-month answers.
N_CASES = 11


@pytest.fixture
def cases(app: Flask, session: Session, make_user: Any, unit: Any) -> None:
    coach = Actor.of(make_user("coach", "coach-files"))
    with app.app_context():
        ring = current_key_ring()
    workflow = context(app).workflow
    for i in range(8):
        scores = {"ucla3_total": (7, 5), "wellbeing_life": (4, 5 + i % 3)}
        case_with_scores(
            session, ring, workflow, coach, unit.id, "closed_completed", scores, n=9200 + i
        )
    for i in range(3):
        scores = {"ucla3_total": (6, None)}
        case_with_scores(session, ring, workflow, coach, unit.id, "no_answer", scores, n=9300 + i)


def codebook_names(app: Flask) -> list[str]:
    ctx = context(app)
    with app.test_request_context():
        return [column.name for column in columns(ctx.workflow, ctx.definitions)]


@pytest.fixture
def dataset(client: FlaskClient, login: Callable[..., Any], cases: None) -> bytes:
    login("evaluator")
    response = client.get("/utvardering/data.csv")
    assert response.status_code == 200
    return response.data


def test_python_csv_reads_one_header_row_and_a_row_per_case(app: Flask, dataset: bytes) -> None:
    assert dataset.startswith(b"\xef\xbb\xbf")  # the BOM, for Excel
    rows = list(csv.reader(io.StringIO(dataset.decode("utf-8-sig"))))
    assert rows[0] == codebook_names(app)
    assert len(rows) == 1 + N_CASES
    assert all(len(row) == len(rows[0]) for row in rows)
    assert not any(row[0].startswith("#") for row in rows)
    assert {row[0][:2] for row in rows[1:]} == {"P-"}


def test_pandas_reads_the_codebook_s_columns_and_numbers(app: Flask, dataset: bytes) -> None:
    frame = pd.read_csv(io.BytesIO(dataset))
    assert list(frame.columns) == codebook_names(app)
    assert len(frame) == N_CASES
    assert frame["ucla3_total_baseline"].dtype.kind in "if"  # numbers, not text
    assert frame["ucla3_total_baseline"].notna().sum() == N_CASES
    assert frame["ucla3_total_six_month"].notna().sum() == 8
    assert (frame["ucla3_total_six_month"].dropna() == 5).all()
    assert set(frame["complete_pair"]) == {0, 1}


def test_r_reads_the_same_rows_and_columns(app: Flask, dataset: bytes, tmp_path: Path) -> None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("R is not installed (no Rscript on PATH): the CSV is not read with R here")
    path = tmp_path / "data.csv"
    path.write_bytes(dataset)
    program = (
        f'd <- read.csv("{path}", fileEncoding = "UTF-8-BOM");'
        'cat(nrow(d), "\\n"); cat(names(d), sep = ","); cat("\\n");'
        'cat(sum(!is.na(d$ucla3_total_six_month)), "\\n")'
    )
    out = subprocess.run(
        [rscript, "-e", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    assert out[0].strip() == str(N_CASES)
    assert out[1].split(",") == codebook_names(app)
    assert out[2].strip() == "8"


def test_the_codebook_file_describes_every_column(
    app: Flask, client: FlaskClient, login: Callable[..., Any], cases: None
) -> None:
    login("evaluator")
    response = client.get("/utvardering/kodbok.txt")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = response.get_data(as_text=True)
    lines = text.splitlines()
    for name in codebook_names(app):
        at = lines.index(name)
        assert lines[at + 1].startswith("  Betydelse: ")
        assert lines[at + 2].startswith("  Värden: ")
        assert lines[at + 3].startswith("  Saknas: ")
    assert "staff_flag = Flaggad av personal" in text
    assert "Små tal" in text and "<5" in text
    assert 'fileEncoding = "UTF-8-BOM"' in text
    # English words in a Swedish file would be a missing translation.
    for english in ("Meaning", "Values", "Missing", "month as", "never empty"):
        assert english not in text


def test_the_pdf_s_appendix_is_the_codebook(
    app: Flask, client: FlaskClient, login: Callable[..., Any], cases: None
) -> None:
    login("evaluator")
    response = client.get("/utvardering/rapport.pdf")
    reader = PdfReader(io.BytesIO(response.data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    appendix = text[text.index("Bilaga: kodbok") :]
    for name in codebook_names(app):
        assert name in appendix.replace("\n", ""), name
    assert "Små tal" in appendix


def test_each_chart_axis_is_labelled_once(
    client: FlaskClient, login: Callable[..., Any], cases: None
) -> None:
    login("evaluator")
    page = client.get("/utvardering").get_data(as_text=True)
    charts = re.findall(r"<svg[^>]*class=\"chart\".*?</svg>", page, re.S)
    paired = [c for c in charts if re.search(r"<title[^>]*>[^<]*: baslinje och sex månader<", c)]
    change = [c for c in charts if re.search(r"<title[^>]*>[^<]*: förändring från baslinje", c)]
    assert paired and change
    for chart in paired:
        assert chart.count(">Poäng<") == 1
        assert chart.count(">Baslinjemätning<") == 1 and chart.count(">Sex månader<") == 1
    for chart in change:
        assert chart.count(">Personer<") == 1
        assert chart.count(">Förändring per person (sex månader minus baslinje)<") == 1


def test_pdf_table_headers_wrap_between_words_only(
    app: Flask, client: FlaskClient, login: Callable[..., Any], cases: None
) -> None:
    from slussen.evaluation import labels
    from slussen.evaluation.dataset import STEPS

    login("evaluator")
    reader = PdfReader(io.BytesIO(client.get("/utvardering/rapport.pdf").data))
    lines = [
        line.split()
        for page in reader.pages
        for line in page.extract_text().splitlines()
        if line.split()
    ]
    with app.test_request_context():
        words = {w for step in STEPS for w in labels.step_label(step).split()}
    words |= {"Kontaktväg", "Åldersgrupp", "Medelförändring"}
    split = [
        (a[-1], b[0])
        for a, b in itertools.pairwise(lines)
        if a[-1] not in words and a[-1] + b[0] in words
    ]
    assert split == []
    # The breakdown tables (a step per column) are there, so the check had something to look at.
    assert any("Kartläggningsbesök" in line for line in lines)
