"""Build cases in a given state by firing the real workflow events, never by setting columns."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import Actor
from slussen.cases.engine import fire
from slussen.cases.models import Case
from slussen.cases.workflow import Workflow
from slussen.identifiers import luhn_check_digit, parse_person_identifier
from slussen.intake.services import refer_patient
from slussen.keystore import Keystore
from slussen.patients.services import PatientIdentity
from slussen.visits.services import (
    StepInput,
    book_mapping_visit,
    record_follow_up,
    record_mapping_visit,
    save_action_plan,
)

FUTURE = dt.datetime(2030, 3, 5, 9, 0, tzinfo=dt.UTC)
_serial = iter(range(10**6))


def sample_pnr(n: int) -> str:
    """The n-th test personnummer of Skatteverket's test series (birth numbers 980–999)."""
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=n // 20)
    serial = 980 + n % 20
    nine = f"{birth:%y%m%d}{serial}"
    return f"{birth:%Y%m%d}{serial}{luhn_check_digit(nine)}"


def identity(n: int | None = None, **changes: Any) -> PatientIdentity:
    n = next(_serial) if n is None else n
    values: dict[str, Any] = {
        "identifier": parse_person_identifier(sample_pnr(n)),
        "name": f"Testperson {n}",
        "street": f"Provgatan {n % 90 + 1}",
        "postcode": "722 15",
        "town": "Västerås",
        "phone": "070-000 00 00",
    }
    values.update(changes)
    return PatientIdentity(**values)


#: The events (with data) that lead from `referred` to each state.
PATHS: dict[str, list[str]] = {
    "referred": [],
    "invited": ["invite"],
    "assessed": ["invite", "register_baseline"],
    "mapping_booked": ["invite", "register_baseline", "book"],
    "plan_active": ["invite", "register_baseline", "book", "plan", "record_mapping_visit"],
    "followed_up": [
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "follow_up",
    ],
    "evaluation_sent": [
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "send_evaluation",
    ],
    "evaluated": [
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "send_evaluation",
        "register_evaluation",
    ],
    "closed_completed": [
        "invite",
        "register_baseline",
        "book",
        "plan",
        "record_mapping_visit",
        "send_evaluation",
        "register_evaluation",
        "complete",
    ],
    "closed_declined": ["decline"],
    "closed_no_response": ["invite", "close_no_response"],
    "closed_referred_elsewhere": ["invite", "register_baseline", "refer_elsewhere"],
    "closed_other": ["close_other"],
}


def make_case(
    session: Session,
    ring: vault.KeyRing,
    workflow: Workflow,
    coach: Actor,
    unit_id: int,
    state: str = "referred",
    **identity_changes: Any,
) -> Case:
    """A case in `state`, reached by the real events; `coach` must work in `unit_id`."""
    store = Keystore(session, ring)
    case = refer_patient(
        store,
        coach,
        workflow=workflow,
        identity=identity(**identity_changes),
        unit_id=unit_id,
        channel="phone",
        reason="Ringde själv och vill träffa fler",
        is_consent_to_contact=True,
    ).case
    for step in PATHS[state]:
        if step == "book":
            book_mapping_visit(
                store,
                coach,
                case,
                workflow=workflow,
                starts_at=FUTURE,
                place="Vårdcentralen, rum 3",
            )
        elif step == "plan":
            save_action_plan(
                store,
                coach,
                case,
                goals="Träffa andra en gång i veckan",
                steps=[StepInput(text="Gå med i promenadgruppen")],
            )
        elif step == "record_mapping_visit":
            record_mapping_visit(store, coach, case, workflow=workflow)
        elif step == "follow_up":
            record_follow_up(store, coach, case, workflow=workflow, how_it_went="Bra")
        else:
            fire(store, case, step, coach, workflow=workflow, reason="Skäl", note="Anteckning")
    session.flush()
    assert case.state == state
    return case
