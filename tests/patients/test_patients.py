"""Patients: encrypted at rest, found by blind index, audited, erasable by crypto-shredding."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor, AuditEvent, verify_chain
from slussen.errors import NotPermitted
from slussen.identifiers import parse_person_identifier
from slussen.keystore import DataKey, KeyDestroyed, Keystore
from slussen.patients.models import Patient, PatientLookup
from slussen.patients.services import (
    Demographics,
    DuplicatePatient,
    PatientErased,
    PatientIdentity,
    erase_patient,
    find_patient_id,
    read_demographics,
    read_patient,
    register_patient,
    update_patient,
)

PNR = "198112189876"


def identity(pnr: str = PNR, name: str = "Margit Ekholm") -> PatientIdentity:
    return PatientIdentity(
        identifier=parse_person_identifier(pnr),
        name=name,
        street="Solrosvägen 3",
        postcode="72219",
        town="Västerås",
        phone="070-111 22 01",
    )


def audit_actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_register_and_read_round_trip(
    backend: str, store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    patient = register_patient(store, COACH, identity(), purpose="flagging")
    fresh = Keystore(session, store.ring)  # a new request: nothing cached
    read = read_patient(fresh, COACH, patient, purpose="case page")
    assert read.name == "Margit Ekholm"
    assert read.identifier.value == PNR
    assert read.postcode == "722 19"
    assert read_demographics(fresh, patient) == Demographics(1981, "male")
    assert b"male" not in (patient.demographics_enc or b"")
    assert audit_actions(session) == ["create", "read"]
    assert verify_chain(session, store.ring).ok


def test_stored_columns_hold_no_plaintext(
    backend: str, store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    patient = register_patient(store, COACH, identity(), purpose="flagging")
    session.flush()
    row = session.execute(select(Patient.__table__).where(Patient.id == patient.id)).one()
    blob = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    for secret in (PNR, "811218", "Margit", "Solrosvägen", "111 22 01"):
        assert secret.encode() not in blob
    lookup = session.scalars(select(PatientLookup.digest)).one()
    assert PNR not in lookup


def test_duplicate_found_by_blind_index(
    backend: str, store: Keystore, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    first = register_patient(store, COACH, identity(), purpose="flagging")
    # The same person written in the 10-digit form is the same patient.
    with pytest.raises(DuplicatePatient) as refused:
        register_patient(store, COACH, identity("811218-9876", "Someone Else"), purpose="x")
    assert refused.value.patient_id == first.id
    assert find_patient_id(store, parse_person_identifier("8112189876")) == first.id


@pytest.mark.parametrize("role", ["evaluator", "org_rep", "admin"])
def test_roles_without_patient_access_cannot_read(
    store: Keystore, role: str, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    patient = register_patient(store, COACH, identity(), purpose="flagging")
    with pytest.raises(NotPermitted):
        read_patient(store, actors[role], patient, purpose="curious")


def test_update_reencrypts_and_audits(
    store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    patient = register_patient(store, COACH, identity(), purpose="flagging")
    before = patient.name_enc
    update_patient(store, COACH, patient, identity(name="Margit Ek"), purpose="new name")
    assert patient.name_enc != before
    assert read_patient(store, COACH, patient, purpose="check").name == "Margit Ek"
    assert audit_actions(session) == ["create", "update", "read"]


def test_erase_is_crypto_shredding(
    backend: str, store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    COORDINATOR = actors["coordinator"]
    patient = register_patient(store, COACH, identity(), purpose="self-referral")
    key_id = patient.data_key_id
    with pytest.raises(NotPermitted):
        erase_patient(store, COACH, patient, reason="never became a case")
    erase_patient(store, COORDINATOR, patient, reason="never became a case")
    assert session.get(DataKey, key_id).wrapped is None  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(PatientLookup)) == 0
    with pytest.raises(PatientErased):
        read_patient(store, COACH, patient, purpose="x")
    with pytest.raises(KeyDestroyed):
        Keystore(session, store.ring).cipher(key_id)
    assert audit_actions(session) == ["create", "erase"]
    # The person can be registered again later, as a new record.
    again = register_patient(store, COACH, identity(), purpose="new referral")
    assert again.id != patient.id


def test_ciphertext_moved_to_another_row_or_column_is_refused(
    store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    a = register_patient(store, COACH, identity(), purpose="x")
    b = register_patient(store, COACH, identity("189001019802", "Greta Wahlström"), purpose="x")
    fresh = Keystore(session, store.ring)
    original = a.name_enc
    a.name_enc = a.street_enc  # another column of the same row
    with pytest.raises(vault.DecryptionError, match="patients"):
        read_patient(fresh, COACH, a, purpose="x")
    a.name_enc = b.name_enc  # the same column of another row (another key too)
    with pytest.raises(vault.DecryptionError):
        read_patient(fresh, COACH, a, purpose="x")
    flipped = bytearray(original or b"")
    flipped[-5] ^= 0x01
    a.name_enc = bytes(flipped)
    with pytest.raises(vault.DecryptionError):
        read_patient(fresh, COACH, a, purpose="x")


def test_ten_digit_forms_never_reach_the_audit_log(
    store: Keystore, session: Session, actors: dict[str, Actor]
) -> None:
    COACH = actors["coach"]
    register_patient(store, COACH, identity(), purpose="flagging")
    rows = session.execute(select(AuditEvent.__table__)).all()
    text = repr(rows)
    assert PNR not in text and "811218" not in text and "Margit" not in text
    assert str(rows[0].patient_pseudonym).startswith("P-")


def test_raw_sqlite_file_after_demo_reveals_no_identity(cli_env: object) -> None:
    """ENC-1: the database file (and its WAL) holds no demo identity in any common encoding."""
    from pathlib import Path

    from click.testing import CliRunner

    from slussen.cli import cli
    from slussen.demo.patients import DEMO_PATIENTS, test_personnummer
    from tests.conftest import TEST_PASSWORD

    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    result = runner.invoke(cli, ["demo", "--password", TEST_PASSWORD])
    assert result.exit_code == 0, result.output
    instance = Path(str(cli_env))
    raw = b"".join(p.read_bytes() for p in instance.glob("slussen.sqlite3*"))
    needles: list[str] = []
    for birth, serial, name, street, _postcode, _town, phone, _lang, _prot in DEMO_PATIENTS:
        pnr = test_personnummer(birth, serial)
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
            needles.append(street)
    assert len(needles) > 60
    for needle in needles:
        for encoded in (
            needle.encode(),
            needle.encode("utf-16-le"),
            base64.b64encode(needle.encode()),
        ):
            assert encoded not in raw, f"{needle!r} found in the database file"
