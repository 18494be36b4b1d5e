"""Seed a region-sized Slussen database for the benchmarks: 50 units, a coach each, 100,000 cases.

Run: python bench/seed_region.py [--database-url URL] [--cases 100000] [--units 50]

The product does the seeding itself: `slussen demo --cases N --units U` takes N cases to their
states through the services the pages call (slussen/demo/), with encrypted patients, blind
index, history, answers, letters, visits, plans and one audit row per event. That is slow (well
over an hour for 100,000 cases), so seed once and reuse the database. This script runs it and
adds only what the benchmarks need:

* `slussen init-db`, then `slussen demo --password P --cases N --units U` (the demo makes units up
  to U and a coach `coach<unit id>` in every unit without one, all with one argon2 hash of P; the
  demo user `coach` works in the first unit). Resumable: the demo seeds only the missing cases.
* VACUUM ANALYZE on PostgreSQL, so the planner knows the new rows and index-only scans (the
  worklist's) can skip the table before the first measurement (what autovacuum would do shortly
  anyway).
* a sanity check: one seeded case opened through the real code path (Keystore, `case_view`,
  `visit_panel`) decrypts its identity, history notes and action plan, and the blind index finds
  its patient by personnummer; the reads (and their audit rows) are rolled back.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from bench.harness import (
    BENCH_PASSWORD,
    DATA_DIR,
    INSTANCE_DIR,
    BenchError,
    _run_cli,
    ensure_database,
    safe_url,
    server_env,
)

#: The default database of the cases benchmark (its own file: bench/run.py keeps its own).
DEFAULT_SQLITE = DATA_DIR / "slussen-bench-cases.sqlite3"


def default_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE}"


def build_app(url: str) -> Flask:
    """Slussen's app configured exactly as the benchmark servers are (same instance folder)."""
    from slussen.app import create_app
    from slussen.config import load_settings

    return create_app(load_settings(environ=server_env(url)))


@dataclass
class SeedResult:
    cases: int
    seconds: float
    demo_output: str


def run_demo(url: str, cases: int, units: int, password: str = BENCH_PASSWORD) -> SeedResult:
    """`slussen init-db` and `slussen demo --password P --cases N --units U` against `url`."""
    ensure_database(url)
    env = server_env(url)
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    _run_cli(["init-db"], env)
    started = time.perf_counter()
    # No time limit: a region of 100,000 cases takes over an hour (the demo is resumable).
    output = _run_cli(
        ["demo", "--password", password, "--cases", str(cases), "--units", str(units)],
        env,
        timeout=None,
    )
    return SeedResult(cases, time.perf_counter() - started, output)


def analyze(app: Flask) -> None:
    engine = app.extensions["slussen.engine"]
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def verify_case(app: Flask) -> str:
    """Open a seeded followed-up case through the real code path and check what it decrypts to;
    the reads (and their audit rows) are rolled back. Returns a one-line summary; raises
    BenchError."""
    from slussen.audit import Actor
    from slussen.cases.engine import current_workflow
    from slussen.cases.models import Case
    from slussen.cases.services import case_view
    from slussen.keystore import Keystore, open_key_ring
    from slussen.patients.services import find_patient_id
    from slussen.visits.views import visit_panel

    settings = app.extensions["slussen.settings"]
    factory = app.extensions["slussen.sessionmaker"]
    ring = open_key_ring(settings)
    # visit_panel translates labels, which needs a request (the locale comes from the session).
    with app.test_request_context():
        session: Session = factory()
        try:
            store = Keystore(session, ring)
            case = session.scalar(
                select(Case).where(Case.state == "followed_up").order_by(Case.id.desc()).limit(1)
            )
            if case is None:
                raise BenchError("no followed-up case: was the database seeded?")
            actor = Actor(None, "bench-verify", "coach", frozenset({case.unit_id}))
            view = case_view(store, actor, case)
            identity = view["identity"]
            panel = visit_panel(store, case, current_workflow())
            problems = []
            if not identity.name or not identity.identifier.value:
                problems.append("identity does not decrypt")
            if not [text for _ref, text in view["referrals"] if text]:
                problems.append("no readable referral reason")
            if not [e.note for e in view["timeline"] if e.note]:
                problems.append("no readable history note")
            if panel["plan"] is None or not panel["plan"].goals:
                problems.append("no readable action plan")
            found = find_patient_id(store, identity.identifier)
            if found != case.patient_id:
                problems.append(f"blind index finds {found}, not {case.patient_id}")
            if problems:
                raise BenchError(f"case {case.id}: " + "; ".join(problems))
            return (
                f"case {case.reference} (id {case.id}, {case.state}): identity, "
                f"{len(view['timeline'])} history rows, {len(view['referrals'])} referral(s), "
                f"plan and {len(panel['visits'])} visit(s) decrypt; blind index finds patient "
                f"{found}"
            )
        finally:
            session.rollback()
            session.close()


def seed_region(
    url: str, cases: int, units: int, password: str = BENCH_PASSWORD, *, quiet: bool = False
) -> SeedResult:
    """The demo (real CLI) with `cases` cases over `units` units, ANALYZE, one case verified."""
    result = run_demo(url, cases, units, password)
    app = build_app(url)
    try:
        with app.extensions["slussen.sessionmaker"]() as session:
            from slussen.cases.models import Case

            total = int(session.scalar(select(func.count()).select_from(Case)) or 0)
        if not quiet:
            seeded = [line for line in result.demo_output.splitlines() if "Demo cases" in line]
            print(f"slussen demo: {'; '.join(seeded) or 'done'} ({result.seconds:.1f} s)")
        if total < cases:
            raise BenchError(f"the database holds {total} cases, not {cases}")
        analyze(app)
        if not quiet:
            print("Verified:", verify_case(app))
    finally:
        app.extensions["slussen.engine"].dispose()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help=f"default: {default_url()}")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=50)
    args = parser.parse_args(argv)
    if args.cases < 0 or not 3 <= args.units <= 500:
        parser.error("--cases ≥ 0, --units 3..500")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url or default_url()
    print(f"Database: {safe_url(url)}; {args.cases} cases over {args.units} units")
    try:
        seed_region(url, args.cases, args.units)
    except BenchError as exc:
        print(f"bench/seed_region.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
