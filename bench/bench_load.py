"""The load benchmark (issue 9): a mixed workload on a 100,000-case region over HTTP.

Run: python bench/bench_load.py [--database-url URL] [--rounds 2] [--requests 500] [--mixed 2000]
    [--print-letters 10000]

1. Reuses bench/bench_cases.py's seeded database (its marker in bench/.data/seeded/; default
   postgresql://postgres@127.0.0.1:5432/slussen_bench_cases), else seeds it with
   bench/seed_region.py, i.e. `slussen demo --cases 100000 --units 50` (a few minutes on
   PostgreSQL).
2. Serves Slussen (gunicorn, `--workers` × 4 gthread threads, env SLUSSEN_PROXY_COUNT=1 and
   SLUSSEN_RATELIMIT_STORAGE_URI=redis://127.0.0.1:6379/14, which is flushed first) and
   bench/bare_app.py with the same gunicorn settings; logs in as the coach of the unit with the
   longest worklist and as the demo staff user `personal`.
3. Page classes: public calendar `/aktiviteter`, coach worklist `/arbetslista`, case page
   `/arenden/<id>` (rotating over case ids of the coach's unit), staff `/mina-flaggningar`,
   public self-referral (GET `/anmalan` for the CSRF token and session cookie, then POST the
   form; each referral sends its own `X-Forwarded-For: 10.x.y.z` so the 30/hour/address limit is
   not what is measured; the personnummer comes from Skatteverket's test series and is checked
   against the blind index so no referral names an existing patient), and the bare page.
   a. Phases: for each of `--rounds` rounds, each class alone, alternating with the bare page
      (bench/run.py's rule: best round counts) -> req/s, p50, p99 and ratios to the bare page.
   b. Worklist during print (issue 16: worklist p99 under 1 s while a 10,000-letter print runs
      on another unit), after the phases, unless `--print-letters 0` or the worklist is not
      among `--classes`: the unit with the most cases other than the coach's gets letters
      queued (`letterqueue.queue_letter`, one transaction) until its next print holds
      `--print-letters` letters (those of a batch an earlier run left unfinished count: the print
      finishes them first); `slussen letters print --unit <HSA-id>` starts in a subprocess; once
      it writes letters (a new batch, letters marked printed or its PDF's first bytes; at most
      300 s after it started reading the queue's patients) the worklist runs alone, `--requests`
      requests. The report says whether the print was still running when that load ended (if
      not, the measurement did not overlap it fully); then the print is stopped with SIGTERM
      (resumable: its letters so far stay in an unfinished batch, which the next run's print
      finishes) and its PDF and `.part` file are removed. PASS when the worklist's p99 is under
      1000 ms and the print was still running when the load ended.
   c. Mixed: `--mixed` operations at once with the issue's mix per 20 operations: 8 calendar,
      2 worklist, 3 case page, 3 flagged list, 2 self-referrals, 2 bare (40/25/15/10/10 %);
      per class p50/p99 and their ratios to the bare requests inside the same mix.
   All load comes from a separate Python process on 127.0.0.1 (keep-alive connections, no
   warm-up requests, so every request is counted).
4. Errors: any answer other than the expected one (200 for GETs, 302 to /anmalan/tack after the
   POST) or an exception.
5. Audit rows: every page that lists patients writes one access-log row per patient shown. Before
   the load, one probe request per GET class counts the rows it writes (chain head before and
   after) and checks them against the patients the page shows (worklist: its table rows linking
   to a case; flagged list: its table rows; case page: 1; calendar: 0); a difference ends the
   run with exit code 1. A self-referral writes 2 (patient create + case create), a login 1.
   When the worklist's first page is not full, self-referrals skip the coach's unit, so that
   page keeps its length. Afterwards: `audit.verify_chain` on the database, and the rows written
   during the run (chain head after minus before) against the rows the requests should have
   written. The print's own rows (the system actor's in its unit's chain: patient reads and one
   "print letter" per letter) are excluded from that comparison; instead its "print letter"
   rows must equal the letters it marked printed.

Exit codes: 0 no errors, the audit checks hold and the worklist met its target during the print;
1 an error, an audit check failed or the target was missed; 2 the benchmark could not run.
Results: bench/results/load-<timestamp>.{json,md}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # stdlib-only: the load generator imports only this
    _CSRF_RE,
    BENCH_PASSWORD,
    DATA_DIR,
    REPO,
    SLUSSEN_BIN,
    BenchError,
    Measurement,
    Row,
    Server,
    _percentile,
    bare_server,
    http_get,
    login_cookie,
    report,
    safe_url,
    server_env,
    start_logged,
)

#: The cases benchmark's PostgreSQL region: one seeded (or copied) database serves both.
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/slussen_bench_cases"
REDIS_DB = 14
REDIS_URI = f"redis://127.0.0.1:6379/{REDIS_DB}"
STAFF = "personal"
#: Where the self-referrals' personnummer start in the test series (birth dates around 1985;
#: the demo's cases use n = 0..~100,000, i.e. 1944–1957; numbers far above ~600,000 would be
#: born in the future).
PNR_BASE = 300_000
#: Audit rows of the operations that are not probed: a self-referral writes two (patient create
#: + case create), the bare page none. The GET pages write one per patient they show, which
#: `probe` counts before the load.
FIXED_AUDIT_ROWS = {"self-referral": 2, "bare": 0}
#: Issue 16: the worklist's p99 while a print of --print-letters letters runs on another unit.
PRINT_P99_TARGET_MS = 1000.0
#: How long the print may take to begin writing letters (it first reads every patient queued).
PRINT_BEGIN_TIMEOUT = 300.0
#: The `event` of the letters the benchmark queues (no workflow event queued them).
PRINT_EVENT = "bench_load"
#: Where the print's PDF (and its `.part` file) is written; both are removed afterwards.
PRINT_DIR = DATA_DIR / "print"
#: The mix per 20 operations (40 % calendar, 25 % coach, 15 % staff, 10 % referral, 10 % bare).
MIX = {
    "calendar": 8,
    "worklist": 2,
    "case page": 3,
    "flagged list": 3,
    "self-referral": 2,
    "bare": 2,
}
PHASE_CLASSES = ("calendar", "worklist", "case page", "flagged list", "self-referral")
_OPTION_RE = re.compile(r'<option[^>]*value="(\d+)"')
_SELECT_UNIT_RE = re.compile(r'<select[^>]*name="unit"[^>]*>(.*?)</select>', re.S)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="phase rounds (best counts)")
    parser.add_argument("--requests", type=int, default=500, help="requests per GET phase")
    parser.add_argument("--referrals", type=int, default=40, help="self-referrals per phase")
    parser.add_argument("--mixed", type=int, default=2000, help="operations in the mixed run")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--case-ids", type=int, default=200, help="case pages to rotate over")
    parser.add_argument(
        "--print-letters",
        type=int,
        default=10_000,
        help="letters in the print that runs during the worklist-during-print phase (0: no phase)",
    )
    parser.add_argument(
        "--classes",
        default=",".join(PHASE_CLASSES),
        help="comma-separated page classes to measure (default: all)",
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "requests", "referrals", "concurrency", "workers", "case_ids"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} is too small")
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not args.classes or any(c not in PHASE_CLASSES for c in args.classes):
        parser.error(f"--classes: choose from {', '.join(PHASE_CLASSES)}")
    if args.mixed < 0 or args.print_letters < 0 or args.time_cap <= 0:
        parser.error("--mixed and --print-letters must be ≥ 0 and --time-cap > 0")
    return args


# --------------------------------------------------------------------------------------------
# The load generator (runs in a child process: python -c "...; _drive_main()")
# --------------------------------------------------------------------------------------------


def _cookies(headers: list[tuple[str, str]]) -> dict[str, str]:
    jar: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            key, _, val = value.split(";", 1)[0].partition("=")
            jar[key.strip()] = val.strip()
    return jar


def _drive(job: dict[str, Any]) -> dict[str, Any]:
    """Run `job["operations"]` operations with `job["concurrency"]` threads.

    job: servers {name: base_url}; classes {name: {server, kind: get|referral, paths, cookie}};
    schedule: class names, operation i runs schedule[i % len]; referrals: form values, one per
    self-referral (taken in order); time_cap.
    """
    servers = {k: urllib.parse.urlsplit(v) for k, v in job["servers"].items()}
    classes: dict[str, dict[str, Any]] = job["classes"]
    schedule: list[str] = job["schedule"]
    referrals: list[dict[str, str]] = job["referrals"]
    total, time_cap = job["operations"], job["time_cap"]
    lock = threading.Lock()
    state: dict[str, Any] = {"issued": 0, "referral": 0, "resent": 0, "path": Counter()}
    latencies: dict[str, list[float]] = {name: [] for name in set(schedule)}
    post_latencies: list[float] = []
    statuses: dict[str, Counter[str]] = {name: Counter() for name in set(schedule)}
    ok: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[str] = []
    barrier = threading.Barrier(job["concurrency"] + 1)
    deadline = [float("inf")]

    def request(
        conns: dict[str, http.client.HTTPConnection],
        server: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):
            reused = server in conns
            conn = conns.get(server)
            if conn is None:
                parts = servers[server]
                conn = conns[server] = http.client.HTTPConnection(
                    parts.hostname or "127.0.0.1", parts.port, timeout=60
                )
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conns.pop(server, None)
                # gunicorn closes keep-alive connections idle for 2 s (its default): a GET sent
                # on such a stale connection is resent once on a new one, as browsers do.
                stale = isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if attempt == 1 and reused and stale and method == "GET":
                    with lock:
                        state["resent"] += 1
                    continue
                raise
            return resp.status, resp.getheaders(), data
        raise AssertionError("unreachable")

    def referral(conns: dict[str, http.client.HTTPConnection], spec: dict[str, Any]) -> str | None:
        """GET the form, POST it; None when it went as expected, else what went wrong."""
        with lock:
            index = state["referral"]
            state["referral"] += 1
        if index >= len(referrals):
            return "no personnummer left for this self-referral"
        values = dict(referrals[index])
        xff = values.pop("x_forwarded_for")
        status, headers, page = request(
            conns, spec["server"], "GET", "/anmalan", {"X-Forwarded-For": xff}
        )
        if status != 200:
            return f"GET /anmalan: HTTP {status}"
        text = page.decode("utf-8", "replace")
        token = _CSRF_RE.search(text)
        select = _SELECT_UNIT_RE.search(text)
        units = _OPTION_RE.findall(select.group(1)) if select else []
        units = [unit for unit in units if unit not in spec.get("skip_units", ())]
        if token is None or not units:
            return "GET /anmalan: no csrf_token or no unit options"
        jar = _cookies(headers)
        values["csrf_token"] = token.group(1) or token.group(2)
        values["unit"] = units[index % len(units)]
        started = time.perf_counter()
        status, headers, _ = request(
            conns,
            spec["server"],
            "POST",
            "/anmalan",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
                "X-Forwarded-For": xff,
            },
            urllib.parse.urlencode(values),
        )
        with lock:
            post_latencies.append(time.perf_counter() - started)
        location = dict((k.lower(), v) for k, v in headers).get("location", "")
        if status != 302 or not location.endswith("/anmalan/tack"):
            return f"POST /anmalan: HTTP {status} -> {location or '(no location)'}"
        return None

    def worker() -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        try:
            barrier.wait()
            while True:
                with lock:
                    if state["issued"] >= total or time.perf_counter() > deadline[0]:
                        return
                    number = state["issued"]
                    state["issued"] += 1
                    name = schedule[number % len(schedule)]
                    spec = classes[name]
                    nth = state["path"][name]
                    state["path"][name] += 1
                started = time.perf_counter()
                try:
                    if spec["kind"] == "referral":
                        failure = referral(conns, spec)
                        key = "ok" if failure is None else "failed"
                    else:
                        path = spec["paths"][nth % len(spec["paths"])]
                        headers = {"Cookie": spec["cookie"]} if spec.get("cookie") else {}
                        status, _h, _b = request(conns, spec["server"], "GET", path, headers)
                        failure = None if status == 200 else f"GET {path}: HTTP {status}"
                        key = str(status)
                except (OSError, http.client.HTTPException) as exc:
                    failure, key = f"{name}: {type(exc).__name__}: {exc}", "exception"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies[name].append(elapsed)
                    statuses[name][key] += 1
                    if failure is None:
                        ok[name] += 1
                    else:
                        errors[name] += 1
                        if len(samples) < 8:
                            samples.append(failure)
        finally:
            for conn in conns.values():
                conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(job["concurrency"])]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    deadline[0] = started + time_cap
    for thread in threads:
        thread.join(time_cap + 120)
    seconds = time.perf_counter() - started
    with lock:
        result: dict[str, Any] = {"seconds": round(seconds, 3), "classes": {}, "samples": samples}
        for name, values in latencies.items():
            done = sorted(values)
            result["classes"][name] = {
                "requests": len(done),
                "ok": ok[name],
                "errors": errors[name],
                "rps": round(len(done) / seconds, 1) if seconds > 0 else 0.0,
                "p50_ms": round(_percentile(done, 0.50) * 1000, 2),
                "p99_ms": round(_percentile(done, 0.99) * 1000, 2),
                "status_counts": dict(sorted(statuses[name].items())),
            }
        posts = sorted(post_latencies)
        result["referral_posts"] = {
            "count": len(posts),
            "p50_ms": round(_percentile(posts, 0.50) * 1000, 2),
            "p99_ms": round(_percentile(posts, 0.99) * 1000, 2),
        }
        result["referrals_used"] = min(state["referral"], len(referrals))
        result["timed_out"] = state["issued"] < total
        result["resent_on_stale_connection"] = state["resent"]
    return result


def _drive_main() -> None:
    print(json.dumps(_drive(json.loads(sys.stdin.read()))))


def drive(job: dict[str, Any]) -> dict[str, Any]:
    """Run `_drive(job)` in a separate Python process (no GIL shared with this one)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from bench.bench_load import _drive_main; _drive_main()"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=job["time_cap"] + 180,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError("the load generator did not finish") from exc
    if proc.returncode != 0:
        raise BenchError(f"the load generator failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


# --------------------------------------------------------------------------------------------
# Set-up helpers (main process)
# --------------------------------------------------------------------------------------------


def slussen_proxied_server(url: str, workers: int) -> Server:
    """`slussen serve` as bench.harness.slussen_server, trusting one proxy (X-Forwarded-For) and
    counting rate limits in Redis db 14."""
    extra = {"SLUSSEN_PROXY_COUNT": "1", "SLUSSEN_RATELIMIT_STORAGE_URI": REDIS_URI}
    return Server(
        "slussen-load",
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
        server_env(url, extra),
    )


def flush_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URI).flushdb()
    except redis.RedisError as exc:
        raise BenchError(f"cannot flush {REDIS_URI}: {exc}") from exc


def fresh_referrals(app: Any, count: int, run_tag: int) -> list[dict[str, str]]:
    """`count` self-referral forms, each with a test-series personnummer no patient has yet
    (checked against the blind index) and its own X-Forwarded-For address."""
    from sqlalchemy import text

    from slussen.demo.cases import test_series_personnummer
    from slussen.identifiers import PersonIdentifier
    from slussen.keystore import open_key_ring
    from slussen.patients.services import _lookup_digest

    ring = open_key_ring(app.extensions["slussen.settings"])
    with app.extensions["slussen.sessionmaker"]() as session:
        taken = set(session.scalars(text("SELECT digest FROM patient_lookups")))
    forms: list[dict[str, str]] = []
    rng = random.Random(run_tag)
    n = PNR_BASE
    while len(forms) < count:
        value = test_series_personnummer(n)
        n += 1
        identifier = PersonIdentifier(kind="pnr", value=value, issuer="1.2.752.129.2.1.3.1")
        if _lookup_digest(ring, identifier) in taken:
            continue
        k = len(forms) + 1 + (run_tag % 200) * 50_000
        forms.append(
            {
                "personnummer": value,
                "name": f"Lasttest Person {len(forms) + 1}",
                "street": f"Storgatan {rng.randint(1, 60)}",
                "postcode": "722 15",
                "town": "Västerås",
                "phone": f"070-{rng.randint(1000000, 9999999)}",
                "wish": "Vill gärna träffa fler människor.",
                "contact_channel": rng.choice(["post", "phone"]),
                "consent": "y",
                "x_forwarded_for": f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}",
            }
        )
    return forms


def check_schema(app: Any) -> None:
    """Refuse to measure error pages: every table of the models must exist in the database."""
    from sqlalchemy import inspect

    from slussen.db import Base

    have = set(inspect(app.extensions["slussen.engine"]).get_table_names())
    missing = sorted(set(Base.metadata.tables) - have)
    if missing:
        raise BenchError(
            f"the database lacks table(s) {', '.join(missing)} although `slussen init-db` says it "
            "is up to date (a migration changed after it was applied?): use a fresh database"
        )


def chain_head(app: Any) -> int:
    from sqlalchemy import text

    with app.extensions["slussen.sessionmaker"]() as session:
        return int(session.scalar(text("SELECT max(id) FROM audit_events")) or 0)


def audit_breakdown(app: Any, after_seq: int) -> dict[str, int]:
    from sqlalchemy import text

    with app.extensions["slussen.sessionmaker"]() as session:
        rows = session.execute(
            text(
                "SELECT action, object_type, count(*) FROM audit_events WHERE id > :s "
                "GROUP BY action, object_type ORDER BY 1, 2"
            ),
            {"s": after_seq},
        ).all()
    return {f"{action} {object_type}": int(count) for action, object_type, count in rows}


class AuditMismatch(Exception):
    """A probed page wrote another number of access-log rows than the patients it shows."""


_TBODY_RE = re.compile(r"<tbody>(.*?)</tbody>", re.S)
_TR_RE = re.compile(r"<tr[\s>](.*?)</tr>", re.S)


def patients_shown(name: str, page: str) -> int:
    """How many patients a page of class `name` shows, counted in its HTML: the worklist's table
    rows that link to a case, the flagged list's table rows, the one patient of a case page, none
    on the public calendar."""
    rows = [row for body in _TBODY_RE.findall(page) for row in _TR_RE.findall(body)]
    if name == "worklist":
        return sum('href="/arenden/' in row for row in rows)
    if name == "flagged list":
        return len(rows)
    if name == "case page":
        return 1
    if name == "calendar":
        return 0
    raise ValueError(f"no probe for {name!r}")


def probe(
    app: Any, base_url: str, path: str, cookie: str | None, needle: str, name: str
) -> tuple[int, str]:
    """GET `path` once and return (the access-log rows it wrote, the page): the rows every
    request of the class writes. Refuses (BenchError) an answer other than 200 with `needle`,
    and (AuditMismatch) rows written that differ from the patients the page shows."""
    before = chain_head(app)
    status, headers, body = http_get(base_url, path, cookie, timeout=30)
    written = chain_head(app) - before
    if status != 200 or needle.encode() not in body:
        raise BenchError(
            f"GET {path} answered {status} -> {headers.get('location', '')} without {needle!r}"
        )
    page = body.decode("utf-8", "replace")
    shown = patients_shown(name, page)
    if written != shown:
        raise AuditMismatch(
            f"GET {path} ({name}) shows {shown} patient(s) but wrote {written} access-log row(s)"
        )
    return written, page


def choose_print_unit(app: Any, coach_unit_id: int) -> tuple[int, str, int]:
    """(id, HSA-id, cases) of the unit with the most cases other than the coach's."""
    from sqlalchemy import func, select

    from slussen.accounts.models import Unit
    from slussen.cases.models import Case

    with app.extensions["slussen.sessionmaker"]() as session:
        row = session.execute(
            select(Unit.id, Unit.hsa_id, func.count(Case.id))
            .join(Case, Case.unit_id == Unit.id)
            .where(Unit.id != coach_unit_id)
            .group_by(Unit.id, Unit.hsa_id)
            .order_by(func.count(Case.id).desc(), Unit.id)
            .limit(1)
        ).first()
    if row is None:
        raise BenchError("no unit with cases besides the coach's: the print phase needs one")
    return int(row[0]), str(row[1]), int(row[2])


def top_up_queue(app: Any, unit_id: int, wanted: int) -> tuple[int, int, int]:
    """Queue letters (`letterqueue.queue_letter`, one transaction) for the unit's cases until
    the unit's next print holds `wanted` letters: those of its unfinished batch (a print stopped
    half way, which the next print finishes first) and those waiting in its queue (queued or
    held, patients without protected identity: what `slussen letters print` takes). Returns
    (letters in the unfinished batch, letters waiting before, letters queued now).

    The letters are of the kinds that need nothing of a case but its patient (no visit, plan,
    hand-over or coach), so none is held back; each goes to a (case, kind) that has none
    waiting, cycling over the cases, then the kinds. Only when the unit has too few cases for
    that do letters repeat, and the print cancels the older of two alike."""
    from sqlalchemy import func, select

    from slussen.cases.models import Case
    from slussen.letterqueue import QueuedLetter, queue_letter
    from slussen.letters.services import render_context, unfinished_batch
    from slussen.patients.models import Patient

    templates = render_context(
        app.extensions["slussen.content"], app.extensions["slussen.settings"]
    ).templates
    kinds = sorted(name for name, t in templates.items() if t.needs <= {"answers"})
    if not kinds:
        raise BenchError("no letter template needs only the patient: nothing to queue")
    with app.extensions["slussen.sessionmaker"]() as session:
        waiting = session.execute(
            select(QueuedLetter.case_id, QueuedLetter.letter)
            .join(Case, Case.id == QueuedLetter.case_id)
            .join(Patient, Patient.id == Case.patient_id)
            .where(
                QueuedLetter.unit_id == unit_id,
                QueuedLetter.status.in_(("queued", "held")),
                Patient.is_protected_identity.is_(False),
            )
        ).all()
        batch = unfinished_batch(session, unit_id, forwarding=False)
        in_batch = (
            int(
                session.scalar(
                    select(func.count())
                    .select_from(QueuedLetter)
                    .where(QueuedLetter.batch_id == batch.id)
                )
                or 0
            )
            if batch
            else 0
        )
        missing = wanted - in_batch - len(waiting)
        if missing <= 0:
            return in_batch, len(waiting), 0
        taken = {(case_id, letter) for case_id, letter in waiting}
        cases = session.execute(
            select(Case.id, Case.unit_id)
            .join(Patient, Patient.id == Case.patient_id)
            .where(
                Case.unit_id == unit_id,
                Patient.is_protected_identity.is_(False),
                Patient.erased_at.is_(None),
            )
            .order_by(Case.id)
        ).all()
        pairs = [(case, kind) for kind in kinds for case in cases if (case.id, kind) not in taken]
        pairs = pairs or [(case, kind) for kind in kinds for case in cases]
        if not pairs:
            raise BenchError(f"unit {unit_id} has no case whose patient can get a letter")
        for number in range(missing):
            case, kind = pairs[number % len(pairs)]
            queue_letter(session, case, kind, PRINT_EVENT)
        session.commit()
    return in_batch, len(waiting), missing


def print_progress(app: Any, unit_id: int) -> tuple[int, int]:
    """(newest letter batch id, letters printed) of the unit."""
    from sqlalchemy import func, select

    from slussen.letterqueue import QueuedLetter
    from slussen.letters.models import LetterBatch

    with app.extensions["slussen.sessionmaker"]() as session:
        batch = session.scalar(
            select(func.max(LetterBatch.id)).where(LetterBatch.unit_id == unit_id)
        )
        printed = session.scalar(
            select(func.count())
            .select_from(QueuedLetter)
            .where(QueuedLetter.unit_id == unit_id, QueuedLetter.status == "printed")
        )
    return int(batch or 0), int(printed or 0)


def print_audit(app: Any, unit_id: int, after_seq: int) -> dict[str, int]:
    """The access-log rows the print wrote since `after_seq`: the system actor's rows in the
    unit's chain (a self-referral to that unit is the public actor), by action and object."""
    from sqlalchemy import func, select

    from slussen.audit import SYSTEM, AuditEvent, chain_of

    with app.extensions["slussen.sessionmaker"]() as session:
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.object_type, func.count())
            .where(
                AuditEvent.id > after_seq,
                AuditEvent.chain == chain_of(unit_id),
                AuditEvent.actor_role == SYSTEM.role,
            )
            .group_by(AuditEvent.action, AuditEvent.object_type)
            .order_by(AuditEvent.action, AuditEvent.object_type)
        ).all()
    return {f"{action} {object_type}": int(count) for action, object_type, count in rows}


class PrintRun:
    """`slussen letters print --unit HSA --out PDF` in a subprocess (its own process group),
    as an operator runs it; stopped with SIGTERM (the print is resumable: the letters marked so
    far stay in an unfinished batch that the next print finishes), its PDF and `.part` file
    removed. Use as a context manager: the print is stopped on every exit."""

    def __init__(self, url: str, hsa_id: str) -> None:
        self.out = PRINT_DIR / "bench-load-print.pdf"
        self.log_path = DATA_DIR / "logs" / "print.log"
        self.argv = [str(SLUSSEN_BIN), "letters", "print", "--unit", hsa_id, "--out", str(self.out)]
        self.env = server_env(url)
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrintRun:
        PRINT_DIR.mkdir(parents=True, exist_ok=True)
        self.remove_files()
        self.process = start_logged(self.argv, self.env, self.log_path)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self.remove_files()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL to its group after 30 s; the exit code (None if never started)."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    def remove_files(self) -> None:
        self.out.unlink(missing_ok=True)
        for part in PRINT_DIR.glob("*.part"):
            part.unlink(missing_ok=True)

    def has_written(self) -> bool:
        """Whether the PDF being written (its `.part` file) has its first bytes on disk."""
        return any(part.stat().st_size > 0 for part in PRINT_DIR.glob("*.part"))

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for_print(
    app: Any, run: PrintRun, unit_id: int, before: tuple[int, int]
) -> tuple[float, str]:
    """(Seconds, sign) until the print has begun writing letters, after reading every patient of
    its queue: a new letter batch of the unit, more of its letters marked printed, or the first
    bytes of its PDF (a resumed batch gets no new row, and renders its earlier letters before it
    marks any). Refuses (BenchError) a print that exits first or has not begun within
    PRINT_BEGIN_TIMEOUT seconds."""
    started = time.monotonic()
    while True:
        batch, printed = print_progress(app, unit_id)
        sign = (
            "a new batch"
            if batch > before[0]
            else "letters marked printed"
            if printed > before[1]
            else "its PDF's first bytes"
            if run.has_written()
            else ""
        )
        if sign:
            return time.monotonic() - started, sign
        if not run.is_running():
            raise BenchError(
                f"the print exited with code {run.stop()} before it began:\n{run.log_tail()}"
            )
        if time.monotonic() - started > PRINT_BEGIN_TIMEOUT:
            raise BenchError(
                f"the print had not begun after {PRINT_BEGIN_TIMEOUT:.0f} s (log {run.log_path})"
            )
        time.sleep(0.5)


def verify(app: Any) -> dict[str, Any]:
    from slussen.audit import verify_chain
    from slussen.keystore import open_key_ring

    ring = open_key_ring(app.extensions["slussen.settings"])
    started = time.perf_counter()
    with app.extensions["slussen.sessionmaker"]() as session:
        result = verify_chain(session, ring)
    return {
        "ok": bool(result.ok),
        "checked": result.checked,
        "detail": f"bad seq {result.bad_seq}: {result.reason}" if not result.ok else "",
        "seconds": round(time.perf_counter() - started, 2),
    }


def measurement(
    label: str, paths: list[str], figures: dict[str, Any], seconds: float, c: int
) -> Measurement:
    return Measurement(
        label=label,
        paths=paths,
        requests=figures["requests"],
        errors=figures["errors"],
        seconds=seconds,
        rps=figures["rps"],
        p50_ms=figures["p50_ms"],
        p99_ms=figures["p99_ms"],
        concurrency=c,
        status_counts=figures["status_counts"],
    )


def print_phase(
    app: Any,
    url: str,
    unit: tuple[int, str, int],
    letters: int,
    load_worklist: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The worklist alone while `slussen letters print` prints `letters` letters of `unit`:
    top the unit's queue up, start the print, wait until it has begun, run `load_worklist()`,
    note whether the print was still running when the load ended, stop it (SIGTERM) and remove
    its files. Returns the load's result, the print's figures and its access-log rows."""
    unit_id, hsa_id, _cases = unit
    in_batch, waiting, added = top_up_queue(app, unit_id, letters)
    queue = in_batch + waiting + added
    print(
        f"Print: unit {unit_id}'s unfinished batch holds {in_batch} letters, {waiting} wait in "
        f"its queue, {added} queued -> {queue}"
    )
    before = print_progress(app, unit_id)
    head = chain_head(app)
    with PrintRun(url, hsa_id) as printing:
        began, sign = wait_for_print(app, printing, unit_id, before)
        print(f"  the print began after {began:.1f} s ({sign}); the worklist alone while it prints")
        load = load_worklist()
        overlapped = printing.is_running()
        exit_code = printing.stop()
        log_tail = printing.log_tail(3)
    after = print_progress(app, unit_id)
    rows = print_audit(app, unit_id, head)
    printed = after[1] - before[1]
    return {
        "unit": f"{unit_id} ({hsa_id})",
        "queue": queue,
        "in_unfinished_batch": in_batch,
        "waiting_before": waiting,
        "queued_by_bench": added,
        "began_after_s": round(began, 1),
        "began_sign": sign,
        "overlapped": overlapped,
        "print_exit_code": exit_code,
        "print_log_tail": log_tail,
        "printed": printed,
        "audit_rows": rows,
        "audit_rows_total": sum(rows.values()),
        # Each letter marked printed has its "print letter" row in the same transaction.
        "audit_ok": rows.get("print letter", 0) == printed,
        "load": load,
    }


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = args.database_url
    from bench.bench_cases import choose_subject, ensure_seeded
    from bench.seed_region import build_app

    print(f"Database: {safe_url(url)}; {args.cases} cases over {args.units} units")
    run_started = time.perf_counter()
    try:
        ensure_seeded(url, args.cases, args.units, force=False)
        app = build_app(url)
        check_schema(app)
        subject = choose_subject(app, args.case_ids)
        print(
            f"Coach {subject.coach} (unit {subject.unit_id}: {subject.unit_cases} cases, "
            f"{subject.worklist_cases} due within a week); {len(subject.case_ids)} case pages"
        )
        print_unit: tuple[int, str, int] | None = None
        if args.print_letters and "worklist" in args.classes:
            print_unit = choose_print_unit(app, subject.unit_id)
            print(
                f"Print phase: {args.print_letters} letters of unit {print_unit[0]} "
                f"({print_unit[1]}, {print_unit[2]} cases) while the worklist is measured"
            )
        elif args.print_letters:
            print("No print phase: it measures the worklist, which --classes leaves out")
        mixed_referrals = args.mixed * MIX["self-referral"] // sum(MIX.values()) + 1
        needed = args.rounds * args.referrals + mixed_referrals + 1
        referrals = fresh_referrals(app, needed, int(time.time()))
        print(f"{len(referrals)} unused test-series personnummer from n = {PNR_BASE}")
        flush_redis()

        expected_audit: Counter[str] = Counter()
        case_paths = [f"/arenden/{case_id}" for case_id in subject.case_ids]
        head_before = chain_head(app)
        with (
            bare_server(url, args.workers) as bare,
            slussen_proxied_server(url, args.workers) as srv,
        ):
            print(f"bare on {bare.base_url}, slussen on {srv.base_url} ({args.workers} workers)")
            coach_cookie = login_cookie(srv.base_url, subject.coach, BENCH_PASSWORD)
            staff_cookie = login_cookie(srv.base_url, STAFF, BENCH_PASSWORD)
            expected_audit["login"] += 2
            status, _headers, body = http_get(bare.base_url, "/", None, timeout=30)
            if status != 200 or b"Enheter" not in body:
                raise BenchError(f"the bare page answered {status} without 'Enheter'")
            # One probe per page class: the rows it writes are what each request of it writes.
            probes = [
                ("/aktiviteter", None, "<html", "calendar"),
                ("/arbetslista", coach_cookie, 'href="/arenden/', "worklist"),
                (case_paths[0], coach_cookie, "<html", "case page"),
                ("/mina-flaggningar", staff_cookie, "<html", "flagged list"),
            ]
            rows_per_request = dict(FIXED_AUDIT_ROWS)
            skip_units: list[str] = []
            for path, cookie, needle, name in probes:
                if name not in args.classes:
                    continue
                rows_per_request[name], shown_page = probe(
                    app, srv.base_url, path, cookie, needle, name
                )
                expected_audit[name] += rows_per_request[name]
                if name == "worklist" and "/arbetslista?page=2" not in shown_page:
                    # A first page that is not full would grow with self-referrals to the unit.
                    skip_units.append(str(subject.unit_id))
            print(
                "Access-log rows per request: "
                + ", ".join(f"{n} {rows_per_request[n]}" for n in ["bare", *args.classes])
                + (
                    f" (the worklist's first page is not full: self-referrals skip unit "
                    f"{subject.unit_id})"
                    if skip_units
                    else ""
                )
            )

            classes: dict[str, dict[str, Any]] = {
                "bare": {"server": "bare", "kind": "get", "paths": ["/"], "cookie": None},
                "calendar": {
                    "server": "app",
                    "kind": "get",
                    "paths": ["/aktiviteter"],
                    "cookie": None,
                },
                "worklist": {
                    "server": "app",
                    "kind": "get",
                    "paths": ["/arbetslista"],
                    "cookie": coach_cookie,
                },
                "case page": {
                    "server": "app",
                    "kind": "get",
                    "paths": case_paths,
                    "cookie": coach_cookie,
                },
                "flagged list": {
                    "server": "app",
                    "kind": "get",
                    "paths": ["/mina-flaggningar"],
                    "cookie": staff_cookie,
                },
                "self-referral": {
                    "server": "app",
                    "kind": "referral",
                    "paths": ["/anmalan"],
                    "skip_units": skip_units,
                },
            }
            servers = {"bare": bare.base_url, "app": srv.base_url}
            cursor = [0]

            def run(schedule: list[str], operations: int) -> dict[str, Any]:
                chunk = referrals[cursor[0] :]
                result = drive(
                    {
                        "servers": servers,
                        "classes": {n: classes[n] for n in set(schedule)},
                        "schedule": schedule,
                        "referrals": chunk,
                        "operations": operations,
                        "concurrency": args.concurrency,
                        "time_cap": args.time_cap,
                    }
                )
                cursor[0] += result["referrals_used"]
                for name, figures in result["classes"].items():
                    expected_audit[name] += rows_per_request[name] * figures["ok"]
                return result

            def show(label: str, result: dict[str, Any]) -> None:
                for name, f in sorted(result["classes"].items()):
                    print(
                        f"  {label:<6} {name:<14} {f['requests']:6d} ops {f['rps']:8.1f}/s  "
                        f"p50 {f['p50_ms']:7.1f} ms  p99 {f['p99_ms']:7.1f} ms  "
                        f"errors {f['errors']}"
                        + ("  (time cap hit)" if result["timed_out"] else "")
                    )
                if result["samples"]:
                    print(f"    errors e.g. {result['samples'][:3]}")

            phase_classes = list(args.classes)
            bare_runs: list[Measurement] = []
            page_runs: dict[str, list[Measurement]] = {n: [] for n in phase_classes}
            phase_results: list[dict[str, Any]] = []
            post_figures: list[dict[str, Any]] = []
            for number in range(1, args.rounds + 1):
                print(f"Round {number}/{args.rounds}")
                for name in phase_classes:
                    base = run(["bare"], args.requests)
                    show("phase", base)
                    bare_runs.append(
                        measurement(
                            "bare",
                            ["/"],
                            base["classes"]["bare"],
                            base["seconds"],
                            args.concurrency,
                        )
                    )
                    ops = args.referrals if name == "self-referral" else args.requests
                    page = run([name], ops)
                    show("phase", page)
                    paths = (
                        [f"/arenden/<id> ({len(case_paths)} cases)"]
                        if name == "case page"
                        else ["GET+POST /anmalan"]
                        if name == "self-referral"
                        else classes[name]["paths"]
                    )
                    page_runs[name].append(
                        measurement(
                            name, paths, page["classes"][name], page["seconds"], args.concurrency
                        )
                    )
                    if name == "self-referral":
                        post_figures.append(page["referral_posts"])
                    phase_results += [base, page]

            during_print: dict[str, Any] | None = None
            if print_unit is not None:
                during_print = print_phase(
                    app,
                    url,
                    print_unit,
                    args.print_letters,
                    lambda: run(["worklist"], args.requests),
                )
                show("print", during_print["load"])

            mixed: dict[str, Any] | None = None
            if args.mixed:
                schedule = [
                    n for n, k in MIX.items() if n == "bare" or n in phase_classes for _ in range(k)
                ]
                random.Random(9).shuffle(schedule)
                print(f"Mixed: {args.mixed} operations, schedule per 20: {MIX}")
                mixed = run(schedule, args.mixed)
                show("mixed", mixed)
            slussen_log = srv.log_tail()
        head_after = chain_head(app)
        chain = verify(app)
        breakdown = audit_breakdown(app, head_before)
        app.extensions["slussen.engine"].dispose()
    except BenchError as exc:
        print(f"bench/bench_load.py: cannot run the benchmark: {exc}", file=sys.stderr)
        return 2
    except AuditMismatch as exc:
        print(f"bench/bench_load.py: {exc}", file=sys.stderr)
        return 1

    baseline = max(bare_runs, key=lambda m: m.rps)
    rows = [Row(n, max(page_runs[n], key=lambda m: m.rps), baseline) for n in phase_classes]
    all_phase_errors = sum(m.errors for m in bare_runs) + sum(
        m.errors for runs in page_runs.values() for m in runs
    )
    # The print's own rows (system actor, its unit's chain) are left out of the comparison with
    # the requests' rows; they are checked against the letters it marked printed instead.
    print_rows = during_print["audit_rows_total"] if during_print else 0
    written = head_after - head_before - print_rows
    expected_total = sum(expected_audit.values())
    audit_ok = written == expected_total and (during_print is None or during_print["audit_ok"])
    print_target_ok = True
    print_section = ""
    if during_print:
        figures = during_print["load"]["classes"]["worklist"]
        rows.append(
            Row(
                "worklist during print",
                measurement(
                    "worklist during print",
                    ["/arbetslista"],
                    figures,
                    during_print["load"]["seconds"],
                    args.concurrency,
                ),
                baseline,
            )
        )
        all_phase_errors += figures["errors"]
        # A load that outlasted the print did not measure the worklist during it: not a pass.
        print_target_ok = (
            figures["p99_ms"] < PRINT_P99_TARGET_MS
            and figures["requests"] > 0
            and during_print["overlapped"]
        )
        overlap = (
            "the print was still running when the worklist load ended"
            if during_print["overlapped"]
            else "the print FINISHED BEFORE the worklist load ended: the measurement did not "
            "overlap the print fully"
        )
        print_section = (
            f"worklist p99 during a {during_print['queue']}-letter print < "
            f"{PRINT_P99_TARGET_MS:.0f} ms: {'PASS' if print_target_ok else 'FAIL'} "
            f"(p99 {figures['p99_ms']:.1f} ms, p50 {figures['p50_ms']:.1f} ms, "
            f"{figures['rps']:.1f} req/s"
            f"{'' if during_print['overlapped'] else '; NOT OVERLAPPED: the print ended first'})"
            "\n\n"
            f"Print of unit {during_print['unit']}: {during_print['in_unfinished_batch']} "
            f"letters in the batch an earlier run left unfinished, "
            f"{during_print['waiting_before']} waiting in the queue, "
            f"{during_print['queued_by_bench']} queued by the benchmark; the print began writing "
            f"letters after {during_print['began_after_s']} s ({during_print['began_sign']}); "
            f"{overlap}; "
            f"{during_print['printed']} letters marked printed before it was stopped (exit code "
            f"{during_print['print_exit_code']}); its access-log rows {during_print['audit_rows']} "
            f"(excluded from the requests' rows below; 'print letter' rows "
            f"{'=' if during_print['audit_ok'] else '≠'} letters marked printed).\n"
        )
    mixed_errors = sum(f["errors"] for f in mixed["classes"].values()) if mixed else 0

    mixed_table = ""
    if mixed:
        bare_mix = mixed["classes"]["bare"]
        lines = [
            "| class | share | ops | ops/s | p50 ms | p99 ms | errors | p50 ratio | p99 ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ["bare", *phase_classes]:
            f = mixed["classes"][name]
            p50r = f["p50_ms"] / bare_mix["p50_ms"] if bare_mix["p50_ms"] else float("nan")
            p99r = f["p99_ms"] / bare_mix["p99_ms"] if bare_mix["p99_ms"] else float("nan")
            lines.append(
                f"| {name}{' (baseline)' if name == 'bare' else ''} | "
                f"{100 * MIX[name] // sum(MIX.values())} % | {f['requests']} | {f['rps']:.1f} | "
                f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['errors']} | {p50r:.2f} | {p99r:.2f} |"
            )
        total_ops = sum(f["requests"] for f in mixed["classes"].values())
        lines.append(
            f"\nMixed total: {total_ops} operations in {mixed['seconds']:.1f} s = "
            f"{total_ops / mixed['seconds']:.1f} ops/s ({args.concurrency} client threads; "
            f"{mixed['resent_on_stale_connection']} GETs resent after gunicorn closed an idle "
            "keep-alive connection); "
            f"self-referral POST alone p50 {mixed['referral_posts']['p50_ms']:.1f} ms, "
            f"p99 {mixed['referral_posts']['p99_ms']:.1f} ms."
        )
        mixed_table = "\n".join(lines) + "\n"
    audit_lines = [
        "| audited | expected rows | |",
        "|---|---:|---|",
        *[f"| {name} | {count} | |" for name, count in sorted(expected_audit.items()) if count],
        f"| **total expected** | **{expected_total}** | |",
        f"| **written (head seq {head_before} → {head_after}"
        + (f", less the print's {print_rows}" if during_print else "")
        + f")** | **{written}** | {'OK' if written == expected_total else 'MISMATCH'} |",
    ]
    audit_table = (
        "\n".join(audit_lines)
        + f"\n\nRows written by action and object: {breakdown}\n\n"
        + f"verify_chain: {'ok' if chain['ok'] else 'FAILED'} ({chain['checked']} rows, "
        f"{chain['seconds']} s){'' if chain['ok'] else ': ' + chain['detail']}\n"
    )
    _json, md_path = report(
        rows,
        "load",
        settings={
            "database": safe_url(url),
            "cases": args.cases,
            "units": args.units,
            "coach": f"{subject.coach} (unit {subject.unit_id}, {subject.worklist_cases} "
            f"worklist cases of {subject.unit_cases})",
            "case pages rotated": len(case_paths),
            "requests per GET phase": args.requests,
            "self-referrals per phase": args.referrals,
            "mixed operations": args.mixed,
            "print letters": args.print_letters if during_print else "no print phase",
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "gunicorn": f"{args.workers} workers, gthread, 4 threads, SLUSSEN_PROXY_COUNT=1, "
            f"rate limits in {REDIS_URI}",
            "wall time (s)": round(time.perf_counter() - run_started, 1),
        },
        extra={
            "phases": phase_results,
            "self_referral_posts_per_round": post_figures,
            "mixed": mixed,
            "during_print": during_print,
            "audit": {
                "head_before": head_before,
                "head_after": head_after,
                "written": written,
                "print_rows_excluded": print_rows,
                "rows_per_request": rows_per_request,
                "expected": dict(expected_audit),
                "expected_total": expected_total,
                "breakdown": breakdown,
                "ok": audit_ok,
            },
            "verify_chain": chain,
        },
    )
    md_path.write_text(
        md_path.read_text(encoding="utf-8")
        + ("\nWorklist during print:\n\n" + print_section if print_section else "")
        + (
            "\nMixed run (ratios to the bare requests inside the mix):\n\n" + mixed_table
            if mixed
            else ""
        )
        + "\nAudit:\n\n"
        + audit_table
    )
    if post_figures:
        best_post = min(post_figures, key=lambda p: p["p50_ms"])
        print(
            f"Self-referral POST alone (best phase): p50 {best_post['p50_ms']:.1f} ms, "
            f"p99 {best_post['p99_ms']:.1f} ms"
        )
    if print_section:
        print(print_section)
    if mixed_table:
        print("Mixed run:\n" + mixed_table)
    print(audit_table)
    errors = all_phase_errors + mixed_errors
    if errors:
        print(f"{errors} request(s) failed; slussen log tail:\n{slussen_log}", file=sys.stderr)
    print(
        f"errors {errors}; audit {'OK' if audit_ok else 'MISMATCH'}; chain "
        f"{'ok' if chain['ok'] else 'FAILED'}"
        + (
            f"; worklist during print {'PASS' if print_target_ok else 'FAIL'}"
            if during_print
            else ""
        )
        + f"; wall {time.perf_counter() - run_started:.0f} s"
    )
    return 0 if not errors and audit_ok and chain["ok"] and print_target_ok else 1


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
