"""Several processes on PostgreSQL with Redis: gunicorn with two workers, as `slussen serve` runs.

Any request may land on any worker, so login throttling must count in Redis and sessions must live
in the database. Which worker answered is read from gunicorn's access log (`%(p)s`, the worker's
pid), so the app needs no extra header.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSWORD
from tests.ops.conftest import PYTHON, Site, free_port, make_site, need_redis, wait_until_up

pytestmark = pytest.mark.postgres

#: `slussen serve --workers 2`, with the access log (worker pid first) written to a file.
SERVE = """
import sys
from slussen.app import create_app
from slussen.serve import run

create_app()  # as `slussen serve` does: settings and content are checked before workers start
run(
    host="127.0.0.1",
    port=int(sys.argv[1]),
    workers=2,
    extra={"accesslog": sys.argv[2], "access_log_format": '%(p)s "%(r)s" %(s)s'},
)
"""
LOG_LINE = re.compile(r'^<(\d+)> "\w+ \S*[?&]probe=(\d+)\S* HTTP/[\d.]+" (\d+)$')


@dataclass
class Answer:
    status: int
    body: str
    cookie: str | None
    worker: int


class Server:
    def __init__(self, port: int, access_log: Path) -> None:
        self.port = port
        self.access_log = access_log
        self._probe = 0

    def request(
        self, method: str, path: str, *, cookie: str | None = None, form: str | None = None
    ) -> Answer:
        """One request over a fresh connection, and the pid of the worker that answered."""
        self._probe += 1
        probe = self._probe
        url = f"{path}{'&' if '?' in path else '?'}probe={probe}"
        headers = {"Connection": "close"}
        if cookie:
            headers["Cookie"] = f"slussen_session={cookie}"
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, url, body=form, headers=headers)
            response = conn.getresponse()
            body = response.read().decode()
            set_cookie = response.getheader("Set-Cookie") or ""
        finally:
            conn.close()
        found = re.match(r"slussen_session=([^;]*)", set_cookie)
        return Answer(response.status, body, found.group(1) if found else None, self._worker(probe))

    def _worker(self, probe: int) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in self.access_log.read_text().splitlines():
                match = LOG_LINE.match(line)
                if match and int(match.group(2)) == probe:
                    return int(match.group(1))
            time.sleep(0.05)
        raise AssertionError(f"request {probe} is not in the access log")


@pytest.fixture(scope="module")
def redis_url() -> str:
    return need_redis()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """One server for the module; each test uses its own demo account."""
    tmp_path = tmp_path_factory.mktemp("workers")
    with make_site(tmp_path, "postgres", "workers") as site:
        site.seed(cases=2)
        yield from _serve(site, tmp_path, redis_url)


def _serve(site: Site, tmp_path: Path, redis_url: str) -> Iterator[Server]:
    port = free_port()
    access_log = tmp_path / "access.log"
    access_log.touch()
    output = (tmp_path / "gunicorn.out").open("w")
    proc = subprocess.Popen(
        [PYTHON, "-c", SERVE, str(port), str(access_log)],
        env=site.env(SLUSSEN_RATELIMIT_STORAGE_URI=redis_url),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(proc, port, tmp_path / "gunicorn.out", "gunicorn")
        yield Server(port, access_log)
    finally:
        proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown, then nothing may be left
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        output.close()


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html)
    assert found, "the login form has no CSRF token"
    return found.group(1)


def login_form(token: str, username: str, password: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"csrf_token": token, "username": username, "password": password})


def test_a_session_made_on_one_worker_holds_on_the_other(server: Server) -> None:
    form = server.request("GET", "/login")
    assert form.status == 200 and form.cookie
    # The CSRF token lives in the server-side session, wherever the POST lands.
    login = server.request(
        "POST",
        "/login",
        cookie=form.cookie,
        form=login_form(csrf_token(form.body), "coach", TEST_PASSWORD),
    )
    assert login.status == 302, login.body[:300]
    assert login.cookie
    served_by: set[int] = set()
    for _ in range(60):
        page = server.request("GET", "/arbetslista", cookie=login.cookie)
        assert page.status == 200, f"worker {page.worker} answered {page.status}"
        served_by.add(page.worker)
        if len(served_by) == 2:
            break
    assert len(served_by) == 2, "every request landed on one worker"


def test_a_login_limit_hit_on_one_worker_holds_on_the_other(server: Server, redis_url: str) -> None:
    form = server.request("GET", "/login")
    assert form.cookie
    token = csrf_token(form.body)
    wrong = login_form(token, "koordinator", "not the password at all")
    failures: list[int] = []
    refused: Answer | None = None
    for _ in range(30):
        answer = server.request("POST", "/login", cookie=form.cookie, form=wrong)
        if answer.status == 429:
            refused = answer
            break
        assert answer.status == 401, answer.body[:300]
        failures.append(answer.worker)
    assert refused is not None, "no limit after 30 failed logins"
    # The per-account limit is 10 in 10 minutes, counted once for both workers.
    assert len(failures) == 10

    refused_by = {refused.worker}
    right = login_form(token, "koordinator", TEST_PASSWORD)
    for _ in range(60):
        answer = server.request("POST", "/login", cookie=form.cookie, form=right)
        assert answer.status == 429, f"worker {answer.worker} let a throttled login through"
        refused_by.add(answer.worker)
        if len(refused_by) == 2:
            break
    assert len(refused_by) == 2, "every request landed on one worker"
    import redis

    with redis.Redis.from_url(redis_url) as counts:
        assert counts.keys("*slussen*"), "the limits were not counted in Redis"
