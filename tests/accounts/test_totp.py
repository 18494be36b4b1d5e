"""TOTP: enrolment, the second login step, replay refusal, recovery codes, when it is required."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.accounts import services
from slussen.accounts.models import RecoveryCode, User, WebSession
from slussen.accounts.services import SecondFactorRefused
from slussen.audit import AuditEvent
from slussen.db import utcnow
from slussen.errors import Invalid, NotPermitted
from slussen.keystore import DataKey
from tests.conftest import TEST_PASSWORD

STEP = dt.timedelta(seconds=30)
#: A page that needs login and renders for every role.
PRIVATE_PAGE = "/konto/losenord"


def enrol(session: Session, ring: vault.KeyRing, user: User) -> tuple[str, list[str]]:
    """Turn on TOTP for `user` as the enrolment page does; return the secret and the codes."""
    secret = services.new_totp_secret()
    codes = services.enrol_totp(session, ring, user, secret, pyotp.TOTP(secret).at(utcnow()))
    session.flush()
    return secret, codes


def next_code(secret: str) -> str:
    """A code for the step after the one used at enrolment: valid now, not yet used."""
    return pyotp.TOTP(secret).at(utcnow() + STEP)


def password_step(client: FlaskClient, username: str) -> Any:
    return client.post("/login", data={"username": username, "password": TEST_PASSWORD})


def actions(session: Session, user: User) -> list[str]:
    return list(
        session.scalars(
            select(AuditEvent.action).where(AuditEvent.actor_id == user.id).order_by(AuditEvent.id)
        )
    )


def test_login_with_password_then_code(
    client: FlaskClient, session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    secret, _codes = enrol(session, ring, user)
    response = password_step(client, "coach")
    assert response.status_code == 302 and response.location == "/login/kod"
    # Between the steps the user is not logged in.
    assert client.get("/").location.startswith("/login")
    page = client.get("/login/kod").get_data(as_text=True)
    assert "Tvåstegsverifiering" in page and 'autocomplete="one-time-code"' in page
    response = client.post("/login/kod", data={"code": next_code(secret)})
    assert response.status_code == 302 and response.location == "/"
    assert client.get(PRIVATE_PAGE).status_code == 200
    assert actions(session, user) == ["totp_enrol", "login"]
    purpose = session.scalar(
        select(AuditEvent.purpose).where(
            AuditEvent.action == "login", AuditEvent.actor_id == user.id
        )
    )
    assert purpose == "password and TOTP"


def test_a_code_works_once(
    backend: str,
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    make_user: Callable[..., Any],
) -> None:
    user = make_user("coach")
    secret, _codes = enrol(session, ring, user)
    code = next_code(secret)
    password_step(client, "coach")
    assert client.post("/login/kod", data={"code": code}).status_code == 302
    client.post("/logout")
    password_step(client, "coach")
    response = client.post("/login/kod", data={"code": code})
    assert response.status_code == 401
    assert "Koden stämmer inte eller är redan använd." in response.get_data(as_text=True)
    assert client.get("/").location.startswith("/login")
    assert actions(session, user)[-1] == "login_failed"


def test_the_enrolment_code_cannot_be_replayed_to_log_in(
    client: FlaskClient, session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    secret = services.new_totp_secret()
    code = pyotp.TOTP(secret).now()
    services.enrol_totp(session, ring, user, secret, code)
    session.flush()
    password_step(client, "coach")
    assert client.post("/login/kod", data={"code": code}).status_code == 401


def test_codes_are_accepted_one_step_either_side_and_no_further(
    session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    secret = pyotp.random_base32()
    now = dt.datetime(2026, 3, 1, 12, 0, 15, tzinfo=dt.UTC)
    totp = pyotp.TOTP(secret)
    enrolled = now - 5 * STEP
    services.enrol_totp(session, ring, user, secret, totp.at(enrolled), now=enrolled)
    for offset in (-2, 2):
        with pytest.raises(SecondFactorRefused):
            services.use_second_factor(session, ring, user, totp.at(now + offset * STEP), now=now)
    # Each accepted code moves the counter on, so they must come in time order here.
    for offset in (-1, 0, 1):
        assert services.use_second_factor(
            session, ring, user, totp.at(now + offset * STEP), now=now
        )
    assert user.totp_last_counter == totp.timecode(now) + 1
    with pytest.raises(SecondFactorRefused):  # an earlier step, though within the window
        services.use_second_factor(session, ring, user, totp.at(now), now=now + STEP)


def test_a_recovery_code_works_once(
    backend: str,
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    make_user: Callable[..., Any],
) -> None:
    user = make_user("coach")
    _secret, codes = enrol(session, ring, user)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}", c) for c in codes)
    stored = session.scalars(select(RecoveryCode.code_hash)).all()
    assert all(c.replace("-", "") not in stored for c in codes)  # only hashes are kept
    # ... keyed ones: about 50 bits per code, a plain SHA-256 a copy could be searched for.
    plain = {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}
    assert plain.isdisjoint(stored) and len(set(stored)) == 10
    assert set(stored) == {vault.blind_index(ring, "recovery-code", p) for p in plain}

    password_step(client, "coach")
    typed = codes[3].lower().replace("-", " ")  # as a person might type it
    response = client.post("/login/kod", data={"code": typed})
    assert response.status_code == 302
    assert "Du har 9 kvar" in client.get(PRIVATE_PAGE).get_data(as_text=True)
    client.post("/logout")
    password_step(client, "coach")
    assert client.post("/login/kod", data={"code": codes[3]}).status_code == 401
    assert client.post("/login/kod", data={"code": codes[4]}).status_code == 302


def test_wrong_and_malformed_codes_are_refused_without_error(
    client: FlaskClient, session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    enrol(session, ring, user)
    password_step(client, "coach")
    for code in ("000000", "12345", "ABCDEFGHJK", "ÅÄÖ-<script>", "1" * 20):
        response = client.post("/login/kod", data={"code": code})
        assert response.status_code == 401, code
    assert client.post("/login/kod", data={"code": "x" * 21}).status_code == 200  # form error


def test_the_code_step_expires_after_five_minutes(
    client: FlaskClient, session: Session, ring: vault.KeyRing, make_user: Callable[..., Any]
) -> None:
    user = make_user("coach")
    secret, _codes = enrol(session, ring, user)
    password_step(client, "coach")
    with client.session_transaction() as browser:
        pending = dict(browser["pending_login"])
        pending["since"] -= 5 * 60 + 1
        browser["pending_login"] = pending
    response = client.post("/login/kod", data={"code": next_code(secret)})
    assert response.status_code == 302 and response.location == "/login"
    assert "Inloggningen tog för lång tid" in client.get("/login").get_data(as_text=True)
    assert client.get("/").location.startswith("/login")


def test_code_page_without_a_password_step_goes_to_login(client: FlaskClient) -> None:
    assert client.get("/login/kod").location == "/login"
    assert client.post("/login/kod", data={"code": "123456"}).location == "/login"
    assert client.get("/konto/tvastegsverifiering").location == "/login"


def _secret_on_page(page: str) -> str:
    found = re.search(r"<code>([A-Z2-7 ]+)</code>", page)
    assert found is not None
    return found.group(1).replace(" ", "")


def test_voluntary_enrolment_asks_for_the_password(
    client: FlaskClient, session: Session, ring: vault.KeyRing, login: Callable[..., Any]
) -> None:
    user = login("evaluator")
    page = client.get("/konto/tvastegsverifiering").get_data(as_text=True)
    secret = _secret_on_page(page)
    assert 'src="data:image/svg+xml' in page and "style=" not in page and "<script" not in page
    code = pyotp.TOTP(secret).now()
    response = client.post(
        "/konto/tvastegsverifiering", data={"code": code, "password": "wrong password"}
    )
    assert response.status_code == 400 and "Lösenordet stämmer inte" in response.get_data(
        as_text=True
    )
    response = client.post("/konto/tvastegsverifiering", data={"code": "000000", "password": ""})
    assert response.status_code == 400
    response = client.post(
        "/konto/tvastegsverifiering", data={"code": code, "password": TEST_PASSWORD}
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Dina reservkoder" in body
    assert len(re.findall(r"<li><code>\w{5}-\w{5}</code></li>", body)) == 10
    assert response.headers["Cache-Control"] == "no-store"
    session.expire_all()
    assert user.totp_secret_enc is not None and user.totp_enrolled_at is not None
    assert secret.encode() not in user.totp_secret_enc  # sealed, not in clear
    assert services.use_second_factor(session, ring, user, next_code(secret))
    assert "påslagen" in client.get("/konto/tvastegsverifiering").get_data(as_text=True)
    assert actions(session, user) == ["login", "totp_enrol"]


@pytest.mark.settings(require_totp=True)
class TestTotpRequired:
    def test_coach_enrols_before_being_logged_in(
        self, client: FlaskClient, session: Session, make_user: Callable[..., Any]
    ) -> None:
        user = make_user("coach")
        response = client.post(
            "/login?next=/sida", data={"username": "coach", "password": TEST_PASSWORD}
        )
        assert response.location == "/konto/tvastegsverifiering"
        page = client.get(response.location).get_data(as_text=True)
        assert "Din roll kan se patientuppgifter" in page
        assert 'name="password"' not in page  # the password was just given
        assert client.get("/").location.startswith("/login")  # not logged in yet
        secret = _secret_on_page(page)
        response = client.post(
            "/konto/tvastegsverifiering", data={"code": pyotp.TOTP(secret).now()}
        )
        body = response.get_data(as_text=True)
        assert response.status_code == 200 and "De visas bara den här gången" in body
        assert 'href="/sida"' in body
        assert client.get(PRIVATE_PAGE).status_code == 200
        assert actions(session, user) == ["totp_enrol", "login"]

    def test_coach_with_totp_gets_the_code_step(
        self,
        client: FlaskClient,
        session: Session,
        ring: vault.KeyRing,
        make_user: Callable[..., Any],
    ) -> None:
        enrol(session, ring, make_user("coach"))
        assert password_step(client, "coach").location == "/login/kod"

    @pytest.mark.parametrize("role", ["evaluator", "admin", "org_rep"])
    def test_roles_without_patient_data_log_in_with_the_password(
        self, client: FlaskClient, make_user: Callable[..., Any], role: str
    ) -> None:
        make_user(role)
        assert password_step(client, role).location == "/"

    @pytest.mark.parametrize("role", ["coach", "coordinator", "staff"])
    def test_roles_with_patient_data_must_enrol(
        self, client: FlaskClient, make_user: Callable[..., Any], role: str
    ) -> None:
        make_user(role)
        assert password_step(client, role).location == "/konto/tvastegsverifiering"

    def test_enrolment_step_expires(
        self, client: FlaskClient, make_user: Callable[..., Any]
    ) -> None:
        make_user("coach")
        password_step(client, "coach")
        with client.session_transaction() as browser:
            pending = dict(browser["pending_login"])
            pending["since"] -= 15 * 60 + 1
            browser["pending_login"] = pending
        assert client.get("/konto/tvastegsverifiering").location == "/login"


def test_totp_required_in_production_settings() -> None:
    from slussen.config import Settings

    assert Settings(env="production").totp_required
    assert Settings(require_totp=True).totp_required
    assert not Settings(env="testing").totp_required


def test_the_pending_secret_is_kept_only_sealed_in_the_session_row(
    client: FlaskClient, session: Session, login: Callable[..., Any]
) -> None:
    user = login("evaluator")
    secret = _secret_on_page(client.get("/konto/tvastegsverifiering").get_data(as_text=True))
    # The page shows the same secret on every visit until it is confirmed.
    again = _secret_on_page(client.get("/konto/tvastegsverifiering").get_data(as_text=True))
    assert again == secret
    rows = session.scalars(select(WebSession.data).where(WebSession.user_id == user.id)).all()
    assert rows and all(secret not in data for data in rows)
    assert all("totp_setup" in data for data in rows)
    session.expire_all()
    assert user.data_key_id is not None and user.totp_secret_enc is None


def test_a_reset_destroys_the_sealed_secret(
    client: FlaskClient,
    session: Session,
    ring: vault.KeyRing,
    make_user: Callable[..., Any],
    actors: dict[str, Any],
) -> None:
    user = make_user("coach", "lena")
    secret, _codes = enrol(session, ring, user)
    key_id = user.data_key_id
    with pytest.raises(NotPermitted):
        services.reset_totp(session, ring, actors["coordinator"], user)
    services.reset_totp(session, ring, actors["admin"], user)
    assert not services.has_second_factor(user) and user.data_key_id is None
    key = session.get(DataKey, key_id)
    assert key is not None and key.wrapped is None and key.destroyed_at is not None
    assert session.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id)) is None
    with pytest.raises(SecondFactorRefused):
        services.use_second_factor(session, ring, user, next_code(secret))
    assert actions(session, session.get(User, actors["admin"].user_id)) == ["totp_reset"]
    with pytest.raises(Invalid):  # nothing left to reset
        services.reset_totp(session, ring, actors["admin"], user)
    # The next login starts a fresh enrolment with a new key.
    assert password_step(client, "lena").location == "/"
    page = client.get("/konto/tvastegsverifiering").get_data(as_text=True)
    assert _secret_on_page(page) != secret
    session.expire_all()
    assert user.data_key_id not in (None, key_id)
