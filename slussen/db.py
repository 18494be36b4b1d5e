"""Engine, sessions and the declarative base.

One engine per app. A request gets one session (`db_session()`), committed once by the view that
changes something and closed at teardown. SQLite runs in WAL mode with foreign keys on; PostgreSQL
connections are checked before use so a restarted database does not surface as an error page.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from flask import Flask, current_app, g
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

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


def make_engine(url: str) -> Engine:
    """Create the engine for `url` with the settings each database needs."""
    if url.startswith("sqlite"):
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide where transactions begin (savepoints work).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock up front: a transaction that read first and writes later (every
            # audited page) would otherwise fail with SQLITE_BUSY_SNAPSHOT under concurrency.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def reserve_ids(connection: Connection, table: Table, count: int) -> list[int]:
    """`count` fresh primary keys for `table`, for rows that go in with one executemany and whose
    content depends on their id (ciphertext bound to its row). PostgreSQL draws them from the
    table's sequence, safe beside other writers. SQLite takes max(id) + 1 on: its transactions
    hold the write lock from BEGIN IMMEDIATE, so no one else inserts meanwhile, but the caller
    inserts the rows before reserving again for the same table."""
    if count <= 0:
        return []
    if connection.dialect.name == "postgresql":
        drawn = connection.execute(
            select(func.nextval(func.pg_get_serial_sequence(table.name, "id"))).select_from(
                func.generate_series(1, count)
            )
        )
        return [int(value) for (value,) in drawn]
    start = int(connection.scalar(select(func.max(table.c.id))) or 0) + 1
    return list(range(start, start + count))


@dataclass(frozen=True)
class _Prepared:
    sql: str
    #: The parameters the rows give, in placeholder order (positional drivers such as SQLite)
    #: or any order (named drivers such as psycopg).
    names: tuple[str, ...]
    #: (position in `names`, bind processor) for the parameters that need processing.
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    #: Parameters the statement fixes itself: (position among all parameters, value).
    constants: tuple[tuple[int, Any], ...]
    #: Every parameter's name, in placeholder order.
    order: tuple[str, ...]
    positional: bool


_PREPARED: dict[tuple[Any, str, tuple[str, ...]], _Prepared] = {}


def _python_type(type_: Any) -> Any:
    try:
        return type_.python_type
    except NotImplementedError:
        return None


def _prepare(dialect: Dialect, statement: Any, keys: tuple[str, ...]) -> _Prepared:
    cache_key = (statement, dialect.name, keys)
    prepared = _PREPARED.get(cache_key)
    if prepared is None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        order = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        names: list[str] = []
        processors = []
        constants = []
        for position, name in enumerate(order):
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if dialect.name == "sqlite" and isinstance(bind.type, LargeBinary):
                proc = None  # sqlite3 stores bytes as they are (its Binary is a memoryview)
            if name in keys:
                if proc is not None:
                    if _python_type(bind.type) in (dt.datetime, dt.date):
                        # The same moments and days recur in a batch (an event's history row
                        # and letters share one): process each value once.
                        proc = functools.lru_cache(maxsize=65536)(proc)
                    processors.append((len(names), proc))
                names.append(name)
            else:
                value = bind.effective_value
                constants.append((position, proc(value) if proc else value))
        prepared = _Prepared(
            compiled.string,
            tuple(names),
            tuple(processors),
            tuple(constants),
            tuple(order),
            bool(compiled.positional),
        )
        _PREPARED[cache_key] = prepared
    return prepared


def execute_many(
    connection: Connection,
    statement: Any,
    rows: Sequence[Any],
    keys: Sequence[str] | None = None,
) -> int:
    """Run a Core INSERT/UPDATE/DELETE for many parameter sets with the driver's executemany,
    without SQLAlchemy's per-row work (about two thirds of the time of `connection.execute`
    with a list). The statement is compiled once per dialect and set of keys, and each value
    goes through the same bind processor (UTC datetimes, dates, booleans) SQLAlchemy would
    apply, so the rows are stored exactly as `connection.execute` stores them. Every row has
    the same keys; Python-side column defaults are not applied, so give every column. The
    statement should be a module-level constant (it is the cache key). Rows are dicts, or
    tuples with the values of `keys` in that order (cheaper for hot paths). Returns the rows
    affected."""
    if not rows:
        return 0
    prepared = _prepare(connection.dialect, statement, tuple(keys or rows[0]))
    names, processors, constants = prepared.names, prepared.processors, prepared.constants
    get: Callable[[Any], Any]
    if keys is None:
        get = operator.itemgetter(*names)
    else:
        indexes: list[Any] = [list(keys).index(name) for name in names]
        get = operator.itemgetter(*indexes)
    params: list[Any] = []
    for row in rows:
        values = get(row)
        if len(names) == 1:
            values = (values,)
        if processors or constants:
            changed = list(values)
            for index, proc in processors:
                changed[index] = proc(changed[index])
            for position, value in constants:
                changed.insert(position, value)
            values = tuple(changed)
        params.append(values)
    if not prepared.positional:
        params = [dict(zip(prepared.order, values, strict=True)) for values in params]
    result = connection.exec_driver_sql(prepared.sql, params)
    return int(result.rowcount)


def init_app(app: Flask, url: str) -> None:
    """Attach an engine and a session factory to `app`; close the request's session at teardown."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    app.extensions["slussen.engine"] = engine
    app.extensions["slussen.sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)

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


@contextmanager
def session_scope(app: Flask) -> Iterator[Session]:
    """A session for CLI commands: commits on success, rolls back on error."""
    session: Session = app.extensions["slussen.sessionmaker"]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
