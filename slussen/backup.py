"""`slussen backup` and `slussen restore`: one file holding the whole database, never the key ring.

SQLite is copied with SQLite's online backup API, which gives a consistent snapshot while the app
runs and writes; the copy is checked with `PRAGMA quick_check` and then renamed into place.
PostgreSQL is dumped with `pg_dump --format=custom` (the binaries must be on PATH and at least as
new as the server) and the dump is read back with `pg_restore --list`, so an empty or unreadable
file is found at backup time, not on the day it is needed (GitLab, January 2017).

A restore goes into an empty database unless forced, and reports the schema revision, the row
counts of the main tables, and whether the key ring on this machine holds every master key the
restored data keys need. Before it changes anything it opens the backup's canary (sealed under
the key ring at `slussen init-db`) with the key ring on this machine, and refuses a ring that
cannot, naming the ring the backup needs. The key ring is never in a backup: without it a stolen
backup is unreadable, so it is backed up apart (see docs/operations.md).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, inspect, select, table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from slussen import migrate, vault
from slussen.keystore import (
    Canary,
    DataKey,
    KeyringCanary,
    KeyRingMismatch,
    check_canary,
    key_usage,
    read_canary,
)
from slussen.privatefiles import private_part

#: Tables shown in a restore's summary, in this order (those that exist).
MAIN_TABLES = (
    "units",
    "users",
    "patients",
    "data_keys",
    "cases",
    "case_events",
    "letter_queue",
    "visits",
    "audit_events",
)
#: Tables that an initialised but unused database already fills; they do not make it "non-empty".
_BOOKKEEPING = frozenset({"alembic_version", "audit_chain_heads"})

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_CUSTOM_MAGIC = b"PGDMP"
_PAGES_PER_STEP = 1024

Progress = Callable[[int, int], None]


class BackupError(Exception):
    """A backup or restore could not be made; the message is one line an operator can act on."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    kind: str
    size: int


@dataclass(frozen=True)
class RestoreResult:
    kind: str
    revision: str | None
    head: str
    counts: dict[str, int]
    #: Master keys the restored data keys are wrapped with that the given key ring lacks.
    missing_master_keys: list[str] = field(default_factory=list)

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


def kind_of_url(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups of {name} databases are not supported (SQLite or PostgreSQL)")
    return name


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the database (Alembic's bookkeeping included)."""
    with engine.connect() as conn:
        names = sorted(inspect(conn).get_table_names())
        return {
            name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
            for name in names
        }


def holds_data(engine: Engine) -> bool:
    """Whether any table other than bookkeeping has a row (an empty or fresh schema does not)."""
    return any(count for name, count in table_counts(engine).items() if name not in _BOOKKEEPING)


# --- backup ---------------------------------------------------------------------------------------


def backup(url: str, target: Path, *, progress: Progress | None = None) -> BackupResult:
    """Write a backup of the database at `url` to `target` (replaced only when complete)."""
    kind = kind_of_url(url)
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give the backup file's name")
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist")
    with private_part(target.parent, target.name) as part:
        if kind == "sqlite":
            _backup_sqlite(_sqlite_path(url), part.path, progress)
        else:
            _backup_postgres(url, part.path)
        part.finish(target)
    return BackupResult(path=target, kind=kind, size=target.stat().st_size)


def _backup_sqlite(source: Path, tmp: Path, progress: Progress | None) -> None:
    if not source.exists():
        raise BackupError(f"the database {source} does not exist")

    def step(_status: int, remaining: int, total: int) -> None:
        if progress:
            progress(total - remaining, total)

    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
            # One self-contained file: no -wal or -shm companions to forget.
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not copy {source}: {exc}") from None
    if verdict != "ok":
        raise BackupError(f"the copy of {source} failed SQLite's check: {verdict}")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found on PATH; install the PostgreSQL client tools "
            f"(Debian: apt install postgresql-client) of the server's major version or newer"
        )
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password (which goes in PGPASSWORD, not the process list)."""
    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackupError(f"{what} could not be started: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {done.returncode}"
        raise BackupError(f"{what} failed: {detail}")
    return done.stdout


def _backup_postgres(url: str, tmp: Path) -> None:
    pg_dump, pg_restore = _tool("pg_dump"), _tool("pg_restore")
    uri, env = _libpq(url)
    _run(
        [pg_dump, "--format=custom", "--no-owner", f"--file={tmp}", f"--dbname={uri}"],
        env,
        "pg_dump",
    )
    listing = _run([pg_restore, "--list", str(tmp)], env, "pg_restore --list")
    if "TABLE DATA" not in listing:
        raise BackupError("the dump holds no table data; is the database initialised?")


# --- restore --------------------------------------------------------------------------------------


def detect_kind(source: Path) -> str:
    """'sqlite' or 'postgresql', from the backup file's first bytes."""
    try:
        with source.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"the backup {source} does not exist") from None
    except IsADirectoryError:
        raise BackupError(f"{source} is a directory, not a backup file") from None
    if head.startswith(_SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(_PG_CUSTOM_MAGIC):
        return "postgresql"
    raise BackupError(f"{source} is not a Slussen backup (neither SQLite nor pg_dump custom)")


def restore(
    url: str,
    source: Path,
    engine: Engine,
    *,
    force: bool = False,
    ring: vault.KeyRing | None = None,
    master_key_ids: set[str] | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore `source` into the database at `url` (`engine` is bound to it).

    `ring` is the key ring that will be used with the restored data: refuses, before changing
    anything, a ring that cannot open the backup's canary (a backup made before the canary
    existed is not checked). Refuses a database that holds data unless `force`.
    `master_key_ids` (default: the ring's) are the ids of the key ring that will be used; any
    the data needs but the ring lacks are reported."""
    kind = kind_of_url(url)
    found = detect_kind(source)
    if found != kind:
        raise BackupError(f"{source} is a {found} backup but the database is {kind}")
    if ring is not None:
        if master_key_ids is None:
            master_key_ids = set(ring.master_keys)
        canary = backup_canary(source, kind, url)
        if canary is not None:
            try:
                check_canary(canary, ring, of="the backup")
            except KeyRingMismatch as exc:
                raise BackupError(f"{exc}; the target database was not changed") from None
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        occupied = holds_data(engine)
    except OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise BackupError(f"the target database cannot be reached: {first}") from None
    if not force and occupied:
        raise BackupError(
            "the target database holds data; restore into an empty database, or give --force "
            "to replace its contents"
        )
    engine.dispose()  # no pooled connection may hold the old database open
    if kind == "sqlite":
        _restore_sqlite(source, target, progress)
    else:
        _restore_postgres(url, source)
    engine.dispose()
    counts = table_counts(engine)
    missing: list[str] = []
    if master_key_ids is not None and "data_keys" in counts:
        with Session(engine) as session:
            missing = sorted(set(key_usage(session)) - master_key_ids)
    return RestoreResult(
        kind=kind,
        revision=migrate.current_revision(engine),
        head=migrate.head_revision(),
        counts={name: counts[name] for name in MAIN_TABLES if name in counts},
        missing_master_keys=missing,
    )


def backup_canary(source: Path, kind: str, url: str) -> Canary | None:
    """The canary in the backup `source` (of `kind`), read without restoring anything; None when
    the backup has none (made before revision 0013 or before `slussen init-db` sealed it)."""
    if kind == "sqlite":
        reader = create_engine(f"sqlite:///file:{source}?mode=ro&uri=true")
        try:
            with Session(reader) as session:
                return read_canary(session)
        except OperationalError as exc:
            raise BackupError(f"the backup {source} cannot be read: {exc.orig}") from None
        finally:
            reader.dispose()
    return _postgres_canary(source, url)


def _copy_rows(source: Path, table_name: str, url: str) -> Iterator[dict[str, str | None]]:
    """The rows of one table in a pg_dump custom file, as pg_restore prints them (COPY text:
    tab-separated, `\\N` for NULL), streamed: data_keys has a row per patient."""
    pg_restore = _tool("pg_restore")
    _uri, env = _libpq(url)
    args = [pg_restore, "--data-only", f"--table={table_name}", "--file=-", str(source)]
    try:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    except OSError as exc:
        raise BackupError(f"pg_restore could not be started: {exc}") from None
    assert proc.stdout is not None
    columns: list[str] | None = None
    finished = False
    try:
        # Read to the end even after the rows: a closed pipe would make pg_restore fail.
        for line in proc.stdout:
            line = line.rstrip("\n")
            if finished:
                continue
            if columns is None:
                if line.startswith("COPY ") and line.endswith(" FROM stdin;"):
                    names = line.split("(", 1)[1].split(")", 1)[0]
                    columns = [name.strip() for name in names.split(",")]
                continue
            if line == "\\.":
                finished = True
                continue
            values = [None if v == "\\N" else v.replace("\\\\", "\\") for v in line.split("\t")]
            yield dict(zip(columns, values, strict=True))
    finally:
        proc.stdout.close()
        if proc.wait() != 0:
            raise BackupError(f"pg_restore could not read {table_name} from {source}")


def _bytea(value: str | None) -> bytes | None:
    if value is None:
        return None
    if not value.startswith("\\x"):
        raise BackupError("the backup holds bytea in a format other than hex")
    return bytes.fromhex(value[2:])


def _postgres_canary(source: Path, url: str) -> Canary | None:
    canaries = list(_copy_rows(source, KeyringCanary.__tablename__, url))
    if not canaries:
        return None
    row = canaries[0]
    data_key_id = int(row["data_key_id"] or 0)
    wrapped: bytes | None = None
    masters: set[str] = set()
    for key in _copy_rows(source, DataKey.__tablename__, url):
        if key["master_key_id"] is not None and key["wrapped"] is not None:
            masters.add(key["master_key_id"])
        if int(key["id"] or 0) == data_key_id:
            wrapped = _bytea(key["wrapped"])
    sealed = _bytea(row["sealed"])
    assert sealed is not None
    return Canary(
        sealed, data_key_id, wrapped, str(row["ring_fingerprint"]), tuple(sorted(masters))
    )


def _restore_sqlite(source: Path, target: Path, progress: Progress | None) -> None:
    def step(_status: int, remaining: int, total: int) -> None:
        if progress:
            progress(total - remaining, total)

    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target, timeout=30)
        try:
            verdict = src.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"the backup {source} failed SQLite's check: {verdict}")
            src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite could not restore into {target}: {exc}") from None


def _restore_postgres(url: str, source: Path) -> None:
    pg_restore = _tool("pg_restore")
    uri, env = _libpq(url)
    _run(
        [
            pg_restore,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={uri}",
            str(source),
        ],
        env,
        "pg_restore",
    )
