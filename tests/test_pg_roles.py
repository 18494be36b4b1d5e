"""PostgreSQL roles as docs/install.md sets them up: the app's role may only append to and read
the access log, and `slussen init-db` warns when the app's role could do more.

The SQL is read from docs/install.md itself (its `psql <<'SQL'` blocks), with the role names made
unique to this run; roles are cluster-wide, so they are dropped even when a test fails."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import Engine, create_engine, func, make_url, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

import slussen.cli
from slussen import audit, vault
from slussen.app import create_app
from slussen.audit import Actor, AuditEvent, RequestInfo
from slussen.db import make_engine
from tests.conftest import need_postgres, pg_url_with_driver, scratch_postgres

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
ACTOR = Actor(None, "(system)", "system")
INFO = RequestInfo("roles-test", "127.0.0.1")


def install_sql() -> list[str]:
    """The SQL blocks of docs/install.md, in order: the grants before init-db, the revokes after."""
    guide = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<<'SQL'\n(.*?)\nSQL\n", guide, flags=re.DOTALL)
    assert len(blocks) == 2, "docs/install.md should have two psql <<'SQL' blocks"
    return blocks


def run_as(url: str, sql: str, owner: str, app: str) -> None:
    sql = re.sub(r"\bslussen_owner\b", owner, sql)
    sql = re.sub(r"\bslussen\b", app, sql)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)
    engine.dispose()


def as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


@contextmanager
def roles(*names: str) -> Iterator[None]:
    """Create LOGIN roles (what `createuser` does) and drop them afterwards, whatever happens."""
    admin = create_engine(pg_url_with_driver(need_postgres()), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
                conn.execute(text(f"CREATE ROLE {name} LOGIN"))
        yield
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A database set up as docs/install.md §2 says, before init-db: the owner's, the app's and
    the superuser's URLs, and the role names."""
    suffix = os.getpid()
    owner, app = f"slussen_owner_{suffix}", f"slussen_app_{suffix}"
    with roles(owner, app), scratch_postgres(f"slussen_roles_{suffix}") as url:
        admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # createdb -O slussen_owner
            conn.execute(text(f"ALTER DATABASE {make_url(url).database} OWNER TO {owner}"))
        admin.dispose()
        run_as(url, install_sql()[0], owner, app)
        yield {
            "superuser": url,
            "owner": as_role(url, owner),
            "app": as_role(url, app),
            "owner_role": owner,
            "app_role": app,
            "instance": str(tmp_path_factory.mktemp("roles")),
        }


def init_db(site: dict[str, str], monkeypatch: pytest.MonkeyPatch, app_url: str) -> str:
    monkeypatch.setenv("SLUSSEN_ENV", "testing")
    monkeypatch.setenv("SLUSSEN_INSTANCE_DIR", site["instance"])
    monkeypatch.setenv("SLUSSEN_DATABASE_URL", app_url)
    monkeypatch.setenv("SLUSSEN_MIGRATION_DATABASE_URL", site["owner"])
    monkeypatch.delenv("SLUSSEN_CONFIG", raising=False)
    apps: list[Flask] = []

    def build() -> Flask:
        apps.append(create_app())
        return apps[-1]

    # The command's app keeps a pool of connections; close it, or the roles stay in use.
    monkeypatch.setattr(slussen.cli, "_app", build)
    try:
        result = CliRunner().invoke(slussen.cli.cli, ["init-db"])
    finally:
        for app in apps:
            app.extensions["slussen.engine"].dispose()
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def installed(site: dict[str, str]) -> Iterator[dict[str, str]]:
    """The whole of install.md: init-db as the owner, then the revokes."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        first = init_db(site, monkeypatch, site["app"])
        assert "upgraded from empty" in first
        # Until the revokes run, init-db says what the default privileges gave the app.
        assert "may UPDATE, DELETE on audit_events" in first, first
        run_as(site["superuser"], install_sql()[1], site["owner_role"], site["app_role"])
    yield site


@pytest.fixture
def app_engine(installed: dict[str, str]) -> Iterator[Engine]:
    engine = make_engine(installed["app"])
    yield engine
    engine.dispose()


def test_app_role_appends_and_reads_the_access_log(
    app_engine: Engine, fresh_ring: vault.KeyRing
) -> None:
    with Session(app_engine) as session, session.begin():
        audit.record(session, fresh_ring, ACTOR, "read", "patient", "1", purpose="roles", info=INFO)
    with Session(app_engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) >= 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET purpose = 'changed'",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
        "ALTER TABLE {table} DISABLE TRIGGER audit_events_no_update_delete",
        "ALTER TABLE {table} DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_events_no_truncate ON {table}",
        "DROP TABLE {table}",
    ],
)
def test_app_role_cannot_change_the_access_log(app_engine: Engine, statement: str) -> None:
    # Refused by the privileges, before the append-only trigger is even asked.
    with (
        app_engine.connect() as conn,
        pytest.raises(ProgrammingError, match=r"permission denied|must be owner"),
    ):
        conn.exec_driver_sql(statement.format(table=AuditEvent.__tablename__))


def test_init_db_is_silent_when_the_app_may_only_append(
    installed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = init_db(installed, monkeypatch, installed["app"])
    assert "up to date" in output
    assert "Warning" not in output, output


def test_init_db_warns_when_the_app_connects_as_the_owner(
    installed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = init_db(installed, monkeypatch, installed["owner"])
    assert (
        f"Warning: the database role '{installed['owner_role']}' that Slussen connects as owns "
        "audit_events" in output
    ), output


def test_init_db_warns_when_the_app_owns_the_table(
    installed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table, app = AuditEvent.__tablename__, installed["app_role"]
    admin = create_engine(installed["superuser"], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER TABLE {table} OWNER TO {app}"))
        output = init_db(installed, monkeypatch, installed["app"])
        assert f"Warning: the database role '{app}' that Slussen connects as owns {table}" in output
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER TABLE {table} OWNER TO {installed['owner_role']}"))
        admin.dispose()


def test_init_db_warns_when_the_app_is_a_superuser(
    installed: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = init_db(installed, monkeypatch, installed["superuser"])
    assert "is a superuser" in output, output
