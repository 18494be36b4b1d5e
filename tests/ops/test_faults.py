"""Faults: a process killed in the middle of a transition or a key rotation, and the database going
away for a while. Nothing half-done may remain, and the app must recover by itself."""

from __future__ import annotations

import contextlib
import json
import os
import select as select_module
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from slussen.accounts.models import User
from slussen.audit import SYSTEM, Actor, AuditChainHead
from slussen.backup import table_counts
from slussen.cases.engine import current_workflow, fire
from slussen.cases.models import Case
from slussen.keystore import Keystore, current_key_ring, key_usage
from slussen.patients.models import Patient
from slussen.patients.services import read_patient
from tests.builders import make_case
from tests.conftest import BACKENDS, TEST_PASSWORD
from tests.ops.conftest import PYTHON, Site, make_site

#: A worker that fires an event, says so once the changes are flushed, and hangs before commit.
FIRE_AND_HANG = """
import sys, time
from sqlalchemy import select
from slussen.accounts.models import User
from slussen.app import create_app
from slussen.audit import Actor
from slussen.cases.engine import current_workflow, fire
from slussen.cases.models import Case
from slussen.keystore import keystore

app = create_app()
with app.app_context():
    store = keystore()
    coach = store.session.scalar(select(User).where(User.username == "coach"))
    case = store.session.get(Case, int(sys.argv[1]))
    fire(store, case, "invite", Actor.of(coach), workflow=current_workflow(), note="Ringde")
    store.session.flush()
    print("flushed", flush=True)
    time.sleep(120)
"""

#: `slussen keys rotate --batch-size 1`, slowed so it can be killed while rewrapping key STOP.
ROTATE_AND_HANG = """
import sys, time
from slussen import vault
from slussen.cli import main

stop = int(sys.argv[1])
real = vault.rewrap_data_key
done = 0

def rewrap(*args, **kwargs):
    global done
    done += 1
    result = real(*args, **kwargs)
    print(f"rewrapped {done}", file=sys.stderr, flush=True)
    if done == stop:
        time.sleep(120)
    return result

vault.rewrap_data_key = rewrap
sys.argv = ["slussen", "keys", "rotate", "--batch-size", "1"]
main()
"""


def start(site: Site, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-c", script, *args],
        env=site.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen[str], stream: Any, wanted: str, timeout: float) -> None:
    """Read `stream` until a line equals `wanted`; fail (with the process's output) otherwise."""
    deadline = time.monotonic() + timeout
    seen = ""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _w, _x = select_module.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 4096).decode()
        if not chunk:
            break
        seen += chunk
        if wanted in seen.splitlines():
            return
    proc.kill()
    rest = proc.communicate(timeout=10)
    pytest.fail(f"never saw {wanted!r}; output: {seen} {rest}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def snapshot(app: Flask, case_id: int) -> dict[str, Any]:
    factory = app.extensions["slussen.sessionmaker"]
    with factory() as session:
        case = session.get(Case, case_id)
        heads = session.scalars(select(AuditChainHead).order_by(AuditChainHead.chain))
        assert case is not None
        found = {
            "case": (case.state, case.version, case.state_entered_at, case.next_due_on),
            "heads": [(head.chain, head.seq, head.mac) for head in heads],
        }
    return {**found, "tables": table_counts(app.extensions["slussen.engine"])}


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_killed_mid_transition_leaves_nothing_half_done(
    backend: str, tmp_path: Path
) -> None:
    with make_site(tmp_path, backend, "kill") as site:
        site.seed(cases=0)
        app = site.app()
        with app.app_context():
            workflow = current_workflow()
            with app.extensions["slussen.sessionmaker"]() as session:
                coach = session.scalar(select(User).where(User.username == "coach"))
                actor = Actor.of(coach)
                case = make_case(session, current_key_ring(), workflow, actor, min(actor.unit_ids))
                session.commit()
                case_id = case.id
        before = snapshot(app, case_id)
        assert before["case"][0] == "referred"

        worker = start(site, FIRE_AND_HANG, str(case_id))
        assert worker.stdout is not None
        wait_for_line(worker, worker.stdout, "flushed", timeout=60)
        kill(worker)

        assert snapshot(app, case_id) == before
        assert "Åtkomstloggen är hel" in site.cli("audit", "verify").output
        # Nothing is left locked: the next worker fires the same event normally.
        with app.app_context(), app.extensions["slussen.sessionmaker"]() as session:
            store = Keystore(session, current_key_ring())
            case = session.get(Case, case_id)
            assert case is not None
            fire(store, case, "invite", actor, workflow=workflow, note="Ringde igen")
            session.commit()
        after = snapshot(app, case_id)
        assert after["case"][:2] == ("invited", before["case"][1] + 1)
        assert after["tables"]["case_events"] == before["tables"]["case_events"] + 1
        assert after["tables"]["letter_queue"] == before["tables"]["letter_queue"] + 1
        assert "Åtkomstloggen är hel" in site.cli("audit", "verify").output
        app.extensions["slussen.engine"].dispose()


def read_everyone(site: Site) -> dict[int, tuple[str, str]]:
    app = site.app()
    with app.app_context(), app.extensions["slussen.sessionmaker"]() as session:
        store = Keystore(session, current_key_ring())
        out = {}
        for patient in session.scalars(select(Patient).order_by(Patient.id)):
            identity = read_patient(store, SYSTEM, patient, purpose="fault test")
            out[patient.id] = (identity.identifier.value, identity.name)
        session.rollback()
    app.extensions["slussen.engine"].dispose()
    return out


def usage(site: Site) -> dict[str, int]:
    app = site.app()
    with app.extensions["slussen.sessionmaker"]() as session:
        result = key_usage(session)
    app.extensions["slussen.engine"].dispose()
    return result


def test_key_rotation_killed_half_way_loses_no_patient(tmp_path: Path) -> None:
    with make_site(tmp_path, "sqlite", "rotate") as site:
        site.seed(cases=0)
        before = read_everyone(site)
        assert len(before) >= 10
        total = len(before) + 1  # every patient's data key and the key-ring canary's
        assert usage(site) == {"m1": total}

        rotation = start(site, ROTATE_AND_HANG, "5")
        assert rotation.stderr is not None
        wait_for_line(rotation, rotation.stderr, "rewrapped 5", timeout=60)
        kill(rotation)

        # Four batches were committed; the fifth died with the process.
        assert usage(site) == {"m1": total - 4, "m2": 4}
        assert read_everyone(site) == before
        rerun = site.cli("keys", "rotate")
        assert (
            f"Resumed an interrupted rotation: active key m2, {total - 4} data keys rewrapped, "
            "retired: m1." in rerun.output
        )
        assert usage(site) == {"m2": total}
        assert read_everyone(site) == before
        assert "Åtkomstloggen är hel" in site.cli("audit", "verify").output


# --- the database goes away -----------------------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 that can be cut (listener and every connection closed) and
    restored on the same port: the database, as the app sees it, goes away and comes back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._accepting: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop = threading.Event()
        self._accepting = threading.Thread(target=self._accept, args=(listener, self._stop))
        self._accepting.daemon = True
        self._accepting.start()

    def cut(self) -> None:
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Flask, Proxy]]:
    from sqlalchemy.engine import make_url

    from slussen.app import create_app

    with make_site(tmp_path, "postgres", "away") as site:
        site.seed(cases=3)
        url = make_url(site.database_url)
        proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with site.active():
            app = create_app({"database_url": through, "csrf_enabled": False})
        try:
            yield app, proxy
        finally:
            proxy.cut()
            app.extensions["slussen.engine"].dispose()


@pytest.mark.postgres
def test_database_away_gives_try_again_page_and_recovers(proxied: tuple[Flask, Proxy]) -> None:
    app, proxy = proxied
    client = app.test_client()
    login = client.post("/login", data={"username": "koordinator", "password": TEST_PASSWORD})
    assert login.status_code == 302
    assert client.get("/arbetslista").status_code == 200
    health = client.get("/healthz")
    assert (health.status_code, health.get_json()) == (200, {"status": "ok"})

    proxy.cut()
    page = client.get("/arbetslista")
    body = page.get_data(as_text=True)
    assert page.status_code == 503, body[:500]
    assert "Slussen når inte sin databas just nu" in body
    assert "Traceback" not in body and "psycopg" not in body
    anonymous = app.test_client()
    refused = anonymous.post("/login", data={"username": "coach", "password": TEST_PASSWORD})
    assert refused.status_code == 503
    health = anonymous.get("/healthz")
    assert health.status_code == 503
    assert json.loads(health.get_data()) == {"status": "unavailable"}

    proxy.restore()
    again = client.get("/arbetslista")  # the same session, no restart
    assert again.status_code == 200
    assert anonymous.get("/healthz").get_json() == {"status": "ok"}


#: `slussen letters print`, stopped after the batch PDF is rendered and its letters' slices are
#: committed, but before the batch's fingerprint is: the worst moment to die.
PRINT_AND_HANG = """
import sys, time
from slussen.cli import main
from slussen.letters import services

real = services.print_batch

def print_batch(*args, **kwargs):
    result = real(*args, **kwargs)
    print("rendered", flush=True)
    time.sleep(120)
    return result

services.print_batch = print_batch
sys.argv = ["slussen", "letters", "print", "--unit", sys.argv[1], "--out", sys.argv[2]]
main()
"""


def test_letter_batch_killed_before_its_end_is_finished_by_the_next_print(tmp_path: Path) -> None:
    """A print killed before it ends leaves its committed letters in an unfinished batch and no
    PDF; the next print finishes that batch: every letter marked printed is in its PDF, and
    none is printed or audited as printed twice."""
    import io

    import pypdf
    from sqlalchemy import select

    from slussen.accounts.models import Unit
    from slussen.audit import AuditEvent
    from slussen.cases.models import Case
    from slussen.letterqueue import QueuedLetter
    from slussen.letters.models import LetterBatch

    with make_site(tmp_path, "sqlite", "letters") as site:
        site.seed(cases=40)
        app = site.app()
        factory = app.extensions["slussen.sessionmaker"]
        with factory() as session:
            unit = session.scalars(select(Unit).order_by(Unit.id)).first()
            assert unit is not None
            queued = set(session.scalars(
                select(QueuedLetter.id).where(QueuedLetter.unit_id == unit.id,
                                              QueuedLetter.status == "queued")
            ))  # fmt: skip
            hsa_id = unit.hsa_id
        assert queued, "the demo queues letters"
        pdf = tmp_path / "omgang.pdf"

        printing = start(site, PRINT_AND_HANG, hsa_id, str(pdf))
        assert printing.stdout is not None
        wait_for_line(printing, printing.stdout, "rendered", timeout=120)
        kill(printing)
        with factory() as session:
            batches = session.scalars(select(LetterBatch)).all()
            assert [b.sha256 for b in batches] == [""], "one unfinished batch"
        assert not pdf.exists()
        left = list(tmp_path.glob(".omgang.pdf.*.part"))
        assert len(left) == 1, "a killed print cannot remove its part file"

        site.cli("letters", "print", "--unit", hsa_id, "--out", str(pdf))
        assert not left[0].exists(), "the next print removes it"
        assert pdf.stat().st_mode & 0o777 == 0o600
        text = "\n".join(
            p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.read_bytes())).pages
        )
        with factory() as session:
            printed = session.execute(
                select(QueuedLetter.id, Case.reference)
                .join(Case, Case.id == QueuedLetter.case_id)
                .where(QueuedLetter.id.in_(queued), QueuedLetter.status == "printed")
            ).all()
        assert printed, "the second print printed the queued letters"
        with factory() as session:
            batches = session.scalars(select(LetterBatch)).all()
            assert len(batches) == 1 and batches[0].sha256, "the batch was finished"
            audited = session.scalars(
                select(AuditEvent.object_id).where(AuditEvent.action == "print")
            ).all()
        assert sorted(audited) == sorted(str(letter_id) for letter_id, _r in printed)
        for _letter_id, reference in printed:
            assert reference in text, f"{reference} marked printed but not in the PDF"
        app.extensions["slussen.engine"].dispose()
