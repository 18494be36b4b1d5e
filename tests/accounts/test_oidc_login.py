"""Federated login against a real OpenID provider (oidc-provider on Node, see
tests/oidc_support.py): the login, the strong-authentication rule, a replayed code, a wrong
state, a person not provisioned, just-in-time provisioning, and the provider's logout.

Each refusal shows a page saying why in Swedish and writes an access-log row naming the
provider's subject."""

from __future__ import annotations

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
from tests.oidc_support import (
    ACR_STRONG,
    ACR_WEAK,
    LocalProvider,
    ProviderBrowser,
    callback_path,
    local_provider,
    oidc_settings,
    query_of,
)

#: Where the test client's Slussen is (the default base URL of the testing settings).
BASE = "http://127.0.0.1:5000"
ACCOUNTS = {
    "coach-1": {"name": "Karin Coach", "hsa_id": "SE2321000016-C001"},
    "stranger-1": {"name": "Okänd Person", "hsa_id": "SE2321000016-X001"},
    "newcomer-1": {
        "name": "Nils Nykomling",
        "hsa_id": "SE2321000016-N001",
        "unit_hsa_id": "SE2321000016-TST1",
    },
}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    with local_provider(BASE, ACCOUNTS) as running:
        yield running


@pytest.fixture
def app_settings(
    request: pytest.FixtureRequest, tmp_path: Path, provider: LocalProvider
) -> dict[str, Any]:
    mark = request.node.get_closest_marker("settings")
    return settings_for_tests(
        tmp_path, **oidc_settings(provider.issuer, **(mark.kwargs if mark else {}))
    )


@pytest.fixture
def coach(make_user: Callable[..., Any], session: Session) -> User:
    user: User = make_user("coach")
    user.oidc_subject = "coach-1"
    session.flush()
    return user


@pytest.fixture
def person() -> ProviderBrowser:
    return ProviderBrowser(stop_at=BASE)


def log_in_at_provider(
    client: FlaskClient, person: ProviderBrowser, login: str, acr: str = ACR_STRONG
) -> str:
    """Start a federated login, log in at the provider; the URL the provider sends back."""
    start = client.get("/login/oidc")
    assert start.status_code == 302
    return person.follow(start.headers["Location"], login=login, acr=acr)


def log_rows(session: Session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def test_the_authorisation_request_uses_pkce_state_and_nonce(
    client: FlaskClient, provider: LocalProvider
) -> None:
    start = client.get("/login/oidc")
    query = query_of(start.headers["Location"])
    assert start.headers["Location"].startswith(provider.issuer)
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["redirect_uri"] == f"{BASE}/login/oidc/svar"


def test_a_strong_login_reaches_the_worklist_and_is_in_the_log(
    client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "coach-1")
    response = client.get(callback_path(back))
    assert response.status_code == 302
    worklist = client.get("/arbetslista")
    assert worklist.status_code == 200
    assert "Din arbetslista" in worklist.get_data(as_text=True)
    login = log_rows(session, "login")[-1]
    assert login.actor_id == coach.id
    assert "subjekt coach-1" in login.purpose and ACR_STRONG in login.purpose


def test_a_login_without_strong_authentication_cannot_reach_patient_data(
    client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "coach-1", acr=ACR_WEAK)
    assert client.get(callback_path(back)).status_code == 302
    assert "utan stark autentisering" in log_rows(session, "login")[-1].purpose
    # Logged in: a page without patient data opens …
    assert client.get("/konto/losenord").status_code == 200
    # … the worklist does not.
    refused = client.get("/arbetslista")
    page = refused.get_data(as_text=True)
    assert refused.status_code == 403
    assert "Stark autentisering krävs" in page
    assert "Karin" not in page and "Din arbetslista" not in page
    row = log_rows(session, "login_failed")[-1]
    assert row.actor_id == coach.id
    assert "saknar stark autentisering" in row.purpose and "subjekt coach-1" in row.purpose


def test_a_wrong_state_is_refused(
    client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "coach-1")
    query = query_of(back)
    response = client.get(f"/login/oidc/svar?code={query['code']}&state=not-the-state")
    assert response.status_code == 403
    assert "hör inte till någon inloggning" in response.get_data(as_text=True)
    assert client.get("/arbetslista").status_code == 302  # not logged in
    row = log_rows(session, "login_failed")[-1]
    assert "hörde inte till någon påbörjad inloggning" in row.purpose


def test_a_replayed_code_is_refused_by_the_provider(
    client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "coach-1")
    assert client.get(callback_path(back)).status_code == 302
    client.post("/logout")
    # A new login (its own state), answered with the first login's code.
    start = client.get("/login/oidc")
    state = query_of(start.headers["Location"])["state"]
    response = client.get(f"/login/oidc/svar?code={query_of(back)['code']}&state={state}")
    assert response.status_code == 403
    assert "redan använd" in response.get_data(as_text=True)
    assert client.get("/arbetslista").status_code == 302
    assert "inloggningskoden godtogs inte" in log_rows(session, "login_failed")[-1].purpose


def test_a_person_not_provisioned_is_refused(
    client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "stranger-1")
    response = client.get(callback_path(back))
    assert response.status_code == 403
    assert "Du har inget konto i Slussen" in response.get_data(as_text=True)
    assert session.scalar(select(User).where(User.oidc_subject == "stranger-1")) is None
    row = log_rows(session, "login_failed")[-1]
    assert row.actor_name == "stranger-1" and row.actor_id is None
    assert "ingen användare i Slussen" in row.purpose and "subjekt stranger-1" in row.purpose


@pytest.mark.settings(oidc_jit_provisioning=True, oidc_unit_claim="unit_hsa_id")
def test_just_in_time_provisioning_creates_the_user_with_the_claims_units(
    client: FlaskClient, session: Session, person: ProviderBrowser, unit: Any
) -> None:
    back = log_in_at_provider(client, person, "newcomer-1")
    assert client.get(callback_path(back)).status_code == 302
    user = session.scalar(select(User).where(User.oidc_subject == "newcomer-1"))
    assert user is not None
    assert (user.username, user.display_name, user.role) == (
        "se2321000016-n001",
        "Nils Nykomling",
        "staff",
    )
    assert user.hsa_id == "SE2321000016-N001" and user.unit_ids == {unit.id}
    assert user.is_local_password_disabled
    # The new user has no local password: a password login with any text is refused.
    client.post("/logout")
    refused = client.post("/login", data={"username": user.username, "password": "!"})
    assert refused.status_code == 401


def test_logout_ends_the_provider_session_too(
    app: Flask, client: FlaskClient, session: Session, person: ProviderBrowser, coach: User
) -> None:
    back = log_in_at_provider(client, person, "coach-1")
    assert client.get(callback_path(back)).status_code == 302
    # While the provider's session lives, another login comes straight back without its form.
    person.last_page = ""
    assert log_in_at_provider(app.test_client(), person, "unused").startswith(BASE)
    assert person.last_page == ""

    logout = client.post("/logout")
    assert logout.status_code == 302
    end_session = logout.headers["Location"]
    assert end_session.startswith(f"{query_of(back)['iss']}/session/end")
    assert query_of(end_session)["post_logout_redirect_uri"] == f"{BASE}/login"
    assert query_of(end_session)["id_token_hint"]
    assert client.get("/arbetslista").status_code == 302  # Slussen's session has ended
    assert person.follow(end_session, logout="yes") == f"{BASE}/login"
    assert "Logga ut från identitetstjänsten" in person.last_page
    # The provider's session has ended too: a new login shows its login form again.
    person.last_page = ""
    log_in_at_provider(app.test_client(), person, "coach-1")
    assert "Användar-id" in person.last_page
    assert "även hos regionens inloggning" in log_rows(session, "logout")[-1].purpose


def test_forms_may_lead_to_the_provider_for_its_logout(
    client: FlaskClient, provider: LocalProvider
) -> None:
    """The logout button's POST is answered with a redirect to the provider: the CSP's
    form-action allows the provider's origin, and only it."""
    csp = client.get("/login").headers["Content-Security-Policy"]
    assert f"form-action 'self' {provider.issuer};" in csp


def test_the_access_log_shows_a_refused_federated_login_in_swedish(
    client: FlaskClient,
    person: ProviderBrowser,
    coach: User,
    login: Callable[..., Any],
) -> None:
    back = log_in_at_provider(client, person, "stranger-1")
    assert client.get(callback_path(back)).status_code == 403
    login("coordinator")
    page = client.get("/atkomstlogg").get_data(as_text=True)
    row = next(r for r in page.split("<tr>") if "stranger-1" in r)
    assert "Misslyckad inloggning" in row and "Okänd person" in row
    assert "regionens inloggning, subjekt stranger-1" in row
    assert "login_failed" not in row and "unknown" not in row
