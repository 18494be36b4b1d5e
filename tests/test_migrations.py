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


def test_corrections_are_kept_by_a_refused_downgrade(empty_engine: Engine) -> None:
    """0018d's tables go away only while empty: a downgrade would destroy the history of a
    patient's corrected details."""
    import datetime as dt

    from sqlalchemy import text

    migrate.upgrade(empty_engine, "0018d")
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO data_keys (id, wrapped, master_key_id, created_at)"
                " VALUES (1, :w, 'm1', :at)"
            ),
            {"w": b"wrapped", "at": at},
        )
        conn.execute(
            text(
                "INSERT INTO patients (id, data_key_id, identifier_kind, identifier_issuer,"
                " preferred_language, is_protected_identity, created_at)"
                " VALUES (1, 1, 'pnr', '', 'sv', false, :at)"
            ),
            {"at": at},
        )
        conn.execute(
            text(
                "INSERT INTO patient_corrections (id, patient_id, corrected_at, earlier_enc)"
                " VALUES (1, 1, :at, :blob)"
            ),
            {"at": at, "blob": b"sealed"},
        )
    with pytest.raises(RuntimeError, match=r"1 correction\(s\) and 0 offered"):
        migrate.downgrade(empty_engine, "0013")
    assert migrate.current_revision(empty_engine) == "0018d"
    with empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM patient_corrections"))
    migrate.downgrade(empty_engine, "0013")
    assert "patient_corrections" not in inspect(empty_engine).get_table_names()
