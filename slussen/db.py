"""Engine, sessions and the declarative base.

One engine per app. A request gets one session (`db_session()`) and one transaction: committed in
one place when the view answers with a success or a redirect, rolled back in one place when it
answers with an error (a refusal, a 404, a server error), closed at teardown. Views do not commit
or roll back; the two named steps they may use are `commit_request()` (an audited page ends its
transaction before rendering) and `attempt()` (a refusal the view answers itself undoes what the
refused step wrote). SQLite runs in WAL mode with foreign keys on; PostgreSQL
connections are checked before use so a restarted database does not surface as an error page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import DateTime, Engine, MetaData, String, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from werkzeug.wrappers import Response

from slussen.errors import NotFound
from slussen.privatefiles import create_private

T = TypeVar("T")
R = TypeVar("R")

#: Items per committed slice of a long job (letters printed, timers fired, keys rewrapped).
SLICE_SIZE = 200
#: Seconds a long job waits after each committed slice on SQLite, so that a page queued for the
#: write lock (`_WriterQueue`) is scheduled and takes it before the job's next slice does.
SQLITE_SLICE_PAUSE = 0.005
#: A slice also ends after this many seconds, whatever its size: the longest a page waits.
SLICE_SECONDS = 0.25

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)


def one_of(column: str, values: Iterable[str], *, nullable: bool = False) -> str:
    """The SQL of a CHECK constraint for an enum stored as a string: `column IN ('a', 'b')`."""
    check = f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"
    return f"({check} OR {column} IS NULL)" if nullable else check


intpk = Annotated[int, mapped_column(primary_key=True)]
str40 = Annotated[str, mapped_column(String(40))]
str200 = Annotated[str, mapped_column(String(200))]
created_at = Annotated[dt.datetime, mapped_column(UtcDateTime(), default=utcnow)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UtcDateTime()}


#: Requests that only read begin SQLite transactions deferred (see `make_engine`).
READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: True inside `reading()`: a command that reads, then writes its audit row (an export), begins
#: its SQLite transactions deferred as a reading request does.
_READING_JOB: ContextVar[bool] = ContextVar("slussen_reading_job", default=False)
_DEFERRED = "slussen_deferred"
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLAC"})


class _WriterQueue:
    """Writers to one SQLite file wait in a queue, not in SQLite's busy handler.

    SQLite lets one writer at a time hold the write lock; the others poll for it (its busy
    handler sleeps 1, 2, 5 … then 100 ms between tries), so under load a request could lose the
    race again and again and wait most of a second while the lock stood free between polls. Here
    every write transaction first takes an exclusive `flock` on `<database>-writer`: the kernel
    wakes a waiter the moment the lock is released, across threads and worker processes alike
    (each connection opens the file itself, and flock locks belong to the open file). SQLite's
    own lock is then free whenever the queue is, so its busy handler only ever waits for a
    process that does not queue (the sqlite3 shell, a backup)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, info: dict[str, Any]) -> None:
        info[_QUEUE_FD] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def enter(self, info: dict[str, Any]) -> None:
        # A thread that writes through a second connection (or a second engine on the same
        # file) while its first holds the queue would wait for itself forever: that second one
        # goes straight to SQLite's lock and its busy timeout, as without the queue.
        held = _held_by_thread()
        if info.get(_QUEUE_HELD) or held[self.path]:
            return
        fcntl.flock(info[_QUEUE_FD], fcntl.LOCK_EX)
        info[_QUEUE_HELD] = True
        held[self.path] += 1

    def leave(self, info: dict[str, Any]) -> None:
        if info.pop(_QUEUE_HELD, False):
            fcntl.flock(info[_QUEUE_FD], fcntl.LOCK_UN)
            held = _held_by_thread()
            held[self.path] = max(0, held[self.path] - 1)

    def close(self, info: dict[str, Any]) -> None:
        self.leave(info)
        fd = info.pop(_QUEUE_FD, None)
        if fd is not None:
            os.close(fd)


_THREAD = threading.local()


def _held_by_thread() -> Counter[str]:
    """How many connections of this thread hold the writer queue of each database file."""
    held: Counter[str] | None = getattr(_THREAD, "held", None)
    if held is None:
        held = _THREAD.held = Counter()
    return held


_QUEUE_FD = "slussen_writer_fd"
_QUEUE_HELD = "slussen_writer_held"


def make_engine(url: str) -> Engine:
    """Create the engine for `url` with the settings each database needs."""
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        if in_memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        database = engine.url.database
        if database and not in_memory and not engine.url.query.get("uri"):
            # SQLite would create the file with the umask's mode (0644): health data is 0600.
            # Its -wal and -shm files take the database file's mode.
            with contextlib.suppress(FileNotFoundError):  # no folder: SQLite says so at connect
                create_private(Path(database))
        queue = None if in_memory or not database else _WriterQueue(f"{database}-writer")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
            if queue is not None:
                queue.open(record.info)
            # Let SQLAlchemy, not pysqlite, decide where transactions begin (savepoints work).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A transaction that read first and wrote later would fail with SQLITE_BUSY_SNAPSHOT
            # under concurrency, so changing requests (and the CLI) take the write lock up front.
            # Reading requests (GET, HEAD) and reading commands (an export) begin deferred, so
            # readers never wait for each other nor hold up a writer; their few writes (an audit
            # row, a session touch) restart the transaction as a write transaction first
            # (`_sqlite_write_lock`), as PostgreSQL's READ COMMITTED would see them.
            is_reading = _READING_JOB.get() or (
                has_request_context() and request.method in READING_METHODS
            )
            conn.info[_DEFERRED] = is_reading
            if not is_reading and queue is not None:
                queue.enter(conn.connection.info)
            conn.exec_driver_sql("BEGIN" if is_reading else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "savepoint")
        def _sqlite_savepoint(conn: Any, _name: str) -> None:
            # A savepoint cannot survive a restart: keep the transaction as it began.
            conn.info[_DEFERRED] = False

        @event.listens_for(engine, "before_cursor_execute")
        def _sqlite_write_lock(
            conn: Any, cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
        ) -> None:
            if conn.info.get(_DEFERRED) and statement.lstrip()[:6].upper() in _WRITES:
                conn.info[_DEFERRED] = False
                # Only reads happened so far: end them and wait for the write lock.
                cursor.execute("COMMIT")
                if queue is not None:
                    queue.enter(conn.connection.info)
                cursor.execute("BEGIN IMMEDIATE")

        if queue is not None:

            def _end_then_leave(conn: Any, end: str) -> None:
                # SQLAlchemy's own commit or rollback comes next and finds no transaction to
                # end (pysqlite then does nothing); the queue is left once SQLite's lock is.
                dbapi_connection = conn.connection.dbapi_connection
                try:
                    getattr(dbapi_connection, end)()
                finally:
                    if not dbapi_connection.in_transaction:
                        queue.leave(conn.connection.info)

            event.listen(engine, "commit", lambda conn: _end_then_leave(conn, "commit"))
            event.listen(engine, "rollback", lambda conn: _end_then_leave(conn, "rollback"))
            event.listen(engine.pool, "checkin", lambda _c, record: queue.leave(record.info))
            event.listen(engine.pool, "close", lambda _c, record: queue.close(record.info))

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def init_app(app: Flask, url: str) -> None:
    """Attach an engine and a session factory to `app`; end the request's transaction after the
    view, close its session at teardown."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    app.extensions["slussen.engine"] = engine
    app.extensions["slussen.sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)

    # Registered first, so it runs after every other after_request function (Flask runs them in
    # reverse), and before the session interface saves the login session.
    @app.after_request
    def _end_request_transaction(response: Response) -> Response:
        session: Session | None = g.get("db_session")
        if session is not None:
            if response.status_code < 400:
                session.commit()
            else:
                # A refusal, a missing page or a server error: nothing of the request stays
                # (an audited page already committed its read with `commit_request`).
                session.rollback()
        return response

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()


def engine() -> Engine:
    result: Engine = current_app.extensions["slussen.engine"]
    return result


def db_session() -> Session:
    """The session of the current app context, created on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["slussen.sessionmaker"]()
    session: Session = g.db_session
    return session


def commit_request() -> None:
    """Commit what the request has written so far, now rather than after the view.

    For the page that writes its audit row last and then renders: the write lock (SQLite) and the
    audit chain head's row lock (PostgreSQL) are held only from the audit write to here, not
    while the template renders; and an audited page shown with an error status (a letter that
    cannot be printed) keeps its read on record. Anything written after this is committed or
    rolled back with the response as usual."""
    db_session().commit()


@contextmanager
def attempt() -> Iterator[None]:
    """Run a step whose refusal the view answers itself (a flash, the form again).

    The step runs in a savepoint: if it raises, what it wrote is undone and the exception goes on
    to the view (or to the error handler), so a page shown after a refusal commits nothing of
    the refused step."""
    with db_session().begin_nested():
        yield


def load_authorised(
    session: Session,
    model: type[T],
    ident: int,
    *,
    allowed: Callable[[T], bool] | None = None,
    message: str = "Sidan finns inte.",
) -> T:
    """The `model` row with primary key `ident` if `allowed(row)` holds; refuses with NotFound
    (404) when it does not exist or the user may not see it: no hint that it exists."""
    row = session.get(model, ident)
    if row is None or (allowed is not None and not allowed(row)):
        raise NotFound(message)
    return row


@contextmanager
def reading() -> Iterator[None]:
    """Transactions that begin inside this block begin as a reading page's do: on SQLite deferred,
    so their reads hold no write lock, and their first write ends the reads and waits for the
    lock (`make_engine`). For a command's reading step; PostgreSQL's reads never lock anyway. A
    transaction already begun is not changed."""
    token = _READING_JOB.set(True)
    try:
        yield
    finally:
        _READING_JOB.reset(token)


@contextmanager
def session_scope(app: Flask, *, reading_only: bool = False) -> Iterator[Session]:
    """A session for CLI commands: commits on success, rolls back on error.

    `reading_only=True` for a command that reads and then writes only its audit row (an
    export): its transaction begins inside `reading()`, so on SQLite the reads hold no write
    lock and the audit row takes it only from that write to the commit at the end of the scope
    (on PostgreSQL reads never lock). Such a command hands its data out after the scope, once
    the audit row is committed."""
    session: Session = app.extensions["slussen.sessionmaker"]()
    with reading() if reading_only else nullcontext():
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


def slice_commit(session: Session) -> Callable[[], None]:
    """The `commit` a long job (a CLI command) gives `in_slices`: commit the session's slice,
    then, on SQLite, leave the write lock free for a moment so that waiting pages get it."""
    pause = SQLITE_SLICE_PAUSE if session.get_bind().dialect.name == "sqlite" else 0.0

    def commit() -> None:
        session.commit()
        if pause:
            time.sleep(pause)

    return commit


def in_slices(
    items: Iterable[T],
    work: Callable[[T], Iterable[R]],
    *,
    commit: Callable[[], None] | None,
    size: int = SLICE_SIZE,
    seconds: float = SLICE_SECONDS,
) -> Iterator[R]:
    """Run a long job in short transactions: `work` handles one item at a time, and after `size`
    items, or sooner once a slice has taken `seconds`, `commit()` ends that slice's transaction;
    only then are the slice's results handed out.

    So the write lock (SQLite) and the audit chain head's row lock are held for one short slice,
    never for the job, and whatever the caller does with the results (rendering a PDF) happens
    outside any transaction. A slice that raises is not committed (the caller rolls it back);
    the slices before it stay committed, so the job must be written to resume: find what is
    left, not redo what is done. `commit=None` keeps everything in the caller's one transaction
    (a web request, which never commits itself). A lazy generator: nothing runs until read."""
    if size < 1:
        raise ValueError("a slice holds at least one item")
    results: list[R] = []
    count = 0
    started = time.monotonic()
    for item in items:
        results.extend(work(item))
        count += 1
        if count >= size or time.monotonic() - started >= seconds:
            if commit is not None:
                commit()
            yield from results
            results, count, started = [], 0, time.monotonic()
    if count:
        if commit is not None:
            commit()
        yield from results
