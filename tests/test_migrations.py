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
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision("0017")
    assert script is not None and isinstance(script.down_revision, str)
    before = script.down_revision
    migrate.upgrade(empty_engine, before, ring=ring)
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
    assert migrate.current_revision(empty_engine) == before  # nothing changed

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
        migrate.downgrade(empty_engine, before)
    migrate.downgrade(empty_engine, before, ring=ring)
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT birth_year, sex FROM patients")).one() == (1981, "male")
        assert conn.execute(text("SELECT screening_flag FROM cases")).scalar_one() == "positive"
        events = conn.execute(text("SELECT event FROM case_events ORDER BY id")).scalars().all()
        assert events == ["flag_screening", "register_baseline"]


def test_stored_codes_become_keyed_and_an_old_code_still_works(
    empty_engine: Engine, app: Any, workflow: Any
) -> None:
    import datetime as dt
    import hashlib

    from sqlalchemy import select, text, update
    from sqlalchemy.orm import Session

    from slussen import vault
    from slussen.accounts.models import RecoveryCode, Unit, User
    from slussen.accounts.services import SecondFactorRefused, create_user, use_second_factor
    from slussen.audit import Actor
    from slussen.questionnaires import codes
    from slussen.questionnaires.models import AnswerCode
    from tests.builders import make_case
    from tests.conftest import TEST_PASSWORD

    ring = vault.KeyRing.generate()
    before = ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_revision("0016")
    assert before is not None and isinstance(before.down_revision, str)
    migrate.upgrade(empty_engine, ring=ring)  # a real case, built by the services at head
    with app.app_context(), Session(empty_engine) as session, session.begin():
        unit = Unit(name="Enhet", hsa_id="SE2321000016-M016", street="Gatan 1",
                    postcode="722 15", town="Västerås", phone="021")  # fmt: skip
        session.add(unit)
        session.flush()
        user = create_user(session, app.extensions["slussen.settings"], username="coach",
                           display_name="Coach", role="coach", password=TEST_PASSWORD,
                           unit_ids=[unit.id])  # fmt: skip
        case = make_case(session, ring, workflow, Actor.of(user), unit.id, "invited")
        case_id, user_id = case.id, user.id
    migrate.downgrade(empty_engine, before.down_revision, ring=ring)

    # Codes as the version before stored them: SHA-256 of the normalised code.
    answer, recovery = "ACDE-FGHJ-KM", "23456-789AB"
    old_answer = hashlib.sha256(b"ACDEFGHJKM").hexdigest()
    old_recovery = hashlib.sha256(b"23456789AB").hexdigest()
    now = dt.datetime.now(dt.UTC)
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO answer_codes (id, code_hash, case_id, occasion, created_at,"
                " expires_at) VALUES (1, :h, :c, 'baseline', :at, :until)"
            ),
            {"h": old_answer, "c": case_id, "at": now, "until": now + dt.timedelta(days=30)},
        )
        conn.execute(
            text(
                "INSERT INTO recovery_codes (id, user_id, code_hash, created_at)"
                " VALUES (1, :u, :h, :at)"
            ),
            {"u": user_id, "h": old_recovery, "at": now},
        )
        # The recovery path asks only that the account has a second factor.
        conn.execute(text("UPDATE users SET totp_secret_enc = :s"), {"s": b"sealed"})

    def stored() -> list[str]:
        with empty_engine.connect() as conn:
            return [
                conn.execute(text("SELECT code_hash FROM answer_codes")).scalar_one(),
                conn.execute(text("SELECT code_hash FROM recovery_codes")).scalar_one(),
            ]

    with pytest.raises(RuntimeError, match=r"1 in answer_codes, 1 in recovery_codes\) needs"):
        migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == before.down_revision
    assert stored() == [old_answer, old_recovery]  # nothing changed

    migrate.upgrade(empty_engine, ring=ring)
    keyed = stored()
    assert keyed[0] == codes.code_hash(ring, answer) != old_answer
    assert keyed[1] == vault.blind_index(ring, "recovery-code", old_recovery)
    with Session(empty_engine) as session, session.begin():
        with pytest.raises(codes.AnswerCodeError, match="finns inte"):
            codes.redeem_code(session, vault.KeyRing.generate(), answer)
        assert codes.redeem_code(session, ring, answer.lower()).case_id == case_id
        user = session.get(User, user_id)
        assert user is not None
        left = use_second_factor(session, ring, user, recovery).recovery_codes_left
        assert left == 0

    # The downgrade cannot invert the keyed hashes: it invalidates the codes that still work.
    with Session(empty_engine) as session, session.begin():
        session.execute(update(RecoveryCode).values(used_at=None))  # unspent again
    migrate.downgrade(empty_engine, before.down_revision, ring=ring)  # 0016 needs none
    assert stored() == keyed  # every row stays, with its keyed hash
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT used_at FROM recovery_codes")).scalar_one() is not None
        expires = conn.execute(select(AnswerCode.expires_at)).scalar_one()
        assert expires <= dt.datetime.now(dt.UTC)
        assert conn.execute(select(AnswerCode.used_at)).scalar_one() is None
    migrate.upgrade(empty_engine, ring=ring)
    with Session(empty_engine) as session, session.begin():
        with pytest.raises(codes.AnswerCodeError):  # it stays invalid at head again
            codes.redeem_code(session, ring, answer)
        user = session.get(User, user_id)
        assert user is not None
        with pytest.raises(SecondFactorRefused):
            use_second_factor(session, ring, user, recovery)


def test_corrections_are_kept_by_a_refused_downgrade(empty_engine: Engine) -> None:
    """0018's tables go away only while empty: a downgrade would destroy the history of a
    patient's corrected details."""
    import datetime as dt

    from sqlalchemy import text

    migrate.upgrade(empty_engine, "0018")
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
        migrate.downgrade(empty_engine, "0017")
    assert migrate.current_revision(empty_engine) == "0018"
    with empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM patient_corrections"))
    migrate.downgrade(empty_engine, "0017")
    assert "patient_corrections" not in inspect(empty_engine).get_table_names()


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
    """0014: every case of a patient not erased gets its research subject (covariates, status,
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
    migrate.upgrade(empty_engine, "0014", ring=ring)  # this revision alone: later ones seal more
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


#: The revision that seals the visits' facts, and the one it follows (the chain may change).
SEALED_VISITS = "0015"


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
