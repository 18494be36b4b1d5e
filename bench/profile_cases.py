"""Where the worklist's and the case page's time goes, in process, one request at a time.

Run: python bench/profile_cases.py [--database-url URL] [--requests 40]

Needs a database seeded by bench/seed_region.py (or bench/bench_cases.py). Logs in (test client)
as the coach bench/bench_cases.py measures, then for each page reports the median time per
request, the time spent in the main steps of the view (wrappers around the functions the views
call; nested steps overlap: `cipher` is inside `names_for_list`), and how long each request
keeps database transactions open. On SQLite a reading request's transaction begins deferred
(readers do not wait for each other) and takes the write lock only at its first write, the audit
row near its end (slussen/db.py); the held time printed is the whole transaction.
Reports only; never fails on speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event

from bench.bench_cases import choose_subject, client_login
from bench.harness import BENCH_PASSWORD, BenchError, safe_url
from bench.seed_region import build_app, default_url

#: (module, attribute) of the steps timed; the views look these names up at call time.
STEPS = [
    ("slussen.cases.views", "coach_worklist"),
    ("slussen.cases.views", "names_for_list"),
    ("slussen.cases.views", "state_counts"),
    ("slussen.cases.views", "_work_items"),
    ("slussen.cases.views", "load_case"),
    ("slussen.cases.views", "case_view"),
    ("slussen.cases.views", "mark_referrals_seen"),
    ("slussen.cases.views", "render_template"),
    ("slussen.visits.views", "visit_panel"),
    ("slussen.keystore", "Keystore.cipher"),
    ("slussen.audit", "record_entries"),
]


def _instrument(spent: defaultdict[str, float]) -> None:
    import importlib

    for module_name, attribute in STEPS:
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, _f: Callable[..., Any] = original, _n: str = name, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return _f(*args, **kw)
            finally:
                spent[_n] += time.perf_counter() - started

        setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="", help=f"default: {default_url()}")
    parser.add_argument("--requests", type=int, default=40, help="requests per page")
    args = parser.parse_args(argv)
    url = args.database_url or default_url()
    spent: defaultdict[str, float] = defaultdict(float)
    _instrument(spent)
    app = build_app(url)
    try:
        subject = choose_subject(app, 200)
    except BenchError as exc:
        print(f"bench/profile_cases.py: {exc}", file=sys.stderr)
        return 2
    engine = app.extensions["slussen.engine"]
    opened: dict[int, float] = {}
    held: list[float] = []

    def on_begin(conn: Any) -> None:
        opened[id(conn)] = time.perf_counter()

    def on_end(conn: Any) -> None:
        started = opened.pop(id(conn), None)
        if started is not None:
            held.append(time.perf_counter() - started)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", on_end)
    event.listen(engine, "rollback", on_end)
    client = app.test_client()
    client_login(client, subject.coach, BENCH_PASSWORD)
    print(f"{safe_url(url)}: coach {subject.coach}, {args.requests} requests per page")
    pages = [
        ("worklist", ["/arbetslista"]),
        ("case page", [f"/arenden/{case_id}" for case_id in subject.case_ids]),
    ]
    for label, paths in pages:
        for path in paths[:3]:
            client.get(path)  # warm-up
        spent.clear()
        held.clear()
        times = []
        for i in range(args.requests):
            started = time.perf_counter()
            status = client.get(paths[i % len(paths)]).status_code
            times.append(time.perf_counter() - started)
            if status != 200:
                print(f"bench/profile_cases.py: {paths[i % len(paths)]} answered {status}")
                return 2
        n = args.requests
        print(
            f"{label}: median {1000 * statistics.median(times):.1f} ms per request; "
            f"{len(held) / n:.1f} transactions per request holding "
            f"{1000 * sum(held) / n:.1f} ms in total (longest {1000 * max(held):.1f} ms)"
        )
        steps = sorted(spent.items(), key=lambda item: -item[1])
        print("  " + ", ".join(f"{name} {1000 * total / n:.1f} ms" for name, total in steps))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
