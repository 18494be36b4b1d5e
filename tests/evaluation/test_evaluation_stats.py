"""The evaluation's numbers: every statistic equals an independent scipy computation on the
exported CSV; improvement follows each instrument's direction."""

from __future__ import annotations

import io
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from flask import Flask
from scipy import stats as sps
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor, AuditEvent
from slussen.errors import NotPermitted
from slussen.evaluation import dataset
from slussen.evaluation.dataset import STEPS, Filters
from slussen.evaluation.report import Count
from slussen.evaluation.services import build_report, write_dataset
from slussen.identifiers import PersonIdentifier
from slussen.keystore import Keystore
from slussen.research import services as research
from tests.evaluation_support import case_with_scores, context, read_csv

K = 5
#: The steps' month columns in the CSV (complete_pair is a 0/1 column). The first two columns
#: keep their published names.
MONTH_COLUMN = {step: f"{step}_month" for step in STEPS if step != "complete_pair"} | {
    "referral": "referred_month",
    "invitation": "invited_month",
}


@pytest.fixture
def evaluator(make_user: Any) -> Actor:
    return Actor.of(make_user("evaluator", units=[]))


@pytest.fixture
def seeded(app: Flask, session: Session, ring: vault.KeyRing, coach: Actor, unit: Any) -> None:
    """37 cases with known scores: 24 answered both occasions (UCLA-3 always, the wellbeing item
    for 18 of them), 6 closed without six-month answers, 3 open with a baseline, 4 declined."""
    workflow = context(app).workflow
    rng = random.Random(8)
    n = 0

    def make(state: str, scores: dict[str, tuple[float | None, float | None]]) -> None:
        nonlocal n
        case_with_scores(session, ring, workflow, coach, unit.id, state, scores, n=5000 + n)
        n += 1

    for i in range(24):
        b = rng.randint(3, 9)
        ucla = (b, min(9, max(3, b + rng.choice([-3, -2, -1, -1, 0, 0, 1, 2]))))
        w = rng.randint(0, 10)
        wellbeing = (w, min(10, max(0, w + rng.choice([-2, -1, 0, 1, 2, 3, 3]))))
        scores = {"ucla3_total": ucla}
        scores["wellbeing_life"] = wellbeing if i < 18 else (w, None)
        make("closed_completed", scores)
    for _ in range(6):
        make("no_answer", {"ucla3_total": (rng.randint(3, 9), None), "wellbeing_life": (5, None)})
    for _ in range(3):
        make("plan_active", {"ucla3_total": (rng.randint(3, 9), None)})
    for _ in range(4):
        make("closed_declined", {})


def _export(app: Flask, session: Session, ring: vault.KeyRing, actor: Actor, **f: Any) -> str:
    out = io.StringIO()
    with app.test_request_context():
        write_dataset(session, ring, actor, context(app), Filters(**f), out)
    return out.getvalue()


def _report(app: Flask, session: Session, ring: vault.KeyRing, actor: Actor, **f: Any) -> Any:
    with app.test_request_context():
        return build_report(session, ring, actor, context(app), Filters(**f))


def _passed(row: dict[str, str], index: int) -> bool:
    for later in STEPS[index:]:
        if later == "complete_pair":
            if row["complete_pair"] == "1":
                return True
        elif row[MONTH_COLUMN[later]]:
            return True
    return False


def _wilcoxon_p(d: np.ndarray) -> float:
    nonzero = d[d != 0]
    ties = len(set(np.abs(nonzero))) < len(nonzero)
    method = "exact" if not ties and len(nonzero) <= 50 else "auto"
    if ties and len(nonzero) > 13:
        method = "asymptotic"
    return float(sps.wilcoxon(nonzero, method=method).pvalue)


def _shown(count: Count) -> int:
    assert not count.is_hidden
    return count.value


@pytest.mark.usefixtures("backend", "seeded")
def test_every_statistic_equals_scipy_on_the_exported_csv(
    app: Flask, session: Session, ring: vault.KeyRing, evaluator: Actor
) -> None:
    report = _report(app, session, ring, evaluator)
    rows = read_csv(_export(app, session, ring, evaluator))
    assert len(rows) == 37 == _shown(report.referred)

    # The flow, step by step, and the reasons for closure.
    for index, step in enumerate(report.steps[i] for i in range(len(report.steps))):
        if step.parent is not None:
            continue
        expected = sum(_passed(r, STEPS.index(step.key)) for r in rows)
        assert step.count.value == expected, step.key
        assert step.count.is_hidden or step.count.value == 0 or step.count.value >= K, index
    statuses = Counter(r["status"] for r in rows)
    assert {s: c.value for s, c in report.closures if c.value} == dict(statuses)

    seeded_keys = ("ucla3_total", "wellbeing_life")
    for outcome in report.outcomes:
        key = outcome.definition.key
        if key not in seeded_keys:
            # The shipped forms (ONS4, HLV…) have no answers in this dataset.
            assert not [r for r in rows if r.get(f"{key}_baseline")], key
            continue
        lower = outcome.definition.is_lower_better
        both = [r for r in rows if r[f"{key}_baseline"] and r[f"{key}_six_month"]]
        b = np.array([float(r[f"{key}_baseline"]) for r in both])
        s = np.array([float(r[f"{key}_six_month"]) for r in both])
        d = s - b
        assert _shown(outcome.n_pairs) == len(both) == (24 if key == "ucla3_total" else 18)
        p = outcome.paired
        assert p is not None
        t = sps.ttest_rel(s, b)
        ci = t.confidence_interval(0.95)
        assert p.mean_baseline == pytest.approx(b.mean())
        assert p.sd_baseline == pytest.approx(b.std(ddof=1))
        assert p.mean_six_month == pytest.approx(s.mean())
        assert p.sd_six_month == pytest.approx(s.std(ddof=1))
        assert p.mean_diff == pytest.approx(d.mean())
        assert (p.ci_low, p.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
        assert p.df == len(both) - 1
        assert p.t == pytest.approx(t.statistic)
        assert p.p_t == pytest.approx(t.pvalue)
        assert p.wilcoxon is not None
        assert p.wilcoxon.p == pytest.approx(_wilcoxon_p(d))
        assert p.d_z == pytest.approx(d.mean() / d.std(ddof=1))
        better = int(np.sum(d < 0 if lower else d > 0))
        worse = int(np.sum(d > 0 if lower else d < 0))
        counts = {name: c.value for name, c in outcome.classes.items()}
        assert counts == {"improved": better, "unchanged": len(d) - better - worse, "worse": worse}
        assert sum(b.count.value for b in outcome.bins) == len(d)

        # Sensitivity: closed cases with a baseline; a missing six-month value is "unchanged".
        closed = [r for r in rows if r[f"{key}_baseline"] and r["status"] != "open"]
        bb = np.array([float(r[f"{key}_baseline"]) for r in closed])
        ss = np.array([float(r[f"{key}_six_month"] or r[f"{key}_baseline"]) for r in closed])
        assert _shown(outcome.n_bocf) == len(closed)
        assert outcome.bocf is not None
        assert outcome.bocf.mean_diff == pytest.approx((ss - bb).mean())
        assert outcome.bocf.p_t == pytest.approx(sps.ttest_rel(ss, bb).pvalue)

        # Reliable change only where the form defines reliability (the wellbeing item).
        if key == "wellbeing_life":
            assert outcome.reliable is not None and outcome.min_reliable_change is not None
            rci = d / (2.0 * np.sqrt(2) * np.sqrt(1 - 0.8))
            assert outcome.reliable["improved"].value == int(np.sum(rci > 1.96))
            assert outcome.reliable["worse"].value == int(np.sum(rci < -1.96))
            assert outcome.min_reliable_change == pytest.approx(1.96 * 2 * np.sqrt(0.4))
        else:
            assert outcome.reliable is None

        # By group: the same tests on each group's pairs, where the group has k persons.
        for group in outcome.by_group["sex"]:
            mine = [r for r in both if r["sex"] == group.group]
            assert group.n.value == len(mine)
            if group.paired is not None:
                gb = np.array([float(r[f"{key}_baseline"]) for r in mine])
                gs = np.array([float(r[f"{key}_six_month"]) for r in mine])
                interval = sps.ttest_rel(gs, gb).confidence_interval(0.95)
                assert group.paired.mean_diff == pytest.approx((gs - gb).mean())
                assert group.paired.ci_low == pytest.approx(interval.low)
                assert group.paired.ci_high == pytest.approx(interval.high)
                assert group.paired.d_z == pytest.approx((gs - gb).mean() / (gs - gb).std(ddof=1))


@pytest.mark.usefixtures("seeded")
def test_the_csv_is_one_header_row_and_one_row_per_pseudonymised_case(
    app: Flask, session: Session, ring: vault.KeyRing, evaluator: Actor
) -> None:
    text = _export(app, session, ring, evaluator)
    rows = read_csv(text)
    lines = text.splitlines()
    assert lines[0].startswith("pseudonym,unit_hsa_id,") and len(lines) == 1 + len(rows)
    assert len({r["pseudonym"] for r in rows}) == len(rows)
    assert all(r["pseudonym"].startswith("P-") and len(r["pseudonym"]) == 18 for r in rows)
    assert {r["sex"] for r in rows} <= {"female", "male", "unknown"}
    assert {r["age_band"] for r in rows} == {"80+"}  # the test series were born 1940
    assert all(len(r["referred_month"]) == 7 for r in rows)


@pytest.mark.usefixtures("backend", "seeded")
def test_filters_narrow_the_population(
    app: Flask, session: Session, ring: vault.KeyRing, evaluator: Actor
) -> None:
    rows = read_csv(_export(app, session, ring, evaluator, sex="female"))
    assert rows and {r["sex"] for r in rows} == {"female"}
    none = read_csv(_export(app, session, ring, evaluator, age_band="18-29"))
    assert none == []
    report = _report(app, session, ring, evaluator, channel="self_referral")
    assert report.referred.value == 0


@pytest.mark.usefixtures("backend", "seeded")
def test_a_patient_without_birth_year_or_sex_counts_as_unknown(
    app: Flask, session: Session, ring: vault.KeyRing, coach: Actor, unit: Any, evaluator: Actor
) -> None:
    # A reserve number says neither birth year nor sex (read_demographics gives None for both).
    reserve = PersonIdentifier(kind="reserv", value="19810829M071", issuer="1.2.752.97.3.1.3")
    case_with_scores(
        session, ring, context(app).workflow, coach, unit.id, "referred", {}, identifier=reserve
    )
    rows = read_csv(_export(app, session, ring, evaluator))
    unknown = [r for r in rows if r["sex"] == "unknown"]
    assert len(unknown) == 1 and unknown[0]["age_band"] == "unknown"
    assert {r["age_band"] for r in rows if r["sex"] != "unknown"} == {"80+"}
    chosen = read_csv(_export(app, session, ring, evaluator, sex="unknown"))
    assert [r["pseudonym"] for r in chosen] == [unknown[0]["pseudonym"]]
    banded = read_csv(_export(app, session, ring, evaluator, age_band="unknown"))
    assert [r["pseudonym"] for r in banded] == [unknown[0]["pseudonym"]]


@pytest.mark.usefixtures("seeded")
def test_every_query_and_export_is_audited_without_a_patient(
    app: Flask, session: Session, ring: vault.KeyRing, evaluator: Actor
) -> None:
    before = session.scalar(select(func.max(AuditEvent.id))) or 0
    _report(app, session, ring, evaluator, sex="male")
    _export(app, session, ring, evaluator)
    rows = session.scalars(select(AuditEvent).where(AuditEvent.id > before)).all()
    assert [(r.action, r.object_type) for r in rows] == [
        ("read", "evaluation"),
        ("export", "evaluation"),
    ]
    assert all(r.patient_pseudonym is None and r.actor_role == "evaluator" for r in rows)
    assert "kön=male" in rows[0].purpose


def test_only_evaluators_may_evaluate(
    app: Flask, session: Session, ring: vault.KeyRing, coach: Actor
) -> None:
    with pytest.raises(NotPermitted):
        _report(app, session, ring, coach)


def test_an_evaluator_of_one_unit_sees_that_unit_only(
    app: Flask, session: Session, ring: vault.KeyRing, coach: Actor, unit: Any, make_user: Any
) -> None:
    from slussen.accounts.models import Unit

    other = Unit(
        name="Vårdcentralen Annan",
        hsa_id="SE2321000016-TST2",
        street="Annan väg 1",
        postcode="722 16",
        town="Västerås",
        phone="021-11 11 11",
    )
    session.add(other)
    session.flush()
    workflow = context(app).workflow
    for i in range(3):
        case_with_scores(session, ring, workflow, coach, unit.id, "referred", {}, n=7000 + i)
    local = Actor.of(make_user("evaluator", "lokal", units=[other]))
    assert _report(app, session, ring, local).referred.value == 0
    with pytest.raises(NotPermitted):
        _report(app, session, ring, local, unit_id=unit.id)
    regional = Actor.of(make_user("evaluator", "regional", units=[]))
    assert _report(app, session, ring, regional).referred.value == 3


def test_lower_and_higher_is_better_classify_improvement(
    app: Flask, session: Session, ring: vault.KeyRing, coach: Actor, unit: Any, evaluator: Actor
) -> None:
    """UCLA-3 falling and the wellbeing item rising are both improvements; the opposite moves are
    both worse. Six persons each way, so nothing is suppressed."""
    workflow = context(app).workflow
    for i in range(6):
        better = {"ucla3_total": (8, 5), "wellbeing_life": (3, 7)}
        case_with_scores(
            session, ring, workflow, coach, unit.id, "closed_completed", better, n=8000 + i
        )
    for i in range(6):
        worse = {"ucla3_total": (4, 6), "wellbeing_life": (8, 6)}
        case_with_scores(
            session, ring, workflow, coach, unit.id, "closed_completed", worse, n=8100 + i
        )
    for i in range(5):
        same = {"ucla3_total": (5, 5), "wellbeing_life": (5, 5)}
        case_with_scores(
            session, ring, workflow, coach, unit.id, "closed_completed", same, n=8200 + i
        )
    report = _report(app, session, ring, evaluator)
    by_key = {o.definition.key: o for o in report.outcomes}
    for key in ("ucla3_total", "wellbeing_life"):
        classes = {name: _shown(c) for name, c in by_key[key].classes.items()}
        assert classes == {"improved": 6, "unchanged": 5, "worse": 6}, key
    paired = by_key["ucla3_total"].paired
    assert paired is not None and paired.mean_diff == pytest.approx((6 * -3 + 6 * 2) / 17)
    # The change bins sit on the improving side of each instrument.
    ucla_bins = {b.low: b.side for b in by_key["ucla3_total"].bins}
    wellbeing_bins = {b.low: b.side for b in by_key["wellbeing_life"].bins}
    assert ucla_bins[-3] == "improved" and ucla_bins[2] == "worse"
    assert wellbeing_bins[4] == "improved" and wellbeing_bins[-2] == "worse"


@pytest.mark.usefixtures("backend", "seeded")
def test_batches_of_any_size_give_the_same_csv_and_report(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    evaluator: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stream reads the cases a batch at a time: batches of 4 (the last one short) must give
    every case once, the same rows in the same order and the same report as one batch."""

    whole_csv = _export(app, session, ring, evaluator)
    whole = _report(app, session, ring, evaluator)
    monkeypatch.setattr(dataset, "READ_BATCH", 4)
    rows = read_csv(_export(app, session, ring, evaluator))
    assert read_csv(whole_csv) == rows and len(rows) == 37
    batched = _report(app, session, ring, evaluator)
    assert batched.steps == whole.steps and batched.closures == whole.closures
    assert batched.breakdowns == whole.breakdowns
    for a, b in zip(batched.outcomes, whole.outcomes, strict=True):
        assert (a.n_pairs, a.paired, a.classes, a.bins) == (b.n_pairs, b.paired, b.classes, b.bins)


@pytest.mark.usefixtures("backend")
def test_a_score_computed_again_replaces_the_earlier_one(
    app: Flask,
    session: Session,
    ring: vault.KeyRing,
    coach: Actor,
    unit: Any,
    evaluator: Actor,
    make_user: Any,
) -> None:
    """Double keying: the second keying disagrees, and the answers read off the paper are
    scored again: the evaluation has the score they give, or none when too many items are
    missing, as the case page does."""
    from slussen.questionnaires import services as answers
    from slussen.questionnaires.definitions import forms

    workflow = context(app).workflow
    with app.app_context():
        ucla3 = forms()["ucla3"]
    store = Keystore(session, ring)
    second = Actor.of(make_user("coach", "coach-andra"))
    items = [item.id for item in ucla3.items]
    results = {}
    for n, resolved in ((1, {i: 3 for i in items}), (2, {items[0]: 3})):
        case = case_with_scores(session, ring, workflow, coach, unit.id, "evaluation_sent", {}, n=n)
        first = {i: 1 for i in items}
        stored = answers.key_in_paper(
            store, coach, case, ucla3, "six_month", first, workflow=workflow, forms=[ucla3]
        )
        mismatches = answers.key_in_second(
            store, second, case, ucla3, stored.response, {i: 2 for i in items}
        )
        assert mismatches
        answers.resolve_mismatch(store, coach, case, ucla3, stored.response, resolved)
        results[n] = answers.case_responses(store, case, {"ucla3": ucla3})["six_month"]
    rows = read_csv(_export(app, session, ring, evaluator))
    assert sorted(r["ucla3_total_six_month"] for r in rows) == ["", "9"]
    assert [s.value for s in results[1][0].scores] == [9]
    assert [s.value for s in results[2][0].scores] == [None]


@pytest.mark.usefixtures("backend")
def test_texts_in_the_csv_are_quoted_where_needed(
    app: Flask, session: Session, ring: vault.KeyRing, coach: Actor, unit: Any, evaluator: Actor
) -> None:
    unit.name = 'Vårdcentralen "Norra", Västerås\nhus 2'
    session.flush()
    case = case_with_scores(
        session, ring, context(app).workflow, coach, unit.id, "referred", {}, n=3
    )
    rows = read_csv(_export(app, session, ring, evaluator))
    assert [(r["unit_hsa_id"], r["unit_name"], r["status"]) for r in rows] == [
        (unit.hsa_id, unit.name, "open")
    ]
    assert rows[0]["pseudonym"] == "P-" + research.subject_pseudonym(ring, case.id)[:16]


def test_the_pseudonymiser_gives_the_pseudonyms() -> None:
    ring = vault.KeyRing.generate()
    pseudonym = vault.pseudonymiser(ring)
    for value in ("case:1", "case:123456789", "", "ärende:ö€", "x" * 200):
        assert pseudonym(value) == vault.pseudonym(ring, value)
    with pytest.raises(vault.VaultError):
        pseudonym("\ud800")
