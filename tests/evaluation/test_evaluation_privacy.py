"""No identifying value reaches an evaluator: the demo patients, given cases whose free text names
them, are searched for in the evaluator's page, the CSV and the PDF (web and command line)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import select

from slussen.accounts.models import Unit
from slussen.accounts.services import create_user
from slussen.app import create_app
from slussen.audit import SYSTEM, Actor
from slussen.cases.engine import fire, open_case
from slussen.cli import cli
from slussen.db import session_scope
from slussen.demo import patients as patient_demo
from slussen.demo.patients import DEMO_PATIENTS
from slussen.keystore import Keystore, current_key_ring
from slussen.patients.models import Patient
from tests.builders import key_in_first_form
from tests.conftest import TEST_PASSWORD
from tests.evaluation_support import add_score


def _needles() -> list[str]:
    needles: list[str] = []
    for birth, serial, name, street, postcode, _town, phone, _lang, _prot in DEMO_PATIENTS:
        pnr = patient_demo.test_personnummer(birth, serial)
        needles += [
            pnr,
            pnr[2:],
            f"{pnr[2:8]}-{pnr[8:]}",
            f"{pnr[:8]}-{pnr[8:]}",
            f"{pnr[2:8]}+{pnr[8:]}",
            name,
            phone,
        ]
        needles += [part for part in name.split() if len(part) > 3]
        if street:
            needles += [street, f"{street}, {postcode}"]
    return needles


def _give_every_demo_patient_a_case(app: Any) -> list[str]:
    """A case per demo patient, moved by the engine with notes that name the patient, and UCLA-3
    scores at both occasions. Returns the free texts written."""
    texts = []
    with app.app_context(), session_scope(app) as session:
        ring = current_key_ring()
        store = Keystore(session, ring)
        units = list(session.scalars(select(Unit.id)))
        coach = Actor.of(
            create_user(
                session,
                app.extensions["slussen.settings"],
                username="coach-alla",
                display_name="Coach Alla Enheter",
                role="coach",
                password=TEST_PASSWORD,
                unit_ids=units,
            )
        )
        workflow = app.extensions["slussen.content"].compiled["workflow"]
        patients = session.execute(select(Patient.id, Patient.registered_unit_id)).all()
        for index, ((patient_id, unit_id), demo) in enumerate(
            zip(patients, DEMO_PATIENTS, strict=True)
        ):
            name, street, phone = demo[2], demo[3] or "Hemlig väg 1", demo[6]
            reason = f"{name} på {street} vill träffa fler, ring {phone}"
            case = open_case(
                store,
                SYSTEM,
                workflow=workflow,
                patient_id=patient_id,
                unit_id=unit_id,
                channel="staff_flag",
                is_consent_to_contact=True,
                reason=reason,
            )
            fire(store, case, "invite", coach, workflow=workflow, note=f"Kallelse till {name}")
            key_in_first_form(store, coach, case, workflow, "baseline")
            fire(store, case, "register_baseline", coach, workflow=workflow, note=f"Svar {phone}")
            add_score(store, case.id, "ucla3", "total", "baseline", 4 + index % 5)
            add_score(store, case.id, "ucla3", "total", "six_month", 3 + index % 4)
            texts += [reason, f"Kallelse till {name}", f"Svar {phone}"]
    return texts


def _assert_clean(output: str | bytes, needles: list[str], what: str) -> None:
    raw = output.encode() if isinstance(output, str) else output
    for needle in needles:
        for encoded in (
            needle.encode(),
            needle.encode("utf-16-le"),
            base64.b64encode(needle.encode()),
        ):
            assert encoded not in raw, f"{needle!r} found in {what}"
    if isinstance(output, str):
        import html

        text = html.unescape(output)
        for needle in needles:
            assert needle not in text, f"{needle!r} found in {what}"


def test_no_identifying_value_in_any_evaluator_output(cli_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    assert runner.invoke(cli, ["demo", "--password", TEST_PASSWORD]).exit_code == 0
    app = create_app({"csrf_enabled": False})
    texts = _give_every_demo_patient_a_case(app)
    needles = _needles() + texts
    assert len(needles) > 80

    client = app.test_client()
    login = client.post("/login", data={"username": "utvarderare", "password": TEST_PASSWORD})
    assert login.status_code == 302
    page = client.get("/utvardering")
    assert page.status_code == 200
    html_text = page.get_data(as_text=True)
    assert "Ensamhet (UCLA-3)" in html_text and "Vårdcentralen Solgläntan" in html_text
    _assert_clean(html_text, needles, "the evaluation page")
    web_csv = client.get("/utvardering/data.csv").get_data(as_text=True)
    assert len(web_csv.splitlines()) > len(DEMO_PATIENTS)
    _assert_clean(web_csv, needles, "the CSV download")
    web_pdf = client.get("/utvardering/rapport.pdf").data
    _assert_clean(web_pdf, needles, "the PDF download")
    pdf_text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(web_pdf)).pages)
    assert "Utvärdering av slussen" in pdf_text
    _assert_clean(pdf_text, needles, "the PDF's text")

    csv_path, pdf_path = tmp_path / "ut.csv", tmp_path / "ut.pdf"
    result = runner.invoke(cli, ["evaluation", "export", "--format", "csv", "--out", str(csv_path)])
    assert result.exit_code == 0, result.output
    _assert_clean(csv_path.read_text(), needles, "the exported CSV")
    result = runner.invoke(cli, ["evaluation", "export", "--format", "pdf", "--out", str(pdf_path)])
    assert result.exit_code == 0, result.output
    assert pdf_path.read_bytes().startswith(b"%PDF")
    _assert_clean(pdf_path.read_bytes(), needles, "the exported PDF")


def test_export_command_refuses_clearly(cli_env: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    result = runner.invoke(cli, ["evaluation", "export", "--format", "pdf"])
    assert result.exit_code == 1 and "--out" in result.output
    result = runner.invoke(cli, ["evaluation", "export", "--format", "csv", "--unit", "SE-NONE"])
    assert result.exit_code == 1 and "HSA-id" in result.output
    result = runner.invoke(cli, ["evaluation", "export", "--format", "csv"])
    assert result.exit_code == 0
    assert "pseudonym,unit_hsa_id" in result.output
