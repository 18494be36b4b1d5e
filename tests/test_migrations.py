"""Migrations: one head, upgrade head equals the models, every revision goes down and up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


#: The revision that seals the visits' facts, and the one it follows (the chain may change).
SEALED_VISITS = "0015v"


def test_visit_facts_are_sealed_and_come_back_in_clear_with_the_ring(
    empty_engine: Engine,
) -> None:
    import datetime as dt

    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from slussen import vault
    from slussen.cases.models import Case
    from slussen.keystore import Keystore
    from slussen.visits.services import (
        NetworkInput,
        case_handovers,
        case_visits,
        load_mapping,
    )

    ring = vault.KeyRing.generate()
    raw = vault.new_data_key()
    label = vault.FieldCipher(raw, 1).encrypt(
        "Dottern Anna", table="network_entries", column="label", row_id=1
    )
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    migrate.upgrade(empty_engine, "0013")
    statements = [
        "INSERT INTO data_keys (id, wrapped, master_key_id, created_at) VALUES"
        " (1, :wrapped, 'm1', :at), (2, NULL, NULL, :at)",
        "INSERT INTO units (id, name, hsa_id, street, postcode, town, phone, phone_hours,"
        " created_at) VALUES (7, 'Enhet 7', 'SE2321000016-B007', 'Gatan 1', '722 15',"
        " 'Västerås', '021', '', :at)",
        # Patient 2 was erased: their data key is destroyed.
        "INSERT INTO patients (id, data_key_id, identifier_kind, identifier_issuer,"
        " preferred_language, is_protected_identity, created_at) VALUES"
        " (1, 1, 'pnr', '', 'sv', false, :at), (2, 2, 'pnr', '', 'sv', false, :at)",
        "INSERT INTO cases (id, reference, unit_id, patient_id, state, channel, contact_channel,"
        " is_consent_to_contact, opened_at, state_entered_at, version) VALUES"
        " (1, 'S26-000001', 7, 1, 'plan_active', 'phone', 'post', true, :at, :at, 1),"
        " (2, 'S26-000002', 7, 2, 'plan_active', 'phone', 'post', true, :at, :at, 1)",
        "INSERT INTO visits (id, case_id, kind, status, mode, starts_at, duration_minutes, place,"
        " created_at) VALUES (1, 1, 'mapping', 'done', 'at_unit', :at, 45, 'Solgläntan, rum 12',"
        " :at), (2, 2, 'mapping', 'done', 'at_unit', :at, 45, 'Raderad plats', :at)",
        "INSERT INTO network_entries (id, case_id, label_enc, relation_type, closeness,"
        " contact_frequency, is_could_deepen, is_could_resume) VALUES"
        " (1, 1, :label, 'family', 1, 'weekly', true, false),"
        " (2, 2, :label, 'friend', 2, 'lost', false, true)",
        "INSERT INTO case_interests (case_id, interest) VALUES (1, 'music'), (1, 'faith')",
        "INSERT INTO case_barriers (case_id, barrier) VALUES (1, 'anxiety'), (2, 'health')",
        "INSERT INTO mapping_records (case_id, area) VALUES (1, 'Bäckby')",
        "INSERT INTO handovers (id, case_id, organisation_id, organisation_name, status,"
        " companion_name, meeting_place, created_at) VALUES"
        " (1, 1, 3, 'Sorgegruppen', 'accepted', 'Eva', 'Träffpunkten', :at)",
    ]
    values = {"at": at, "wrapped": vault.wrap_data_key(ring, raw, data_key_id=1), "label": label}
    with empty_engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), values)
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    before = script.get_revision(SEALED_VISITS).down_revision
    assert isinstance(before, str)
    migrate.upgrade(empty_engine, before, ring=ring)

    with pytest.raises(RuntimeError, match=r"row\(s\) of visits.*needs the key ring"):
        migrate.upgrade(empty_engine, SEALED_VISITS)
    assert migrate.current_revision(empty_engine) == before  # nothing changed
    migrate.upgrade(empty_engine, SEALED_VISITS, ring=ring)
    tables = set(inspect(empty_engine).get_table_names())
    assert not tables & {"case_interests", "case_barriers"}
    with empty_engine.connect() as conn:
        stored = b"".join(
            bytes(value)
            for table in ("visits", "network_entries", "mapping_records", "handovers")
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            for value in row
            if isinstance(value, bytes | memoryview)
        ).decode("latin-1")
        for clear in ("Solgläntan", "Raderad", "family", "weekly", "music", "faith", "anxiety",
                      "health", "Bäckby", "Sorgegruppen", "Eva", "Träffpunkten"):  # fmt: skip
            assert clear not in stored and clear.encode().decode("latin-1") not in stored
        # The erased patient's clear facts are dropped: no key is left to seal them with.
        assert conn.execute(text("SELECT place_enc FROM visits WHERE id = 2")).scalar() is None
        erased = text("SELECT barriers_enc FROM mapping_records WHERE case_id = 2")
        assert conn.execute(erased).scalar_one() is None

    migrate.upgrade(empty_engine, ring=ring)
    with Session(empty_engine) as session:
        store = Keystore(session, ring)
        case = session.get(Case, 1)
        assert case is not None
        mapping = load_mapping(store, case)
        assert mapping.network == [NetworkInput("Dottern Anna", "family", 1, "weekly", True)]
        assert (mapping.interests, mapping.barriers, mapping.area) == (
            ["faith", "music"],
            ["anxiety"],
            "Bäckby",
        )
        assert [v.place for v in case_visits(store, case)] == ["Solgläntan, rum 12"]
        [handover] = case_handovers(store, case)
        assert (handover.organisation_name, handover.companion_name, handover.meeting_place) == (
            "Sorgegruppen",
            "Eva",
            "Träffpunkten",
        )
        assert handover.organisation_id == 3

    migrate.downgrade(empty_engine, SEALED_VISITS, ring=ring)
    with pytest.raises(RuntimeError, match="Cannot unseal the visit facts"):
        migrate.downgrade(empty_engine, before)
    migrate.downgrade(empty_engine, before, ring=ring)
    with empty_engine.connect() as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(text(sql))]

        assert rows("SELECT id, place FROM visits ORDER BY id") == [
            (1, "Solgläntan, rum 12"),
            (2, ""),  # dropped with the erased patient's key
        ]
        # The erased patient's entry is gone with its key; the other is whole again.
        assert rows(
            "SELECT id, relation_type, closeness, contact_frequency, is_could_deepen,"
            " is_could_resume FROM network_entries"
        ) == [(1, "family", 1, "weekly", True, False)]
        assert rows("SELECT case_id, interest FROM case_interests ORDER BY interest") == [
            (1, "faith"),
            (1, "music"),
        ]
        assert rows("SELECT case_id, barrier FROM case_barriers") == [(1, "anxiety")]
        assert rows("SELECT case_id, area FROM mapping_records ORDER BY case_id") == [
            (1, "Bäckby"),
            (2, None),
        ]
        assert rows(
            "SELECT organisation_id, organisation_name, companion_name, meeting_place"
            " FROM handovers"
        ) == [(3, "Sorgegruppen", "Eva", "Träffpunkten")]
    migrate.upgrade(empty_engine, ring=ring)  # and up again
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
