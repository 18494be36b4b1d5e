"""Server-side sessions: fixation, logout replay, idle and absolute timeouts, disabled accounts.

Tests taking `backend` run on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import WebSession
from slussen.accounts.services import disable_user, purge_expired_sessions
from slussen.accounts.sessions import token_hash
from slussen.audit import SYSTEM, Actor, AuditEvent
from slussen.db import utcnow
from slussen.errors import NotPermitted
from tests.conftest import TEST_PASSWORD, settings_for_tests

COOKIE = "slussen_session"
#: A page that needs login and renders for every role.
PRIVATE_PAGE = "/konto/losenord"


def cookie(client: FlaskClient) -> str | None:
    found = client.get_cookie(COOKIE)
    return found.value if found else None


def rows(session: Session) -> list[WebSession]:
    session.expire_all()
    return list(session.scalars(select(WebSession)))


def row_for(session: Session, token: str) -> WebSession | None:
    session.expire_all()
    return session.get(WebSession, token_hash(token))


def log_in(client: FlaskClient, username: str) -> None:
    response = client.post("/login", data={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)


def test_cookie_holds_a_random_token_and_the_table_only_its_hash(
    client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    user = login("coach")
    token = cookie(client)
    assert token is not None and len(token) >= 43  # 32 random bytes, URL-safe base64
    row = row_for(session, token)
    assert row is not None and row.user_id == user.id
    assert all(token not in (r.id, r.data) for r in rows(session))


def test_anonymous_visitor_gets_no_row_until_something_is_stored(
    client: FlaskClient, session: Session
) -> None:
    client.get("/healthz")
    assert cookie(client) is None
    assert rows(session) == []
    client.get("/login")  # the page's forms carry a CSRF token, kept in the session
    token = cookie(client)
    assert token is not None
    row = row_for(session, token)
    assert row is not None and row.user_id is None
    assert len(rows(session)) == 1


def test_session_id_changes_at_login_and_the_old_one_stays_anonymous(
    backend: str, client: FlaskClient, session: Session, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    client.post("/sprak/en", data={"next": "/login"})
    before = cookie(client)
    assert before is not None
    log_in(client, "coach")
    after = cookie(client)
    assert after is not None and after != before
    assert row_for(session, before) is None
    assert client.get(PRIVATE_PAGE).status_code == 200
    # Someone who planted or saw the old cookie is not logged in with it.
    client.set_cookie(COOKIE, before)
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")


def test_logout_deletes_the_session_and_the_old_cookie_is_worthless(
    backend: str, client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    user = login("coach")
    token = cookie(client)
    assert token is not None
    response = client.post("/logout", follow_redirects=True)
    assert "Du är utloggad" in response.get_data(as_text=True)
    assert row_for(session, token) is None
    assert not any(r.user_id == user.id for r in rows(session))
    client.set_cookie(COOKIE, token)
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.actor_id == user.id))
    assert list(actions) == ["login", "logout"]


def test_idle_timeout_logs_out_with_a_swedish_message(
    backend: str, client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    login("coach")
    token = cookie(client)
    assert token is not None
    row = row_for(session, token)
    assert row is not None
    row.last_seen_at = utcnow() - dt.timedelta(minutes=21)
    session.flush()
    response = client.get("/")
    assert response.status_code == 302 and response.location.startswith("/login")
    assert row_for(session, token) is None
    page = client.get(response.location).get_data(as_text=True)
    assert "Du har loggats ut eftersom du varit inaktiv en stund." in page


def test_activity_within_the_idle_limit_keeps_the_session(
    client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    login("coach")
    token = cookie(client)
    assert token is not None
    row = row_for(session, token)
    assert row is not None
    row.last_seen_at = utcnow() - dt.timedelta(minutes=19)
    session.flush()
    assert client.get(PRIVATE_PAGE).status_code == 200
    row = row_for(session, token)
    assert row is not None and utcnow() - row.last_seen_at < dt.timedelta(minutes=1)


def test_absolute_timeout_ends_even_an_active_session(
    client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    login("coach")
    token = cookie(client)
    assert token is not None
    row = row_for(session, token)
    assert row is not None
    row.created_at = utcnow() - dt.timedelta(hours=10, minutes=1)
    row.last_seen_at = utcnow()
    session.flush()
    response = client.get("/", follow_redirects=True)
    assert "Du har varit inloggad länge och behöver logga in igen." in response.get_data(
        as_text=True
    )
    assert row_for(session, token) is None
    assert client.get("/").status_code == 302


def test_last_seen_is_written_at_most_once_a_minute(
    backend: str, client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    login("coach")
    client.get(PRIVATE_PAGE)  # the first page after login stores a fresh CSRF token
    token = cookie(client)
    assert token is not None
    seen = utcnow() - dt.timedelta(seconds=30)
    row = row_for(session, token)
    assert row is not None
    row.last_seen_at = seen
    session.flush()
    client.get(PRIVATE_PAGE)
    row = row_for(session, token)
    assert row is not None and row.last_seen_at == seen  # no write
    row.last_seen_at = seen - dt.timedelta(seconds=45)
    session.flush()
    client.get(PRIVATE_PAGE)
    row = row_for(session, token)
    assert row is not None and row.last_seen_at > seen  # touched


def test_disabling_an_account_ends_its_open_sessions_at_once(
    backend: str, app: Flask, client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    user = login("coach")
    other = app.test_client()
    log_in(other, "coach")
    assert len([r for r in rows(session) if r.user_id == user.id]) == 2
    with app.app_context():
        disable_user(session, SYSTEM, user)
    session.flush()
    assert not any(r.user_id == user.id for r in rows(session))
    for browser in (client, other):
        response = browser.get("/")
        assert response.status_code == 302 and response.location.startswith("/login")
    assert (
        client.post("/login", data={"username": "coach", "password": TEST_PASSWORD}).status_code
        == 401
    )
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "account_disable"))
    assert [(e.object_id, e.actor_role) for e in events] == [(str(user.id), "system")]


def test_only_an_administrator_disables_and_not_themself(
    app: Flask, session: Session, make_user: Callable[..., Any]
) -> None:
    coach = make_user("coach")
    admin = make_user("admin")
    with app.app_context():
        with pytest.raises(NotPermitted):
            disable_user(session, Actor.of(coach), admin)
        with pytest.raises(NotPermitted):
            disable_user(session, Actor.of(admin), admin)
        disable_user(session, Actor.of(admin), coach)
    assert not coach.is_active and admin.is_active


def test_purge_removes_only_expired_sessions(backend: str, app: Flask, session: Session) -> None:
    now = utcnow()
    ages = {
        "fresh": (now - dt.timedelta(hours=1), now - dt.timedelta(minutes=5)),
        "idle": (now - dt.timedelta(hours=1), now - dt.timedelta(minutes=25)),
        "old": (now - dt.timedelta(hours=11), now - dt.timedelta(minutes=1)),
    }
    for name, (created, seen) in ages.items():
        session.add(
            WebSession(id=token_hash(name), data="{}", created_at=created, last_seen_at=seen)
        )
    session.flush()
    assert purge_expired_sessions(session, app.extensions["slussen.settings"], now=now) == 2
    assert [r.id for r in rows(session)] == [token_hash("fresh")]


def test_unknown_or_oversized_cookie_is_anonymous_and_removed(
    client: FlaskClient, login: Callable[..., Any]
) -> None:
    for value in ("not-a-session", "x" * 3000):
        client.set_cookie(COOKIE, value)
        response = client.get("/")
        assert response.status_code == 302
        assert f"{COOKIE}=;" in response.headers.get("Set-Cookie", "")


def test_session_cookie_is_httponly_and_samesite(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    header = response.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Expires" not in header  # a browser-session cookie; the server decides the lifetime
    assert response.headers["Cache-Control"] == "no-store"


class TestProduction:
    @pytest.fixture
    def app_settings(self, tmp_path: Path) -> dict[str, Any]:
        return settings_for_tests(
            tmp_path,
            env="production",
            keyring_path=str(tmp_path / "keyring.json"),
            public_base_url="https://slussen.example.se",
            argon2_time_cost=2,
            argon2_memory_kib=19456,
        )

    def test_cookie_is_secure_in_production(self, client: FlaskClient) -> None:
        response = client.post("/sprak/en", data={"next": "/login"})
        header = response.headers["Set-Cookie"]
        assert re.search(r"; Secure(;|$)", header), header


@pytest.mark.settings(csrf_enabled=True)
class TestCsrfOn:
    def test_login_form_token_lives_in_an_anonymous_row_and_is_renewed_at_login(
        self, client: FlaskClient, session: Session, make_user: Callable[..., Any]
    ) -> None:
        make_user("coach")
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert token is not None
        anonymous = cookie(client)
        assert anonymous is not None
        row = row_for(session, anonymous)
        assert row is not None and row.user_id is None
        response = client.post(
            "/login",
            data={"username": "coach", "password": TEST_PASSWORD, "csrf_token": token.group(1)},
        )
        assert response.status_code == 302
        # A form token from before the login is not accepted after it.
        response = client.post("/logout", data={"csrf_token": token.group(1)})
        assert response.status_code == 400


def test_an_unreachable_session_store_says_try_again(
    app: Flask, client: FlaskClient, login: Callable[..., Any]
) -> None:
    from sqlalchemy.exc import OperationalError

    login("coach")

    def unreachable() -> Session:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app.extensions["slussen.sessionmaker"] = unreachable
    response = client.get(PRIVATE_PAGE)
    # 503 "try again", not a login page: the logged-in user is not treated as a stranger.
    assert response.status_code == 503
    assert "Slussen når inte sin databas just nu" in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers  # the cookie is kept for when it comes back
    assert app.test_client().get("/login").status_code == 200  # a new visitor needs no store
