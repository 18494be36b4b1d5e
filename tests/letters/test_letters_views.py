"""Letters through the pages and the command line: preview, the letters page, printing a batch
and downloading it again, units kept apart, `slussen letters print` and `test-print`."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pypdf
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accounts.models import Unit
from slussen.audit import Actor, AuditEvent
from slussen.cases.workflow import Workflow
from slussen.keystore import current_key_ring
from slussen.letterqueue import QueuedLetter
from slussen.letters.models import LetterBatch
from slussen.patients.services import SHOWN_IN
from tests.builders import make_case


def audit_count(session: Session, action: str) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )
        or 0
    )


def text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_a_coach_previews_a_queued_letter_and_the_read_is_logged(
    client: FlaskClient,
    login: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    user = login("coach")
    case = make_case(session, ring, workflow, Actor.of(user), unit.id, "mapping_booked")
    letter = session.scalars(
        select(QueuedLetter).where(
            QueuedLetter.case_id == case.id, QueuedLetter.letter == "appointment"
        )
    ).one()
    page = client.get(f"/arenden/{case.id}").get_data(as_text=True)
    assert f"/brev/{letter.id}.pdf" in page
    reads = audit_count(session, "read")
    response = client.get(f"/brev/{letter.id}.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    body = text(response.data)
    assert "Din tid för ett samtal" in body and case.reference in body
    assert audit_count(session, "read") == reads + 1
    assert letter.status == "queued"  # a preview prints nothing


def test_letters_of_another_unit_are_404(
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
) -> None:
    other = Unit(
        name="Annan vårdcentral",
        hsa_id="SE2321000016-OTH2",
        street="Annangatan 1",
        postcode="111 11",
        town="Stockholm",
        phone="08-00 00 00",
    )
    session.add(other)
    session.flush()
    stranger = make_user("coach", "annan", units=[other])
    case = make_case(session, ring, workflow, Actor.of(stranger), other.id, "invited")
    letter = session.scalars(select(QueuedLetter).where(QueuedLetter.case_id == case.id)).one()
    login("coordinator")
    assert client.get(f"/brev/{letter.id}.pdf").status_code == 404
    assert client.get("/brev/999999.pdf").status_code == 404
    assert client.get("/brev/99999999999999999999.pdf").status_code == 404
    assert client.get("/brev/omgang/99999999999999999999.pdf").status_code == 404
    page = client.get("/brev").get_data(as_text=True)
    assert case.reference not in page
    client.post("/brev/skriv-ut", data={"letter": str(letter.id)})
    assert letter.status == "queued"


def test_staff_cannot_open_the_letters_page(client: FlaskClient, login: Any) -> None:
    login("staff")
    assert client.get("/brev").status_code == 403
    assert client.post("/brev/skriv-ut").status_code == 403


def test_the_coordinator_prints_a_batch_and_downloads_it_twice(
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    coach = Actor.of(make_user("coach"))
    cases = [make_case(session, ring, workflow, coach, unit.id, "invited") for _ in range(3)]
    held = make_case(session, ring, workflow, coach, unit.id, "invited", street="")
    protected = make_case(
        session, ring, workflow, coach, unit.id, "invited", is_protected_identity=True
    )
    login("coordinator")
    page = client.get("/brev").get_data(as_text=True)
    for case in [*cases, held]:
        assert case.reference in page
    assert "Brev att vidarebefordra" in page and protected.reference in page
    assert "Testperson" not in page  # no names on the queue page
    prints = audit_count(session, "print")
    response = client.post("/brev/skriv-ut", data={"enhet": str(unit.id)})
    assert response.status_code == 302
    batch = session.scalars(select(LetterBatch)).one()
    assert batch.letter_count == 3 and not batch.is_forwarding
    assert audit_count(session, "print") == prints + 3
    page = client.get("/brev").get_data(as_text=True)
    assert "Omgång 1 är klar: 3 brev" in page
    assert "Adress saknas." in page  # the held letter, with its reason
    first = client.get(f"/brev/omgang/{batch.id}.pdf")
    second = client.get(f"/brev/omgang/{batch.id}.pdf")
    assert first.status_code == 200 and first.data == second.data
    assert "X-Slussen-Batch-Changed" not in first.headers
    assert re.search(r"Kallelse\s+3", text(first.data))
    assert session.scalar(select(func.count()).select_from(LetterBatch)) == 1


def test_letters_print_from_the_command_line(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from slussen.app import create_app
    from slussen.cli import cli
    from slussen.db import session_scope

    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    app = create_app()
    with app.app_context(), session_scope(app) as session:
        unit = Unit(
            name="Vårdcentralen Kommando",
            hsa_id="SE2321000016-CLI1",
            street="Kommandogatan 1",
            postcode="722 15",
            town="Västerås",
            phone="021-00 00 00",
        )
        session.add(unit)
        session.flush()
        from slussen.accounts.services import create_user
        from tests.conftest import TEST_PASSWORD

        user = create_user(
            session,
            app.extensions["slussen.settings"],
            username="coach",
            display_name="Coach",
            role="coach",
            password=TEST_PASSWORD,
            unit_ids=[unit.id],
        )
        session.flush()
        workflow = app.extensions["slussen.content"].compiled["workflow"]
        for _ in range(2):
            make_case(session, current_key_ring(), workflow, Actor.of(user), unit.id, "invited")
    out = tmp_path / "omgang.pdf"
    result = runner.invoke(
        cli, ["letters", "print", "--unit", "SE2321000016-CLI1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Batch 1: 2 letters" in result.output
    assert len(pypdf.PdfReader(out).pages) >= 5
    assert out.stat().st_mode & 0o777 == 0o600
    again = tmp_path / "igen.pdf"
    reprint = runner.invoke(cli, ["letters", "print", "--batch", "1", "--out", str(again)])
    assert reprint.exit_code == 0, reprint.output
    assert again.read_bytes() == out.read_bytes()
    nothing = runner.invoke(cli, ["letters", "print", "--unit", "SE2321000016-CLI1"])
    assert "no letters to print" in nothing.output
    unknown = runner.invoke(cli, ["letters", "print", "--unit", "SE0000000000-NONE"])
    assert unknown.exit_code == 1 and "Ange enhetens HSA-id" in unknown.output
    sample = tmp_path / "test.pdf"
    test_print = runner.invoke(cli, ["letters", "test-print", "--out", str(sample)])
    assert test_print.exit_code == 0 and "100 %" in test_print.output
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
    assert "722 15 Västerås" in text(sample.read_bytes())


def test_the_letter_queue_records_each_case_it_shows_once(
    client: FlaskClient,
    login: Any,
    make_user: Any,
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    unit: Any,
) -> None:
    coach = Actor.of(make_user("coach"))
    cases = [make_case(session, ring, workflow, coach, unit.id, "invited") for _ in range(2)]
    cases.append(
        make_case(session, ring, workflow, coach, unit.id, "invited", is_protected_identity=True)
    )
    login("coordinator")
    assert client.get("/brev").status_code == 200
    rows = session.execute(
        select(AuditEvent.object_id, AuditEvent.patient_pseudonym).where(
            AuditEvent.purpose == SHOWN_IN["letters"]
        )
    ).all()
    assert sorted(rows) == sorted(
        (str(c.id), audit.patient_pseudonym(ring, c.patient_id)) for c in cases
    )
