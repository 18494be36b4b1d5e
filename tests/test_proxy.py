"""Behind nginx: `proxy_count` decides whether X-Forwarded-For/-Proto are believed (ProxyFix).

Without it every request seems to come from the proxy, so the per-address login limit is one limit
for the whole region; with it, a client that talks to Slussen directly still cannot forge its
address when proxy_count is 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from slussen.app import create_app
from slussen.audit import AuditEvent
from slussen.config import ConfigError
from tests.accounts.test_throttling import PER_ADDRESS
from tests.conftest import settings_for_tests

PROXY = "127.0.0.1"  # nginx on the same server


@pytest.fixture(params=[0, 1], ids=["no-proxy-trusted", "one-proxy"])
def app_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return settings_for_tests(tmp_path, proxy_count=request.param)


def failed_login(client: FlaskClient, username: str, forwarded_for: str) -> Any:
    return client.post(
        "/login",
        data={"username": username, "password": "not the password"},
        headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": PROXY},
    )


def test_the_per_address_login_limit_counts_the_client_behind_the_proxy(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    trusted = app.extensions["slussen.settings"].proxy_count == 1
    for n in range(PER_ADDRESS):  # a different (unknown) account each time: only the address counts
        assert failed_login(client, f"gissning{n}", "203.0.113.7").status_code == 401
    assert failed_login(client, "gissning-x", "203.0.113.7").status_code == 429
    # Another clinic, through the same nginx: its own limit only when the proxy is trusted.
    other = failed_login(client, "kollega", "198.51.100.9").status_code
    assert other == (401 if trusted else 429)
    addresses = set(session.scalars(select(AuditEvent.client_address)))
    assert addresses == ({"203.0.113.7", "198.51.100.9"} if trusted else {PROXY})


def test_the_scheme_comes_from_the_proxy_only_when_trusted(app: Flask) -> None:
    trusted = app.extensions["slussen.settings"].proxy_count == 1
    with app.test_client() as client:
        client.get(
            "/login", headers={"X-Forwarded-Proto": "https"}, environ_base={"REMOTE_ADDR": PROXY}
        )
        assert request.scheme == ("https" if trusted else "http")


def test_proxy_count_out_of_range_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="proxy_count"):
        create_app(settings_for_tests(tmp_path, proxy_count=-1))
