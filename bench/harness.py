"""Reusable pieces for Slussen's HTTP benchmarks.

A benchmark seeds a database (`seed_database`), serves Slussen and the bare baseline app with
gunicorn (`Server`, `slussen_server`, `bare_server`), logs in (`login_cookie`), drives load from a
separate process (`measure`) and writes the figures with ratios against the baseline measured in
the same run (`report`). Nothing here asserts wall-clock times: benchmarks report, tests assert.

Only the standard library and what Slussen already depends on (SQLAlchemy, psycopg) are used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
DATA_DIR = BENCH_DIR / ".data"
RESULTS_DIR = BENCH_DIR / "results"
SLUSSEN_BIN = REPO / ".venv" / "bin" / "slussen"
GUNICORN_BIN = REPO / ".venv" / "bin" / "gunicorn"

#: Password of every demo user in benchmark databases (long enough for the NIST rules).
BENCH_PASSWORD = "bench-lungfish-harbour-lantern"
#: The instance folder (secret key, demo-logins.txt) shared by every benchmark server.
INSTANCE_DIR = DATA_DIR / "instance"
#: gunicorn settings `slussen serve` uses; the bare app is served with the same ones.
WORKER_CLASS = "gthread"
THREADS = 4

_CSRF_RE = re.compile(
    r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"|<input[^>]*value="([^"]+)"[^>]*name="csrf_token"'
)


class BenchError(RuntimeError):
    """A benchmark could not run (seeding, start-up, login); the message says what to check."""


# --------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------


def default_sqlite_url() -> str:
    """The SQLite database used when no --database-url is given (under the gitignored .data/)."""
    return f"sqlite:///{DATA_DIR / 'slussen-bench.sqlite3'}"


def sqlalchemy_url(url: str) -> str:
    """`url` with the driver SQLAlchemy should use (psycopg 3 for PostgreSQL), as Slussen does."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """`url` with any password masked, for reports and messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in `url` if it is missing; True when created.

    Connects to the server's `postgres` database with AUTOCOMMIT (CREATE DATABASE cannot run in
    a transaction). SQLite needs nothing: Slussen creates the file and its folder.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    parsed = make_url(sqlalchemy_url(url))
    if parsed.get_backend_name() != "postgresql":
        return False
    name = parsed.database
    if not name:
        raise BenchError(f"the database URL names no database: {safe_url(url)}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    except Exception as exc:
        raise BenchError(f"cannot reach or create {safe_url(url)}: {exc}") from exc
    finally:
        admin.dispose()


#: Redis for the benchmark servers' rate limits (bench/bench_load.py uses its own database).
BENCH_REDIS_URI = "redis://127.0.0.1:6379/13"


def server_env(url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every benchmark subprocess gets.

    Inherited `SLUSSEN_*` variables are dropped so a developer's shell (an SLUSSEN_CONFIG, say)
    cannot change what is measured; the database, instance folder and env are set explicitly.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUSSEN_")}
    env.update(
        SLUSSEN_DATABASE_URL=url,
        SLUSSEN_INSTANCE_DIR=str(INSTANCE_DIR),
        SLUSSEN_ENV="development",
        # As a region runs it: rate limits counted in Redis, so `slussen serve` keeps its
        # workers (with the in-memory default it serves from one process: docs/operations.md).
        SLUSSEN_RATELIMIT_STORAGE_URI=BENCH_REDIS_URI,
        # Read only by bench/bare_app.py; Slussen's settings ignore the SLUSSEN_BENCH_ prefix.
        SLUSSEN_BENCH_DATABASE_URL=sqlalchemy_url(url),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _marker(url: str, cases: int) -> Path:
    digest = hashlib.sha256(f"{url}\0{cases}".encode()).hexdigest()[:16]
    return DATA_DIR / "seeded" / f"{digest}.json"


def _run_cli(args: Sequence[str], env: Mapping[str, str], *, timeout: float | None = 1800) -> str:
    command = [str(SLUSSEN_BIN), *args]
    proc = subprocess.run(
        command,
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        shown = " ".join(shlex.quote(a) for a in command).replace(BENCH_PASSWORD, "***")
        raise BenchError(
            f"`{shown}` failed with exit code {proc.returncode}: "
            f"{' / '.join((proc.stderr or proc.stdout).strip().splitlines()[-2:])}"
        )
    return proc.stdout


def seed_database(
    url: str, cases: int, password: str = BENCH_PASSWORD, *, force: bool = False
) -> bool:
    """Bring the database at `url` to the newest schema and load the demo data into it.

    `slussen init-db` always runs (it is quick, and a schema older than the code would make the
    benchmark measure error pages). `slussen demo --password P --cases N` is skipped when a
    marker for (url, cases) with the same password exists, the database was neither just
    created nor upgraded, and `force` is false; so reruns are fast. The demo steps are
    idempotent, so seeding again is always safe. Returns True when the demo ran. The harness
    does not care what `--cases` seeds: that is the demo's business.
    """
    created = ensure_database(url)
    marker = _marker(url, cases)
    password_sha256 = hashlib.sha256(password.encode()).hexdigest()
    env = server_env(url)
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    upgraded = "upgraded" in _run_cli(["init-db"], env)
    if marker.exists() and not (force or created or upgraded):
        recorded = json.loads(marker.read_text())
        if recorded.get("password_sha256") == password_sha256:
            return False
    _run_cli(["demo", "--password", password, "--cases", str(cases)], env)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps(
            {
                "url": safe_url(url),
                "cases": cases,
                "password_sha256": password_sha256,
                "seeded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return True


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(
    base_url: str, path: str, cookie: str | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET without following redirects: (status, headers, body)."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def start_logged(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own process group (so it can be stopped with its children), its
    output going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class Server:
    """A gunicorn server in a subprocess, from start-up until `/healthz` answers until stopped.

    Use as a context manager. It is started in its own process group so that, if the graceful
    SIGTERM is not enough within `stop_timeout` seconds, SIGKILL reaches the workers too; no
    process is left behind. Output (gunicorn's log and access log) goes to `log_path`.
    """

    def __init__(
        self,
        name: str,
        argv_for_port: Callable[[int], Sequence[str]],
        env: Mapping[str, str],
        *,
        health_path: str = "/healthz",
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """`argv_for_port(port) -> list[str]` builds the command line for the chosen port."""
        self.name = name
        self.port = free_port()
        self.argv: list[str] = list(argv_for_port(self.port))
        self.env = dict(env)
        self.health_path = health_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.log_path = DATA_DIR / "logs" / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait (bounded) until its health check answers 200."""
        self.process = start_logged(self.argv, self.env, self.log_path)
        deadline = time.monotonic() + self.start_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise BenchError(
                    f"{self.name} exited with code {self.process.returncode} during start-up; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                status, _headers, _body = http_get(self.base_url, self.health_path, timeout=2)
                if status == 200:
                    return
                last_error = f"{self.health_path} answered {status}"
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.2)
        self.stop()
        raise BenchError(
            f"{self.name} did not answer {self.health_path} within {self.start_timeout:.0f} s "
            f"({last_error}); log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL to the whole process group after `stop_timeout`."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout)
        # The group id is the server's own pid (start_new_session); this reaches only its workers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def slussen_server(url: str, workers: int) -> Server:
    """Slussen as deployed: `slussen serve` (gunicorn, gthread, 4 threads per worker)."""
    return Server(
        "slussen",
        lambda port: [
            str(SLUSSEN_BIN),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        server_env(url),
    )


def _gunicorn_app(name: str, factory: str, url: str, workers: int) -> Server:
    """A gunicorn factory (`module:create()`) with Slussen's worker settings."""
    return Server(
        name,
        lambda port: [
            str(GUNICORN_BIN),
            "--chdir",
            str(REPO),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            WORKER_CLASS,
            "--threads",
            str(THREADS),
            # Same logging as `slussen serve`, so both servers pay for an access log line.
            "--access-logfile",
            "-",
            "--timeout",
            "60",
            factory,
        ],
        server_env(url),
    )


def bare_server(url: str, workers: int) -> Server:
    """The baseline: bench/bare_app.py under gunicorn with Slussen's worker settings."""
    return _gunicorn_app("bare", "bench.bare_app:create()", url, workers)


def floor_server(url: str, workers: int) -> Server:
    """Slussen with bench/floor_app.py's floor pages, under gunicorn with Slussen's settings."""
    return _gunicorn_app("floor", "bench.floor_app:create()", url, workers)


# --------------------------------------------------------------------------------------------
# Login
# --------------------------------------------------------------------------------------------


def _cookie_pairs(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            pair = value.split(";", 1)[0]
            key, _, val = pair.partition("=")
            cookies[key.strip()] = val.strip()
    return cookies


def login_cookie(base_url: str, username: str, password: str) -> str:
    """Log in through the real form (CSRF token included); return the `Cookie` header value.

    Raises BenchError unless the login answers with a redirect and a session cookie.
    """
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request("GET", "/login")
        resp = conn.getresponse()
        page = resp.read().decode("utf-8", "replace")
        if resp.status != 200:
            raise BenchError(f"GET /login answered {resp.status}")
        cookies = _cookie_pairs(resp.getheaders())
        match = _CSRF_RE.search(page)
        if match is None:
            raise BenchError("GET /login: no csrf_token field in the page")
        token = match.group(1) or match.group(2)
        form = urllib.parse.urlencode(
            {"csrf_token": token, "username": username, "password": password}
        )
        conn.request(
            "POST",
            "/login",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            },
        )
        resp = conn.getresponse()
        resp.read()
        cookies.update(_cookie_pairs(resp.getheaders()))
        if resp.status not in (302, 303, 401):
            raise BenchError(
                f"POST /login as {username!r} answered {resp.status}: the server failed "
                "(see its log, bench/.data/logs/slussen.log)"
            )
        if resp.status not in (302, 303):
            raise BenchError(
                f"POST /login as {username!r} answered {resp.status} (expected a redirect): wrong "
                "password, or users seeded earlier with another one (delete bench/.data/, or drop "
                "the PostgreSQL benchmark database, and run again)"
            )
        return "; ".join(f"{k}={v}" for k, v in cookies.items())
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One load run against one server: throughput, latency percentiles, errors."""

    label: str
    paths: list[str]
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    concurrency: int
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    timed_out: bool = False


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _drive(
    label: str,
    paths: list[str],
    base_url: str,
    cookie: str | None,
    concurrency: int,
    requests: int,
    warmup: int,
    time_cap: float,
) -> Measurement:
    """The load generator; runs in a child process so it does not share the caller's GIL."""
    parts = urllib.parse.urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    headers = {"Cookie": cookie} if cookie else {}
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    samples: list[str] = []
    errors = 0
    barrier = threading.Barrier(concurrency + 1)
    deadline = [float("inf")]

    def one(conn: http.client.HTTPConnection, path: str) -> int:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def worker(index: int) -> None:
        nonlocal issued, errors
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            # Warm-up on this thread's connection: not recorded.
            for i in range(warmup):
                try:
                    one(conn, paths[(index + i) % len(paths)])
                except (OSError, http.client.HTTPException):
                    conn.close()
            barrier.wait()
            while True:
                with lock:
                    if issued >= requests or time.perf_counter() > deadline[0]:
                        return
                    number = issued
                    issued += 1
                path = paths[number % len(paths)]
                start = time.perf_counter()
                try:
                    status = one(conn, path)
                    failure = None if 200 <= status < 400 else f"{path}: HTTP {status}"
                    key = str(status)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # the next request opens a fresh connection
                    failure, key = f"{path}: {type(exc).__name__}: {exc}", "exception"
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[key] = statuses.get(key, 0) + 1
                    if failure is not None:
                        errors += 1
                        if len(samples) < 5:
                            samples.append(failure)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    deadline[0] = started + time_cap
    for thread in threads:
        thread.join(time_cap + 60)
    seconds = time.perf_counter() - started
    with lock:
        done = sorted(latencies)
        timed_out = len(done) < requests
    return Measurement(
        label=label,
        paths=paths,
        requests=len(done),
        errors=errors,
        seconds=round(seconds, 3),
        rps=round(len(done) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(_percentile(done, 0.50) * 1000, 2),
        p99_ms=round(_percentile(done, 0.99) * 1000, 2),
        concurrency=concurrency,
        status_counts=dict(sorted(statuses.items())),
        error_samples=samples,
        timed_out=timed_out,
    )


def measure(
    url_paths: Sequence[str],
    base_url: str,
    cookie: str | None,
    concurrency: int,
    requests: int,
    *,
    label: str = "",
    warmup: int = 5,
    time_cap: float = 60.0,
) -> Measurement:
    """Drive `requests` GETs (cycling through `url_paths`) with `concurrency` threads.

    The load runs in a separate Python process (so it shares no GIL with the caller, and the
    caller needs no `if __name__ == "__main__"` guard as multiprocessing's spawn would); each
    thread keeps one keep-alive `http.client.HTTPConnection` and first sends `warmup`
    unrecorded requests. The run stops after `requests` requests or `time_cap` seconds,
    whichever comes first (`timed_out` says so). Errors are non-2xx/3xx answers and
    exceptions; redirects are not followed.
    """
    if not url_paths:
        raise ValueError("measure() needs at least one path")
    job = {
        "label": label or ",".join(url_paths),
        "paths": list(url_paths),
        "base_url": base_url,
        "cookie": cookie,
        "concurrency": concurrency,
        "requests": requests,
        "warmup": warmup,
        "time_cap": time_cap,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from bench.harness import _drive_main; _drive_main()"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=time_cap + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the load generator for {job['label']} did not finish") from exc
    if proc.returncode != 0:
        raise BenchError(f"the load generator failed: {proc.stderr.strip()[-2000:]}")
    return Measurement(**json.loads(proc.stdout))


def _drive_main() -> None:
    """Entry point of the load generator process: a JSON job on stdin, a JSON result on stdout."""
    job = json.loads(sys.stdin.read())
    print(json.dumps(asdict(_drive(**job))))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One measured page and the baseline it is compared with."""

    name: str
    measurement: Measurement
    baseline: Measurement

    @property
    def rps_ratio(self) -> float:
        return _ratio(self.measurement.rps, self.baseline.rps)

    @property
    def p50_ratio(self) -> float:
        return _ratio(self.measurement.p50_ms, self.baseline.p50_ms)

    @property
    def p99_ratio(self) -> float:
        return _ratio(self.measurement.p99_ms, self.baseline.p99_ms)


def _ratio(value: float, base: float) -> float:
    return round(value / base, 3) if base else float("nan")


def git_commit() -> str:
    """HEAD's commit, with "+dirty" when the work tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(x, 2) for x in load],
    }


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table, baseline first (its ratios are 1 by definition)."""
    header = (
        "| page | path | req/s | p50 ms | p99 ms | errors | req/s ratio | p50 ratio | p99 ratio |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    seen: set[int] = set()
    for row in rows:
        base = row.baseline
        if id(base) not in seen:
            seen.add(id(base))
            lines.append(
                f"| {base.label} (baseline) | {', '.join(base.paths)} | {base.rps:.0f} | "
                f"{base.p50_ms:.1f} | {base.p99_ms:.1f} | {base.errors} | 1.00 | 1.00 | 1.00 |"
            )
        m = row.measurement
        lines.append(
            f"| {row.name} | {', '.join(m.paths)} | {m.rps:.0f} | {m.p50_ms:.1f} | "
            f"{m.p99_ms:.1f} | {m.errors} | {row.rps_ratio:.2f} | {row.p50_ratio:.2f} | "
            f"{row.p99_ratio:.2f} |"
        )
    return header + "\n".join(lines) + "\n"


def report(
    rows: Sequence[Row],
    name: str,
    *,
    settings: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    results_dir: Path = RESULTS_DIR,
) -> tuple[Path, Path]:
    """Print the table and write `<results_dir>/<name>-<timestamp>.{json,md}`.

    Both files carry the command line, the git commit, machine information, the benchmark
    settings, the baseline figures and each page's ratios. Files are written to a `.tmp` name
    first and renamed, so an interrupted run leaves no half-written result.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    meta: dict[str, Any] = {
        "name": name,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "settings": dict(settings or {}),
    }
    baselines: list[Measurement] = []
    for row in rows:
        if all(row.baseline is not b for b in baselines):
            baselines.append(row.baseline)
    document = {
        **meta,
        "baselines": [asdict(b) for b in baselines],
        "rows": [
            {
                "name": row.name,
                **asdict(row.measurement),
                "baseline": row.baseline.label,
                "rps_ratio": row.rps_ratio,
                "p50_ratio": row.p50_ratio,
                "p99_ratio": row.p99_ratio,
            }
            for row in rows
        ],
        **dict(extra or {}),
    }
    table = markdown_table(rows)
    machine = meta["machine"]
    markdown = (
        f"# {name} — {meta['timestamp']}\n\n"
        f"- command: `{command}`\n"
        f"- git commit: `{meta['git_commit']}`\n"
        f"- machine: {machine['cpu_count']} CPUs, Python {machine['python']}, "
        f"{machine['platform']}, load average {machine['load_average_1_5_15']}\n"
        + "".join(f"- {key}: {value}\n" for key, value in meta["settings"].items())
        + "\n"
        + table
    )
    print(table)
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in (
        (".json", json.dumps(document, indent=2, ensure_ascii=False) + "\n"),
        (".md", markdown),
    ):
        final = results_dir / f"{name}-{stamp}{suffix}"
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(final)
        written.append(final)
    print(f"Wrote {written[0].relative_to(REPO)} and {written[1].relative_to(REPO)}")
    return written[0], written[1]
