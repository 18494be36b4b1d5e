"""Copy a seeded benchmark region from one database to another (SQLite to PostgreSQL).

Run: python bench/copy_region.py --from URL --to URL [--cases 100000] [--units 50]

`slussen demo` seeds through the real services, statement by statement; on PostgreSQL every
statement is a round trip, so 100,000 cases take hours there (about 6 cases a second on the
2-core bench machines) against under an hour on SQLite. The rows are the same either way, so
the region can be seeded once on SQLite (`bench/seed_region.py`) and copied:

1. `slussen init-db` on the target (the schema by the migrations, as the benchmarks expect);
2. every model table emptied and filled from the source in primary-key order with `COPY`
   (psycopg), in one transaction with `session_replication_role = replica` (the audit
   table's append-only trigger and the foreign keys are checked when the rows are written by
   the application, not when a copy of them is loaded; needs a superuser, as the benchmarks'
   local `postgres` role is);
3. each id sequence set past the copied rows, then `VACUUM ANALYZE`;
4. the bench's seeded-marker for (target, cases, units) written, so bench/bench_cases.py and
   bench/bench_load.py measure the copy instead of seeding again.

Sealed fields are bound to their table, column and row id, which the copy keeps, and the key
ring is the benchmarks' own (bench/.data/instance), so the copy decrypts; the script ends by
opening one case through the real code path, as bench/seed_region.py does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Integer, create_engine, func, select, text

from bench.bench_cases import _marker
from bench.harness import BenchError, _run_cli, ensure_database, safe_url, server_env
from bench.seed_region import build_app, verify_case

BATCH = 5000


def copy_region(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every model table's rows from `source_url` to `target_url` (migrated first)."""
    from slussen.models import metadata

    if not target_url.startswith("postgresql"):
        raise BenchError("the target must be PostgreSQL (the source is usually SQLite)")
    ensure_database(target_url)
    _run_cli(["init-db"], server_env(target_url))
    source = create_engine(source_url)
    target = create_engine(target_url)
    counts: dict[str, int] = {}
    tables = metadata.sorted_tables
    try:
        with source.connect() as read, target.begin() as write:
            write.execute(text("SET session_replication_role = replica"))
            names = ", ".join(write.dialect.identifier_preparer.format_table(t) for t in tables)
            write.execute(text(f"TRUNCATE {names}"))
            for table in tables:
                started = time.perf_counter()
                total = read.scalar(select(func.count()).select_from(table)) or 0
                order = list(table.primary_key.columns)
                done = 0
                rows = read.execution_options(yield_per=BATCH).execute(
                    select(table).order_by(*order)
                )
                columns = ", ".join(f'"{c.name}"' for c in table.columns)
                raw = write.connection.dbapi_connection
                assert raw is not None
                with (
                    raw.cursor() as cursor,
                    cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy,
                ):
                    for part in rows.partitions():
                        for row in part:
                            copy.write_row(row)
                        done += len(part)
                        print(f"\r  {table.name}: {done}/{total}", end="", flush=True)
                counts[table.name] = done
                print(f"\r  {table.name}: {done} rows in {time.perf_counter() - started:.1f} s")
                if "id" in table.c and isinstance(table.c.id.type, Integer) and done:
                    last = write.scalar(select(func.max(table.c.id)))
                    write.execute(
                        text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"),
                        {"t": table.name, "v": last},
                    )
        with target.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        source.dispose()
        target.dispose()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, help="the seeded database")
    parser.add_argument("--to", dest="target", required=True, help="a PostgreSQL database URL")
    parser.add_argument("--cases", type=int, default=100_000, help="cases the source holds")
    parser.add_argument("--units", type=int, default=50, help="units the source holds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        counts = copy_region(args.source, args.target)
        print("Verified:", verify_case(build_app(args.target)))
    except BenchError as exc:
        print(f"bench/copy_region.py: {exc}", file=sys.stderr)
        return 2
    seconds = round(time.perf_counter() - started, 1)
    marker = _marker(args.target, args.cases, args.units)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps(
            {
                "url": safe_url(args.target),
                "cases": args.cases,
                "units": args.units,
                "copied_from": safe_url(args.source),
                "seeded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": seconds,
                "rows": sum(counts.values()),
            }
        )
    )
    print(f"Copied {sum(counts.values())} rows in {seconds} s; marker {marker.name} written.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
