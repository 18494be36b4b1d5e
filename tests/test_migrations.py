"""Migrations: one head, upgrade head equals the models, every revision goes down and up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from slussen import migrate
from slussen.db import make_engine
from slussen.models import metadata
from tests.conftest import BACKENDS, scratch_postgres


@pytest.fixture(params=BACKENDS)
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'migrations.sqlite3'}")
        yield engine
        engine.dispose()
        return
    with scratch_postgres(f"slussen_migrations_{os.getpid()}") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def revisions_in_order() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_one_head() -> None:
    assert migrate.head_revision() == revisions_in_order()[-1]


def test_upgrade_head_equals_models(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []


def test_every_revision_goes_down_and_up(empty_engine: Engine) -> None:
    previous = "base"
    for revision in revisions_in_order():
        migrate.upgrade(empty_engine, revision)
        migrate.downgrade(empty_engine, previous)
        migrate.upgrade(empty_engine, revision)
        assert migrate.current_revision(empty_engine) == revision
        previous = revision
    migrate.downgrade(empty_engine, "base")
    tables = set(inspect(empty_engine).get_table_names()) - {"alembic_version"}
    assert tables == set()


def test_the_log_becomes_the_region_chain_and_goes_back_while_it_is_one_chain(
    empty_engine: Engine,
) -> None:
    import datetime as dt

    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from slussen import audit, vault

    ring = vault.KeyRing.generate()
    migrate.upgrade(empty_engine, "0010")
    previous = audit.GENESIS
    with empty_engine.begin() as conn:  # three rows of the one chain before 0011
        for seq in (1, 2, 3):
            fields = (seq, dt.datetime(2026, 1, seq, tzinfo=dt.UTC), None, "op", "system",
                      None, "read", "patient", str(seq), None, "test", "r", "cli")  # fmt: skip
            values = dict(zip(audit._CHAINED, fields, strict=True))
            values["mac"] = previous = audit._mac_of(ring.audit_key, previous, fields)
            conn.execute(
                text(
                    "INSERT INTO audit_events (seq, occurred_at, actor_id, actor_name, actor_role,"
                    " unit_id, action, object_type, object_id, patient_pseudonym, purpose,"
                    " request_id, client_address, mac) VALUES (:seq, :occurred_at, :actor_id,"
                    " :actor_name, :actor_role, :unit_id, :action, :object_type, :object_id,"
                    " :patient_pseudonym, :purpose, :request_id, :client_address, :mac)"
                ),
                values,
            )
        conn.execute(text("UPDATE audit_chain_heads SET seq = 3, mac = :m"), {"m": previous})
    migrate.upgrade(empty_engine)
    with Session(empty_engine) as session:
        result = audit.verify_chain(session, ring)
        assert result.ok and [(c.chain, c.checked) for c in result.chains] == [("region", 3)]
    migrate.downgrade(empty_engine, "0010")  # still one chain: the downgrade works
    migrate.upgrade(empty_engine)
    actor = audit.Actor(None, "op", "system")
    with Session(empty_engine) as session, session.begin():
        session.execute(
            text(
                "INSERT INTO units (id, name, hsa_id, street, postcode, town, phone, phone_hours,"
                " created_at) VALUES (7, 'Enhet 7', 'SE2321000016-B007', 'Gatan 1', '722 15',"
                " 'Västerås', '021', '', :at)"
            ),
            {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        )
        audit.record(session, ring, actor, "read", "unit", 7, purpose="test", unit_id=7)
    with Session(empty_engine) as session:
        result = audit.verify_chain(session, ring)
        assert result.ok and [c.chain for c in result.chains] == ["region", "unit:7"]
    with pytest.raises(RuntimeError, match="Refusing to downgrade below 0011"):
        migrate.downgrade(empty_engine, "0010")
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_clear_totp_secrets_are_sealed_and_still_verify(empty_engine: Engine) -> None:
    import datetime as dt

    import pyotp
    from sqlalchemy import select, text
    from sqlalchemy.orm import Session

    from slussen import vault
    from slussen.accounts.models import User
    from slussen.accounts.services import use_second_factor
    from slussen.keystore import DataKey

    ring = vault.KeyRing.generate()
    secret = pyotp.random_base32()
    migrate.upgrade(empty_engine, "0012")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, display_name, role, password_hash, is_active,"
                " created_at, totp_secret, totp_last_counter) VALUES (5, 'coach', 'Coach',"
                " 'coach', 'x', true, :at, :secret, 1)"
            ),
            {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "secret": secret},
        )
    with pytest.raises(RuntimeError, match=r"1 user\(s\) have a TOTP secret in clear"):
        migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == "0012"  # nothing changed

    migrate.upgrade(empty_engine, ring=ring)
    assert "totp_secret" not in {c["name"] for c in inspect(empty_engine).get_columns("users")}
    with Session(empty_engine) as session:
        user = session.get(User, 5)
        assert user is not None and user.totp_secret_enc is not None
        assert secret.encode() not in user.totp_secret_enc
        key = session.get(DataKey, user.data_key_id)
        assert key is not None and key.master_key_id == "m1"
        assert use_second_factor(session, ring, user, pyotp.TOTP(secret).now()).method == "totp"
        with pytest.raises(vault.VaultError):  # another ring cannot open it
            use_second_factor(session, vault.KeyRing.generate(), user, pyotp.TOTP(secret).now())

    with pytest.raises(RuntimeError, match="Cannot unseal the TOTP secrets of 1 user"):
        migrate.downgrade(empty_engine, "0012")
    migrate.downgrade(empty_engine, "0012", ring=ring)
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT totp_secret FROM users")).scalar_one() == secret
        # The user's key is destroyed with the columns; its row stays.
        assert conn.execute(select(DataKey.wrapped)).all() == [(None,)]


def test_screening_results_and_demographics_are_sealed_and_come_back(
    empty_engine: Engine,
) -> None:
    import datetime as dt

    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from slussen import vault
    from slussen.cases.engine import event_name, screening_of
    from slussen.cases.models import Case, CaseEvent
    from slussen.keystore import Keystore
    from slussen.patients.services import read_demographics

    ring = vault.KeyRing.generate()
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    migrate.upgrade(empty_engine, "0013", ring=ring)
    raw = vault.new_data_key()
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO data_keys (id, wrapped, master_key_id, created_at)"
                " VALUES (4, :w, :m, :at)"
            ),
            {
                "w": vault.wrap_data_key(ring, raw, data_key_id=4),
                "m": ring.active_master_id,
                "at": at,
            },
        )
        conn.execute(
            text(
                "INSERT INTO units (id, name, hsa_id, street, postcode, town, phone, phone_hours,"
                " created_at) VALUES (1, 'Enhet', 'SE2321000016-B001', 'Gatan 1', '722 15',"
                " 'Västerås', '021', '', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO patients (id, data_key_id, identifier_kind, identifier_issuer,"
                " preferred_language, is_protected_identity, birth_year, sex, created_at)"
                " VALUES (3, 4, 'pnr', '', 'sv', false, 1981, 'male', :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO cases (id, reference, unit_id, patient_id, state, channel,"
                " contact_channel, is_consent_to_contact, screening_flag, opened_at,"
                " state_entered_at, version) VALUES (2, 'S26-000002', 1, 3, 'assessed',"
                " 'staff_flag', 'post', true, 'positive', :at, :at, 1)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO case_events (id, case_id, event, from_state, to_state, actor_name,"
                " actor_role, occurred_at) VALUES (9, 2, 'flag_screening', 'assessed',"
                " 'assessed', 'system', 'system', :at), (10, 2, 'register_baseline', 'invited',"
                " 'assessed', 'system', 'system', :at)"
            ),
            {"at": at},
        )
    with pytest.raises(RuntimeError, match="needs the key ring"):
        migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == "0013"  # nothing changed

    migrate.upgrade(empty_engine, ring=ring)
    columns = {c["name"] for c in inspect(empty_engine).get_columns("patients")}
    assert not {"birth_year", "sex"} & columns
    assert "screening_flag" not in {c["name"] for c in inspect(empty_engine).get_columns("cases")}
    with Session(empty_engine) as session:
        store = Keystore(session, ring)
        demographics = read_demographics(store, 3)
        assert (demographics.birth_year, demographics.sex) == (1981, "male")
        case = session.get(Case, 2)
        assert case is not None and screening_of(store, case) == "positive"
        assert b"positive" not in (case.screening_enc or b"")
        flagged, registered = session.query(CaseEvent).order_by(CaseEvent.id).all()
        assert (flagged.event, registered.event) == ("sealed", "register_baseline")
        assert event_name(store, flagged, 3) == "flag_screening"
        # The rest of the database survived the copies of its tables (foreign keys are off
        # while migrating).
        assert session.execute(text("SELECT count(*) FROM case_events")).scalar_one() == 2

    with pytest.raises(RuntimeError, match="needs the key ring"):
        migrate.downgrade(empty_engine, "0013")
    migrate.downgrade(empty_engine, "0013", ring=ring)
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT birth_year, sex FROM patients")).one() == (1981, "male")
        assert conn.execute(text("SELECT screening_flag FROM cases")).scalar_one() == "positive"
        events = conn.execute(text("SELECT event FROM case_events ORDER BY id")).scalars().all()
        assert events == ["flag_screening", "register_baseline"]
