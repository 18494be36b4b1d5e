"""Bad input everywhere: generated input to every URL and form of every blueprint, as each role.

No response is a 500; a refused request (4xx) changes no domain data; a refusal says something a
person can read (our error page, or the form again with a message next to a field)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.routing import Rule

from slussen.models import metadata
from tests.conftest import EVERY_ROLE

#: Tables a refused request may still write: sessions, the access log, throttling state.
#: Not domain data. A data key is made when the TOTP page starts an enrolment (on the GET that
#: reads the form's fields); what uses a key is counted in the tables that refer to it.
BOOKKEEPING = {"web_sessions", "audit_events", "audit_chain_heads", "alembic_version", "data_keys"}
NAME_RE = re.compile(r'name="([A-Za-z0-9_\-]+)"')

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "99999999999999999999", "19811218-9876", "<script>",
                     "' OR 1=1 --", "\x00", "²", "٣", "--5", "åäö" * 300, "2026-02-30", "25:61",
                     "NaN", "%s%s"]),
)  # fmt: skip


def domain_counts(session: Session) -> dict[str, int]:
    session.expire_all()
    return {
        table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
        for table in metadata.sorted_tables
        if table.name not in BOOKKEEPING
    }


def fill_path(rule: Rule, draw: Callable[[Any], Any]) -> str:
    url = rule.rule
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        if kind == "IntegerConverter":
            value = str(draw(st.one_of(st.integers(0, 5), st.integers(0, 2**31))))
        else:
            value = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1,
                                 max_size=20))  # fmt: skip
        url = re.sub(rf"<(?:[^:>]+:)?{name}>", value, url)
    return url


def readable_refusal(body: str) -> bool:
    return any(mark in body for mark in ('class="error"', "flash-error", "<h1>", "status"))


@pytest.mark.slow
def test_no_input_gives_a_server_error(
    app: Flask, clients: dict[str, FlaskClient], rules: list[Rule], session: Session
) -> None:
    fields_cache: dict[tuple[str, str], list[str]] = {}

    @settings(
        max_examples=400,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def crawl(data: st.DataObject) -> None:
        rule = data.draw(st.sampled_from(rules), label="rule")
        role = data.draw(st.sampled_from(EVERY_ROLE), label="role")
        client = clients[role]
        url = fill_path(rule, data.draw)
        methods = sorted((rule.methods or set()) & {"GET", "POST"})
        method = data.draw(st.sampled_from(methods), label="method")
        query = data.draw(st.dictionaries(st.sampled_from(["page", "state", "coach", "q", "from",
                                                            "to", "lang", "week", "category"]),
                                          nasty_text, max_size=3), label="query")  # fmt: skip
        before = domain_counts(session)
        if method == "GET":
            response = client.get(url, query_string=query)
        else:
            key = (role, url)
            if key not in fields_cache:
                page = client.get(url) if "GET" in methods else None
                names = NAME_RE.findall(page.get_data(as_text=True)) if page is not None else []
                fields_cache[key] = sorted(set(names) - {"csrf_token"})
            names = fields_cache[key] + ["version", "text", "extra"]
            form = data.draw(st.dictionaries(st.sampled_from(names), nasty_text, max_size=12),
                             label="form")  # fmt: skip
            response = client.post(url, data=form, query_string=query)
        status = response.status_code
        assert status < 500 or status == 503, f"{method} {url} as {role}: {status}"
        if status >= 400:
            assert domain_counts(session) == before, f"{method} {url} as {role} changed data"
            if status not in (405,):
                assert readable_refusal(response.get_data(as_text=True)), (
                    f"{method} {url} as {role}: unclear {status}"
                )

    crawl()


def test_every_blueprint_is_crawled(rules: list[Rule]) -> None:
    blueprints = {r.endpoint.split(".")[0] for r in rules if "." in r.endpoint}
    assert {"accounts", "core", "cases", "intake", "visits"} <= blueprints
