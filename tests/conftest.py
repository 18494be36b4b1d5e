"""Fixtures: app, client, runner, login(role), and a transaction per test on SQLite or PostgreSQL;
the workflow, the key rings, the keystore and the actors every capability's tests share.

PostgreSQL tests run when SLUSSEN_TEST_DATABASE_URL is set; with SLUSSEN_REQUIRE_POSTGRES=1 (CI)
a PostgreSQL test that cannot run fails instead of being skipped. The federated-login tests need
Node and npm for their OpenID provider (tests/oidc_support.py); with SLUSSEN_REQUIRE_OIDC=1 (CI)
or SLUSSEN_REQUIRE_OPS=1 they fail without them instead of being skipped.

Layout: tests/ mirrors slussen/. A capability's tests live in its folder (tests/cases/,
tests/visits/, tests/letters/, ...; a fixture only one folder uses goes in that folder's
conftest.py); tests of a top-level module (vault.py, audit.py, config.py, db.py, ...) and of
the whole app (test_web.py, test_bad_input.py, test_architecture.py, test_workflow_words.py)
stay at the top. Browser tests are in tests/browser/, deployment tests in tests/ops/. The test
folders have no __init__.py, so every test module's file name must be unique across tests/.

Settings: a test, class or module that needs other settings for `app` says so with
`@pytest.mark.settings(name=value, ...)` (or `pytestmark = pytest.mark.settings(...)`); only a
setting that depends on the test's own tmp_path or parameters overrides `app_settings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from slussen import audit, migrate, vault
from slussen import cli as slussen_cli
from slussen.app import create_app
from slussen.audit import Actor, AuditEvent
from slussen.cases.workflow import Workflow
from slussen.cli import cli
from slussen.config import load_settings
from slussen.db import make_engine
from slussen.keystore import Keystore, current_key_ring, open_key_ring

PG_URL = os.environ.get("SLUSSEN_TEST_DATABASE_URL", "")
REQUIRE_PG = os.environ.get("SLUSSEN_REQUIRE_POSTGRES") == "1"
TEST_PASSWORD = "ett långt testlösenord för demo"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# Every role an actor can have: the staff roles (a user each in `actors`), then the two without
# an account.
ROLES = ["staff", "coach", "coordinator", "evaluator", "org_rep", "admin", "system", "patient"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "settings(**changes): the app of this test runs with these settings changed"
    )


def need_postgres() -> str:
    """The PostgreSQL URL, or skip (fail in CI) saying why."""
    if PG_URL:
        return PG_URL
    message = "PostgreSQL tests skipped: set SLUSSEN_TEST_DATABASE_URL to run them"
    if REQUIRE_PG:
        pytest.fail(message + " (SLUSSEN_REQUIRE_POSTGRES=1)")
    pytest.skip(message)


def pg_url_with_driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("db") / "test.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards; yields its URL."""
    url = pg_url_with_driver(need_postgres())
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    # One database per test process, so parallel runs on one server never meet.
    with scratch_postgres(f"slussen_test_{os.getpid()}") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        yield engine
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrise a test over both databases (data-layer tests)."""
    return str(request.param)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Engine:
    name = request.getfixturevalue("backend") if "backend" in request.fixturenames else "sqlite"
    if name == "postgres":
        need_postgres()
    result: Engine = request.getfixturevalue(f"{name}_engine")
    return result


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """One outer transaction per test, rolled back at the end."""
    conn = engine.connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    db = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    yield db
    db.close()


def settings_for_tests(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "env": "testing",
        "instance_dir": str(tmp_path / "instance"),
        "secret_key": "test-secret-key-that-is-long-enough-1234",
        "database_url": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "csrf_enabled": False,
        **extra,
    }


@pytest.fixture
def app_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The settings for `app`, changed by the closest `settings` mark; override this fixture only
    for settings built from the test's tmp_path or parameters."""
    mark = request.node.get_closest_marker("settings")
    return settings_for_tests(tmp_path, **(mark.kwargs if mark else {}))


@pytest.fixture
def app(app_settings: dict[str, Any], connection: Connection) -> Iterator[Flask]:
    application = create_app(app_settings)
    # Every request's session joins the test's outer transaction through a savepoint.
    application.extensions["slussen.sessionmaker"] = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    application.extensions["slussen.engine"] = connection.engine
    yield application
    application.extensions["slussen.engine"] = None


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def unit(app: Flask, session: Session) -> Any:
    from slussen.accounts.models import Unit

    unit = Unit(
        name="Vårdcentralen Test",
        hsa_id="SE2321000016-TST1",
        street="Testgatan 1",
        postcode="722 15",
        town="Västerås",
        phone="021-00 00 00",
    )
    session.add(unit)
    session.flush()
    return unit


@pytest.fixture
def make_user(app: Flask, session: Session, unit: Any) -> Callable[..., Any]:
    from slussen.accounts.services import create_user

    def _make(role: str, username: str | None = None, units: list[Any] | None = None) -> Any:
        user = create_user(
            session,
            app.extensions["slussen.settings"],
            username=username or role,
            display_name=f"Test {role}",
            role=role,
            password=TEST_PASSWORD,
            unit_ids=[u.id for u in (units if units is not None else [unit])],
        )
        session.flush()
        return user

    return _make


@pytest.fixture
def login(client: FlaskClient, make_user: Callable[..., Any]) -> Callable[..., Any]:
    """login(role) creates a user with that role in the test unit and logs in as them."""

    def _login(role: str, username: str | None = None) -> Any:
        user = make_user(role, username)
        response = client.post(
            "/login", data={"username": user.username, "password": TEST_PASSWORD}
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return _login


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SQLite instance folder for commands that build their own app."""
    instance = tmp_path / "instance"
    monkeypatch.setenv("SLUSSEN_INSTANCE_DIR", str(instance))
    monkeypatch.setenv("SLUSSEN_ENV", "testing")
    for name in list(os.environ):
        if name in ("SLUSSEN_DATABASE_URL", "SLUSSEN_CONFIG", "SLUSSEN_KEYRING"):
            monkeypatch.delenv(name)
    return instance


@dataclass(frozen=True)
class DemoSite:
    """The demo loaded by the `slussen` commands into a database of its own, committed for real."""

    url: str
    ring: vault.KeyRing

    def append_audit_row(self, unit_id: int | None, *, wait: float = 2.0) -> float:
        """Append one audit row to the chain of `unit_id` and commit, through a connection of
        its own that waits at most `wait` seconds for a lock; returns the seconds it took.
        Raises OperationalError while another transaction holds SQLite's write lock or, on
        PostgreSQL, that chain's head."""
        if self.url.startswith("sqlite"):
            engine = create_engine(self.url, connect_args={"timeout": wait})
        else:
            options = f"-c lock_timeout={int(wait * 1000)}"
            engine = create_engine(self.url, connect_args={"options": options})
        started = time.monotonic()
        try:
            with Session(engine) as session:
                audit.record(
                    session, self.ring, audit.SYSTEM, "read", "unit", unit_id or 0, purpose="test"
                )
                session.commit()
        finally:
            engine.dispose()
        return time.monotonic() - started

    def audited(self, action: str, object_type: str) -> list[str]:
        """The object ids of the committed audit rows of `action` on `object_type`."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [
                    str(object_id)
                    for (object_id,) in conn.execute(
                        select(AuditEvent.object_id).where(
                            AuditEvent.action == action, AuditEvent.object_type == object_type
                        )
                    )
                ]
        finally:
            engine.dispose()


@pytest.fixture(params=BACKENDS)
def demo_site(
    request: pytest.FixtureRequest, cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DemoSite]:
    """`slussen init-db` and `slussen demo` run into a SQLite file (in `cli_env`) or a scratch
    PostgreSQL database; later commands in the test use the same database. The apps the
    commands build are closed at the end."""
    built: list[Flask] = []

    def recording_app() -> Flask:
        built.append(create_app())
        return built[-1]

    monkeypatch.setattr(slussen_cli, "_app", recording_app)

    def load(url: str) -> DemoSite:
        monkeypatch.setenv("SLUSSEN_DATABASE_URL", url)
        runner = CliRunner()
        assert runner.invoke(cli, ["init-db"]).exit_code == 0
        loaded = runner.invoke(cli, ["demo", "--password", TEST_PASSWORD])
        assert loaded.exit_code == 0, loaded.output
        return DemoSite(url, open_key_ring(load_settings()))

    def close_apps() -> None:
        for app in built:
            app.extensions["slussen.engine"].dispose()

    if request.param == "sqlite":
        cli_env.mkdir(parents=True, exist_ok=True)
        try:
            yield load(f"sqlite:///{cli_env / 'slussen.sqlite3'}")
        finally:
            close_apps()
        return
    with scratch_postgres(f"slussen_demo_site_{os.getpid()}") as url:
        try:
            yield load(url)
        finally:
            close_apps()  # before the scratch database is dropped


@pytest.fixture
def workflow(app: Flask) -> Workflow:
    """The app's compiled workflow (the shipped sluss.toml unless the content is changed)."""
    result: Workflow = app.extensions["slussen.content"].compiled["workflow"]
    return result


@pytest.fixture
def ring(app: Flask) -> vault.KeyRing:
    """The app's key ring, so that what a test seals the app's pages can read."""
    with app.app_context():
        return current_key_ring()


@pytest.fixture
def fresh_ring() -> vault.KeyRing:
    """A new key ring in memory, for tests of the data layer that need no app."""
    return vault.KeyRing.generate()


@pytest.fixture
def store(session: Session, ring: vault.KeyRing) -> Keystore:
    """The test's session with the app's key ring."""
    return Keystore(session, ring)


@pytest.fixture
def coach(make_user: Callable[..., Any]) -> Actor:
    return Actor.of(make_user("coach"))


@pytest.fixture
def coordinator(make_user: Callable[..., Any]) -> Actor:
    # Not named "coordinator", so that login("coordinator") in the same test makes its own user.
    return Actor.of(make_user("coordinator", "samordnaren"))


@pytest.fixture
def actors(make_user: Callable[..., Any]) -> dict[str, Actor]:
    """One actor per role in ROLES: a user in the test unit for each staff role, and the system
    and the patient, who have no account."""
    people = {role: Actor.of(make_user(role)) for role in ROLES[:6]}
    people["system"] = Actor(None, "(system)", "system")
    people["patient"] = Actor(None, "(patient)", "patient")
    return people


# --- crawling every route as every role (tests/test_bad_input.py, tests/test_hostile_input.py) ---

EVERY_ROLE = ["anonymous", "staff", "coach", "coordinator", "evaluator", "org_rep", "admin"]
#: Endpoints whose effect is to end the session; crawling them would log the client out.
NOT_CRAWLED = {"accounts.logout", "static"}


@pytest.fixture
def clients(app: Flask, make_user: Callable[..., Any]) -> dict[str, FlaskClient]:
    """A logged-in test client per role (and one anonymous)."""
    result = {"anonymous": app.test_client()}
    for role in EVERY_ROLE[1:]:
        make_user(role)
        client = app.test_client()
        response = client.post("/login", data={"username": role, "password": TEST_PASSWORD})
        assert response.status_code == 302, role
        result[role] = client
    return result


@pytest.fixture
def rules(app: Flask, clients: dict[str, FlaskClient], session: Session, unit: Any) -> list[Any]:
    """Every URL rule worth crawling, with a case in the database so id-taking URLs sometimes
    hit a real object."""
    from slussen.accounts.models import User
    from tests.builders import make_case

    coach = session.scalars(select(User).where(User.role == "coach")).one()
    workflow = app.extensions["slussen.content"].compiled["workflow"]
    with app.app_context():
        ring = current_key_ring()
    make_case(session, ring, workflow, Actor.of(coach), unit.id, "mapping_booked")
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint not in NOT_CRAWLED),
        key=lambda r: (r.endpoint, r.rule),
    )
