"""The evaluation's figures on the demo data are the ones the evaluation gave before it read
research records: `data/figures_demo400.json` holds what the code of 721d518 (reading the
clinical tables) produced on `DEMO_CASES` demo cases, on SQLite and PostgreSQL alike
(tests/evaluation_figures.py says how the figures are written).

Regenerated when the demo began to walk sluss 2 (every case past the mapping visit is handed over
to an association before follow-up 1, so the funnel's hand-over step is no longer empty), and
when the CSV lost its comment lines and the PDF gained the codebook appendix (issue 19): the
figures of the current code, which this file had shown equal to 721d518's on the earlier demo
data, on the new demo data, on SQLite and PostgreSQL alike; the PDF's text ends with the
appendix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.conftest import settings_for_tests
from tests.evaluation_figures import figures, seed_demo

FIXTURE = Path(__file__).with_name("data") / "figures_demo400.json"


@pytest.fixture
def app_settings(tmp_path: Path) -> dict[str, Any]:
    # The shipped content, with the DEMO Mini-SPIN on so that some cases screen positive.
    return settings_for_tests(tmp_path, use_demo_forms=True)


@pytest.mark.slow
def test_the_figures_on_the_demo_data_are_the_ones_before_research_records(
    backend: str, app: Flask, session: Session
) -> None:
    seed_demo(app)
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))
    found = figures(app, session)
    assert found["csv"]["all"]["pseudonyms"] == len(found["csv"]["all"]["rows"]) > 300
    for part in ("reports", "csv"):
        for name, value in expected[part].items():
            assert found[part][name] == value, (part, name)
    assert found["pdf"] == expected["pdf"]
    assert found == expected
