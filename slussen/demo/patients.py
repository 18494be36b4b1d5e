"""Demo patients: Skatteverket's test personnummer (birth numbers 980–999), invented people."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from slussen.accounts.models import Unit
from slussen.audit import SYSTEM
from slussen.demo.context import DemoContext
from slussen.identifiers import luhn_check_digit, parse_person_identifier
from slussen.keystore import Keystore, open_key_ring
from slussen.patients.models import Patient
from slussen.patients.services import PatientIdentity, register_patient


def test_personnummer(birth: str, serial: int) -> str:
    """A test personnummer YYYYMMDDNNNC from Skatteverket's test series (serial 980–999)."""
    if not 980 <= serial <= 999:
        raise ValueError("demo personnummer use the test series 980–999 only")
    nine = birth[2:] + str(serial)
    return f"{birth}{serial}{luhn_check_digit(nine)}"


#: (birth date, serial, name, street, postcode, town, phone, language, protected identity)
DEMO_PATIENTS = [
    (
        "19420315",
        982,
        "Margit Ekholm",
        "Solrosvägen 3",
        "722 19",
        "Västerås",
        "070-111 22 01",
        "sv",
        False,
    ),
    (
        "19480704",
        991,
        "Gösta Lindahl",
        "Tallstigen 11 lgh 1102",
        "722 28",
        "Västerås",
        "070-111 22 02",
        "sv",
        False,
    ),
    (
        "19550928",
        984,
        "Ingrid Å. Björk",
        "Kvarngatan 5",
        "731 32",
        "Köping",
        "070-111 22 03",
        "sv",
        False,
    ),
    ("19611122", 993, "Erik Öhman", "Hamngatan 19", "733 30", "Sala", "070-111 22 04", "sv", False),
    (
        "19670211",
        986,
        "Aisha Karimi",
        "Björkvägen 2",
        "722 40",
        "Västerås",
        "070-111 22 05",
        "en",
        False,
    ),
    (
        "19730519",
        995,
        "Lars-Åke Nyström",
        "Ängsgatan 8",
        "731 33",
        "Köping",
        "070-111 22 06",
        "sv",
        False,
    ),
    ("19790830", 988, "Sofia Hägg", "", "", "", "070-111 22 07", "sv", True),
    (
        "19840106",
        997,
        "Mohammed Haddad",
        "Stationsvägen 14",
        "733 35",
        "Sala",
        "070-111 22 08",
        "en",
        False,
    ),
    (
        "19900424",
        980,
        "Elin Sjöberg",
        "Skolgatan 21",
        "722 15",
        "Västerås",
        "070-111 22 09",
        "sv",
        False,
    ),
    (
        "19951213",
        999,
        "Jonas Fält",
        "Vallgatan 7 lgh 1001",
        "722 11",
        "Västerås",
        "070-111 22 10",
        "sv",
        False,
    ),
    (
        "20010707",
        982,
        "Noor Rahimi",
        "Parkvägen 30",
        "731 36",
        "Köping",
        "070-111 22 11",
        "sv",
        False,
    ),
    (
        "19381001",
        990,
        "Greta Wahlström",
        "Lindvägen 9",
        "733 36",
        "Sala",
        "0224-123 45",
        "sv",
        False,
    ),
]


def demo_personnummer_set() -> set[str]:
    """The hand-made demo patients' personnummer (the demo cases avoid them)."""
    return {test_personnummer(birth, serial) for birth, serial, *_rest in DEMO_PATIENTS}


def seed_patients(session: Session, ctx: DemoContext) -> None:
    if session.scalar(select(func.count()).select_from(Patient)):
        ctx.report.append("Demo patients exist already.")
        return
    units = list(session.scalars(select(Unit).order_by(Unit.id)))
    store = Keystore(session, open_key_ring(ctx.settings))
    for index, (birth, serial, name, street, postcode, town, phone, lang, protected) in enumerate(
        DEMO_PATIENTS
    ):
        identity = PatientIdentity(
            identifier=parse_person_identifier(test_personnummer(birth, serial)),
            name=name,
            street=street,
            postcode=postcode,
            town=town,
            phone=phone,
            preferred_language=lang,
            is_protected_identity=protected,
        )
        unit = units[index % len(units)]
        register_patient(store, SYSTEM, identity, purpose="demo data", unit_id=unit.id)
    ctx.report.append(f"Demo patients: {len(DEMO_PATIENTS)}.")
