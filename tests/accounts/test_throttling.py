"""Login throttling per client address and per account (Flask-Limiter)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from slussen.accounts import services
from slussen.accounts.throttle import limiter
from slussen.db import utcnow
from slussen.keystore import current_key_ring
from tests.conftest import TEST_PASSWORD

#: The numbers in slussen.accounts.throttle: 10 failures per account, 20 per address.
PER_ACCOUNT = 10
PER_ADDRESS = 20


def attempt(client: FlaskClient, username: str, password: str, address: str = "192.0.2.1") -> Any:
    return client.post(
        "/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_the_account_is_throttled_after_ten_failures_even_with_the_right_password(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    for _ in range(PER_ACCOUNT):
        assert attempt(client, "coach", "wrong password here").status_code == 401
    response = attempt(client, "Coach ", TEST_PASSWORD)  # the same account, typed differently
    assert response.status_code == 429
    assert "För många försök" in response.get_data(as_text=True)
    assert client.get("/").location.startswith("/login")


def test_throttling_one_account_does_not_lock_out_others(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    make_user("coach", "kollega")
    for _ in range(PER_ACCOUNT):
        attempt(client, "coach", "wrong password here")
    assert attempt(client, "coach", TEST_PASSWORD).status_code == 429
    assert attempt(client, "kollega", TEST_PASSWORD).status_code == 302


def test_an_unknown_account_is_throttled_the_same_way(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    answers = {}
    for name in ("coach", "nobody"):
        for _ in range(PER_ACCOUNT):
            assert attempt(client, name, "wrong password here").status_code == 401
        response = attempt(client, name, "wrong password here")
        body = re.sub(r'name="csrf_token" value="[^"]*"', "", response.get_data(as_text=True))
        answers[name] = (response.status_code, body)
    assert answers["coach"] == answers["nobody"]


def test_the_address_is_throttled_after_twenty_failures_on_any_accounts(
    app: Flask, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    client = app.test_client()
    for number in range(PER_ADDRESS):
        assert attempt(client, f"guess{number}", "wrong password here").status_code == 401
    assert attempt(client, "coach", TEST_PASSWORD).status_code == 429
    # Someone at another address is not affected.
    assert attempt(app.test_client(), "coach", TEST_PASSWORD, "198.51.100.7").status_code == 302


def test_successful_logins_are_not_counted(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    for _ in range(PER_ADDRESS + 1):
        assert attempt(client, "coach", TEST_PASSWORD).status_code == 302
        client.post("/logout")


def test_the_code_step_is_throttled_per_account(
    app: Flask, client: FlaskClient, session: Session, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    secret = services.new_totp_secret()
    with app.app_context():
        services.enrol_totp(
            session, current_key_ring(), user, secret, pyotp.TOTP(secret).at(utcnow())
        )
    session.flush()
    assert attempt(client, "coach", TEST_PASSWORD).location == "/login/kod"
    for _ in range(PER_ACCOUNT):
        assert client.post("/login/kod", data={"code": "000000"}).status_code == 401
    response = client.post("/login/kod", data={"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 429


def test_each_app_counts_afresh(app: Flask, make_user: Callable[..., Any]) -> None:
    """The limiter is one object, but each app (each test) gets its own storage."""
    assert limiter in app.extensions["limiter"]
    make_user("coach")
    # Had the failures of the tests above leaked here, this would be 429.
    assert attempt(app.test_client(), "coach", TEST_PASSWORD).status_code == 302
