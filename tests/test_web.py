"""Security headers, error pages that leak nothing, CSRF with protection on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TEST_PASSWORD


def test_security_headers_on_every_response(client: FlaskClient) -> None:
    for url in ("/login", "/does-not-exist", "/static/slussen.css"):
        response = client.get(url)
        headers = response.headers
        response.close()
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_pages_are_not_cached(client: FlaskClient) -> None:
    assert client.get("/login").headers["Cache-Control"] == "no-store"


def test_no_inline_script_or_style(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert "<script" not in page
    assert "style=" not in page and "<style" not in page


def test_404_page_is_swedish_and_leaks_nothing(
    client: FlaskClient, login: Callable[..., Any]
) -> None:
    login("coach")
    response = client.get("/no/such/page")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "Sidan finns inte" in body
    assert "Traceback" not in body and "werkzeug" not in body.lower()


def test_500_page_leaks_nothing(app: Flask, client: FlaskClient, login: Callable[..., Any]) -> None:
    def boom() -> str:
        raise RuntimeError("secret detail 12345")

    app.add_url_rule("/_boom", "boom", boom)
    login("coach")
    response = client.get("/_boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Något gick fel" in body
    assert "secret detail" not in body and "RuntimeError" not in body


def test_language_switch_to_english(client: FlaskClient) -> None:
    client.post("/sprak/en", data={"next": "/login"})
    page = client.get("/login").get_data(as_text=True)
    assert "Log in to Slussen" in page


@pytest.mark.settings(csrf_enabled=True)
class TestCsrfOn:
    def test_login_without_token_is_refused(
        self, client: FlaskClient, make_user: Callable[..., Any]
    ) -> None:
        make_user("coach")
        response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
        assert response.status_code == 400
        assert "Formuläret hade gått ut" in response.get_data(as_text=True)
        assert client.get("/").status_code == 302  # still logged out

    def test_login_with_token_works(
        self, client: FlaskClient, make_user: Callable[..., Any]
    ) -> None:
        import re

        make_user("coach")
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert token is not None
        response = client.post(
            "/login",
            data={"username": "coach", "password": TEST_PASSWORD, "csrf_token": token.group(1)},
        )
        assert response.status_code == 302

    def test_logout_needs_token(self, client: FlaskClient, make_user: Callable[..., Any]) -> None:
        assert client.post("/logout").status_code == 400


def test_healthz_says_only_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
