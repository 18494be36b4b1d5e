"""Helpers for the operations tests: real commands, real processes, fresh databases.

`Site` is one installation: an instance folder, a key ring and a database URL, used through the
`slussen` command in-process (`site.cli(...)`) or in a subprocess (`site.env()`).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from slussen import cli as slussen_cli
from slussen.cli import cli
from tests.conftest import REQUIRE_PG, TEST_PASSWORD, scratch_postgres

REDIS_URL = os.environ.get("SLUSSEN_TEST_REDIS_URL", "")
ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@dataclass
class Site:
    instance: Path
    database_url: str

    @property
    def keyring(self) -> Path:
        return self.instance / "keyring.json"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess running this site (PYTHONPATH: this checkout first)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SLUSSEN_") or k.startswith(("SLUSSEN_TEST_", "SLUSSEN_REQUIRE_"))
        }
        env.update(
            SLUSSEN_ENV="testing",
            SLUSSEN_INSTANCE_DIR=str(self.instance),
            SLUSSEN_DATABASE_URL=self.database_url,
            SLUSSEN_KEYRING=str(self.keyring),
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        env.update(extra)
        return env

    @contextmanager
    def active(self) -> Iterator[None]:
        """Point this process's SLUSSEN_* settings at the site (for in-process commands)."""
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith("SLUSSEN_") and not name.startswith(
                    ("SLUSSEN_TEST_", "SLUSSEN_REQUIRE_")
                ):
                    mp.delenv(name)
            for name, value in self.env().items():
                if name.startswith("SLUSSEN_"):
                    mp.setenv(name, value)
            yield

    def cli(self, *args: str, ok: bool = True) -> Any:
        """Run `slussen ARGS` in this process; the apps it builds are closed afterwards."""
        built: list[Flask] = []

        def recording_app() -> Flask:
            built.append(self.app())
            return built[-1]

        with self.active(), pytest.MonkeyPatch.context() as mp:
            mp.setattr(slussen_cli, "_app", recording_app)
            result = CliRunner().invoke(cli, list(args))
        for app in built:
            app.extensions["slussen.engine"].dispose()
        if ok:
            assert result.exit_code == 0, f"slussen {' '.join(args)}: {result.output}"
        return result

    def app(self) -> Flask:
        from slussen.app import create_app

        with self.active():
            return create_app()

    def seed(self, cases: int) -> None:
        self.cli("init-db")
        self.cli("demo", "--password", TEST_PASSWORD, "--cases", str(cases))


@contextmanager
def make_site(tmp_path: Path, backend: str, name: str) -> Iterator[Site]:
    """A fresh, empty installation on `backend` ("sqlite" or "postgres")."""
    instance = tmp_path / name
    instance.mkdir(parents=True)
    if backend == "sqlite":
        yield Site(instance, f"sqlite:///{instance / 'slussen.sqlite3'}")
        return
    with scratch_postgres(f"slussen_ops_{name}_{os.getpid()}") as url:
        yield Site(instance, url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(proc: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    """Wait (at most 60 s) until the server `proc` started answers /healthz on `port`; fail
    with the tail of its `log` if it exits or does not answer."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            up = conn.getresponse().status == 200
            conn.close()
            if up:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer within 60 s: {log.read_text()[-2000:]}")


def need_redis() -> str:
    """The test Redis URL, flushed; skip when unset (fail in CI, or when it does not answer)."""
    if not REDIS_URL:
        message = "multi-worker tests skipped: set SLUSSEN_TEST_REDIS_URL to run them"
        if REQUIRE_PG:
            pytest.fail(message + " (SLUSSEN_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} does not answer: {exc}")
    return REDIS_URL
