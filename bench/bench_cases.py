"""The cases benchmark (issue 4): the worklist and the case page in a region-sized database.

Run: python bench/bench_cases.py [--database-url URL] [--cases 100000] [--units 50]

Targets (issue 4): with 100,000 cases over 50 units the coach worklist (`/arbetslista`) serves at
least 40 % of the bare page's requests per second and the case page (`/arenden/<id>`) at least
30 %; p99 under 10 × p50 for every measured page; no page loads more than one page of cases.

1. Seeds with bench/seed_region.py (`slussen init-db`, `slussen demo --cases N --units U`,
   ANALYZE, one case checked), skipped when a marker in bench/.data/seeded/ says this URL
   already holds that many cases over that many units (`--fresh` seeds anyway; seeding only
   ever adds the missing cases).
2. In process (create_app + test client on the same database), with SQLAlchemy event listeners:
   counts the SQL statements and the cases fetched (rows of ORM selects of whole `Case`
   entities) of one request to each page, and checks that no page fetches more than
   PAGE_SIZE + 1 cases. `--profile N` also runs N in-process requests per page under cProfile
   and prints the top functions.
3. Serves Slussen (`slussen serve`) and bench/bare_app.py with the same gunicorn settings, logs in
   through the real form as the coach of the unit with the most worklist cases and as
   `koordinator`, and for each of `--rounds` rounds measures: bare, worklist, bare, case page
   (rotating over `--case-ids` case ids of that unit, every state), bare, `/enhet` (coordinator,
   informational: no req/s target). The best round of each counts (bench/run.py's rule).
   `--floor` also serves bench/floor_app.py (Slussen plus three bench-only pages) and measures a
   logged-in page with the base layout and nothing else, the same page with the one access-log
   row every page of patient data must append and commit, and the same page with the 50 rows a
   list of 50 patients appends: the floors under the worklist's and the case page's ratios.
4. Prints PASS/FAIL per target, writes bench/results/cases-<timestamp>.{json,md}.

Exit codes: 0 every target met and no request errored, 1 a target missed or a request errored,
2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import pstats
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session

from bench.harness import (
    _CSRF_RE,
    BENCH_PASSWORD,
    DATA_DIR,
    BenchError,
    Measurement,
    Row,
    bare_server,
    floor_server,
    http_get,
    login_cookie,
    measure,
    report,
    safe_url,
    seed_database,
    slussen_server,
)
from bench.seed_region import build_app, default_url, seed_region

#: Issue 16's targets, with every shown patient's access-log row written (req/s ÷ bare).
WORKLIST_MIN_RPS_RATIO = 0.20
CASE_PAGE_MIN_RPS_RATIO = 0.15
#: The long-run goals (issue 16), reported beside the targets.
WORKLIST_GOAL_RPS_RATIO = 0.60
CASE_PAGE_GOAL_RPS_RATIO = 0.45
#: `--floor`: the audited floor's req/s at least this share of the logged-in floor's.
AUDITED_MIN_SHARE_OF_FLOOR = 0.85
MAX_P99_OVER_P50 = 10.0
COORDINATOR = "koordinator"
#: bench/floor_app.py's pages (`--floor`): the floors under the pages measured.
FLOOR_PAGES = (
    ("floor: logged in", "/golv/inloggad", "inloggad"),
    ("floor: audited", "/golv/granskad", "granskad"),
    ("floor: 50 listed", "/golv/lista", "lista"),
)
FLOOR_NAMES = frozenset(name for name, _, _ in FLOOR_PAGES)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help=f"default: {default_url()}")
    parser.add_argument("--cases", type=int, default=100_000, help="cases in the database")
    parser.add_argument("--units", type=int, default=50, help="units the cases are spread over")
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best counts)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--case-ids", type=int, default=200, help="case pages to rotate over")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N in-process requests")
    parser.add_argument("--fresh", action="store_true", help="run the seeding even if marked")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/floor_app.py's floor pages (logged in, audited, 50 listed)",
    )
    args = parser.parse_args(argv)
    for name in ("cases", "requests", "concurrency", "rounds", "workers", "case_ids"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} is too small")
    if not 3 <= args.units <= 500 or args.profile < 0:
        parser.error("--units must be 3..500 and --profile ≥ 0")
    return args


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def _marker(url: str, cases: int, units: int) -> Path:
    digest = hashlib.sha256(f"cases\0{url}\0{cases}\0{units}".encode()).hexdigest()[:16]
    return DATA_DIR / "seeded" / f"cases-{digest}.json"


def ensure_seeded(url: str, cases: int, units: int, *, force: bool) -> None:
    marker = _marker(url, cases, units)
    if marker.exists() and not force:
        # init-db still runs (a schema older than the code would measure error pages).
        seed_database(url, 0, BENCH_PASSWORD)
        print(f"Already seeded ({marker.relative_to(DATA_DIR.parent.parent)}); --fresh reseeds.")
        return
    started = time.perf_counter()
    seed_region(url, cases, units, BENCH_PASSWORD)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps(
            {
                "url": safe_url(url),
                "cases": cases,
                "units": units,
                "seeded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


# --------------------------------------------------------------------------------------------
# Who and what to measure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    coach: str
    unit_id: int
    worklist_cases: int
    unit_cases: int
    case_ids: list[int]
    references: dict[int, str]


def choose_subject(app: Flask, wanted_ids: int) -> Subject:
    """The coach (coach<unit id>) whose worklist is longest, and case ids of their unit spread
    over every state (every k-th case in id order)."""
    from slussen.accounts.models import Membership, User
    from slussen.cases.models import Case
    from slussen.config import today_local

    workflow = app.extensions["slussen.content"].compiled["workflow"]
    horizon = today_local() + dt.timedelta(days=7)
    factory = app.extensions["slussen.sessionmaker"]
    with factory() as session:
        coaches = session.execute(
            select(User.id, User.username, Membership.unit_id)
            .join(Membership, Membership.user_id == User.id)
            .where(User.role == "coach", User.username.like("coach%"), User.username != "coach")
        ).all()
        if not coaches:
            raise BenchError("no coach<unit id> users: was the database seeded?")
        best: tuple[int, str, int] | None = None
        for user_id, username, unit_id in coaches:
            count = int(
                session.scalar(
                    select(func.count())
                    .select_from(Case)
                    .where(
                        Case.unit_id == unit_id,
                        Case.state.in_(workflow.active_states),
                        (Case.coach_id == user_id) | Case.coach_id.is_(None),
                        Case.next_due_on <= horizon,
                    )
                )
                or 0
            )
            if best is None or count > best[0]:
                best = (count, username, unit_id)
        assert best is not None
        count, username, unit_id = best
        ids = list(
            session.scalars(select(Case.id).where(Case.unit_id == unit_id).order_by(Case.id))
        )
        step = max(1, len(ids) // wanted_ids)
        chosen = ids[::step][:wanted_ids]
        references = dict(
            session.execute(select(Case.id, Case.reference).where(Case.id.in_(chosen[:5]))).all()
        )
    return Subject(username, unit_id, count, len(ids), chosen, references)


# --------------------------------------------------------------------------------------------
# In process: SQL statements and cases fetched per request
# --------------------------------------------------------------------------------------------


@dataclass
class SqlCount:
    statements: int = 0
    cases_fetched: int = 0
    case_instances_loaded: int = 0
    by_statement: Counter[str] = field(default_factory=Counter)


@contextmanager
def counting(app: Flask) -> Iterator[SqlCount]:
    """Count statements (cursor executions) and cases fetched while the block runs."""
    from slussen.cases.models import Case

    counts = SqlCount()
    engine = app.extensions["slussen.engine"]

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts.statements += 1
        counts.by_statement[" ".join(statement.split())[:110]] += 1

    def on_orm_execute(state: ORMExecuteState) -> Any:
        if not state.is_select:
            return None
        descriptions = getattr(state.statement, "column_descriptions", [])
        # Whole cases (ORM entities) or rows of case columns that include the case's id.
        if not any(d.get("expr") is Case or d.get("expr") is Case.id for d in descriptions):
            return None
        frozen = state.invoke_statement().freeze()
        counts.cases_fetched += len(frozen.data)
        return frozen()

    def on_load(_target: Any, _context: Any) -> None:
        counts.case_instances_loaded += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(Session, "do_orm_execute", on_orm_execute)
    event.listen(Case, "load", on_load)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(Session, "do_orm_execute", on_orm_execute)
        event.remove(Case, "load", on_load)


def client_login(client: FlaskClient, username: str, password: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    match = _CSRF_RE.search(page)
    if match is None:
        raise BenchError("in process: no csrf_token on /login")
    response = client.post(
        "/login",
        data={
            "csrf_token": match.group(1) or match.group(2),
            "username": username,
            "password": password,
        },
    )
    if response.status_code not in (302, 303):
        raise BenchError(f"in process: login as {username} answered {response.status_code}")


@dataclass
class PageCheck:
    name: str
    path: str
    status: int
    statements: int
    cases_fetched: int
    case_instances_loaded: int
    top_statements: list[tuple[str, int]]

    @property
    def one_page(self) -> bool:
        from slussen.cases.services import PAGE_SIZE

        return self.cases_fetched <= PAGE_SIZE + 1


def in_process(
    url: str, subject: Subject, profile_requests: int
) -> tuple[list[PageCheck], dict[str, str]]:
    """One request to each page under the counters (after one warm-up request each)."""
    app = build_app(url)
    pages = [
        ("worklist", "/arbetslista", subject.coach),
        ("case page", f"/arenden/{subject.case_ids[0]}", subject.coach),
        ("unit (coordinator)", "/enhet", COORDINATOR),
    ]
    clients: dict[str, FlaskClient] = {}
    for username in {user for _n, _p, user in pages}:
        clients[username] = app.test_client()
        client_login(clients[username], username, BENCH_PASSWORD)
    checks = []
    profiles: dict[str, str] = {}
    for name, path, username in pages:
        client = clients[username]
        client.get(path)  # warm-up: templates, translations, key ring
        with counting(app) as counts:
            response = client.get(path)
        checks.append(
            PageCheck(
                name,
                path,
                response.status_code,
                counts.statements,
                counts.cases_fetched,
                counts.case_instances_loaded,
                counts.by_statement.most_common(8),
            )
        )
        if profile_requests:
            profiles[name] = _profile(client, name, path, subject, profile_requests)
    app.extensions["slussen.engine"].dispose()
    return checks, profiles


def _profile(client: FlaskClient, name: str, path: str, subject: Subject, n: int) -> str:
    paths = (
        [f"/arenden/{case_id}" for case_id in subject.case_ids] if name == "case page" else [path]
    )
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for i in range(n):
        client.get(paths[i % len(paths)])
    profiler.disable()
    seconds = time.perf_counter() - started
    out = io.StringIO()
    out.write(f"--- {name}: {n} in-process requests, {1000 * seconds / n:.1f} ms each ---\n")
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# HTTP measurement
# --------------------------------------------------------------------------------------------


def _check(base_url: str, path: str, cookie: str | None, must_contain: str) -> None:
    status, headers, body = http_get(base_url, path, cookie, timeout=30)
    if status != 200 or must_contain.encode() not in body:
        where = f" -> {headers.get('location')}" if "location" in headers else ""
        raise BenchError(
            f"GET {path} on {base_url} answered {status}{where} without {must_contain!r}"
        )


def _best(measurements: list[Measurement]) -> Measurement:
    return max(measurements, key=lambda m: m.rps)


@dataclass(frozen=True)
class Target:
    what: str
    value: str
    limit: str
    ok: bool


def evaluate(rows: dict[str, Row], checks: list[PageCheck]) -> list[Target]:
    from slussen.cases.services import PAGE_SIZE

    targets = [
        Target(
            "worklist req/s ratio",
            f"{rows['worklist'].rps_ratio:.2f} (long-run goal {WORKLIST_GOAL_RPS_RATIO:.2f})",
            f"≥ {WORKLIST_MIN_RPS_RATIO:.2f}",
            rows["worklist"].rps_ratio >= WORKLIST_MIN_RPS_RATIO,
        ),
        Target(
            "case page req/s ratio",
            f"{rows['case page'].rps_ratio:.2f} (long-run goal {CASE_PAGE_GOAL_RPS_RATIO:.2f})",
            f"≥ {CASE_PAGE_MIN_RPS_RATIO:.2f}",
            rows["case page"].rps_ratio >= CASE_PAGE_MIN_RPS_RATIO,
        ),
    ]
    if "floor: audited" in rows:
        # Each against its own bare round, so the drift between the two rounds cancels.
        share = rows["floor: audited"].rps_ratio / rows["floor: logged in"].rps_ratio
        targets.append(
            Target(
                "audited floor ÷ logged-in floor (req/s ratios)",
                f"{share:.2f}",
                f"≥ {AUDITED_MIN_SHARE_OF_FLOOR:.2f}",
                share >= AUDITED_MIN_SHARE_OF_FLOOR,
            )
        )
    for name, row in rows.items():
        if name in FLOOR_NAMES:
            continue
        m = row.measurement
        ratio = m.p99_ms / m.p50_ms if m.p50_ms else float("inf")
        targets.append(
            Target(
                f"{name} p99 / p50",
                f"{ratio:.1f} ({m.p99_ms:.0f} / {m.p50_ms:.1f} ms)",
                f"< {MAX_P99_OVER_P50:.0f}",
                ratio < MAX_P99_OVER_P50,
            )
        )
    for check in checks:
        targets.append(
            Target(
                f"{check.name} cases fetched per request",
                f"{check.cases_fetched} ({check.statements} SQL statements)",
                f"≤ {PAGE_SIZE + 1}",
                check.one_page and check.status == 200,
            )
        )
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url or default_url()
    print(f"Database: {safe_url(url)}; {args.cases} cases over {args.units} units")
    try:
        ensure_seeded(url, args.cases, args.units, force=args.fresh)
        app = build_app(url)
        subject = choose_subject(app, args.case_ids)
        app.extensions["slussen.engine"].dispose()
        print(
            f"Coach {subject.coach} (unit {subject.unit_id}: {subject.unit_cases} cases, "
            f"{subject.worklist_cases} due within a week); {len(subject.case_ids)} case pages"
        )
        checks, profiles = in_process(url, subject, args.profile)
        for check in checks:
            print(
                f"  in process {check.name:<19} {check.path:<16} {check.status}  "
                f"{check.statements:3d} SQL statements, {check.cases_fetched} cases fetched"
            )
            for statement, count in check.top_statements[:4]:
                print(f"      {count:3d} × {statement}")
        for text in profiles.values():
            print(text)

        case_paths = [f"/arenden/{case_id}" for case_id in subject.case_ids]
        first_case = subject.case_ids[0]
        with ExitStack() as servers:
            bare = servers.enter_context(bare_server(url, args.workers))
            app_srv = servers.enter_context(slussen_server(url, args.workers))
            print(
                f"bare on {bare.base_url}, slussen on {app_srv.base_url} ({args.workers} workers)"
            )
            coach_cookie = login_cookie(app_srv.base_url, subject.coach, BENCH_PASSWORD)
            coordinator_cookie = login_cookie(app_srv.base_url, COORDINATOR, BENCH_PASSWORD)
            _check(bare.base_url, "/", None, "Enheter")
            _check(app_srv.base_url, "/arbetslista", coach_cookie, 'href="/arenden/')
            _check(app_srv.base_url, case_paths[0], coach_cookie, subject.references[first_case])
            _check(app_srv.base_url, "/enhet", coordinator_cookie, 'href="/arenden/')

            pages: list[tuple[str, str, list[str], str]] = [
                ("worklist", app_srv.base_url, ["/arbetslista"], coach_cookie),
                ("case page", app_srv.base_url, case_paths, coach_cookie),
                ("unit (coordinator)", app_srv.base_url, ["/enhet"], coordinator_cookie),
            ]
            if args.floor:
                floor = servers.enter_context(floor_server(url, args.workers))
                floor_cookie = login_cookie(floor.base_url, subject.coach, BENCH_PASSWORD)
                for name, path, text in FLOOR_PAGES:
                    _check(floor.base_url, path, floor_cookie, text)
                    pages.append((name, floor.base_url, [path], floor_cookie))

            def run(label: str, base_url: str, paths: list[str], cookie: str | None) -> Measurement:
                result = measure(
                    paths,
                    base_url,
                    cookie,
                    args.concurrency,
                    args.requests,
                    label=label,
                    time_cap=args.time_cap,
                )
                shown = paths[0] + (f" (+{len(paths) - 1})" if len(paths) > 1 else "")
                print(
                    f"  {label:<19} {shown:<22} {result.rps:8.0f} req/s  p50 "
                    f"{result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms  errors {result.errors}"
                    + ("  (time cap hit)" if result.timed_out else "")
                )
                return result

            bare_runs: list[Measurement] = []
            page_runs: dict[str, list[Measurement]] = {name: [] for name, *_ in pages}
            for number in range(1, args.rounds + 1):
                print(f"Round {number}/{args.rounds}")
                for name, base_url, paths, cookie in pages:
                    bare_runs.append(run("bare", bare.base_url, ["/"], None))
                    page_runs[name].append(run(name, base_url, paths, cookie))
            slussen_log, bare_log = app_srv.log_tail(), bare.log_tail()
    except BenchError as exc:
        print(f"bench/bench_cases.py: cannot run the benchmark: {exc}", file=sys.stderr)
        return 2

    baseline = _best(bare_runs)
    rows = {name: Row(name, _best(page_runs[name]), baseline) for name, *_ in pages}
    # The table names the rotated case pages in one cell; the JSON keeps every path.
    case_row = rows["case page"]
    case_row.measurement = replace(
        case_row.measurement, paths=[f"/arenden/<id> ({len(case_paths)} cases)"]
    )
    targets = evaluate(rows, checks)
    everything = bare_runs + [m for runs in page_runs.values() for m in runs]
    lines = [
        f"| {t.what} | {t.value} | {t.limit} | {'PASS' if t.ok else 'FAIL'} |" for t in targets
    ]
    target_table = "| target | measured | limit | result |\n|---|---|---|---|\n" + "\n".join(lines)
    _json_path, md_path = report(
        list(rows.values()),
        "cases",
        settings={
            "database": safe_url(url),
            "cases": args.cases,
            "units": args.units,
            "coach": f"{subject.coach} (unit {subject.unit_id}, {subject.worklist_cases} "
            f"worklist cases of {subject.unit_cases})",
            "case pages rotated": len(subject.case_ids),
            "requests per measurement": args.requests,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "gunicorn": f"{args.workers} workers, gthread, 4 threads",
        },
        extra={
            "targets": [vars(t) for t in targets],
            "in_process": [
                {**vars(c), "top_statements": [list(s) for s in c.top_statements]} for c in checks
            ],
            "all_measurements": [vars(m) for m in everything],
        },
    )
    md_path.write_text(md_path.read_text(encoding="utf-8") + "\n" + target_table + "\n")
    print(target_table)
    failed_requests = [m for m in everything if m.errors]
    for m in failed_requests:
        print(
            f"bench/bench_cases.py: {m.errors} of {m.requests} requests to {m.label} failed, "
            f"e.g. {m.error_samples[:2]}",
            file=sys.stderr,
        )
    if failed_requests:
        print(f"slussen log tail:\n{slussen_log}\nbare log tail:\n{bare_log}", file=sys.stderr)
    missed = [t for t in targets if not t.ok]
    print("ALL TARGETS MET" if not missed else f"{len(missed)} TARGET(S) MISSED")
    return 1 if missed or failed_requests else 0


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the servers' context managers stop them.
    raise SystemExit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
