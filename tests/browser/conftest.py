"""Browser tests: Playwright driving Debian's Chromium against a live Slussen on 127.0.0.1.

They skip, saying why, when Playwright or Chromium is missing; with SLUSSEN_REQUIRE_BROWSER=1
(CI) they fail instead. The server runs in a thread on a free port with its own SQLite database,
the real migrations and the demo data, CSRF on, and stops at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SLUSSEN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE = os.environ.get("SLUSSEN_REQUIRE_BROWSER") == "1"
DEMO_PASSWORD = "ett långt lösenord för webbläsartest"


def need_browser() -> None:
    """Skip (fail with SLUSSEN_REQUIRE_BROWSER=1) when Playwright or Chromium is missing."""
    problems = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        problems.append(f"Chromium is not at {CHROMIUM} (apt-get install chromium)")
    if problems:
        message = "browser tests skipped: " + "; ".join(problems)
        if REQUIRE:
            pytest.fail(message + " (SLUSSEN_REQUIRE_BROWSER=1)")
        pytest.skip(message)


@dataclass
class LiveServer:
    url: str
    password: str
    app: Any
    #: What `slussen demo` reported (it prints an answer code of a demo letter).
    report: list[str] = field(default_factory=list)

    def demo_code(self) -> str:
        for line in self.report:
            found = re.search(r"Answer code of a demo letter \(case [^)]+\): (\S+)", line)
            if found:
                return found.group(1)
        raise AssertionError(f"no answer code in the demo output: {self.report}")


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """The live Slussen of one test module; a module's `LIVE_SERVER_SETTINGS` (a dict) adds to
    or changes its settings (e.g. `require_totp`)."""
    need_browser()
    from werkzeug.serving import make_server

    from tests.builders import demo_app

    app, report = demo_app(
        tmp_path_factory.mktemp("browser"),
        DEMO_PASSWORD,
        **getattr(request.module, "LIVE_SERVER_SETTINGS", {}),
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", DEMO_PASSWORD, app, report)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["slussen.engine"].dispose()


@pytest.fixture(scope="module")
def browser(live_server: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
