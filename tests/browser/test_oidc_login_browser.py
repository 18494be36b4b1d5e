"""A coach logs in through the region's identity provider (a real one: oidc-provider on Node,
tests/oidc_support.py) in Chromium, reaches the worklist and logs out; both the Slussen session
and the provider's session end. The login page passes axe."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DEMO_PASSWORD, need_browser
from tests.browser.test_directory_flow import _serious
from tests.oidc_support import ACR_STRONG, local_provider, need_node, oidc_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def federated_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo on a live server whose staff log in through the local provider; its URL."""
    need_browser()
    need_node()
    from werkzeug.serving import make_server

    from slussen.accounts.models import User
    from slussen.db import session_scope
    from tests.builders import demo_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("oidc-browser")
    accounts = {"coach-1": {"name": "Karin Coach"}}
    with local_provider(base, accounts) as provider:
        app, _report = demo_app(
            folder, DEMO_PASSWORD, public_base_url=base, **oidc_settings(provider.issuer)
        )
        with app.app_context(), session_scope(app) as session:
            coach = session.scalars(select(User).where(User.username == "coach")).one()
            coach.oidc_subject = "coach-1"
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield base
        finally:
            server.shutdown()
            thread.join(timeout=10)
            app.extensions["slussen.engine"].dispose()


@pytest.fixture
def page(federated_site: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium.new_page()
        finally:
            chromium.close()


def _log_in_at_provider(page: Any) -> None:
    page.get_by_label("Användar-id").fill("coach-1")
    page.get_by_label("Autentiseringsnivå").select_option(ACR_STRONG)
    page.get_by_role("button", name="Logga in").click()


def test_log_in_reach_the_worklist_and_log_out_of_both(federated_site: str, page: Any) -> None:
    page.goto(f"{federated_site}/login")
    assert _serious(page) == []
    page.get_by_role("link", name="Logga in med regionens inloggning").click()
    # At the provider: its own login page.
    page.wait_for_url(lambda url: not url.startswith(federated_site))
    _log_in_at_provider(page)
    page.wait_for_url(lambda url: url.startswith(federated_site))
    page.goto(f"{federated_site}/arbetslista")
    assert page.get_by_role("heading", name="Din arbetslista").is_visible()

    page.get_by_role("button", name="Logga ut").click()
    # The provider asks whether to end its session too.
    page.get_by_role("button", name="Ja, logga ut").click()
    page.wait_for_url(f"{federated_site}/login")
    assert page.get_by_text("Du är utloggad").is_visible()

    # Slussen's session has ended: the worklist asks for a login.
    page.goto(f"{federated_site}/arbetslista")
    assert page.url.startswith(f"{federated_site}/login")
    # The provider's session has ended: logging in again asks for the login at the provider.
    page.get_by_role("link", name="Logga in med regionens inloggning").click()
    page.wait_for_url(lambda url: not url.startswith(federated_site))
    assert page.get_by_label("Användar-id").is_visible()
