"""Local passwords beside the federated login: they still work where enabled, and are refused,
with a page saying so and an access-log row, where turned off for the whole installation or for
one user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.audit import AuditEvent
from slussen.config import ConfigError, load_settings
from tests.conftest import TEST_PASSWORD
from tests.oidc_support import oidc_settings

FEDERATED = oidc_settings("https://idp.example.org")


def refusals(session: Session) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == "login_failed").order_by(AuditEvent.id)
        )
    )


@pytest.mark.settings(**FEDERATED)
def test_a_local_password_works_beside_the_federated_login(
    client: FlaskClient, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    page = client.get("/login").get_data(as_text=True)
    assert "Logga in med regionens inloggning" in page and 'name="password"' in page
    response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert client.get("/arbetslista").status_code == 200


@pytest.mark.settings(**FEDERATED, local_passwords_disabled=True)
def test_local_passwords_off_for_the_installation(
    client: FlaskClient, session: Session, make_user: Callable[..., Any]
) -> None:
    make_user("coach")
    page = client.get("/login").get_data(as_text=True)
    assert "Logga in med regionens inloggning" in page and 'name="password"' not in page
    response = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert "Inloggning med lösenord är avstängd i Slussen" in response.get_data(as_text=True)
    assert client.get("/arbetslista").status_code == 302
    row = refusals(session)[-1]
    assert (row.actor_name, row.purpose) == ("coach", "lösenordsinloggning är avstängd")


@pytest.mark.settings(**FEDERATED)
def test_local_password_off_for_one_user(
    client: FlaskClient, session: Session, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    make_user("coordinator")
    user.is_local_password_disabled = True
    session.flush()
    # A wrong password gets the usual answer: a stranger learns nothing about the account.
    wrong = client.post("/login", data={"username": "coach", "password": "fel lösenord här"})
    assert wrong.status_code == 401
    right = client.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert right.status_code == 403
    assert "avstängd för ditt konto" in right.get_data(as_text=True)
    assert client.get("/arbetslista").status_code == 302
    row = refusals(session)[-1]
    assert row.actor_id == user.id and row.purpose == "lösenordsinloggning är avstängd"
    # Another user of the same installation still logs in with a password.
    other = client.post("/login", data={"username": "coordinator", "password": TEST_PASSWORD})
    assert other.status_code == 302


def test_passwords_cannot_be_turned_off_without_a_provider() -> None:
    with pytest.raises(ConfigError, match="local_passwords_disabled"):
        load_settings({"local_passwords_disabled": True}, environ={})


def test_a_federated_login_needs_its_strong_acr_values() -> None:
    with pytest.raises(ConfigError, match="oidc_strong_acr_values"):
        load_settings({**FEDERATED, "oidc_strong_acr_values": ""}, environ={})
    with pytest.raises(ConfigError, match="oidc_issuer"):
        load_settings(
            {**FEDERATED, "oidc_issuer": "http://idp.example.org", "env": "production"},
            environ={},
        )
