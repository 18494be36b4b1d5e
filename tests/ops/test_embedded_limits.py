"""The embedded default (no Redis) holds its limits exactly under `slussen serve`.

With `ratelimit_storage_uri = "memory://"` each process counts on its own, so gunicorn with two
workers would let each worker count its own 10 wrong passwords. `slussen serve` therefore runs
one process (with the threads of both) while the counts are in memory. This starts the real
command with the default settings and `serve_workers = 2`, and counts what gets through.
"""

from __future__ import annotations

import http.client
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import TEST_PASSWORD
from tests.ops.conftest import PYTHON, Site, free_port, make_site, wait_until_up

pytestmark = pytest.mark.slow


@dataclass
class Server:
    port: int
    log: Path

    def request(
        self, method: str, path: str, *, cookie: str = "", form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Status, body and session cookie of one request over a fresh connection."""
        headers = {"Connection": "close"}
        if cookie:
            headers["Cookie"] = f"slussen_session={cookie}"
        body = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(form)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode()
            found = re.match(r"slussen_session=([^;]*)", response.getheader("Set-Cookie") or "")
            return response.status, text, found.group(1) if found else cookie
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("embedded")
    with make_site(tmp_path, "sqlite", "embedded") as site:
        site.seed(cases=0)
        yield from _serve(site, tmp_path)


def _serve(site: Site, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "serve.out"
    command = [PYTHON, "-m", "slussen.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        # No ratelimit_storage_uri: the embedded default. Two workers asked for, as by default.
        proc = subprocess.Popen(
            command, env=site.env(SLUSSEN_SERVE_WORKERS="2"), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_until_up(proc, port, log, "slussen serve")
            yield Server(port, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _passed_before_refused(answers: Iterator[int], passing: int) -> int:
    """How many answers had status `passing` before the first 429 (at most 30 are asked)."""
    passed = 0
    for status in answers:
        if status == 429:
            return passed
        assert status == passing, status
        passed += 1
    raise AssertionError(f"no 429 after {passed} attempts")


def test_serve_says_it_runs_one_process_while_limits_count_in_memory(server: Server) -> None:
    output = server.log.read_text()
    assert "1 process with 8 threads" in output
    assert "set ratelimit_storage_uri to Redis to run 2 processes" in output
    assert len(re.findall(r"Booting worker with pid", output)) == 1


def test_the_eleventh_wrong_password_is_refused(server: Server) -> None:
    status, page, cookie = server.request("GET", "/login")
    assert status == 200 and cookie
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token
    wrong = {"csrf_token": token.group(1), "username": "koordinator", "password": "fel lösenord"}
    attempts = (server.request("POST", "/login", cookie=cookie, form=wrong)[0] for _ in range(30))
    assert _passed_before_refused(attempts, 401) == 10
    right = {**wrong, "password": TEST_PASSWORD}
    assert server.request("POST", "/login", cookie=cookie, form=right)[0] == 429


def test_the_sixth_wrong_answer_code_is_refused(server: Server) -> None:
    attempts = (server.request("GET", f"/svar/FEL{n:05d}")[0] for n in range(30))
    assert _passed_before_refused(attempts, 422) == 5
