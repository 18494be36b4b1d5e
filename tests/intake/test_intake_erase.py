"""Crypto-shredding a self-referral that never became a case, and refusing every other case."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from slussen import vault
from slussen.audit import SYSTEM, Actor
from slussen.cases.engine import fire
from slussen.errors import Invalid
from slussen.intake.services import erase_self_referral, refer_patient
from slussen.keystore import DataKey, Keystore
from slussen.patients.models import Patient
from tests.builders import identity


def self_referral(session: Session, ring: vault.KeyRing, app: Any, unit: Any) -> Any:
    workflow = app.extensions["slussen.content"].compiled["workflow"]
    store = Keystore(session, ring)
    case = refer_patient(store, SYSTEM, workflow=workflow, identity=identity(), unit_id=unit.id,
                         channel="self_referral", reason="Vill träffa folk",
                         is_consent_to_contact=True).case  # fmt: skip
    return case, workflow, store


def test_closed_self_referral_is_shredded(app: Any, session: Session, unit: Any,
                                          make_user: Any) -> None:  # fmt: skip
    ring = vault.KeyRing.generate()
    case, workflow, store = self_referral(session, ring, app, unit)
    coach = Actor.of(make_user("coach"))
    fire(store, case, "decline", coach, workflow=workflow, reason="Ångrade sig", confirmed=True)
    erase_self_referral(store, SYSTEM, case, reason="Egenanmälan som aldrig blev ärende")
    patient = session.get(Patient, case.patient_id)
    assert patient is not None and patient.erased_at is not None and patient.name_enc is None
    assert session.get(DataKey, patient.data_key_id).wrapped is None  # type: ignore[union-attr]


def test_a_worked_case_is_never_erased(app: Any, session: Session, unit: Any,
                                       make_user: Any) -> None:  # fmt: skip
    ring = vault.KeyRing.generate()
    case, workflow, store = self_referral(session, ring, app, unit)
    coach = Actor.of(make_user("coach"))
    with pytest.raises(Invalid, match="Bara en egenanmälan"):
        erase_self_referral(store, SYSTEM, case, reason="x")  # still open
    fire(store, case, "invite", coach, workflow=workflow)
    fire(store, case, "decline", coach, workflow=workflow, reason="Nej tack", confirmed=True)
    with pytest.raises(Invalid, match="Bara en egenanmälan"):
        erase_self_referral(store, SYSTEM, case, reason="x")  # it was worked on


def test_cli_refuses_an_unknown_case(cli_env: Any) -> None:
    from slussen.cli import cli

    runner = CliRunner()
    runner.invoke(cli, ["init-db"])
    result = runner.invoke(cli, ["erase-self-referral", "S26-999999", "--reason", "test"])
    assert result.exit_code == 1 and "Inget ärende har referensen S26-999999" in result.output
