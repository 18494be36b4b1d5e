"""The demo benchmark (issue 4): `slussen demo --cases 100000 --units 50` in under two minutes.

Run: python bench/bench_demo.py [--cases 100000] [--units 50] [--limit 120]
                                [--database-url postgresql://…/slussen_bench_demo]

1. A fresh database: by default a new SQLite file in a temporary folder (with its own instance
   folder and key ring); with `--database-url` a PostgreSQL database whose name must start with
   `slussen_bench`, dropped and created again.
2. `slussen init-db` (not timed), then `slussen demo --password P --cases N --units U` through the
   CLI, timed from start to exit: everything the command does (units, users, the hand-made demo
   data, then the N cases fired through the workflow's events).
3. Counts the rows written, runs `slussen audit verify` (not timed; the chain must hold), and
   prints wall time, cases/s, rows, rows/s and the load average before and after (the machines
   are shared: read timings with it).

Exit codes: 0 under `--limit` seconds and the chain verifies, 1 at or over the limit or a broken
chain, 2 the benchmark could not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bench.harness import BENCH_PASSWORD, REPO, SLUSSEN_BIN, BenchError, safe_url, server_env

#: The tables the demo's cases write (rows counted after the run).
TABLES = (
    "data_keys",
    "patients",
    "patient_lookups",
    "cases",
    "referrals",
    "case_events",
    "case_due_dates",
    "letter_queue",
    "visits",
    "action_plans",
    "plan_steps",
    "audit_events",
)


def fresh_postgres(url: str) -> None:
    parsed = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = parsed.database or ""
    if not name.startswith("slussen_bench"):
        raise BenchError(f"refusing to drop {name!r}: the name must start with slussen_bench")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def run(command: list[str], env: dict[str, str], *, allowed: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False
    )
    if proc.returncode not in allowed:
        shown = " ".join(command).replace(BENCH_PASSWORD, "***")
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BenchError(f"`{shown}` failed with exit code {proc.returncode}: {tail}")
    return proc.stdout


def count_rows(url: str) -> dict[str, int]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return {
                table: int(conn.scalar(select(func.count()).select_from(text(table))) or 0)
                for table in TABLES
            }
    finally:
        engine.dispose()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def bench(url: str, instance: Path, cases: int, units: int, limit: float) -> int:
    env = server_env(url, {"SLUSSEN_INSTANCE_DIR": str(instance)})
    slussen = str(SLUSSEN_BIN)
    run([slussen, "init-db"], env)
    before = load()
    started = time.perf_counter()
    output = run(
        [
            slussen,
            "demo",
            "--password",
            BENCH_PASSWORD,
            "--cases",
            str(cases),
            "--units",
            str(units),
        ],
        env,
    )
    seconds = time.perf_counter() - started
    after = load()
    rows = count_rows(url)
    verified = run([slussen, "audit", "verify"], env, allowed=(0, 1))
    chain_ok = "intact" in verified
    total = sum(rows.values())
    print(next((line for line in output.splitlines() if "Demo cases:" in line), output.strip()))
    print(f"Rows: {', '.join(f'{t} {n:,}' for t, n in rows.items())}")
    print(f"Audit chain: {verified.strip().splitlines()[-1]}")
    print(
        f"slussen demo --cases {cases} --units {units} on {safe_url(url).split(':')[0]}: "
        f"{seconds:.1f} s, {cases / seconds:,.0f} cases/s, {total:,} rows "
        f"({total / seconds:,.0f} rows/s); load average {before} before, {after} after"
    )
    met = seconds < limit and chain_ok
    print(f"{'PASS' if met else 'FAIL'}: under {limit:.0f} s and the chain verifies")
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--database-url", default="", help="PostgreSQL (default: fresh SQLite)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="slussen-bench-demo-") as folder:
            instance = Path(folder) / "instance"
            if args.database_url:
                fresh_postgres(args.database_url)
                url = args.database_url
            else:
                url = f"sqlite:///{Path(folder) / 'slussen.sqlite3'}"
            return bench(url, instance, args.cases, args.units, args.limit)
    except BenchError as exc:
        print(f"bench/bench_demo.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
