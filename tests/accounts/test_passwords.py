"""A new password refuses the guessable (NIST 800-63B §3.1.1.2), saying why in Swedish."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from slussen.accounts.passwords import PasswordRejected, check_password_rules
from slussen.demo.units import DEMO_UNITS, DEMO_USERS
from tests.conftest import TEST_PASSWORD

KARIN = {"username": "koordinator", "display_name": "Karin Samordnare"}
TIERP = ["Vårdcentralen Tierp"]


@pytest.mark.parametrize(
    ("password", "context", "why"),
    [
        ("min koordinator heter Lisa och är snäll", KARIN, "användarnamnet"),
        ("Min KOORDINATOR heter Lisa och är snäll", KARIN, "användarnamnet"),
        ("jag jobbar i SLUSSEN varje dag nu", {}, "ordet Slussen"),
        ("jobbar på vårdcentralen TIERP sedan länge", {"unit_names": TIERP}, "Tierp)"),
        (
            "gammalt men gott lösenord här",
            {"current_password": "gammalt men gott lösenord här"},
            "ett annat än det nuvarande",
        ),
        ("123456789012345", {}, "för vanligt"),
        ("aaaaaaaaaaaaaaaa", {}, "för lätt att gissa"),
        ("sommarsommar1234", {}, "för lätt att gissa"),
        # Known words from the user's context count against the password (zxcvbn user_inputs).
        ("Karin Samordnare 1", KARIN, "för lätt att gissa"),
        ("SamordnareKarin", KARIN, "för lätt att gissa"),
    ],
)
def test_a_guessable_password_is_refused_saying_why(
    password: str, context: dict[str, Any], why: str
) -> None:
    with pytest.raises(PasswordRejected, match=re.escape(why)):
        check_password_rules(password, has_second_factor=False, **context)


def test_context_words_are_what_makes_a_password_guessable() -> None:
    # The same passwords pass for someone else: the refusal above is the context's.
    check_password_rules("Karin Samordnare 1", has_second_factor=False, username="bo")
    check_password_rules("jobbar på vårdcentralen tierp sedan länge", has_second_factor=False)


def test_a_short_username_is_refused_only_as_the_whole_password() -> None:
    # "bo" is inside too many words to refuse ("boka"); the whole password "bo" is too short.
    check_password_rules("boka en tid hos doktorn i morgon", has_second_factor=False, username="bo")


def test_a_strong_password_is_accepted() -> None:
    check_password_rules(
        "kaffe och kanelbullar på fredag",
        has_second_factor=False,
        unit_names=TIERP,
        current_password="ett annat gammalt lösenord",
        **KARIN,
    )
    check_password_rules("hej hopp", has_second_factor=True)  # 8 characters with TOTP (NIST)


@pytest.mark.parametrize(
    "password",
    [
        TEST_PASSWORD,
        "ett långt lösenord för webbläsartest",  # tests/browser/conftest.py
        "ett långt demolösenord",
        "bench-lungfish-harbour-lantern",  # bench/harness.py
        "ett långt lösenord för mätningen",  # bench/bench_evaluation.py
        "ett långt bänklösenord för test",  # bench/bench_letters.py
    ],
)
def test_the_demo_test_and_bench_passwords_pass_for_every_demo_user(password: str) -> None:
    unit_names = [unit[0] for unit in DEMO_UNITS]
    for username, display_name, _role, indexes in DEMO_USERS:
        check_password_rules(
            password,
            has_second_factor=False,
            username=username,
            display_name=display_name,
            unit_names=[unit_names[i] for i in indexes],
        )


def test_create_user_refuses_the_name_of_the_users_unit(
    app: Flask, session: Session, unit: Any
) -> None:
    from slussen.accounts.services import create_user

    with pytest.raises(PasswordRejected, match=re.escape(f"enhetens namn ({unit.name})")):
        create_user(
            session,
            app.extensions["slussen.settings"],
            username="ny",
            display_name="Ny Användare",
            role="coach",
            password=f"jag trivs så bra på {unit.name.lower()}",
            unit_ids=[unit.id],
        )


def _change(client: FlaskClient, current: str, new: str) -> Any:
    return client.post(
        "/konto/losenord",
        data={"current_password": current, "new_password": new, "new_password_again": new},
    )


@pytest.mark.parametrize(
    ("new", "why"),
    [
        (TEST_PASSWORD, "Det nya lösenordet måste vara ett annat än det nuvarande."),
        ("min coach heter Lisa och är snäll", "Lösenordet får inte innehålla användarnamnet."),
        ("jag jobbar på Vårdcentralen Test", "Lösenordet får inte innehålla enhetens namn"),
        ("qwertyuiopasdfghjkl", "Lösenordet är för lätt att gissa."),
    ],
)
def test_the_password_form_says_why_next_to_the_new_password(
    client: FlaskClient, login: Callable[..., Any], new: str, why: str
) -> None:
    login("coach")
    response = _change(client, TEST_PASSWORD, new)
    assert response.status_code == 400
    assert f'<p class="error" id="new_password-error">{why}' in response.get_data(as_text=True)
    # Nothing changed: the old password still logs in.
    client.post("/logout")
    login_again = {"username": "coach", "password": TEST_PASSWORD}
    assert client.post("/login", data=login_again).status_code == 302
