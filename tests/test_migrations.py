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
from sqlalchemy import Connection, Engine, inspect

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


def _insert(conn: Connection, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """Rows of `table` in raw Core, whatever the models say now (times typed as the app stores
    them)."""
    import sqlalchemy as sa

    from slussen.db import UtcDateTime

    names = columns.split()
    typed = (sa.column(c, UtcDateTime() if c.endswith("_at") else None) for c in names)
    conn.execute(
        sa.insert(sa.table(table, *typed)), [dict(zip(names, r, strict=True)) for r in rows]
    )


def test_research_records_are_made_from_the_clinical_tables_and_scores_sealed(
    empty_engine: Engine,
) -> None:
    """0014r: every case of a patient not erased gets its research subject (covariates, status,
    flag, the first day of each milestone, plan and hand-over) and its scores (the last value per
    score and occasion); every score is sealed with its patient's key, an erased patient's
    dropped. Without the ring nothing changes; the downgrade opens the seals again."""
    import datetime as dt
    import json

    from sqlalchemy import text

    from slussen import vault

    ring = vault.KeyRing.generate()
    migrate.upgrade(empty_engine, "0013")
    at = dt.datetime(2026, 3, 31, 22, 30, tzinfo=dt.UTC)  # 1 April in Sweden
    later = at + dt.timedelta(days=9)
    key = vault.new_data_key()
    # fmt: off
    with empty_engine.begin() as conn:
        _insert(conn, "units", "id name hsa_id street postcode town phone phone_hours created_at",
                [(1, "VC", "SE2321000016-M001", "G 1", "722 15", "V", "0", "", at)])
        _insert(conn, "data_keys", "id wrapped master_key_id created_at",
                [(1, vault.wrap_data_key(ring, key, data_key_id=1), "m1", at),
                 (2, None, None, at)])  # patient 2 was erased: the key is destroyed
        _insert(conn, "patients", "id data_key_id identifier_kind identifier_issuer "
                "preferred_language is_protected_identity birth_year sex created_at erased_at",
                [(1, 1, "pnr", "x", "sv", False, 1960, "female", at, None),
                 (2, 2, "pnr", "x", "sv", False, 1990, None, at, later)])
        _insert(conn, "cases", "id reference unit_id patient_id state channel contact_channel "
                "is_consent_to_contact opened_at state_entered_at closed_at screening_flag "
                "version",
                [(10, "S26-10", 1, 1, "closed_completed", "phone", "post", True, at, later,
                  later, "resolved", 1),
                 (11, "S26-11", 1, 2, "referred", "phone", "post", True, at, at, None, None, 1)])
        _insert(conn, "case_events", "case_id event to_state actor_name actor_role occurred_at",
                [(10, event, "x", "c", "coach", when) for event, when in (
                    ("open", at), ("invite", later), ("invite", at + dt.timedelta(days=2)),
                    ("register_baseline", later), ("decline", later))])
        _insert(conn, "action_plans", "case_id revision goals_enc created_at",
                [(10, 1, b"x", later)])
        _insert(conn, "handovers", "case_id organisation_name status meeting_at created_at",
                [(10, "F", "done", None, later), (10, "G", "accepted", at, at)])
        _insert(conn, "questionnaire_responses", "id case_id form_id form_version occasion "
                "source answers_enc is_verified submitted_at",
                [(r, c, f, 1, "baseline", "paper", b"x", True, at)
                 for r, c, f in ((1, 10, "ucla3"), (2, 10, "ucla3"), (3, 10, "mini_spin"),
                                 (4, 11, "ucla3"))])
        # Case 10 answered UCLA-3 twice, the second time with no value: the first value counts.
        _insert(conn, "questionnaire_scores", "id response_id case_id form_id score_id "
                "occasion value is_positive",
                [(1, 1, 10, "ucla3", "total", "baseline", 7.0, True),
                 (2, 2, 10, "ucla3", "total", "baseline", None, None),
                 (3, 3, 10, "mini_spin", "total", "baseline", 8.0, True),
                 (4, 4, 11, "ucla3", "total", "baseline", 5.0, False)])
    # fmt: on

    with pytest.raises(RuntimeError, match=r"2 case\(s\) need research records"):
        migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == "0013"  # nothing changed
    migrate.upgrade(empty_engine, ring=ring)
    with empty_engine.connect() as conn:
        [subject] = conn.execute(text("SELECT * FROM research_subjects")).mappings().all()
        scores = conn.execute(
            text("SELECT form_id, value, is_positive FROM research_scores ORDER BY form_id")
        ).all()
        columns = {c["name"] for c in inspect(conn).get_columns("questionnaire_scores")}
        sealed = dict(conn.execute(text("SELECT id, score_enc FROM questionnaire_scores")).all())
    assert subject["pseudonym"] == vault.blind_index(ring, "research:case", "10")
    assert subject["patient_pseudonym"] == vault.blind_index(ring, "research:patient", "1")
    covariates = ("unit_id", "channel", "age_band", "sex", "status")
    assert [subject[c] for c in covariates] == [1, "phone", "65-79", "female", "closed_completed"]
    assert subject["is_flagged"]
    days = {
        name[: -len("_on")]: None if value is None else dt.date.fromisoformat(str(value)[:10])
        for name, value in subject.items()
        if name.endswith("_on")
    }
    assert days == {
        "referred": dt.date(2026, 4, 1),
        "invitation": dt.date(2026, 4, 3),  # the earliest invitation
        "baseline": dt.date(2026, 4, 10),
        "mapping_visit": None,
        "action_plan": dt.date(2026, 4, 10),
        "handover_done": dt.date(2026, 4, 10),  # the one done, not the one accepted
        "follow_up_1": None,
        "six_month": None,
    }
    assert [(f, v, bool(p)) for f, v, p in scores] == [
        ("mini_spin", 8.0, True),
        ("ucla3", 7.0, True),
    ]
    assert "value" not in columns and "is_positive" not in columns
    cipher = vault.FieldCipher(key, 1)
    opened = {
        i: json.loads(
            cipher.decrypt_str(sealed[i], table="questionnaire_scores", column="score", row_id=i)
        )
        for i in (1, 2, 3)
    }
    assert opened == {
        1: {"value": 7.0, "is_positive": True},
        2: {"value": None, "is_positive": None},
        3: {"value": 8.0, "is_positive": True},
    }
    assert sealed[4] is None  # the erased patient's score went with their key

    with pytest.raises(RuntimeError, match="Cannot unseal 3 score"):
        migrate.downgrade(empty_engine, "0013")
    migrate.downgrade(empty_engine, "0013", ring=ring)
    with empty_engine.connect() as conn:
        back = conn.execute(
            text("SELECT id, value, is_positive FROM questionnaire_scores ORDER BY id")
        ).all()
        tables = inspect(conn).get_table_names()
    assert [(i, v, None if p is None else bool(p)) for i, v, p in back] == [
        (1, 7.0, True),
        (2, None, None),
        (3, 8.0, True),
        (4, None, None),
    ]
    assert "research_subjects" not in tables and "research_scores" not in tables
    migrate.upgrade(empty_engine, ring=ring)  # and up again
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
