"""The foundation benchmark: Slussen's pages against a bare Flask + SQLAlchemy page.

Run: python bench/run.py [--database-url URL] [--cases N] [--requests N] [--concurrency C]

Seeds the database (`slussen init-db` + `slussen demo`, skipped when already done), serves
Slussen (`slussen serve`) and bench/bare_app.py with the same gunicorn settings, then for each
of --rounds rounds measures: bare page, /login (public), bare page, / (logged in as the demo
`coach`). The best round (highest req/s) of each is reported with ratios against the best bare
round, in a table and in bench/results/foundation-<timestamp>.{json,md}.

Exits 0 when no request errored, 1 when some did, 2 when the benchmark could not run. It never
judges the speed itself: the ratios are for people to read (see bench/README.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    BENCH_PASSWORD,
    BenchError,
    Measurement,
    Row,
    bare_server,
    default_sqlite_url,
    http_get,
    login_cookie,
    measure,
    report,
    safe_url,
    seed_database,
    slussen_server,
)

#: (name, path, logged in?) of the Slussen pages measured.
PAGES = [("login", "/login", False), ("start (coach)", "/", True)]
USERNAME = "coach"
#: Text on the start page that only a logged-in coach sees (the demo user's display name).
COACH_NAME = "Cecilia Hälsocoach"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default="",
        help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB (created if missing); "
        "default: SQLite under bench/.data/",
    )
    parser.add_argument("--cases", type=int, default=0, help="demo cases to seed (default 0)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best counts)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--fresh", action="store_true", help="seed again even if seeded before")
    args = parser.parse_args(argv)
    for name in ("cases", "requests", "concurrency", "rounds", "workers"):
        if getattr(args, name) < (0 if name == "cases" else 1):
            parser.error(f"--{name} is too small")
    return args


def _check(base_url: str, path: str, cookie: str | None, must_contain: str) -> None:
    """Refuse to measure a page that does not answer 200 with the expected content (a login
    redirect would otherwise be measured as a very fast page)."""
    status, headers, body = http_get(base_url, path, cookie)
    if status != 200 or must_contain.encode() not in body:
        where = f" -> {headers.get('location')}" if "location" in headers else ""
        raise BenchError(
            f"GET {path} on {base_url} answered {status}{where} without {must_contain!r}"
        )


def _best(measurements: list[Measurement]) -> Measurement:
    return max(measurements, key=lambda m: m.rps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url or default_sqlite_url()
    print(f"Database: {safe_url(url)}; cases {args.cases}")
    try:
        if seed_database(url, args.cases, BENCH_PASSWORD, force=args.fresh):
            print("Seeded (init-db + demo).")
        else:
            print("Already seeded (marker in bench/.data/seeded/); --fresh seeds again.")
        with bare_server(url, args.workers) as bare, slussen_server(url, args.workers) as app:
            print(f"bare on {bare.base_url}, slussen on {app.base_url} ({args.workers} workers)")
            cookie = login_cookie(app.base_url, USERNAME, BENCH_PASSWORD)
            _check(bare.base_url, "/", None, "Enheter")
            _check(app.base_url, "/login", None, 'name="csrf_token"')
            _check(app.base_url, "/", cookie, COACH_NAME)

            def run(label: str, base_url: str, path: str, with_cookie: bool) -> Measurement:
                result = measure(
                    [path],
                    base_url,
                    cookie if with_cookie else None,
                    args.concurrency,
                    args.requests,
                    label=label,
                    time_cap=args.time_cap,
                )
                print(
                    f"  {label:<14} {path:<8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.1f}"
                    f" ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}"
                    + ("  (time cap hit)" if result.timed_out else "")
                )
                return result

            bare_runs: list[Measurement] = []
            page_runs: dict[str, list[Measurement]] = {name: [] for name, _, _ in PAGES}
            for number in range(1, args.rounds + 1):
                print(f"Round {number}/{args.rounds}")
                for name, path, logged_in in PAGES:
                    bare_runs.append(run("bare", bare.base_url, "/", False))
                    page_runs[name].append(run(name, app.base_url, path, logged_in))
            # A server log tail helps when something errored.
            slussen_log, bare_log = app.log_tail(), bare.log_tail()
    except BenchError as exc:
        print(f"bench/run.py: cannot run the benchmark: {exc}", file=sys.stderr)
        return 2

    baseline = _best(bare_runs)
    rows = [Row(name, _best(page_runs[name]), baseline) for name, _, _ in PAGES]
    everything = bare_runs + [m for runs in page_runs.values() for m in runs]
    report(
        rows,
        "foundation",
        settings={
            "database": safe_url(url),
            "cases": args.cases,
            "requests per measurement": args.requests,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "gunicorn": f"{args.workers} workers, gthread, 4 threads",
        },
        extra={"all_measurements": [vars(m) for m in everything]},
    )
    failed = [m for m in everything if m.errors]
    if failed:
        for m in failed:
            print(
                f"bench/run.py: {m.errors} of {m.requests} requests to {m.label} "
                f"({', '.join(m.paths)}) failed, e.g. {m.error_samples[:2]}",
                file=sys.stderr,
            )
        print(f"slussen log tail:\n{slussen_log}\nbare log tail:\n{bare_log}", file=sys.stderr)
        return 1
    short = [m for m in everything if m.timed_out]
    if short:
        print(f"Note: {len(short)} measurement(s) hit the time cap before all requests.")
    return 0


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the servers' context managers stop them.
    raise SystemExit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
