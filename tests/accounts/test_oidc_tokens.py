"""The ID token checks, with tokens the test signs itself (tests/oidc_support.TokenProvider: a
discovery document, a JWKS and a token endpoint in this process): an unknown key, an expired
token, another audience, another nonce, another issuer, a token from the future, and the JWKS
cache refreshed when the provider rotates its key. Each refusal shows a Swedish page and writes
an access-log row; a good token logs in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.accounts.models import User
from slussen.audit import AuditEvent
from tests.conftest import settings_for_tests
from tests.oidc_support import TokenProvider, oidc_settings, query_of, token_provider


@pytest.fixture(scope="module")
def provider() -> Iterator[TokenProvider]:
    with token_provider() as running:
        yield running


@pytest.fixture
def app_settings(tmp_path: Path, provider: TokenProvider) -> dict[str, Any]:
    provider.keys[1:] = []  # a test that rotated keys leaves the first one only
    return settings_for_tests(tmp_path, **oidc_settings(provider.issuer))


@pytest.fixture
def coach(make_user: Callable[..., Any], session: Session) -> User:
    user: User = make_user("coach")
    user.oidc_subject = "person-1"
    session.flush()
    return user


def answer_with(
    client: FlaskClient, provider: TokenProvider, token: Callable[[str], str]
) -> tuple[int, str]:
    """Start a login, let the provider answer the code exchange with `token(nonce)`; the
    callback's status and page."""
    start = client.get("/login/oidc")
    query = query_of(start.headers["Location"])
    provider.next_token = lambda _code: token(query["nonce"])
    code = f"code-{time.monotonic_ns()}"
    response = client.get(f"/login/oidc/svar?code={code}&state={query['state']}")
    return response.status_code, response.get_data(as_text=True)


def last_refusal(session: Session) -> str:
    row = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login_failed").order_by(AuditEvent.id)
    ).all()[-1]
    return row.purpose


def test_a_good_token_logs_in(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    status, _page = answer_with(
        client, provider, lambda nonce: provider.sign(provider.claims(nonce))
    )
    assert status == 302
    assert client.get("/arbetslista").status_code == 200


@pytest.mark.parametrize(
    ("changes", "page_says", "log_says"),
    [
        ({"nonce": "another-login"}, "hör till en annan inloggning", "en annan inloggning"),
        ({"aud": "another-system"}, "utfärdat för ett annat system", "ett annat system"),
        ({"aud": ["slussen", "other"]}, "utfärdat för ett annat system", "ett annat system"),
        ({"exp": int(time.time()) - 3600}, "har gått ut", "hade gått ut"),
        ({"iat": int(time.time()) + 3600}, "utfärdat senare än nu", "i framtiden"),
        ({"iss": "https://idp.example.org"}, "kommer inte från regionens", "fel utfärdare"),
    ],
)
def test_a_wrong_token_is_refused(
    client: FlaskClient,
    session: Session,
    provider: TokenProvider,
    coach: User,
    changes: dict[str, Any],
    page_says: str,
    log_says: str,
) -> None:
    status, page = answer_with(
        client, provider, lambda nonce: provider.sign(provider.claims(nonce, **changes))
    )
    assert status == 403
    assert page_says in page and "Inloggningen nekades" in page
    assert client.get("/arbetslista").status_code == 302
    purpose = last_refusal(session)
    assert log_says in purpose and "subjekt person-1" in purpose


def test_the_clock_skew_is_bounded(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    """Within the 60 seconds allowed an expired token still counts; beyond, it does not."""
    now = int(time.time())
    late = answer_with(client, provider, lambda n: provider.sign(provider.claims(n, exp=now - 30)))
    assert late[0] == 302
    client.post("/logout")
    too_late = answer_with(
        client, provider, lambda n: provider.sign(provider.claims(n, exp=now - 90))
    )
    assert too_late[0] == 403


def test_a_token_signed_by_an_unknown_key_is_refused_after_one_fresh_look(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    stranger = provider.new_key()
    before = provider.jwks_requests
    status, page = answer_with(
        client, provider, lambda nonce: provider.sign(provider.claims(nonce), key=stranger)
    )
    assert status == 403
    assert "signerat med en nyckel som tjänsten inte har" in page
    assert "okänd nyckel" in last_refusal(session)
    assert provider.jwks_requests - before >= 1  # the cache was refreshed before refusing


def test_a_token_with_a_bad_signature_is_refused(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    def forged(nonce: str) -> str:
        header, _payload, signature = provider.sign(provider.claims(nonce)).split(".")
        other = provider.sign(provider.claims(nonce, sub="someone-else")).split(".")[1]
        return f"{header}.{other}.{signature}"

    status, _page = answer_with(client, provider, forged)
    assert status == 403
    assert "signatur stämmer inte" in last_refusal(session)


def test_the_key_cache_is_refreshed_when_the_provider_rotates_its_key(
    app: Flask, client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    assert answer_with(client, provider, lambda n: provider.sign(provider.claims(n)))[0] == 302
    client.post("/logout")
    fetches = app.extensions["slussen.oidc"].jwks_fetches
    # The same key again: from the cache.
    assert answer_with(client, provider, lambda n: provider.sign(provider.claims(n)))[0] == 302
    client.post("/logout")
    assert app.extensions["slussen.oidc"].jwks_fetches == fetches
    # A new key: one fresh fetch, then accepted.
    rotated = provider.new_key()
    provider.keys.append(rotated)
    status, _page = answer_with(
        client, provider, lambda n: provider.sign(provider.claims(n), key=rotated)
    )
    assert status == 302
    assert app.extensions["slussen.oidc"].jwks_fetches == fetches + 1


def test_a_code_the_provider_refuses_is_refused(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    provider.used_codes.add("spent")
    start = client.get("/login/oidc")
    state = query_of(start.headers["Location"])["state"]
    response = client.get(f"/login/oidc/svar?code=spent&state={state}")
    assert response.status_code == 403
    assert "redan använd" in response.get_data(as_text=True)
    assert "inloggningskoden godtogs inte" in last_refusal(session)


def test_an_answer_naming_another_issuer_is_refused(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    start = client.get("/login/oidc")
    state = query_of(start.headers["Location"])["state"]
    response = client.get(f"/login/oidc/svar?code=c&state={state}&iss=https://evil.example")
    assert response.status_code == 403
    assert "svaret kom från fel utfärdare" in last_refusal(session)


def test_without_an_end_session_endpoint_logout_ends_slussens_session_only(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    assert answer_with(client, provider, lambda n: provider.sign(provider.claims(n)))[0] == 302
    logout = client.post("/logout")
    assert logout.headers["Location"] == "/login"
    assert client.get("/arbetslista").status_code == 302
    row = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "logout").order_by(AuditEvent.id)
    ).all()[-1]
    assert row.purpose == "utloggning (regionens inloggning, subjekt person-1)"


def test_the_providers_own_refusal_is_shown_and_logged(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User
) -> None:
    start = client.get("/login/oidc")
    state = query_of(start.headers["Location"])["state"]
    response = client.get(f"/login/oidc/svar?error=access_denied&state={state}")
    assert response.status_code == 403
    assert "avbröt inloggningen" in response.get_data(as_text=True)
    assert "identitetstjänsten avbröt inloggningen" in last_refusal(session)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 20_000, "e30.e30.", "..."])
def test_a_token_that_is_not_a_jwt_is_refused(
    client: FlaskClient, session: Session, provider: TokenProvider, coach: User, token: str
) -> None:
    status, page = answer_with(client, provider, lambda _nonce: token)
    assert status == 403 and "Inloggningen nekades" in page


@pytest.mark.parametrize(
    "query",
    ["", "state=", "code=x", "state=%00", "code=" + "x" * 5000 + "&state=y", "error=x&state=y"],
)
def test_an_answer_without_a_started_login_is_refused(
    client: FlaskClient, session: Session, provider: TokenProvider, query: str
) -> None:
    response = client.get(f"/login/oidc/svar?{query}")
    assert response.status_code in (400, 403)
    assert "Slussen" in response.get_data(as_text=True)
