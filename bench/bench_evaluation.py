"""Benchmark: the evaluator's page, the CSV export and the PDF report on 100,000 cases.

Run (from the repository root):
    .venv/bin/python bench/bench_evaluation.py [--database-url URL] [--cases N] [--rounds R]
                                               [--fresh]

Seeds a database with N synthetic cases (default 100,000) in realistic states, each with its case
events, action plans, hand-overs and questionnaire scores (UCLA-3 and a four-score wellbeing form
like ONS4), bulk-inserted with Core statements (the workflow engine would take hours). Patients
have no identity at all (the evaluation never reads it). Then, in process through Flask's test
client and logged in as an evaluator, it times R rounds of:

* GET /utvardering            (target: < 5 s on SQLite, < 3 s on PostgreSQL)
* GET /utvardering/data.csv   (target: < 5 s on SQLite, < 3 s on PostgreSQL)
* GET /utvardering/rapport.pdf (target: < 10 s)

and prints the best and median time of each. Exits 1 when a best time misses its target.
The seeded database is kept (bench/.data/) and reused unless --fresh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import Engine, make_url

from slussen import migrate
from slussen.accounts.models import Unit
from slussen.audit import AuditChainHead
from slussen.cases.models import Case, CaseEvent
from slussen.db import make_engine
from slussen.keystore import DataKey
from slussen.paths import shipped_dir
from slussen.patients.models import Patient
from slussen.questionnaires.models import QuestionnaireResponse, QuestionnaireScore
from slussen.visits.models import ActionPlan, Handover

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
PASSWORD = "ett långt lösenord för mätningen"
BATCH = 20_000
UNITS = 50
TARGETS = {"sqlite": (5.0, 5.0, 10.0), "postgresql": (3.0, 3.0, 10.0)}

#: A four-score form like ONS4 (three higher-is-better items and one lower-is-better).
WELLBEING = """
id = "bench_wellbeing"
version = 1
kind = "instrument"
title = { sv = "Välbefinnande (mätning)", en = "Wellbeing (benchmark)" }
instructions = { sv = "Mätning.", en = "Benchmark." }
licence = "free"
copyright = "Benchmark form."
citation = "None."

[option_sets.zero_ten]
options = [
  { code = 0, sv = "0", en = "0" }, { code = 5, sv = "5", en = "5" },
  { code = 10, sv = "10", en = "10" },
]

[[groups]]
id = "all"
title = { sv = "Allt", en = "All" }
items = ["satisfied", "worthwhile", "happy", "anxious"]

[[items]]
id = "satisfied"
text = { sv = "Nöjd?", en = "Satisfied?" }
options = "zero_ten"

[[items]]
id = "worthwhile"
text = { sv = "Meningsfullt?", en = "Worthwhile?" }
options = "zero_ten"

[[items]]
id = "happy"
text = { sv = "Glad?", en = "Happy?" }
options = "zero_ten"

[[items]]
id = "anxious"
text = { sv = "Orolig?", en = "Anxious?" }
options = "zero_ten"
"""
WELLBEING_SCORES = [
    ("satisfied", "higher_better"),
    ("worthwhile", "higher_better"),
    ("happy", "higher_better"),
    ("anxious", "lower_better"),
]


def content_dir() -> Path:
    root = DATA / "eval-content"
    forms = root / "forms"
    forms.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped_dir("forms") / "ucla3.toml", forms / "ucla3.toml")
    scores = "".join(
        f"""
[[scores]]
id = "{score}"
label = {{ sv = "{score}", en = "{score}" }}
method = "item"
items = ["{score}"]
range = [0, 10]
direction = "{direction}"
missing = {{ max_missing = 0 }}
"""
        + (
            'reliability = { sd = 2.2, rxx = 0.75, source = "benchmark" }\n'
            if score == "happy"
            else ""
        )
        for score, direction in WELLBEING_SCORES
    )
    (forms / "bench_wellbeing.toml").write_text(WELLBEING + scores, encoding="utf-8")
    return root


def ensure_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin_url = parsed.set(database="postgres", drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}
        )
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    admin_url = parsed.set(database="postgres", drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


# Milestone events in order, days after referral, and the chance of reaching the next one.
STEPS = [
    ("invite", 3, 0.92),
    ("register_baseline", 18, 0.80),
    ("book_mapping_visit", 25, 0.85),
    ("record_mapping_visit", 35, 0.95),
    ("record_follow_up", 65, 0.85),
    ("send_evaluation", 215, 0.95),
    ("register_evaluation", 230, 0.80),
]
STATE_AFTER = {
    "open": "referred",
    "invite": "invited",
    "register_baseline": "assessed",
    "book_mapping_visit": "mapping_booked",
    "record_mapping_visit": "plan_active",
    "record_follow_up": "followed_up",
    "send_evaluation": "evaluation_sent",
    "register_evaluation": "evaluated",
}
CLOSE_FROM = {
    "open": "closed_declined",
    "invite": "closed_no_response",
    "register_baseline": "closed_referred_elsewhere",
    "book_mapping_visit": "closed_declined",
    "record_mapping_visit": "closed_other",
    "record_follow_up": "closed_declined",
    "send_evaluation": "closed_completed",
    "register_evaluation": "closed_completed",
}
CHANNELS = ["staff_flag", "staff_flag", "self_referral", "phone", "message_1177"]


def seed(engine: Engine, cases: int) -> None:
    """Bulk-insert units, data keys, patients, cases with their events, plans, hand-overs and
    scores. Deterministic (seeded random)."""
    rng = random.Random(2026)
    start_day = dt.datetime(2023, 1, 2, 8, 0, tzinfo=dt.UTC)
    now = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Unit),
            [
                {
                    "id": u,
                    "name": f"Vårdcentralen {u:02d}",
                    "hsa_id": f"SE2321000016-B{u:03d}",
                    "street": "Gatan 1",
                    "postcode": "722 15",
                    "town": "Västerås",
                    "phone": "021-00 00 00",
                    "phone_hours": "",
                    "created_at": start_day,
                }
                for u in range(1, UNITS + 1)
            ],
        )
    events: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    handovers: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []
    response_id = 0

    def flush(conn: Any, force: bool = False) -> None:
        for model, rows in (
            (CaseEvent, events),
            (ActionPlan, plans),
            (Handover, handovers),
            (QuestionnaireResponse, responses),
            (QuestionnaireScore, scores),
        ):
            if rows and (force or len(rows) >= BATCH):
                conn.execute(insert(model), rows)
                rows.clear()

    def answer(case_id: int, occasion: str, at: dt.datetime, base: dict[str, float]) -> None:
        nonlocal response_id
        for form_id, items in (
            ("ucla3", ["total"]),
            ("bench_wellbeing", [s for s, _d in WELLBEING_SCORES]),
        ):
            response_id += 1
            responses.append(
                {
                    "id": response_id,
                    "case_id": case_id,
                    "form_id": form_id,
                    "form_version": 1,
                    "occasion": occasion,
                    "source": "paper",
                    "answers_enc": b"x",
                    "is_verified": True,
                    "submitted_at": at,
                }
            )
            for score_id in items:
                scores.append(
                    {
                        "response_id": response_id,
                        "case_id": case_id,
                        "form_id": form_id,
                        "score_id": score_id,
                        "occasion": occasion,
                        "value": base[f"{form_id}.{score_id}"],
                        "is_positive": None,
                    }
                )

    started = time.perf_counter()
    with engine.begin() as conn:
        for first in range(1, cases + 1, BATCH):
            ids = range(first, min(first + BATCH, cases + 1))
            conn.execute(
                insert(DataKey),
                [
                    {"id": i, "wrapped": b"x", "master_key_id": "m1", "created_at": start_day}
                    for i in ids
                ],
            )
            conn.execute(
                insert(Patient),
                [
                    {
                        "id": i,
                        "data_key_id": i,
                        "registered_unit_id": 1 + i % UNITS,
                        "identifier_kind": "pnr",
                        "identifier_issuer": "1.2.752.129.2.1.3.1",
                        "preferred_language": "sv",
                        "is_protected_identity": False,
                        "birth_year": rng.randint(1925, 2005),
                        "sex": rng.choice(["female", "female", "male", None]),
                        "created_at": start_day,
                    }
                    for i in ids
                ],
            )
            case_rows = []
            for case_id in ids:
                opened = start_day + dt.timedelta(
                    days=rng.randint(0, 1350), hours=rng.randint(0, 8)
                )
                events.append(
                    {
                        "case_id": case_id,
                        "event": "open",
                        "from_state": None,
                        "to_state": "referred",
                        "actor_name": "bench",
                        "actor_role": "coach",
                        "occurred_at": opened,
                    }
                )
                last = "open"
                state_from = "referred"
                moment = opened
                baseline: dict[str, float] = {}
                for event, days, _p in STEPS:
                    at = opened + dt.timedelta(days=days + rng.randint(0, 6))
                    if at > now:
                        break
                    moment = at
                    to_state = STATE_AFTER[event]
                    if event == "record_mapping_visit":
                        plans.append(
                            {"case_id": case_id, "revision": 1, "goals_enc": b"x", "created_at": at}
                        )
                        if rng.random() < 0.3:
                            handovers.append(
                                {
                                    # The organisation's name is sealed (not read here).
                                    "case_id": case_id,
                                    "organisation_name_enc": b"x",
                                    "status": "done",
                                    "created_at": at,
                                    "meeting_at": at + dt.timedelta(days=9),
                                }
                            )
                    if event == "send_evaluation" and last == "record_mapping_visit":
                        pass  # follow-up 1 skipped: the timer sent the evaluation
                    events.append(
                        {
                            "case_id": case_id,
                            "event": event,
                            "from_state": state_from,
                            "to_state": to_state,
                            "actor_name": "bench",
                            "actor_role": "coach",
                            "occurred_at": at,
                        }
                    )
                    if event == "register_baseline":
                        ucla = rng.randint(4, 9)
                        baseline = {"ucla3.total": ucla}
                        for score_id, _d in WELLBEING_SCORES:
                            baseline[f"bench_wellbeing.{score_id}"] = rng.randint(1, 8)
                        answer(case_id, "baseline", at, baseline)
                    if event == "register_evaluation":
                        later = {
                            key: min(
                                10 if "wellbeing" in key else 9,
                                max(
                                    0 if "wellbeing" in key else 3,
                                    value + rng.choice([-2, -1, -1, 0, 0, 1, 2]),
                                ),
                            )
                            for key, value in baseline.items()
                        }
                        answer(case_id, "six_month", at, later)
                    state_from, last = to_state, event
                    chance = dict((e, p) for e, _d, p in STEPS)[event]
                    if rng.random() > chance:
                        break
                state = state_from
                closed_at = None
                if rng.random() < 0.85 and (moment + dt.timedelta(days=20)) < now:
                    state = CLOSE_FROM[last]
                    closed_at = moment + dt.timedelta(days=20)
                    events.append(
                        {
                            "case_id": case_id,
                            "event": "close",
                            "from_state": state_from,
                            "to_state": state,
                            "actor_name": "bench",
                            "actor_role": "coach",
                            "occurred_at": closed_at,
                        }
                    )
                case_rows.append(
                    {
                        "id": case_id,
                        "reference": f"B{case_id:07d}",
                        "unit_id": 1 + case_id % UNITS,
                        "patient_id": case_id,
                        "state": state,
                        "channel": rng.choice(CHANNELS),
                        "contact_channel": "post",
                        "is_consent_to_contact": True,
                        "opened_at": opened,
                        "state_entered_at": closed_at or moment,
                        "closed_at": closed_at,
                        "version": 1,
                    }
                )
            conn.execute(insert(Case), case_rows)
            flush(conn)
            print(f"  seeded {ids[-1]:,} cases ({time.perf_counter() - started:.0f} s)", flush=True)
        flush(conn, force=True)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in ("units", "data_keys", "patients", "cases", "questionnaire_responses"):
                statement = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: E501, S608 - fixed table names
                conn.execute(text(statement))
        # A production database is vacuumed by autovacuum (which also sets the visibility map
        # that index-only scans rely on); a freshly bulk-loaded one is not yet.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def make_app(url: str) -> Any:
    from slussen.app import create_app

    return create_app(
        {
            "env": "development",
            "database_url": url,
            "instance_dir": str(DATA / "eval-instance"),
            "secret_key": "bench-secret-key-that-is-long-enough-123456",
            "content_dir": str(content_dir()),
            "csrf_enabled": False,
            "argon2_time_cost": 1,
            "argon2_memory_kib": 8,
        }
    )


def ensure_evaluator(app: Any) -> None:
    from slussen.accounts.models import User
    from slussen.accounts.services import create_user
    from slussen.db import session_scope

    with app.app_context(), session_scope(app) as session:
        if session.scalar(select(User.id).where(User.username == "utvarderare")) is None:
            create_user(
                session,
                app.extensions["slussen.settings"],
                username="utvarderare",
                display_name="Bench Utvärderare",
                role="evaluator",
                password=PASSWORD,
                unit_ids=[],
            )


def sql_floor(app: Any) -> float:
    """The floor: the evaluation's queries (the cases; per milestone, score and occasion the
    (case, number) columns) executed and read as the evaluation reads them (through
    `_all_numbers` and `_case_batches`, so packed on PostgreSQL, from the driver's cursor on
    SQLite), nothing else. The outputs' times are also given as ratios to it."""
    from slussen.evaluation.dataset import (
        _all_numbers,
        _case_batches,
        cases_query,
        milestone_events,
        side_queries,
    )
    from slussen.evaluation.definitions import outcome_definitions, screening_forms

    content = app.extensions["slussen.content"]
    queries = side_queries(
        outcome_definitions(content),
        screening_forms(content),
        milestone_events(content.compiled["workflow"]),
    )
    started = time.perf_counter()
    with app.extensions["slussen.engine"].connect() as conn:
        _all_numbers(conn, queries)
        for _batch in _case_batches(conn, cases_query([])):
            pass
    return time.perf_counter() - started


def timed(client: Any, url: str, expect: bytes) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or expect not in response.data:
        raise SystemExit(f"{url} answered {response.status_code}; expected {expect!r}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=f"sqlite:///{DATA / 'eval-bench.sqlite3'}")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    DATA.mkdir(exist_ok=True)
    url = args.database_url
    backend = make_url(url).get_backend_name()
    marker = DATA / (
        "eval-seeded-"
        + "".join(c if c.isalnum() else "_" for c in url)[-60:]
        + f"-{args.cases}.json"
    )
    if args.fresh or not marker.exists():
        marker.unlink(missing_ok=True)
        drop_database(url)
        ensure_database(url)
        engine = make_engine(url)
        migrate.upgrade(engine)
        print(f"Seeding {args.cases:,} cases into {backend} …", flush=True)
        seed(engine, args.cases)
        engine.dispose()
        marker.write_text(json.dumps({"url": url, "cases": args.cases}))
    else:
        # A database seeded before a new migration (an index, say) gets it now.
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
    app = make_app(url)
    ensure_evaluator(app)
    engine = app.extensions["slussen.engine"]
    with engine.connect() as conn:
        counts = {
            name: conn.scalar(select(func.count()).select_from(model))
            for name, model in (
                ("cases", Case),
                ("case events", CaseEvent),
                ("scores", QuestionnaireScore),
            )
        }
        conn.scalar(select(func.sum(AuditChainHead.seq)))
    print("Rows: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    client = app.test_client()
    login = client.post("/login", data={"username": "utvarderare", "password": PASSWORD})
    if login.status_code != 302:
        raise SystemExit("login as the evaluator failed")
    measured: dict[str, list[float]] = {"floor": [], "page": [], "csv": [], "pdf": []}
    for _ in range(args.rounds):
        measured["floor"].append(sql_floor(app))
        measured["page"].append(timed(client, "/utvardering", "Utvärdering".encode()))
        measured["csv"].append(timed(client, "/utvardering/data.csv", b"pseudonym,"))
        measured["pdf"].append(timed(client, "/utvardering/rapport.pdf", b"%PDF"))
    targets = dict(zip(("page", "csv", "pdf"), TARGETS[backend], strict=True))
    targets["floor"] = float("inf")
    floor = min(measured["floor"])
    print(
        f"\n{backend}, {counts['cases']:,} cases, {args.rounds} rounds "
        f"(Python {platform.python_version()}, {platform.machine()})"
    )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'output':<8}{'best s':>9}{'median s':>10}{'÷ floor':>9}{'target s':>10}  ok")
    failed = False
    for name, times in measured.items():
        best = min(times)
        ok = best < targets[name]
        failed |= not ok
        print(
            f"{name:<8}{best:>9.2f}{statistics.median(times):>10.2f}{best / floor:>9.2f}"
            f"{targets[name]:>10.1f}  {'yes' if ok else 'NO'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
