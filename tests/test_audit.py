"""The access log: chained, tamper-evident, append-only, unforked under concurrency."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from slussen import audit, migrate, vault
from slussen.audit import AuditEvent, verify_chain
from slussen.db import make_engine
from tests.conftest import scratch_postgres

ACTOR = audit.Actor(None, "tester", "coach")
INFO = audit.RequestInfo("req-1", "127.0.0.1")


def write_rows(session: Session, fresh_ring: vault.KeyRing, n: int = 10) -> None:
    for i in range(n):
        audit.record(
            session,
            fresh_ring,
            ACTOR,
            "read",
            "patient",
            i,
            purpose="test",
            patient_id=i + 1,
            info=INFO,
        )
    session.flush()


def allow_tampering(session: Session) -> None:
    """Play the attacker with database access: switch off PostgreSQL's append-only trigger."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))


def test_untouched_chain_verifies(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    write_rows(session, fresh_ring)
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 10


def test_another_key_ring_does_not_verify(session: Session, fresh_ring: vault.KeyRing) -> None:
    write_rows(session, fresh_ring)
    assert not verify_chain(session, vault.KeyRing.generate()).ok


@pytest.mark.parametrize("column", ["purpose", "object_id", "actor_name", "client_address"])
def test_changed_row_is_named(
    backend: str, session: Session, fresh_ring: vault.KeyRing, column: str
) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values({column: "changed"}))
    result = verify_chain(session, fresh_ring)
    assert not result.ok
    assert result.bad_seq == 4
    assert "seq 4" in result.reason


def test_changed_time_is_named(backend: str, session: Session, fresh_ring: vault.KeyRing) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    session.execute(
        update(AuditEvent)
        .where(AuditEvent.seq == 7)
        .values(occurred_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    )
    assert verify_chain(session, fresh_ring).bad_seq == 7


def test_deleted_row_is_named(backend: str, session: Session, fresh_ring: vault.KeyRing) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    result = verify_chain(session, fresh_ring)
    assert not result.ok and result.bad_seq == 5
    assert "saknas" in result.reason


def test_deleted_and_renumbered_rows_fail_at_the_first(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    for seq in range(6, 11):
        session.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(seq=seq - 1))
    assert verify_chain(session, fresh_ring).bad_seq == 5


def test_deleted_last_row_is_found(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 10))
    result = verify_chain(session, fresh_ring)
    assert not result.ok and result.bad_seq == 10


def test_inserted_row_is_named(backend: str, session: Session, fresh_ring: vault.KeyRing) -> None:
    write_rows(session, fresh_ring)
    allow_tampering(session)
    row = session.execute(select(AuditEvent.__table__).where(AuditEvent.seq == 3)).one()._asdict()
    for seq in range(10, 3, -1):  # make room after row 3
        session.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(seq=seq + 1))
    row.pop("id")
    row.update(seq=4, purpose="forged", mac="f" * 64)
    session.execute(insert(AuditEvent).values(**row))
    result = verify_chain(session, fresh_ring)
    assert not result.ok and result.bad_seq == 4


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_postgres_trigger_refuses_update_and_delete(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    write_rows(session, fresh_ring, 2)
    for statement in (
        update(AuditEvent).where(AuditEvent.seq == 1).values(purpose="x"),
        delete(AuditEvent).where(AuditEvent.seq == 1),
    ):
        nested = session.begin_nested()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(statement)
        nested.rollback()
    assert verify_chain(session, fresh_ring).ok


def _concurrent_appends(
    engine: Engine, fresh_ring: vault.KeyRing, threads: int, per_thread: int
) -> None:
    factory = sessionmaker(bind=engine)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with factory() as s, s.begin():
                    audit.record(
                        s,
                        fresh_ring,
                        ACTOR,
                        "read",
                        "patient",
                        f"{n}-{i}",
                        purpose="load",
                        patient_id=n + 1,
                        info=INFO,
                    )
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert errors == []


@pytest.mark.postgres
def test_concurrent_requests_on_postgres_leave_one_chain(fresh_ring: vault.KeyRing) -> None:
    with scratch_postgres(f"slussen_audit_{os.getpid()}") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        _concurrent_appends(engine, fresh_ring, threads=8, per_thread=25)
        with Session(engine) as session:
            result = verify_chain(session, fresh_ring)
            seqs = list(session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
        engine.dispose()
    assert result.ok, result.reason
    assert seqs == list(range(1, 201))


def test_concurrent_requests_on_sqlite_leave_one_chain(
    tmp_path: Path, fresh_ring: vault.KeyRing
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    migrate.upgrade(engine)
    _concurrent_appends(engine, fresh_ring, threads=4, per_thread=25)
    with Session(engine) as session:
        result = verify_chain(session, fresh_ring)
    engine.dispose()
    assert result.ok and result.checked == 100


def test_cli_verify_exit_codes(cli_env: Path) -> None:
    from slussen.app import create_app
    from slussen.cli import cli
    from slussen.db import session_scope
    from slussen.keystore import current_key_ring
    from tests.conftest import TEST_PASSWORD

    runner = CliRunner()
    runner.invoke(cli, ["init-db"])
    runner.invoke(cli, ["demo", "--password", TEST_PASSWORD])
    good = runner.invoke(cli, ["audit", "verify"])
    assert good.exit_code == 0, good.output
    # Every demo step adds rows (12 from patients alone); the count is not the point here.
    assert re.search(r"är hel: (\d+) rader", good.output)
    assert int(re.search(r"är hel: (\d+) rader", good.output).group(1)) >= 12  # type: ignore[union-attr]
    assert "ingen kontrollpunkt: avkortning kan inte upptäckas" in good.output
    app = create_app()
    with app.app_context(), session_scope(app) as session:
        current_key_ring()
        chain = session.scalars(select(AuditEvent.chain).order_by(AuditEvent.id)).first()
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.chain == chain, AuditEvent.seq == 3)
            .values(purpose="edited")
        )
    bad = runner.invoke(cli, ["audit", "verify"])
    assert bad.exit_code == 1
    assert f"{audit.chain_label(chain)}: 2 rader, FEL: rad seq 3" in bad.output


def write_unit_rows(session: Session, ring: vault.KeyRing, unit_id: int, n: int) -> None:
    for i in range(n):
        audit.record(
            session, ring, ACTOR, "read", "patient", i, purpose="t", unit_id=unit_id, info=INFO
        )
    session.flush()


def test_two_units_append_to_their_own_chains(
    backend: str, session: Session, fresh_ring: vault.KeyRing, unit: object
) -> None:
    unit_id = unit.id  # type: ignore[attr-defined]
    write_rows(session, fresh_ring, 3)
    write_unit_rows(session, fresh_ring, unit_id, 4)
    heads = {h.chain: h.seq for h in session.scalars(select(audit.AuditChainHead))}
    assert heads["region"] == 3 and heads[f"unit:{unit_id}"] == 4
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 7


def test_verify_names_the_first_bad_row_in_each_chain(
    backend: str, session: Session, fresh_ring: vault.KeyRing, unit: object
) -> None:
    unit_id = unit.id  # type: ignore[attr-defined]
    write_rows(session, fresh_ring, 5)
    write_unit_rows(session, fresh_ring, unit_id, 5)
    allow_tampering(session)
    for chain, seq in (("region", 2), (f"unit:{unit_id}", 4)):
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.chain == chain, AuditEvent.seq.in_([seq, seq + 1]))
            .values(purpose="x")
        )
    result = verify_chain(session, fresh_ring)
    assert [(c.chain, c.bad_seq) for c in result.bad] == [("region", 2), (f"unit:{unit_id}", 4)]


def test_truncation_after_a_checkpoint_names_chain_and_checkpoint(
    backend: str, session: Session, fresh_ring: vault.KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    write_rows(session, fresh_ring, 10)
    audit.write_checkpoint(session, fresh_ring, path)
    assert verify_chain(session, fresh_ring, checkpoint_path=path).ok
    allow_tampering(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq > 7))
    last = session.execute(select(AuditEvent.mac).where(AuditEvent.seq == 7)).scalar_one()
    session.execute(update(audit.AuditChainHead).values(seq=7, mac=last))
    assert verify_chain(session, fresh_ring).ok  # without the checkpoint nothing shows
    result = verify_chain(session, fresh_ring, checkpoint_path=path)
    assert not result.ok
    assert "regionkedjan" in result.reason and "kontrollpunkten på rad 1" in result.reason
    with pytest.raises(audit.CheckpointRefused):  # nor will the rewound head be anchored
        audit.write_checkpoint(session, fresh_ring, path)


def test_a_changed_checkpoint_line_is_refused(
    session: Session, fresh_ring: vault.KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    write_rows(session, fresh_ring, 3)
    audit.write_checkpoint(session, fresh_ring, path)
    path.write_text(path.read_text().replace('"seq":3', '"seq":2'))
    result = verify_chain(session, fresh_ring, checkpoint_path=path)
    assert not result.ok and "rad 1 stämmer inte med sin MAC" in result.reason


def test_cli_checkpoint_then_verify(cli_env: Path) -> None:
    from slussen.cli import cli

    runner = CliRunner()
    runner.invoke(cli, ["init-db"])
    written = runner.invoke(cli, ["audit", "checkpoint"])
    assert written.exit_code == 0, written.output
    verified = runner.invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "ingen kontrollpunkt" not in verified.output
    assert "stämmer med kontrollpunkten på rad 1" in verified.output


@pytest.mark.postgres
def test_an_open_append_of_one_unit_does_not_hold_up_another(fresh_ring: vault.KeyRing) -> None:
    """Unit 1's transaction holds its chain head (as a long print would); unit 2 appends and
    commits at once, with a lock timeout that would fail it if it had to wait."""
    with scratch_postgres(f"slussen_chains_{os.getpid()}") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            for unit_id in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO units (id, name, hsa_id, street, postcode, town, phone,"
                        " phone_hours, created_at) VALUES (:id, :name, :hsa, 'Gatan 1',"
                        " '722 15', 'Västerås', '021', '', now())"
                    ),
                    {
                        "id": unit_id,
                        "name": f"Enhet {unit_id}",
                        "hsa": f"SE2321000016-B00{unit_id}",
                    },
                )
        factory = sessionmaker(bind=engine)
        try:
            for unit_id in (1, 2):  # both chains exist before the race
                with factory() as s, s.begin():
                    write_unit_rows(s, fresh_ring, unit_id, 1)
            with factory() as long_job:
                long_job.begin()
                write_unit_rows(long_job, fresh_ring, 1, 3)
                with factory() as other, other.begin():
                    other.execute(text("SET LOCAL lock_timeout = '1s'"))
                    write_unit_rows(other, fresh_ring, 2, 1)
                long_job.commit()
            with factory() as s:
                result = verify_chain(s, fresh_ring)
        finally:
            engine.dispose()
    assert result.ok, result.reason
    assert [(c.chain, c.checked) for c in result.chains] == [
        ("region", 0),
        ("unit:1", 4),
        ("unit:2", 2),
    ]


def test_one_call_appends_many_rows_over_chains_in_order(
    backend: str, session: Session, fresh_ring: vault.KeyRing, unit: object
) -> None:
    """The one append path both ways: single rows and a batch spanning two chains interleave
    into chains that verify, each row's MAC following the entries' order in its chain."""
    unit_id = unit.id  # type: ignore[attr-defined]
    write_rows(session, fresh_ring, 2)
    entries = [
        audit.Entry("read", "case", n, "visad i arbetslista", patient_id=n + 1, unit_id=unit_id)
        if n % 2
        else audit.Entry("read", "case", n, "visad i arbetslista", patient_id=n + 1)
        for n in range(6)
    ]
    seqs = audit.record_entries(session, fresh_ring, ACTOR, entries, info=INFO)
    assert seqs == [3, 1, 4, 2, 5, 3]
    write_unit_rows(session, fresh_ring, unit_id, 1)
    rows = session.execute(
        select(AuditEvent.chain, AuditEvent.seq, AuditEvent.object_id).order_by(AuditEvent.id)
    ).all()
    assert [(r.chain, r.seq) for r in rows[2:8]] == [
        ("region", 3), (f"unit:{unit_id}", 1), ("region", 4),
        (f"unit:{unit_id}", 2), ("region", 5), (f"unit:{unit_id}", 3),
    ]  # fmt: skip
    pseudonyms = session.scalars(
        select(AuditEvent.patient_pseudonym)
        .where(AuditEvent.object_type == "case")
        .order_by(AuditEvent.id)
    ).all()
    assert pseudonyms == [audit.patient_pseudonym(fresh_ring, n + 1) for n in range(6)]
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 9


def test_a_batch_with_an_unknown_action_writes_nothing(
    session: Session, fresh_ring: vault.KeyRing
) -> None:
    entries = [audit.Entry("read", "case", 1, "t"), audit.Entry("peek", "case", 2, "t")]
    with pytest.raises(ValueError):
        audit.record_entries(session, fresh_ring, ACTOR, entries, info=INFO)
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
    assert audit.record_entries(session, fresh_ring, ACTOR, [], info=INFO) == []


# Verify's fast path: the database writes each row's MACed content (`audit._content_sql`), which
# must be byte for byte what the writer MACs (`audit._content`).

#: Every control character but NUL, quotes, backslashes, non-ASCII, line and paragraph
#: separators, a byte-order mark and an emoji.
TRICKY = "".join(map(chr, range(1, 32))) + '"\\/\x7f åäö \u2028\u2029\ufeff\U0001f600'


def _append_raw(session: Session, ring: vault.KeyRing, rows: list[dict[str, object]]) -> None:
    """Append `rows` to the region chain as stored, MACed by the writer's rule, bypassing
    `record` (which cuts to the columns' lengths), and set the chain's head."""
    audit.ensure_head(session, ring, audit.REGION)
    seq, previous = session.execute(
        select(audit.AuditChainHead.seq, audit.AuditChainHead.mac).where(
            audit.AuditChainHead.chain == audit.REGION
        )
    ).one()
    for values in rows:
        seq += 1
        full = {"seq": seq, "actor_id": None, "unit_id": None, **values}
        full["mac"] = previous = audit._mac_of(
            ring.audit_key, previous, [full[name] for name in audit._CHAINED]
        )
        session.execute(insert(AuditEvent).values(chain=audit.REGION, **full))
    session.execute(
        update(audit.AuditChainHead)
        .where(audit.AuditChainHead.chain == audit.REGION)
        .values(seq=seq, mac=previous)
    )


def _row(**changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "occurred_at": dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC),
        "actor_name": "tester",
        "actor_role": "coach",
        "action": "read",
        "object_type": "patient",
        "object_id": "1",
        "patient_pseudonym": "P-1",
        "purpose": "test",
        "request_id": "req-1",
        "client_address": "127.0.0.1",
    }
    values.update(changes)
    return values


def test_rows_of_any_content_verify_through_the_databases_json(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    assert audit._sql_content_agrees(session.connection())  # the fast path is taken
    rows = [
        _row(
            actor_name=TRICKY,
            actor_role=TRICKY[-20:],
            object_type=TRICKY[:40],
            object_id=TRICKY,
            patient_pseudonym=TRICKY[-40:],
            purpose=TRICKY * 4,
            request_id=TRICKY[-32:],
            client_address=TRICKY,
        ),
        _row(patient_pseudonym=None, occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)),
        _row(actor_name="", object_type="", object_id="", purpose="", client_address=""),
        _row(occurred_at=dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ]
    if backend == "sqlite":  # PostgreSQL's text cannot hold NUL
        rows.append(_row(purpose="före\x00efter"))
    _append_raw(session, fresh_ring, rows)
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == len(rows)

    allow_tampering(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == 1).values(purpose=TRICKY * 3))
    assert verify_chain(session, fresh_ring).bad_seq == 1


_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
_NUMBER = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_FIELDS = st.tuples(
    _NUMBER,
    st.datetimes(
        min_value=dt.datetime(1000, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))]),
    ),
    st.none() | _NUMBER,
    _TEXT,
    _TEXT,
    st.none() | _NUMBER,
    _TEXT,
    _TEXT,
    _TEXT,
    st.none() | _TEXT,
    _TEXT,
    _TEXT,
    _TEXT,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_databases_json_is_the_writers(
    backend: str, engine: Engine, data: st.DataObject
) -> None:
    fields = data.draw(_FIELDS)
    with engine.connect() as connection:
        assert audit._content_by_sql(connection, fields) == audit._content(fields)


def test_a_time_stored_in_another_shape_verifies_on_sqlite(
    session: Session, fresh_ring: vault.KeyRing
) -> None:
    """A row written without SQLAlchemy's time format (by hand, by an old tool) is read and
    MACed over its UTC time, as the writer MACs it."""
    _append_raw(session, fresh_ring, [_row(), _row()])
    for seq, stored in (
        (1, "2026-03-04 05:06:07.890123+00:00"),
        (2, "2026-03-04 07:06:07.890123+02:00"),
    ):
        session.execute(
            text("UPDATE audit_events SET occurred_at = :stored WHERE seq = :seq"),
            {"stored": stored, "seq": seq},
        )
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 2
    session.execute(
        text(
            "UPDATE audit_events SET occurred_at = '2026-03-04 05:06:07.890123+01:00' WHERE seq = 2"
        )
    )
    assert verify_chain(session, fresh_ring).bad_seq == 2


def test_a_chain_whose_ids_are_out_of_seq_order_is_walked_in_seq_order(
    backend: str, session: Session, fresh_ring: vault.KeyRing
) -> None:
    """Verify reads rows in id order; a chain whose rows were stored out of seq order (a
    restore, a hand-made copy) is walked again in seq order, so it verifies and its first bad
    row is the one a walk in seq order names."""
    write_rows(session, fresh_ring, 6)
    allow_tampering(session)
    table = AuditEvent.__table__
    rows = {r["seq"]: r for r in session.execute(select(table)).mappings()}
    session.execute(delete(AuditEvent))
    for seq in (1, 2, 4, 3, 5, 6):
        values = dict(rows[seq])
        values.pop("id")
        session.execute(insert(AuditEvent).values(**values))
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 6

    session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(purpose="changed"))
    result = verify_chain(session, fresh_ring)
    assert result.bad_seq == 4 and "stämmer inte med sin MAC" in result.reason


def test_verify_reads_the_fields_when_the_databases_json_differs(
    backend: str, session: Session, fresh_ring: vault.KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database writing JSON otherwise than the writer's encoder is caught by the probe, and
    verify then MACs the stored fields in Python: still ok, still naming a changed row."""
    with monkeypatch.context() as patch:
        patch.setattr(audit, "_ENCODER", json.JSONEncoder(separators=(",", ":")))  # \u00e5
        assert not audit._sql_content_agrees(session.connection())
    write_rows(session, fresh_ring, 4)
    monkeypatch.setattr(audit, "_sql_content_agrees", lambda connection: False)
    result = verify_chain(session, fresh_ring)
    assert result.ok and result.checked == 4
    allow_tampering(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(purpose="changed"))
    assert verify_chain(session, fresh_ring).bad_seq == 3
