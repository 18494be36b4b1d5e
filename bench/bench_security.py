"""Security benchmarks (issue 3): key rotation, audit-chain verification, vault overhead.

Run: .venv/bin/python bench/bench_security.py [--patients N] [--audit-rows N] [--keep DIR]
         [--only rotate|verify|vault ...] [--audit-database-url URL]

(a) `slussen keys rotate` over 100,000 patients' data keys on SQLite must finish in under 60 s:
    a fresh, migrated SQLite database gets N data keys wrapped by the active master key (ids
    1..N, so the associated data is known before the insert), then `rotate_master_key` is timed
    with batch_size=2000; afterwards every key must name the new master key and a random sample
    of 100 must unwrap.
(b) `slussen audit verify` over 1,000,000 audit rows must finish in under 15 s: valid chains (the
    region chain for logins, one chain per unit for the rest, as `audit.record` picks them) are
    generated with the audit module's own MAC function, bulk-inserted, the chain heads set, and
    `verify_chain` timed (it must say ok and count every row). `--audit-database-url` runs it
    on PostgreSQL instead: the database that URL names is dropped and created afresh (and
    dropped afterwards unless `--keep`), so name a scratch database.
(c) `bench/bench_vault.py`: the vault's field round trip within 3x raw AES-GCM.

Prints a table and exits 1 if a target is missed. Setup time is reported but not judged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, delete, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from bench.harness import ensure_database, sqlalchemy_url  # noqa: E402
from slussen import audit, migrate, vault  # noqa: E402
from slussen.accounts.models import Unit, User  # noqa: E402
from slussen.audit import AuditChainHead, AuditEvent, verify_chain  # noqa: E402
from slussen.db import make_engine  # noqa: E402
from slussen.keystore import DataKey, rotate_master_key  # noqa: E402

ROTATE_LIMIT_S = 60.0
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


def bench_rotation(directory: Path, patients: int) -> Result:
    engine = _fresh_engine(directory, "rotate.sqlite3")
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
    setup = time.perf_counter() - started
    factory = sessionmaker(bind=engine, expire_on_commit=False)

    started = time.perf_counter()
    result = rotate_master_key(factory, ring, batch_size=2000)
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
    engine.dispose()
    all_new = usage == {result.active_key: patients} and result.rewrapped == patients
    ok = all_new and elapsed < ROTATE_LIMIT_S
    note = (
        f"setup {setup:.1f} s; {result.rewrapped} rewrapped, all on {result.active_key}, "
        f"old key retired: {old_master in result.retired}; 100 sampled keys unwrap"
        if all_new
        else f"NOT ALL KEYS REWRAPPED: {usage}"
    )
    return Result(
        f"keys rotate, {patients:,} data keys (SQLite)",
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


def bench_vault() -> Result:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_vault.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    ratio_line = next(
        (line for line in completed.stdout.splitlines() if line.startswith("ratio")), ""
    )
    measured = ratio_line.split(":", 1)[1].split("(")[0].strip() + "x" if ratio_line else "?"
    return Result(
        "vault field round trip vs raw AES-GCM (bench_vault.py)",
        measured,
        "<= 3.0x",
        completed.returncode == 0,
        "" if completed.returncode == 0 else (completed.stderr.strip() or "failed"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the databases in this directory")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part (may be given more than once; default: all)",
    )
    parser.add_argument(
        "--audit-database-url",
        default="",
        help="run (b) on this PostgreSQL database, DROPPED and created afresh",
    )
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    with tempfile.TemporaryDirectory(prefix="slussen-bench-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        runs = {
            "rotate": lambda: bench_rotation(directory, args.patients),
            "verify": lambda: bench_verify(
                directory, args.audit_rows, args.audit_database_url, args.keep is not None
            ),
            "vault": bench_vault,
        }
        results = []
        for part in PARTS:
            if part not in parts:
                continue
            results.append(runs[part]())
            print(f"… {results[-1].name}: {results[-1].measured}", flush=True)
    width = max(len(r.name) for r in results)
    print()
    print(f"{'benchmark':<{width}}  {'measured':<26}  {'target':<8}  result")
    for r in results:
        verdict = "ok" if r.ok else "MISSED"
        print(f"{r.name:<{width}}  {r.measured:<26}  {r.target:<8}  {verdict}")
        if r.note:
            print(f"{'':<{width}}  {r.note}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
