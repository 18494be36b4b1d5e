"""Hostile input to every route, on SQLite and PostgreSQL: no answer is a server error.

`test_bad_input.py` generates input at random; this one sends, to every rule as anonymous and as
three roles, the inputs known to break web apps: ids beyond 64 bits in the path, NUL bytes
(PostgreSQL refuses them in text), dates at the ends of the calendar, an over-long query string,
control characters and bidirectional overrides in every form field, and a multipart file part.
Then: typed text with such characters is refused next to the field with a Swedish message and
kept in the form; NUL anywhere is refused before any view reads it."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.routing import Rule

from slussen.cases.models import Case

ROLES = ["anonymous", "coach", "coordinator", "admin"]
HUGE_IDS = ["9223372036854775808", "18446744073709551617"]
QUERIES = {
    "NUL": {"q": "a\x00b", "page": "1\x00"},
    "calendar ends": {
        "from": "0001-01-01",
        "to": "9999-12-31",
        "week": "9999-W52",
        "date": "9999-12-31",
        "day": "0001-01-01",
    },
    "over-long": {"q": "x" * 100_000},
}
FORM_VALUES = {
    "NUL": "a\x00b",
    "control characters": "Anna\x1b[31m\u202eX",
    "calendar end": "9999-12-31",
    "calendar start": "0001-01-01",
    "beyond 64 bits": "9223372036854775808",
}
NAME_RE = re.compile(r'name="([A-Za-z0-9_\-]+)"')
REFUSED_TEXT = "tecken som inte kan sparas"


def fill(rule: Rule, number: str) -> str:
    url = rule.rule
    for name, converter in rule._converters.items():
        value = number if type(converter).__name__ == "IdConverter" else "abc"
        url = re.sub(rf"<(?:[^:>]+:)?{name}>", value, url)
    return url


def test_no_hostile_input_gives_a_server_error(
    backend: str, app: Flask, clients: dict[str, FlaskClient], rules: list[Rule]
) -> None:
    failures = []

    def check(response: Any, what: str) -> None:
        if response.status_code >= 500:
            failures.append(f"{what}: {response.status_code}")

    for rule in rules:
        methods = sorted((rule.methods or set()) & {"GET", "POST"})
        for role in ROLES:
            client = clients[role]
            if any(type(c).__name__ == "IdConverter" for c in rule._converters.values()):
                for number in HUGE_IDS:
                    url = fill(rule, number)
                    for method in methods:
                        check(client.open(url, method=method), f"{method} {url} as {role}")
            url = fill(rule, "1")
            for method in methods:
                for label, query in QUERIES.items():
                    response = client.open(url, method=method, query_string=query)
                    check(response, f"{method} {url} ({label} query) as {role}")
            if "POST" not in methods:
                continue
            page = client.get(url) if "GET" in methods else None
            names = {"version", "text", "name", "username", "password"}
            if page is not None and page.status_code == 200:
                names |= set(NAME_RE.findall(page.get_data(as_text=True))) - {"csrf_token"}
            for label, value in FORM_VALUES.items():
                response = client.post(url, data=dict.fromkeys(names, value))
                check(response, f"POST {url} ({label} in every field) as {role}")
            upload = {"username": "a", "password": "b", "file": (io.BytesIO(b"x" * 999), "a.txt")}
            response = client.post(url, data=upload, content_type="multipart/form-data")
            check(response, f"POST {url} (a file part) as {role}")
    assert failures == []


def test_ids_beyond_64_bits_are_not_found(
    app: Flask, clients: dict[str, FlaskClient], rules: list[Rule]
) -> None:
    response = clients["anonymous"].get("/aktiviteter/9223372036854775808")
    assert response.status_code == 404
    assert clients["coach"].get("/arenden/9223372036854775807").status_code == 404


def test_nul_is_refused_before_any_view(
    backend: str, app: Flask, clients: dict[str, FlaskClient]
) -> None:
    login = clients["anonymous"].post("/login", data={"username": "a\x00", "password": "x"})
    assert login.status_code == 400
    assert "Förfrågan innehöll ett tecken som inte är tillåtet." in login.get_data(as_text=True)
    search = clients["coach"].get("/arbetslista", query_string={"page": "\x00"})
    assert search.status_code == 400


def test_a_name_with_a_direction_override_is_refused_next_to_the_field(
    app: Flask, session: Session, unit: Any
) -> None:
    client = app.test_client()
    form = {
        "unit": str(unit.id),
        "personnummer": "19811218-9876",
        "name": "Margit \u202eEkholm",
        "street": "Solrosvägen 3\x1b",
        "postcode": "72219",
        "town": "Västerås",
        "phone": "070-111 22 01",
        "wish": "Jag vill gärna träffa andra.",
        "contact_channel": "post",
        "consent": "y",
    }
    response = client.post("/anmalan", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422  # the form again, as for any refused field
    assert page.count(REFUSED_TEXT) == 2  # name and street, each next to its field
    assert "Jag vill gärna träffa andra." in page  # what was typed is kept
    assert session.scalar(select(func.count()).select_from(Case)) == 0
