"""`slussen demo --cases 400` gives the evaluator something to look at: every instrument asked at
baseline and at six months has at least ten complete pairs, so the report shows its statistics
(t-test, Wilcoxon, d_z, charts) instead of "too few"."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from slussen.audit import Actor
from slussen.cases.engine import current_workflow
from slussen.evaluation import charts
from slussen.evaluation.dataset import Filters
from slussen.evaluation.services import Context, build_report
from slussen.keystore import current_key_ring
from tests.evaluation_figures import seed_demo

MIN_PAIRS = 10


@pytest.mark.slow
@pytest.mark.settings(use_demo_forms=True)
def test_demo_400_shows_the_statistics_of_every_paired_instrument(
    app: Flask, session: Session
) -> None:
    seed_demo(app)  # 400 cases over 3 units, as `slussen demo --cases 400`
    with app.test_request_context():
        workflow = current_workflow()
        paired_forms = set(workflow.questionnaires["baseline"]) & set(
            workflow.questionnaires["six_month"]
        )
        context = Context(
            app.extensions["slussen.content"], workflow, app.extensions["slussen.settings"]
        )
        report = build_report(
            session, current_key_ring(), Actor(None, "(test)", "system"), context, Filters()
        )
        drawn = charts.for_report(report)
    outcomes = [o for o in report.outcomes if o.definition.form_id in paired_forms]
    assert {o.definition.form_id for o in outcomes} == paired_forms
    for outcome in outcomes:
        key = outcome.definition.key
        assert outcome.n_pairs.value >= MIN_PAIRS and not outcome.n_pairs.is_hidden, key
        assert outcome.is_shown and outcome.paired is not None, key
        assert outcome.paired.n == outcome.n_pairs.value, key
        paired_chart, change_chart = drawn["outcomes"][key]  # type: ignore[index]
        assert paired_chart is not None and change_chart is not None, key
