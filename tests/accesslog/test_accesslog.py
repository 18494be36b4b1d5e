"""The coordinator's access-log review and the patient's log extract (PDL 4:3, 8:5)."""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import audit, vault
from slussen.accesslog.markers import patient_data_endpoints
from slussen.accesslog.services import has_relation
from slussen.accounts.models import Unit
from slussen.audit import SYSTEM, Actor, AuditEvent
from slussen.identifiers import parse_person_identifier
from slussen.keystore import Keystore
from slussen.patients.models import Patient
from slussen.patients.services import PatientIdentity, read_patient, register_patient

PNR = "198112189876"
PNR_OTHER = "189001019802"
NAME = "Margit Ekholm"
FLAG = '<strong class="error">Ovanlig åtkomst</strong>'


@pytest.fixture
def unit_b(session: Session) -> Unit:
    other = Unit(
        name="Vårdcentralen Annan",
        hsa_id="SE2321000016-TST2",
        street="Annangatan 2",
        postcode="731 32",
        town="Köping",
        phone="0221-00 00 00",
    )
    session.add(other)
    session.flush()
    return other


def register(store: Keystore, unit_id: int, pnr: str = PNR, name: str = NAME) -> Patient:
    identity = PatientIdentity(identifier=parse_person_identifier(pnr), name=name)
    patient = register_patient(store, SYSTEM, identity, purpose="test", unit_id=unit_id)
    store.session.flush()
    return patient


@dataclass
class World:
    patient: Patient
    other_patient: Patient
    coach_a: Any
    coach_b: Any


@pytest.fixture
def world(store: Keystore, unit: Unit, unit_b: Unit, make_user: Callable[..., Any]) -> World:
    """Patient in unit A read by a coach of unit B; another patient in unit B read from unit A."""
    coach_a = make_user("coach", "coach_a", units=[unit])
    coach_b = make_user("coach", "coach_b", units=[unit_b])
    patient = register(store, unit.id)
    other = register(store, unit_b.id, PNR_OTHER, "Greta Wahlström")
    read_patient(store, Actor.of(coach_a), patient, purpose="case work", unit_id=unit.id)
    read_patient(store, Actor.of(coach_b), patient, purpose="curious", unit_id=unit_b.id)
    read_patient(store, Actor.of(coach_a), other, purpose="curious", unit_id=unit.id)
    store.session.flush()
    return World(patient, other, coach_a, coach_b)


def audit_count(session: Session, **where: Any) -> int:
    statement = select(func.count()).select_from(AuditEvent)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEvent, column) == value)
    return int(session.scalar(statement) or 0)


def search(client: FlaskClient, pnr: str = PNR) -> Any:
    return client.post("/atkomstlogg/patient", data={"pnr": pnr})


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["staff", "coach", "evaluator", "org_rep", "admin"])
def test_only_coordinators_review_the_log(
    client: FlaskClient, login: Callable[..., Any], role: str
) -> None:
    login(role)
    # Roles without any patient access are not even told the page exists.
    refused = 403 if role in ("staff", "coach") else 404
    assert client.get("/atkomstlogg").status_code == refused
    assert client.get("/atkomstlogg/utdrag").status_code == refused
    assert client.post("/atkomstlogg/utdrag", data={"pnr": PNR}).status_code == refused
    assert search(client).status_code == refused
    assert "/atkomstlogg" not in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_log_needs_login(client: FlaskClient) -> None:
    response = client.get("/atkomstlogg")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_coordinator_finds_the_log_in_the_menu(
    client: FlaskClient, login: Callable[..., Any]
) -> None:
    login("coordinator")
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert 'href="/atkomstlogg"' in page and "Åtkomstlogg" in page


def test_every_view_here_is_marked_as_showing_patient_data(app: Flask) -> None:
    assert {"accesslog.index", "accesslog.search_patient", "accesslog.extract"} <= set(
        patient_data_endpoints(app)
    )


# --- the log page -------------------------------------------------------------------------------


def test_coordinator_sees_own_unit_and_unitless_rows_only(
    backend: str, client: FlaskClient, login: Callable[..., Any], world: World, session: Session
) -> None:
    login("coordinator")  # a login row: no unit
    response = client.get("/atkomstlogg")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "coach_a" in page  # unit A's read
    assert "coach_b" not in page  # unit B's read is not the coordinator's to see…
    assert "Vårdcentralen Annan" not in page
    assert audit_count(session, action="read", object_type="access_log") == 0
    assert NAME not in page and PNR not in page


def test_search_by_personnummer_shows_every_units_access_and_is_recorded(
    backend: str,
    client: FlaskClient,
    login: Callable[..., Any],
    world: World,
    session: Session,
    ring: vault.KeyRing,
) -> None:
    login("coordinator")
    pseudonym = audit.patient_pseudonym(ring, world.patient.id)
    response = search(client, "811218-9876")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "9876" not in location and "811218" not in location  # no personnummer in a URL
    assert audit_count(session, action="search", patient_pseudonym=pseudonym) == 1
    search_row = session.scalars(select(AuditEvent).where(AuditEvent.action == "search")).one()
    assert search_row.purpose == "granskning av åtkomstlogg"
    assert search_row.object_type == "patient"

    page = client.get(location).get_data(as_text=True)
    assert "coach_b" in page and "Vårdcentralen Annan" in page  # …but for the patient: all units
    assert "Greta" not in page and NAME not in page and PNR not in page
    assert audit_count(session, action="read", object_type="access_log") == 1
    assert audit.verify_chain(session, ring).ok


def test_a_patient_id_not_searched_for_is_not_found(
    client: FlaskClient, login: Callable[..., Any], world: World
) -> None:
    login("coordinator")
    assert client.get(f"/atkomstlogg?patient={world.patient.id}").status_code == 404
    assert client.get("/atkomstlogg?patient=abc").status_code == 404


def test_unknown_or_malformed_personnummer_is_told_and_not_recorded(
    client: FlaskClient, login: Callable[..., Any], world: World, session: Session
) -> None:
    login("coordinator")
    response = search(client, "19121212-1212")
    assert response.status_code == 400
    assert "Det finns ingen patient med det numret" in response.get_data(as_text=True)
    response = search(client, "19811218-9875")
    assert response.status_code == 400
    assert "Kontrollsiffran stämmer inte" in response.get_data(as_text=True)
    response = search(client, "")
    assert response.status_code == 400
    assert "Fyll i patientens personnummer" in response.get_data(as_text=True)
    assert audit_count(session, action="search") == 0


def test_unusual_access_is_flagged(
    client: FlaskClient, login: Callable[..., Any], world: World
) -> None:
    login("coordinator")
    # Unfiltered: coach_a (unit A) read a patient registered in unit B.
    page = client.get("/atkomstlogg").get_data(as_text=True)
    assert page.count(FLAG) == 1
    # The patient of unit A: coach_b's read is unusual, coach_a's is not.
    page = client.get(search(client).headers["Location"]).get_data(as_text=True)
    rows = [r for r in page.split("<tr>") if "coach_" in r]
    flagged = {name for r in rows for name in ("coach_a", "coach_b") if name in r}
    assert flagged == {"coach_a", "coach_b"}
    assert [("coach_b" in r) for r in rows if FLAG in r] == [True]


def test_has_relation_is_the_registered_unit(backend: str, session: Session, world: World) -> None:
    assert has_relation(session, world.coach_a.id, world.patient.id)
    assert not has_relation(session, world.coach_b.id, world.patient.id)
    assert has_relation(session, world.coach_b.id, world.other_patient.id)
    assert not has_relation(session, world.coach_a.id, world.other_patient.id)


def test_keyset_pages_cover_every_row_once(
    backend: str,
    client: FlaskClient,
    login: Callable[..., Any],
    unit: Unit,
    session: Session,
    ring: vault.KeyRing,
) -> None:
    login("coordinator")
    for i in range(120):
        audit.record(
            session, ring, SYSTEM, "read", "letter", f"L{i:03d}", purpose="p", unit_id=unit.id
        )
    session.flush()
    seen: list[str] = []
    url = "/atkomstlogg"
    links: list[str] = []
    while url:
        page = client.get(url).get_data(as_text=True)
        seen += re.findall(r"Brev L(\d{3})", page)
        older = re.search(r'href="([^"]+)" rel="next"', page)
        url = html.unescape(older.group(1)) if older else ""
        links.append(url)
    assert len(links) == 3 and "before=" in links[0]
    assert seen == [f"{i:03d}" for i in reversed(range(120))]  # newest first, each once
    # Back from the second page to the first, by the newer-rows link.
    second = client.get(links[0]).get_data(as_text=True)
    newer = re.search(r'href="([^"]+)" rel="prev"', second)
    assert newer is not None
    first = client.get(html.unescape(newer.group(1))).get_data(as_text=True)
    assert re.findall(r"Brev L(\d{3})", first) == seen[:50]
    assert 'rel="prev"' not in first


def test_filter_by_user_offers_only_users_of_own_units(
    client: FlaskClient, login: Callable[..., Any], world: World
) -> None:
    login("coordinator")
    page = client.get("/atkomstlogg").get_data(as_text=True)
    assert "coach_a" in page.split("</select>")[0] and "coach_b" not in page.split("</select>")[0]
    page = client.get(f"/atkomstlogg?user={world.coach_a.id}").get_data(as_text=True)
    assert "curious" in page and "case work" in page
    response = client.get(f"/atkomstlogg?user={world.coach_b.id}")
    assert response.status_code == 400  # not a choice: refused next to the field
    assert "coach_b" not in response.get_data(as_text=True)


def test_filter_by_date_in_swedish_time(
    client: FlaskClient,
    login: Callable[..., Any],
    unit: Unit,
    session: Session,
    ring: vault.KeyRing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login("coordinator")
    # 23:30 UTC on 4 March is 00:30 on 5 March in Stockholm.
    moment = dt.datetime(2026, 3, 4, 23, 30, tzinfo=dt.UTC)
    monkeypatch.setattr(audit, "utcnow", lambda: moment)
    audit.record(session, ring, SYSTEM, "print", "letter", "L1", purpose="p", unit_id=unit.id)
    monkeypatch.undo()
    session.flush()
    page = client.get("/atkomstlogg?date_from=2026-03-05&date_to=2026-03-05").get_data(as_text=True)
    assert "5 mars 2026 kl. 00.30.00" in page and "Utskrift" in page
    page = client.get("/atkomstlogg?date_from=2026-03-04&date_to=2026-03-04").get_data(as_text=True)
    assert "Inga loggrader" in page


@pytest.mark.parametrize(
    "query",
    [
        "date_from=2026-13-01",
        "date_to=igår",
        "date_from=2026-03-05&date_to=2026-03-01",
        "user=xyz",
        "user=99999",
        "before=abc&after=-1",
        "date_from=" + "9" * 5000,
    ],
)
def test_bad_filters_get_a_message_never_a_server_error(
    client: FlaskClient, login: Callable[..., Any], query: str
) -> None:
    login("coordinator")
    response = client.get(f"/atkomstlogg?{query}")
    body = response.get_data(as_text=True)
    assert response.status_code in (200, 400)
    if "date_to=2026-03-01" in query:
        assert "Slutdatumet är före startdatumet" in body
    elif "date" in query:
        assert "Skriv datumet som ÅÅÅÅ-MM-DD" in body
    elif "user" in query:
        assert "Välj en användare i listan" in body


# --- the extract --------------------------------------------------------------------------------


def pdf_text(data: bytes) -> str:
    """The PDF's text with line breaks folded into spaces (table cells wrap)."""
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return " ".join(text.split())


def test_extract_is_a_pdf_listing_every_access_to_the_patient(
    backend: str,
    client: FlaskClient,
    login: Callable[..., Any],
    world: World,
    session: Session,
    ring: vault.KeyRing,
) -> None:
    login("coordinator")
    response = client.post("/atkomstlogg/utdrag", data={"pnr": "8112189876"})
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="loggutdrag.pdf"'
    assert response.headers["Cache-Control"] == "no-store"
    text = pdf_text(response.data)
    assert "Loggutdrag — åtkomst till dina uppgifter i Slussen" in text
    assert NAME in text and "19811218-9876" in text
    assert "Vårdcentralen Test" in text and "Vårdcentralen Annan" in text
    assert "Hälsocoach" in text and "Läste dina uppgifter" in text
    assert "coach_a" not in text and "coach_b" not in text  # units and roles, not names
    # LEG-6: the extract lists every audit row about the patient, its own making included.
    pseudonym = audit.patient_pseudonym(ring, world.patient.id)
    rows = audit_count(session, patient_pseudonym=pseudonym)
    assert f"Antal åtkomster: {rows}" in text
    assert audit_count(session, action="export", object_type="patient_log_extract") == 1
    assert "Greta" not in text
    metadata = PdfReader(io.BytesIO(response.data)).metadata
    assert metadata is not None and NAME not in str(dict(metadata))


def test_extract_is_posted_never_made_from_a_url(
    client: FlaskClient, login: Callable[..., Any], world: World, session: Session
) -> None:
    login("coordinator")
    response = client.get(f"/atkomstlogg/utdrag?pnr={PNR}")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert audit_count(session, action="export") == 0
    response = client.post("/atkomstlogg/utdrag", data={"pnr": "19121212-1212"})
    assert response.status_code == 400
    assert "Det finns ingen patient med det numret" in response.get_data(as_text=True)
    assert audit_count(session, action="export") == 0


def test_extract_renders_an_empty_and_a_long_log(app: Flask) -> None:
    from slussen.accesslog.pdf import render_log_extract
    from slussen.accesslog.services import ExtractEntry, PatientExtract

    now = dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC)
    entries = [ExtractEntry(now, "Vårdcentralen Åby", "read", "patient", "coach")] * 400
    with app.test_request_context():
        empty = render_log_extract(
            PatientExtract("Åsa Öberg", "19811218-9876", now, []), timezone="Europe/Stockholm"
        )
        long = render_log_extract(
            PatientExtract("Åsa Öberg", "19811218-9876", now, entries), timezone="Europe/Stockholm"
        )
        again = render_log_extract(
            PatientExtract("Åsa Öberg", "19811218-9876", now, entries), timezone="Europe/Stockholm"
        )
    assert "Ingen åtkomst är registrerad" in pdf_text(empty)
    reader = PdfReader(io.BytesIO(long))
    assert len(reader.pages) > 5
    assert "Åsa Öberg" in pdf_text(long) and "5 mars 2026 kl. 13.00" in pdf_text(long)
    assert "Datum och tid" in reader.pages[3].extract_text()  # the header repeats
    fonts = {str(f) for page in reader.pages for f in page["/Resources"]["/Font"].values()}
    assert fonts and long == again  # deterministic


@pytest.mark.settings(csrf_enabled=True)
class TestCsrfOn:
    def test_personnummer_forms_need_the_token(
        self, client: FlaskClient, make_user: Callable[..., Any], session: Session
    ) -> None:
        from tests.conftest import TEST_PASSWORD

        make_user("coordinator")
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        client.post(
            "/login",
            data={"username": "coordinator", "password": TEST_PASSWORD, "csrf_token": token},
        )
        assert search(client).status_code == 400
        assert client.post("/atkomstlogg/utdrag", data={"pnr": PNR}).status_code == 400
        assert audit_count(session, action="search") == 0
