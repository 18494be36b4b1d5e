"""Security benchmarks (issues 3 and 17): key rotation, audit-chain verification, vault overhead.

Run: .venv/bin/python bench/bench_security.py [--patients N] [--batch-size N] [--audit-rows N]
         [--keep DIR] [--only rotate|verify|vault ...] [--rotate-database-url URL]
         [--audit-database-url URL]

(a) `slussen keys rotate` over 100,000 patients' data keys must finish in under 20 s (issue 17;
    the goal is 10 s): a fresh, migrated database gets N data keys wrapped by the active master
    key (ids 1..N, so the associated data is known before the insert), then `rotate_master_key`
    is timed with `--batch-size` keys per committed slice (default 2000); afterwards every key
    must name the new master key and a random sample of 100 must unwrap. SQLite by default;
    `--rotate-database-url` runs it on PostgreSQL instead.
(b) `slussen audit verify` over 1,000,000 audit rows must finish in under 15 s: valid chains (the
    region chain for logins, one chain per unit for the rest, as `audit.record` picks them) are
    generated with the audit module's own MAC function, bulk-inserted, the chain heads set, and
    `verify_chain` timed (it must say ok and count every row). `--audit-database-url` runs it
    on PostgreSQL instead.
(c) `bench/bench_vault.py`: the vault's field round trip within 2x raw AES-GCM (issue 17).

A PostgreSQL URL names a scratch database: it is dropped and created afresh, and dropped
afterwards unless `--keep` is given. Prints a table, writes it to
`bench/results/security-<timestamp>.{json,md}` and exits 1 if a target is missed. Setup time is
reported but not judged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, delete, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from bench.harness import (  # noqa: E402
    RESULTS_DIR,
    ensure_database,
    git_commit,
    machine_info,
    safe_url,
    sqlalchemy_url,
)
from slussen import audit, migrate, vault  # noqa: E402
from slussen.accounts.models import Unit, User  # noqa: E402
from slussen.audit import AuditChainHead, AuditEvent, verify_chain  # noqa: E402
from slussen.db import make_engine  # noqa: E402
from slussen.keystore import DataKey, rotate_master_key  # noqa: E402

ROTATE_LIMIT_S = 20.0
VERIFY_LIMIT_S = 15.0
INSERT_BATCH = 20_000
PARTS = ("rotate", "verify", "vault")


@dataclass
class Result:
    name: str
    measured: str
    target: str
    ok: bool
    note: str = ""


def _fresh_engine(directory: Path, name: str) -> Any:
    engine = make_engine(f"sqlite:///{directory / name}")
    migrate.upgrade(engine)
    return engine


def _fresh_postgres(url: str) -> Any:
    """A migrated, empty PostgreSQL database at `url` (dropped and created first)."""
    _drop_postgres(url)
    ensure_database(url)
    engine = make_engine(sqlalchemy_url(url))
    migrate.upgrade(engine)
    return engine


def _drop_postgres(url: str) -> None:
    parsed = make_url(sqlalchemy_url(url))
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        quoted = conn.dialect.identifier_preparer.quote_identifier(parsed.database or "")
        conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    admin.dispose()


def bench_rotation(
    directory: Path, patients: int, batch_size: int, url: str = "", keep: bool = False
) -> Result:
    engine = _fresh_postgres(url) if url else _fresh_engine(directory, "rotate.sqlite3")
    where = "PostgreSQL" if url else "SQLite"
    ring = vault.KeyRing.create(directory / "rotate-keyring.json")
    old_master = ring.active_master_id
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with engine.begin() as conn:
        for first in range(1, patients + 1, INSERT_BATCH):
            rows = [
                {
                    "id": i,
                    "wrapped": vault.wrap_data_key(ring, vault.new_data_key(), data_key_id=i),
                    "master_key_id": old_master,
                    "created_at": now,
                }
                for i in range(first, min(first + INSERT_BATCH, patients + 1))
            ]
            conn.execute(insert(DataKey), rows)
        if url:
            conn.execute(text("ANALYZE data_keys"))
    setup = time.perf_counter() - started
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    started = time.perf_counter()
    result = rotate_master_key(factory, ring, batch_size=batch_size)
    elapsed = time.perf_counter() - started

    with factory() as session:
        counts = session.execute(
            select(DataKey.master_key_id, func.count()).group_by(DataKey.master_key_id)
        )
        usage = {str(key): int(n) for key, n in counts}
        sample = random.sample(range(1, patients + 1), min(100, patients))
        reloaded = vault.KeyRing.load(directory / "rotate-keyring.json")
        for key_id in sample:
            blob = session.get_one(DataKey, key_id).wrapped
            assert blob is not None and vault.wrapping_key_id(blob) == result.active_key
            vault.unwrap_data_key(reloaded, blob, data_key_id=key_id)
        logged = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "key_rotate")
        )
    engine.dispose()
    if url and not keep:
        _drop_postgres(url)
    all_new = usage == {result.active_key: patients} and result.rewrapped == patients
    ok = all_new and logged == 1 and elapsed < ROTATE_LIMIT_S
    note = (
        f"setup {setup:.1f} s; slices of {batch_size}; {result.rewrapped} rewrapped, all on "
        f"{result.active_key}, old key retired: {old_master in result.retired}; 100 sampled "
        f"keys unwrap; access-log rows for the rotation: {logged}"
        if all_new
        else f"NOT ALL KEYS REWRAPPED: {usage}"
    )
    return Result(
        f"keys rotate, {patients:,} data keys ({where})",
        f"{elapsed:.1f} s ({patients / elapsed:,.0f} keys/s)",
        f"< {ROTATE_LIMIT_S:.0f} s",
        ok,
        note,
    )


def _chain(
    key: bytes,
    rows: int,
    units: list[int],
    users: list[tuple[int, str, str]],
    heads: dict[str, tuple[int, str]],
) -> Iterator[list[dict[str, Any]]]:
    """Batches of valid chains: rows spread over ~3 years, mostly reads of patients; each row
    goes to its unit's chain (logins to the region chain). The heads end in `heads`."""
    rng = random.Random(3)
    start = dt.datetime(2023, 1, 2, 7, 0, tzinfo=dt.UTC)
    step = dt.timedelta(seconds=95)
    actions = ["read"] * 12 + ["update"] * 3 + ["create", "print", "export", "search", "login"]
    batch: list[dict[str, Any]] = []
    for seq in range(1, rows + 1):
        user_id, name, role = users[rng.randrange(len(users))]
        action = actions[rng.randrange(len(actions))]
        patient = rng.randrange(1, 100_001)
        unit = None if action == "login" else units[rng.randrange(len(units))]
        chain = audit.chain_of(unit)
        count, previous = heads.get(chain, (0, audit.genesis(key, chain)))
        values: dict[str, Any] = {
            "seq": count + 1,
            "occurred_at": start + step * seq,
            "actor_id": user_id,
            "actor_name": name,
            "actor_role": role,
            "unit_id": unit,
            "action": action,
            "object_type": "session" if action == "login" else "patient",
            "object_id": str(user_id if action == "login" else patient),
            "patient_pseudonym": None if action == "login" else f"P-{patient:024x}",
            "purpose": "inloggning" if action == "login" else "ärendearbete",
            "request_id": f"{seq:016x}",
            "client_address": f"10.0.{seq % 200}.{seq % 250}",
        }
        values["mac"] = audit._mac_of(key, previous, [values[name] for name in audit._CHAINED])
        values["chain"] = chain
        heads[chain] = (count + 1, values["mac"])
        batch.append(values)
        if len(batch) == INSERT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def bench_verify(directory: Path, rows: int, url: str = "", keep: bool = False) -> Result:
    engine = _fresh_postgres(url) if url else _fresh_engine(directory, "audit.sqlite3")
    where = "PostgreSQL" if url else "SQLite"
    ring = vault.KeyRing.generate()
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            insert(Unit),
            [
                {
                    "id": i,
                    "name": f"Vårdcentralen {i}",
                    "hsa_id": f"SE2321000016-B{i:03d}",
                    "street": "Gatan 1",
                    "postcode": "722 15",
                    "town": "Västerås",
                    "phone": "021-00 00 00",
                }
                for i in range(1, 51)
            ],
        )
        roles = ["coach", "coach", "staff", "coordinator"]
        users = [(i, f"user{i:03d}", roles[i % len(roles)]) for i in range(1, 501)]
        conn.execute(
            insert(User),
            [
                {
                    "id": i,
                    "username": name,
                    "display_name": name,
                    "role": role,
                    "password_hash": "-",
                }
                for i, name, role in users
            ],
        )
    heads: dict[str, tuple[int, str]] = {}
    for batch in _chain(ring.audit_key, rows, list(range(1, 51)), users, heads):
        with engine.begin() as conn:
            conn.execute(insert(AuditEvent), batch)
    with engine.begin() as conn:
        conn.execute(delete(AuditChainHead))
        conn.execute(
            insert(AuditChainHead),
            [{"chain": chain, "seq": seq, "mac": mac} for chain, (seq, mac) in heads.items()],
        )
        if url:
            conn.execute(text("ANALYZE audit_events"))
    setup = time.perf_counter() - started

    with sessionmaker(bind=engine)() as session:
        started = time.perf_counter()
        result = verify_chain(session, ring)
        elapsed = time.perf_counter() - started
    engine.dispose()
    if url and not keep:
        _drop_postgres(url)
    ok = result.ok and result.checked == rows and elapsed < VERIFY_LIMIT_S
    note = f"setup {setup:.1f} s; " + (
        f"chain intact, {result.checked:,} rows checked" if result.ok else result.reason
    )
    return Result(
        f"audit verify, {rows:,} rows ({where})",
        f"{elapsed:.1f} s ({rows / elapsed:,.0f} rows/s)",
        f"< {VERIFY_LIMIT_S:.0f} s",
        ok,
        note,
    )


def bench_vault() -> list[Result]:
    """Run bench_vault.py; one result per field it measures."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_vault.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    results = []
    for line in completed.stdout.splitlines():
        if not line.startswith("ratio vault/raw, "):
            continue
        label, figures = line.removeprefix("ratio vault/raw, ").rsplit(":", 1)
        ratio = float(figures.split("(")[0])
        results.append(
            Result(
                f"vault seal+open vs raw AES-GCM, {label} (bench_vault.py)",
                f"{ratio:.2f}x",
                "<= 2.0x",
                ratio <= 2.0,
            )
        )
    if not results:
        results.append(
            Result(
                "vault seal+open vs raw AES-GCM (bench_vault.py)",
                "?",
                "<= 2.0x",
                False,
                completed.stderr.strip() or "failed",
            )
        )
    return results


def write_results(results: list[Result], settings: dict[str, Any]) -> tuple[Path, Path]:
    """Write `bench/results/security-<timestamp>.{json,md}`: command, commit, machine, settings
    and every result (through a `.tmp` name, so an interrupted run leaves no half-written file)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    meta: dict[str, Any] = {
        "name": "security",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "settings": settings,
    }
    document = {**meta, "results": [asdict(r) for r in results]}
    machine = meta["machine"]
    markdown = (
        f"# security — {meta['timestamp']}\n\n"
        f"- command: `{command}`\n"
        f"- git commit: `{meta['git_commit']}`\n"
        f"- machine: {machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}, load average {machine['load_average_1_5_15']}\n"
        + "".join(f"- {key}: {value}\n" for key, value in settings.items())
        + "\n| benchmark | measured | target | result | note |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {r.name} | {r.measured} | {r.target} | {'ok' if r.ok else 'MISSED'} | {r.note} |\n"
            for r in results
        )
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, body in (
        (".json", json.dumps(document, indent=2, ensure_ascii=False) + "\n"),
        (".md", markdown),
    ):
        final = RESULTS_DIR / f"security-{stamp}{suffix}"
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(final)
        written.append(final)
    return written[0], written[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument(
        "--batch-size", type=int, default=2000, help="data keys per committed slice in (a)"
    )
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the databases in this directory")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part (may be given more than once; default: all)",
    )
    parser.add_argument(
        "--rotate-database-url",
        default="",
        help="run (a) on this PostgreSQL database, DROPPED and created afresh",
    )
    parser.add_argument(
        "--audit-database-url",
        default="",
        help="run (b) on this PostgreSQL database, DROPPED and created afresh",
    )
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    keep = args.keep is not None
    with tempfile.TemporaryDirectory(prefix="slussen-bench-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        runs = {
            "rotate": lambda: [
                bench_rotation(
                    directory, args.patients, args.batch_size, args.rotate_database_url, keep
                )
            ],
            "verify": lambda: [
                bench_verify(directory, args.audit_rows, args.audit_database_url, keep)
            ],
            "vault": bench_vault,
        }
        results: list[Result] = []
        for part in PARTS:
            if part not in parts:
                continue
            for result in runs[part]():
                results.append(result)
                print(f"… {result.name}: {result.measured}", flush=True)
    width = max(len(r.name) for r in results)
    print()
    print(f"{'benchmark':<{width}}  {'measured':<26}  {'target':<8}  result")
    for r in results:
        verdict = "ok" if r.ok else "MISSED"
        print(f"{r.name:<{width}}  {r.measured:<26}  {r.target:<8}  {verdict}")
        if r.note:
            print(f"{'':<{width}}  {r.note}")
    settings: dict[str, Any] = {"parts": ", ".join(parts)}
    if "rotate" in parts:
        settings.update(
            patients=args.patients,
            batch_size=args.batch_size,
            rotate_database=safe_url(args.rotate_database_url)
            if args.rotate_database_url
            else "SQLite (temporary file)",
        )
    if "verify" in parts:
        settings.update(
            audit_rows=args.audit_rows,
            audit_database=safe_url(args.audit_database_url)
            if args.audit_database_url
            else "SQLite (temporary file)",
        )
    json_path, md_path = write_results(results, settings)
    print(f"Wrote {json_path.relative_to(REPO)} and {md_path.relative_to(REPO)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
