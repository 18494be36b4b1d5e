"""The directory benchmark: the public week calendar against the bare Flask + SQLAlchemy page,
and the time to build the iCalendar feed of every activity.

Run: python bench/bench_directory.py [--database-url URL] [--organisations 500]
     [--activities 2000] [--requests 4000] [--concurrency 8] [--rounds 4] [--workers 2]

Seeds a fresh database (once; a marker skips it on reruns) with `--organisations` organisations
and `--activities` published activities with realistic schedules (weekly, every second week,
monthly on the nth weekday, one-off dates with extra dates) through the real services, so the
stored occasions are what production would hold. Then serves Slussen (gunicorn, as `slussen
serve`) and bench/bare_app.py with the same settings, measures `/aktiviteter` (this week, first
page) and the bare page for --rounds rounds each, and reports the best round of each with ratios
(target: calendar ≥ 0.40 of the bare page's req/s). The `.ics` feed of all activities is built
in-process, best of 5 (target: under 1 s). Results go to bench/results/directory-<stamp>.{json,md}.

Exits 0 when no request errored, 1 when some did, 2 when the benchmark could not run. It reports
the targets but does not fail on them: speed is for people to read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    DATA_DIR,
    INSTANCE_DIR,
    REPO,
    THREADS,
    WORKER_CLASS,
    BenchError,
    Measurement,
    Row,
    Server,
    http_get,
    measure,
    report,
    safe_url,
    server_env,
    sqlalchemy_url,
)

AREAS = ["Centrum", "Skarptorp", "Ljura", "Hageby", "Navestad", "Klockaretorpet", "Ektorp",
         "Vilbergen", "Eneby", "Kneippen", "Smedby", "Lindö"]  # fmt: skip
WORDS = ["Promenad", "Språkcafé", "Stickcafé", "Seniorgympa", "Berättarcafé", "Fiskestuga",
         "Teknikhjälp", "Körsång", "Boccia", "Schack", "Vävning", "Sagostund", "Bio"]  # fmt: skip
RATIO_TARGET = 0.40
ICS_TARGET_S = 1.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=f"sqlite:///{DATA_DIR / 'directory.sqlite3'}")
    parser.add_argument("--organisations", type=int, default=500)
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    return parser.parse_args()


def _app(url: str) -> Any:
    from slussen.app import create_app

    return create_app(
        {
            "database_url": url,
            "instance_dir": str(INSTANCE_DIR),
            "env": "development",
            "argon2_time_cost": 1,
            "argon2_memory_kib": 8,
        }
    )


def seed(url: str, organisations: int, activities: int) -> float:
    """Seed once; returns seconds spent (0 when the marker says it is done)."""
    from sqlalchemy import func, select

    from slussen import migrate
    from slussen.accounts.models import User
    from slussen.accounts.services import create_user
    from slussen.config import today_local
    from slussen.db import engine, session_scope
    from slussen.directory.categories import interest_categories
    from slussen.directory.models import Activity
    from slussen.directory.schedule import WEEKDAY_CODES
    from slussen.directory.services import ActivityData, create_organisation, submit_activity

    marker = DATA_DIR / "seeded" / "directory.json"
    wanted = {"url": safe_url(url), "organisations": organisations, "activities": activities}
    app = _app(url)
    with app.app_context():
        migrate.upgrade(engine())
        with session_scope(app) as session:
            have = session.scalar(select(func.count()).select_from(Activity)) or 0
        if marker.exists() and json.loads(marker.read_text()) == wanted and have >= activities:
            return 0.0
        started = time.perf_counter()
        rng = random.Random(7)
        categories = [c.id for c in interest_categories()]
        today = today_local()
        week = today - dt.timedelta(days=today.weekday())
        with session_scope(app) as session:
            coordinator = session.scalar(select(User).where(User.username == "bench-samordnare"))
            if coordinator is None:
                coordinator = create_user(
                    session,
                    app.extensions["slussen.settings"],
                    username="bench-samordnare",
                    display_name="Bench Samordnare",
                    role="coordinator",
                    password="bench-lungfish-harbour-lantern",
                    unit_ids=[],
                )
            orgs = [
                create_organisation(
                    session,
                    coordinator,
                    name=f"Förening {i + 1}",
                    sector=rng.choice(["ideburen", "kommun", "trossamfund", "region", "privat"]),
                    area=rng.choice(AREAS),
                )
                for i in range(organisations)
            ]
            for i in range(activities):
                weekday = rng.randrange(7)
                first = week + dt.timedelta(days=weekday - 7 * rng.randrange(0, 8))
                kind = rng.random()
                if kind < 0.6:
                    rule = f"FREQ=WEEKLY;BYDAY={WEEKDAY_CODES[weekday]}"
                elif kind < 0.75:
                    rule = f"FREQ=WEEKLY;INTERVAL=2;BYDAY={WEEKDAY_CODES[weekday]}"
                elif kind < 0.9:
                    nth = (first.day - 1) // 7 + 1
                    rule = f"FREQ=MONTHLY;BYDAY={min(nth, 4)}{WEEKDAY_CODES[weekday]}"
                else:
                    rule = ""
                data = ActivityData(
                    title=f"{rng.choice(WORDS)} {i + 1}",
                    description="Välkommen att vara med. Vi ses!",
                    categories=rng.sample(categories, rng.randint(1, 3)),
                    first_date=first,
                    start_time=dt.time(rng.randint(9, 19), rng.choice([0, 15, 30])),
                    duration_minutes=rng.choice([45, 60, 90, 120]),
                    rrule=rule,
                    extra_dates=[(today + dt.timedelta(days=d)).isoformat() for d in (9, 23)]
                    if not rule
                    else [],
                    exception_dates=[(first + dt.timedelta(days=28)).isoformat()]
                    if rule and rng.random() < 0.2
                    else [],
                    place_name=f"Lokal {i % 97}",
                    area=rng.choice(AREAS),
                    cost_sek=None if rng.random() < 0.6 else rng.choice([20, 30, 50, 100]),
                    age_groups=rng.sample(
                        ["children", "youth", "adults", "seniors"], rng.randint(0, 2)
                    ),
                    languages=["sv"],
                    has_companion=rng.random() < 0.3,
                    contact_name="Kontakt",
                    contact_phone="070-174 06 50",
                )
                submit_activity(
                    session, coordinator, orgs[i % organisations], data,
                    known_categories=categories, today=today,
                )  # fmt: skip
                if i % 200 == 199:
                    session.flush()
                    print(f"  seeded {i + 1}/{activities} activities", flush=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted))
    return time.perf_counter() - started


def time_ics(url: str) -> tuple[float, int, int]:
    """Best of 5: query all activities with an occasion in the coming year and build the feed."""
    from slussen.config import today_local
    from slussen.db import session_scope
    from slussen.directory import ics
    from slussen.directory.services import MAX_RANGE_DAYS, CalendarFilters, find_activities

    app = _app(url)
    best, size, count = float("inf"), 0, 0
    today = today_local()
    filters = CalendarFilters(start=today, end=today + dt.timedelta(days=MAX_RANGE_DAYS))
    with app.app_context():
        for _ in range(5):
            with session_scope(app) as session:
                started = time.perf_counter()
                activities = find_activities(session, filters)
                body = ics.build_calendar(activities)
                best = min(best, time.perf_counter() - started)
                size, count = len(body), len(activities)
    return best, size, count


def servers(url: str, workers: int) -> tuple[Server, Server]:
    env = server_env(url, {"PYTHONPATH": str(REPO)})
    slussen = Server(
        "slussen-directory",
        lambda port: [sys.executable, "-c", "from slussen.cli import main; main()", "serve",
                      "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env,
    )  # fmt: skip
    bare = Server(
        "bare-directory",
        lambda port: [sys.executable, "-m", "gunicorn", "--chdir", str(REPO), "--bind",
                      f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class",
                      WORKER_CLASS, "--threads", str(THREADS), "--access-logfile", "-",
                      "--timeout", "60", "bench.bare_app:create()"],
        env,
    )  # fmt: skip
    return slussen, bare


def main() -> int:
    args = parse_args()
    url = args.database_url
    try:
        from bench.harness import ensure_database

        ensure_database(url)
        print(f"Seeding {args.activities} activities of {args.organisations} organisations…")
        seconds = seed(sqlalchemy_url(url), args.organisations, args.activities)
        print(f"  seeding took {seconds:.1f} s" if seconds else "  already seeded")
        ics_seconds, ics_bytes, ics_count = time_ics(sqlalchemy_url(url))
        print(f"iCalendar feed: {ics_count} activities, {ics_bytes} bytes, {ics_seconds:.3f} s")
        slussen, bare = servers(url, args.workers)
        path = "/aktiviteter"
        best: dict[str, Measurement] = {}
        with slussen, bare:
            status, _h, body = http_get(slussen.base_url, path)
            if status != 200 or "Aktiviteter nära dig".encode() not in body:
                raise BenchError(f"{path} answered {status} without the calendar")
            for _ in range(args.rounds):
                for name, server, page in (("bare", bare, "/"), ("calendar", slussen, path)):
                    m = measure([page], server.base_url, None, args.concurrency, args.requests,
                                label=name)  # fmt: skip
                    if name not in best or m.rps > best[name].rps:
                        best[name] = m
    except BenchError as exc:
        print(f"bench_directory: {exc}", file=sys.stderr)
        return 2
    rows = [Row("public week calendar", best["calendar"], best["bare"])]
    ratio = rows[0].rps_ratio
    report(
        rows,
        "directory",
        settings=vars(args),
        extra={
            "ics_seconds": round(ics_seconds, 3),
            "ics_activities": ics_count,
            "ics_bytes": ics_bytes,
            "targets": {"calendar_rps_ratio": RATIO_TARGET, "ics_seconds": ICS_TARGET_S},
            "met": {"calendar": ratio >= RATIO_TARGET, "ics": ics_seconds < ICS_TARGET_S},
        },
    )
    print(
        f"calendar/bare req/s ratio {ratio:.2f} (target ≥ {RATIO_TARGET}); "
        f".ics {ics_seconds:.3f} s (target < {ICS_TARGET_S} s)"
    )
    return 1 if any(r.measurement.errors or r.baseline.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
