"""The data layer on both databases: constraints, UTC times, transaction per test."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from slussen import audit, migrate, vault
from slussen.accounts.models import Membership, Unit, User
from slussen.db import make_engine


def _unit(session: Session, hsa: str = "SE2321000016-DB01") -> Unit:
    unit = Unit(
        name="Vårdcentralen Databas",
        hsa_id=hsa,
        street="Gatan 1",
        postcode="722 15",
        town="Västerås",
        phone="021-00 00 00",
    )
    session.add(unit)
    session.flush()
    return unit


def _user(session: Session, username: str = "ulla", role: str = "coach") -> User:
    user = User(username=username, display_name="Ulla", role=role, password_hash="x")
    session.add(user)
    session.flush()
    return user


def test_round_trip_keeps_swedish_text_and_utc(backend: str, session: Session) -> None:
    unit = _unit(session)
    session.expire_all()
    loaded = session.get(Unit, unit.id)
    assert loaded is not None
    assert loaded.name == "Vårdcentralen Databas"
    assert loaded.created_at.tzinfo is not None
    assert abs(loaded.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_unique_hsa_id(backend: str, session: Session) -> None:
    _unit(session)
    with pytest.raises(IntegrityError):
        _unit(session)


def test_role_check_constraint(backend: str, session: Session) -> None:
    with pytest.raises(IntegrityError):
        _user(session, role="superuser")


def test_foreign_keys_are_enforced(backend: str, session: Session) -> None:
    user = _user(session)
    session.add(Membership(user_id=user.id, unit_id=999999))
    with pytest.raises(IntegrityError):
        session.flush()


def test_membership_gives_unit_ids(backend: str, session: Session) -> None:
    unit = _unit(session)
    user = _user(session)
    user.memberships.append(Membership(unit_id=unit.id))
    session.flush()
    session.expire_all()
    assert session.scalars(select(User)).one().unit_ids == frozenset({unit.id})


def test_each_test_starts_empty(backend: str, session: Session) -> None:
    assert session.scalar(text("SELECT count(*) FROM units")) == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys(session: Session) -> None:
    assert session.scalar(text("PRAGMA journal_mode")) == "wal"
    assert session.scalar(text("PRAGMA foreign_keys")) == 1


# --- SQLite: reading requests begin deferred, writes take the lock ------------------------------


def _sqlite_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'modes.sqlite3'}")
    migrate.upgrade(engine)
    return engine


def test_sqlite_reading_request_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """A GET reads while another transaction holds the write lock (BEGIN IMMEDIATE would wait
    for it); its own write then waits for the lock and succeeds once the writer commits."""
    engine = _sqlite_engine(tmp_path)
    factory = sessionmaker(bind=engine)
    app = Flask(__name__)
    writer = factory()
    writer.add(Unit(name="A", hsa_id="SE-A", street="G 1", postcode="1", town="T", phone="1"))
    writer.flush()  # holds the write lock until it commits
    seen: list[object] = []

    def read_then_write() -> None:
        with app.test_request_context("/", method="GET"), factory() as reader, reader.begin():
            seen.append(reader.scalar(select(func.count()).select_from(Unit)))
            reader.add(
                Unit(name="B", hsa_id="SE-B", street="G 2", postcode="2", town="T", phone="2")
            )

    thread = threading.Thread(target=read_then_write)
    thread.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [0]  # read at once, not after the writer
    writer.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    with factory() as check:
        assert sorted(check.scalars(select(Unit.name))) == ["A", "B"]
    engine.dispose()


def test_sqlite_concurrent_readers_and_writers_leave_one_audit_chain(tmp_path: Path) -> None:
    """Audited GETs (read, then append an audit row) and POSTs (locked from the start) at once:
    no SQLITE_BUSY_SNAPSHOT, every row appended, one intact chain."""
    engine = _sqlite_engine(tmp_path)
    factory = sessionmaker(bind=engine)
    ring = vault.KeyRing.generate()
    app = Flask(__name__)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(n: int) -> None:
        method = "GET" if n % 2 else "POST"
        try:
            start.wait()
            for i in range(20):
                with app.test_request_context("/", method=method), factory() as s, s.begin():
                    s.scalar(select(func.count()).select_from(audit.AuditEvent))
                    audit.record(
                        s,
                        ring,
                        audit.Actor(None, "t", "coach"),
                        "read",
                        "patient",
                        f"{n}-{i}",
                        purpose="test",
                        info=audit.RequestInfo("r", "127.0.0.1"),
                    )
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []
    with Session(engine) as session:
        result = audit.verify_chain(session, ring)
    engine.dispose()
    assert result.ok and result.checked == 120


# --- SQLite: writers queue on a flock of <database>-writer --------------------------------------


def _queue_is_free(tmp_path: Path) -> bool:
    """Whether another process could take the writer queue of modes.sqlite3 right now."""
    fd = os.open(tmp_path / "modes.sqlite3-writer", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_sqlite_writers_hold_the_queue_from_their_first_write_to_their_end(
    tmp_path: Path,
) -> None:
    """A changing transaction queues from its BEGIN IMMEDIATE, a reading request only from its
    first write; commit, rollback and a connection returned unfinished all leave the queue."""
    engine = _sqlite_engine(tmp_path)
    factory = sessionmaker(bind=engine)
    app = Flask(__name__)
    unit = {"street": "G 1", "postcode": "1", "town": "T", "phone": "1"}
    with factory() as writer:
        writer.connection()  # BEGIN IMMEDIATE (no request: the CLI's way)
        assert not _queue_is_free(tmp_path)
        writer.add(Unit(name="A", hsa_id="SE-A", **unit))
        writer.commit()
        assert _queue_is_free(tmp_path)
        writer.add(Unit(name="B", hsa_id="SE-B", **unit))
        writer.flush()
        writer.rollback()
        assert _queue_is_free(tmp_path)
    with app.test_request_context("/", method="GET"), factory() as reader:
        reader.scalar(select(func.count()).select_from(Unit))
        assert _queue_is_free(tmp_path)  # reading: no queue yet
        reader.add(Unit(name="C", hsa_id="SE-C", **unit))
        reader.flush()
        assert not _queue_is_free(tmp_path)
    assert _queue_is_free(tmp_path)  # closed without commit: rolled back, queue left
    with factory() as check:
        assert sorted(check.scalars(select(Unit.name))) == ["A"]
    engine.dispose()


def test_sqlite_a_waiting_writer_gets_the_queue_when_it_is_left(tmp_path: Path) -> None:
    """A second writer (another thread, another engine: as another gunicorn worker) waits in the
    queue, not in SQLite's busy handler, and writes as soon as the first commits."""
    engine = _sqlite_engine(tmp_path)
    other = make_engine(f"sqlite:///{tmp_path / 'modes.sqlite3'}")
    unit = {"street": "G 1", "postcode": "1", "town": "T", "phone": "1"}
    first = sessionmaker(bind=engine)()
    first.add(Unit(name="A", hsa_id="SE-A", **unit))
    first.flush()
    done: list[str] = []

    def second_writer() -> None:
        with sessionmaker(bind=other)() as session:
            session.add(Unit(name="B", hsa_id="SE-B", **unit))
            session.commit()
            done.append("B")

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=0.5)
    assert thread.is_alive() and not done  # queued behind the first writer
    first.commit()
    thread.join(timeout=30)
    assert done == ["B"]
    first.close()
    engine.dispose()
    other.dispose()


def test_sqlite_one_thread_writing_through_two_engines_does_not_wait_for_itself(
    tmp_path: Path,
) -> None:
    """The queue is skipped by a thread that already holds it (SQLite's own lock then answers,
    after its busy timeout), so a thread never blocks on itself forever."""
    engine = _sqlite_engine(tmp_path)
    unit = {"street": "G 1", "postcode": "1", "town": "T", "phone": "1"}
    second = make_engine(f"sqlite:///{tmp_path / 'modes.sqlite3'}")
    # SQLite's own wait, 0.2 s instead of 30 s, so the test is quick.
    event.listen(second, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=200"))
    with sessionmaker(bind=engine)() as first:
        first.add(Unit(name="A", hsa_id="SE-A", **unit))
        first.flush()
        with pytest.raises(OperationalError, match="locked"), sessionmaker(bind=second)() as s:
            s.add(Unit(name="B", hsa_id="SE-B", **unit))
            s.flush()
    assert _queue_is_free(tmp_path)
    second.dispose()
    engine.dispose()
