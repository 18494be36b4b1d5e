"""Benchmark: the evaluator's page, the CSV export and the PDF report on 100,000 cases.

Run (from the repository root):
    .venv/bin/python bench/bench_evaluation.py [--database-url URL] [--cases N] [--rounds R]
                                               [--fresh]

Seeds a database with the research records of N synthetic cases (default 100,000) in realistic
states: a research subject each, with its steps, and its scores (UCLA-3 and a four-score wellbeing
form like ONS4) at baseline and six months, bulk-inserted with Core statements (the workflow
engine would take hours). The evaluation reads these records and nothing else, so no case,
patient or clinical row is seeded. Then, in process through Flask's test client and logged in as
an evaluator, it times R rounds of:

* the floor: the evaluation's one query executed and its rows read, nothing else
* GET /utvardering            (target: < 2 s)
* GET /utvardering/data.csv   (target: < 2 s)
* GET /utvardering/rapport.pdf (target: < 10 s)

and prints the best and median time of each. Exits 1 when a best time misses its target.
The seeded database is kept (bench/.data/) and reused unless --fresh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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
from slussen.db import make_engine
from slussen.paths import shipped_dir
from slussen.research import models as research_models
from slussen.research.models import ResearchScore, ResearchSubject

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
PASSWORD = "ett långt lösenord för mätningen"
BATCH = 20_000
UNITS = 50
TARGETS = {"sqlite": (2.0, 2.0, 10.0), "postgresql": (2.0, 2.0, 10.0)}

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


# The flow's steps in order (the research subject's milestone each sets), days after referral,
# and the chance of reaching the next one.
STEPS = [
    ("invitation", 3, 0.92),
    ("baseline", 18, 0.80),
    ("mapping_visit", 35, 0.85),
    ("follow_up_1", 65, 0.85),
    ("evaluation_sent", 215, 0.95),
    ("six_month", 230, 0.80),
]
# The state a case closes in after its last step.
CLOSE_AFTER = {
    "referred": "closed_declined",
    "invitation": "closed_no_response",
    "baseline": "closed_referred_elsewhere",
    "mapping_visit": "closed_other",
    "follow_up_1": "closed_declined",
    "evaluation_sent": "closed_completed",
    "six_month": "closed_completed",
}
CHANNELS = ["staff_flag", "staff_flag", "self_referral", "phone", "message_1177"]
AGE_BANDS = ["18-29", "30-44", "45-64", "45-64", "65-79", "65-79", "80+"]
SEXES = ["female", "female", "male", "unknown"]
UCLA_CUTOFF = 6


def pseudonym(kind: str, n: int) -> str:
    """A stand-in for the keyed pseudonym: 64 hex characters in no particular order."""
    return hashlib.sha256(f"bench-{kind}-{n}".encode()).hexdigest()


def seed(engine: Engine, cases: int) -> None:
    """Bulk-insert units and the research records of `cases` cases in realistic states: what
    the evaluation reads and nothing else (it never reads a case, event, score or patient row).
    Deterministic (seeded random)."""
    rng = random.Random(2026)
    start_day = dt.date(2023, 1, 2)
    today = dt.date(2026, 11, 1)
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
                    "created_at": dt.datetime(2023, 1, 2, 8, tzinfo=dt.UTC),
                }
                for u in range(1, UNITS + 1)
            ],
        )
    subjects: list[dict[str, Any]] = []
    scores: list[dict[str, Any]] = []

    def flush(conn: Any) -> None:
        for model, rows in ((ResearchSubject, subjects), (ResearchScore, scores)):
            if rows:
                conn.execute(insert(model), rows)
                rows.clear()

    def answer(subject: str, occasion: str, base: dict[str, float]) -> None:
        for key, value in base.items():
            form_id, score_id = key.split(".")
            scores.append(
                {
                    "subject_pseudonym": subject,
                    "form_id": form_id,
                    "score_id": score_id,
                    "occasion": occasion,
                    "value": value,
                    "is_positive": value >= UCLA_CUTOFF if form_id == "ucla3" else None,
                }
            )

    started = time.perf_counter()
    with engine.begin() as conn:
        for case_id in range(1, cases + 1):
            subject = pseudonym("case", case_id)
            referred = start_day + dt.timedelta(days=rng.randint(0, 1350))
            row: dict[str, Any] = {
                "pseudonym": subject,
                "patient_pseudonym": pseudonym("patient", case_id),
                "unit_id": 1 + case_id % UNITS,
                "channel": rng.choice(CHANNELS),
                "age_band": rng.choice(AGE_BANDS),
                "sex": rng.choice(SEXES),
                "status": "open",
                "is_flagged": False,
                "referred_on": referred,
                **{f"{step}_on": None for step in research_models.MILESTONES},
            }
            last, moment = "referred", referred
            baseline: dict[str, float] = {}
            for step, days, chance in STEPS:
                day = referred + dt.timedelta(days=days + rng.randint(0, 6))
                if day > today:
                    break
                last, moment = step, day
                if step == "mapping_visit":
                    row["mapping_visit_on"] = row["action_plan_on"] = day
                    if rng.random() < 0.3:
                        row["handover_done_on"] = day + dt.timedelta(days=9)
                elif f"{step}_on" in row:
                    row[f"{step}_on"] = day
                if step == "baseline":
                    baseline = {"ucla3.total": rng.randint(4, 9)}
                    for score_id, _d in WELLBEING_SCORES:
                        baseline[f"bench_wellbeing.{score_id}"] = rng.randint(1, 8)
                    row["is_flagged"] = baseline["ucla3.total"] >= UCLA_CUTOFF
                    answer(subject, "baseline", baseline)
                if step == "six_month":
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
                    answer(subject, "six_month", later)
                if rng.random() > chance:
                    break
            if rng.random() < 0.85 and moment + dt.timedelta(days=20) < today:
                row["status"] = CLOSE_AFTER[last]
            subjects.append(row)
            if len(subjects) >= BATCH:
                flush(conn)
                print(
                    f"  seeded {case_id:,} cases ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        flush(conn)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            statement = (
                "SELECT setval(pg_get_serial_sequence('units', 'id'), (SELECT max(id) FROM units))"
            )
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
    """The floor: the evaluation's one query (`subjects_query`, every subject with its scores)
    executed and its rows read, nothing else. The outputs' times are also given as ratios to
    it."""
    from slussen.evaluation.dataset import subjects_query
    from slussen.evaluation.definitions import outcome_definitions, screening_forms

    content = app.extensions["slussen.content"]
    query = subjects_query(outcome_definitions(content), screening_forms(content))
    started = time.perf_counter()
    with app.extensions["slussen.engine"].connect() as conn:
        for _row in conn.execute(query):
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
                ("cases", ResearchSubject),
                ("scores", ResearchScore),
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
