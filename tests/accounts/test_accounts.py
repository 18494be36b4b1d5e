"""Login, logout, roles and the public list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from slussen.accounts.passwords import PasswordRejected, check_password_rules
from tests.conftest import TEST_PASSWORD

#: Every URL rule reachable without login. A new public page must be added here on purpose.
PUBLIC_ENDPOINTS = {
    "static",
    "accounts.login",
    # The second login step and the TOTP enrolment serve users half-way through logging in;
    # they check the pending login themselves.
    "accounts.login_code",
    "accounts.totp_enrol",
    # The federated login's start and the provider's answer (it checks the pending login).
    "accounts.oidc_start",
    "accounts.oidc_callback",
    # The page where a user sets a new password with an administrator's one-time link (the
    # link's token is the key; it checks it itself).
    "admin.link_password",
    "core.set_language",
    "core.healthz",
    "core.favicon",
    "intake.self_referral",
    "intake.self_referral_received",
    "directory.calendar",
    "directory.activity_page",
    "directory.printable",
    "directory.printable_pdf",
    "directory.ics_feed",
    "directory.open_data",
    "questionnaires.answer",
    "questionnaires.answer_with_code",
    "questionnaires.step",
    "questionnaires.review",
    "questionnaires.thanks",
}


def test_public_endpoints_are_exactly_the_explicit_list(app: Flask) -> None:
    from slussen.accounts.auth import is_public_endpoint

    with app.test_request_context():
        public = {
            rule.endpoint for rule in app.url_map.iter_rules() if is_public_endpoint(rule.endpoint)
        }
    assert public == PUBLIC_ENDPOINTS


def test_every_other_page_redirects_to_login(app: Flask, client: FlaskClient) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or "GET" not in (rule.methods or set()):
            continue
        url = rule.rule.replace("<", "").replace(">", "")
        response = client.get(url)
        assert response.status_code in (302, 404), url
        if response.status_code == 302:
            assert response.location.startswith("/login")


def test_login_shows_swedish_form(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert "Logga in" in page
    assert 'lang="sv"' in page


def test_login_and_logout(client: FlaskClient, make_user: Callable[..., Any]) -> None:
    make_user("coach")
    response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert "Din arbetslista" in client.get("/", follow_redirects=True).get_data(as_text=True)
    client.post("/logout")
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_in_swedish(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    response = client.post("/login", data={"username": "coach", "password": "fel lösenord här"})
    assert response.status_code == 401
    assert "Fel användarnamn eller lösenord" in response.get_data(as_text=True)


def test_unknown_user_gets_the_same_answer(client: FlaskClient) -> None:
    response = client.post("/login", data={"username": "nobody", "password": "whatever it is"})
    assert response.status_code == 401
    assert "Fel användarnamn eller lösenord" in response.get_data(as_text=True)


def test_disabled_account_cannot_log_in(
    client: FlaskClient, make_user: Callable[..., Any], session: Any
) -> None:
    user = make_user("coach")
    user.is_active = False
    session.flush()
    response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert response.status_code == 401


def test_next_parameter_cannot_leave_the_site(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    response = client.post(
        "/login?next=//evil.example/x", data={"username": "coach", "password": TEST_PASSWORD}
    )
    assert response.location == "/"


@pytest.mark.parametrize(
    ("role", "sees"),
    [
        ("coach", "Din arbetslista"),
        ("coordinator", "Din arbetslista"),
        ("staff", "Patienter du har flaggat"),
        ("evaluator", "Hur många patienter som passerar varje steg"),
        ("admin", "Administration"),
        ("org_rep", "Förfrågningar om överlämning"),
    ],
)
def test_start_page_per_role(
    client: FlaskClient, login: Callable[..., Any], role: str, sees: str
) -> None:
    login(role)
    assert sees in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_role_check_refuses_with_403(
    app: Flask, client: FlaskClient, login: Callable[..., Any]
) -> None:
    from slussen.accounts.auth import require
    from slussen.accounts.roles import Permission

    @require(Permission.WORK_CASES)
    def only_coaches() -> str:
        return "ok"

    app.add_url_rule("/_test_only_coaches", "only_coaches", only_coaches)
    login("staff")
    response = client.get("/_test_only_coaches")
    assert response.status_code == 403
    assert "Du har inte behörighet" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("password", "second_factor", "ok"),
    [
        ("kort", False, False),
        ("fjorton tecken", False, False),
        ("femton tecken!!", False, True),
        ("åtta tkn", True, True),
        ("sju tkn", True, False),
        ("lösenord123", True, False),
        ("Password123", True, False),
        ("x" * 129, True, False),
    ],
)
def test_password_rules(password: str, second_factor: bool, ok: bool) -> None:
    if ok:
        check_password_rules(password, has_second_factor=second_factor)
    else:
        with pytest.raises(PasswordRejected):
            check_password_rules(password, has_second_factor=second_factor)


def test_real_argon2id_parameters_hash_and_verify() -> None:
    from slussen.accounts.passwords import hash_password, verify_password
    from slussen.config import load_settings

    settings = load_settings(environ={})
    digest = hash_password(settings, "a long and real password")
    assert digest.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify_password(settings, digest, "a long and real password")
    assert not verify_password(settings, digest, "another password")
    assert not verify_password(settings, "not a hash", "x")


def _change(client: FlaskClient, current: str, new: str, again: str | None = None) -> Any:
    return client.post(
        "/konto/losenord",
        data={"current_password": current, "new_password": new, "new_password_again": again or new},
    )


def test_password_change_without_totp_needs_fifteen_characters(
    app: Flask, client: FlaskClient, login: Callable[..., Any]
) -> None:
    login("coach")
    page = client.get("/konto/losenord").get_data(as_text=True)
    assert "Minst 15 tecken" in page
    response = _change(client, TEST_PASSWORD, "kort men bra")
    assert response.status_code == 400
    assert "minst 15 tecken" in response.get_data(as_text=True)
    assert _change(client, "fel lösenord", "en helt ny och lång mening").status_code == 400
    response = _change(client, TEST_PASSWORD, "en helt ny och lång mening", "något annat")
    assert response.status_code == 400
    assert "inte likadana" in response.get_data(as_text=True)
    assert _change(client, TEST_PASSWORD, "123456789012345").status_code == 400  # common
    response = _change(client, TEST_PASSWORD, "en helt ny och lång mening")
    assert response.status_code == 302
    client.post("/logout")
    assert (
        client.post("/login", data={"username": "coach", "password": TEST_PASSWORD}).status_code
        == 401
    )
    new_login = {"username": "coach", "password": "en helt ny och lång mening"}
    assert client.post("/login", data=new_login).status_code == 302


def test_password_change_with_totp_allows_eight_characters_and_ends_other_sessions(
    app: Flask, client: FlaskClient, session: Any, login: Callable[..., Any]
) -> None:
    from slussen.accounts.services import change_password, enrol_totp, new_totp_secret
    from slussen.db import utcnow
    from slussen.keystore import current_key_ring

    user = login("coach")
    other = app.test_client()
    other.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert other.get("/konto/losenord").status_code == 200
    secret = new_totp_secret()
    with app.app_context():
        enrol_totp(session, current_key_ring(), user, secret, pyotp.TOTP(secret).at(utcnow()))
    session.flush()
    assert "Minst 8 tecken" in client.get("/konto/losenord").get_data(as_text=True)
    assert _change(client, TEST_PASSWORD, "åtta tkn").status_code == 302
    assert client.get("/konto/losenord").status_code == 200  # this browser stays logged in
    assert other.get("/konto/losenord").location.startswith("/login")  # the other one not
    session.refresh(user)
    with pytest.raises(PasswordRejected):
        change_password(session, app.extensions["slussen.settings"], user, "åtta tkn", "sju tkn")
