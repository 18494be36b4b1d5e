"""screening results and demographics sealed: `cases.screening_flag` becomes `screening_enc`,
`patients.birth_year`/`sex` become `demographics_enc`, and the history rows of screening events
keep their event name sealed (`case_events.event_enc`, the clear name "sealed")

Revision ID: 0017
Revises: 0016
Create Date: 2027-02-01 09:00:00.000000

Each value is sealed with its patient's data key, bound to its table/column/row, padded to one
length as slussen.cases.engine and slussen.patients.services write them (a migration must not
import the app's services, which change after it). Sealing needs the key ring, which
`slussen.migrate.upgrade(engine, ring=...)` hands over (`slussen init-db` always does); without a
ring the upgrade works only on a database with no case and no patient, and stops on one with any
before changing it. The screening events are those whose transition declares `screening` in the
shipped workflow (workflows/sluss.toml), or the names given in `config.attributes
["sealed_events"]`.

The downgrade opens every sealed value with the ring and writes it back in clear; without a ring
it works only while there is nothing sealed, and stops otherwise. An erased patient's values
(key destroyed) come back as NULL.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable

import sqlalchemy as sa
from alembic import context, op

from slussen import vault
from slussen.paths import shipped_dir

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_SCREENING_WIDTH = 10
_DEMOGRAPHICS_WIDTH = 40
_SEALED_EVENT = "sealed"


def _ring() -> vault.KeyRing | None:
    ring = context.config.attributes.get("ring")
    return ring if isinstance(ring, vault.KeyRing) else None


def _screening_events() -> list[str]:
    given = context.config.attributes.get("sealed_events")
    if given is not None:
        return sorted(given)
    with (shipped_dir("workflows") / "sluss.toml").open("rb") as f:
        workflow = tomllib.load(f)
    return sorted({t["event"] for t in workflow.get("transitions", []) if "screening" in t})


class _Ciphers:
    """Each data key's FieldCipher, unwrapped once; None for a destroyed key."""

    def __init__(self, ring: vault.KeyRing | None) -> None:
        self.ring = ring
        self.cache: dict[int, vault.FieldCipher | None] = {}

    def __call__(self, key_id: int, wrapped: bytes | None) -> vault.FieldCipher | None:
        if key_id not in self.cache:
            if wrapped is None:
                self.cache[key_id] = None
            else:
                assert self.ring is not None
                raw = vault.unwrap_data_key(self.ring, wrapped, data_key_id=key_id)
                self.cache[key_id] = vault.FieldCipher(raw, key_id)
        return self.cache[key_id]


def _need_ring(count: int, what: str) -> vault.KeyRing | None:
    ring = _ring()
    if count and ring is None:
        raise RuntimeError(
            f"{count} {what}, and this needs the key ring: run `slussen init-db` with the key "
            "ring in place (keyring_path). Nothing was changed."
        )
    return ring


def _update(bind: sa.Connection, sql: str, rows: Iterable[dict[str, object]]) -> None:
    batch = list(rows)
    if batch:
        bind.execute(sa.text(sql), batch)


def upgrade() -> None:
    bind = op.get_bind()
    patients = bind.execute(
        sa.text(
            "SELECT p.id, p.data_key_id, k.wrapped, p.birth_year, p.sex, p.erased_at "
            "FROM patients p JOIN data_keys k ON k.id = p.data_key_id ORDER BY p.id"
        )
    ).all()
    cases = bind.execute(
        sa.text(
            "SELECT c.id, c.screening_flag, p.data_key_id, k.wrapped FROM cases c "
            "JOIN patients p ON p.id = c.patient_id JOIN data_keys k ON k.id = p.data_key_id "
            "ORDER BY c.id"
        )
    ).all()
    names = _screening_events()
    events = bind.execute(
        sa.text(
            "SELECT e.id, e.event, p.data_key_id, k.wrapped FROM case_events e "
            "JOIN cases c ON c.id = e.case_id JOIN patients p ON p.id = c.patient_id "
            "JOIN data_keys k ON k.id = p.data_key_id WHERE e.event IN :names ORDER BY e.id"
        ).bindparams(sa.bindparam("names", expanding=True)),
        {"names": names or ["-"]},
    ).all()
    ring = _need_ring(len(patients) + len(cases), "patient(s) and case(s) hold values to seal")
    cipher = _Ciphers(ring)

    op.add_column("patients", sa.Column("demographics_enc", sa.LargeBinary(), nullable=True))
    op.add_column("cases", sa.Column("screening_enc", sa.LargeBinary(), nullable=True))
    op.add_column("case_events", sa.Column("event_enc", sa.LargeBinary(), nullable=True))

    sealed_patients = []
    for patient_id, key_id, wrapped, birth_year, sex, erased_at in patients:
        c = cipher(key_id, wrapped)
        if c is None or erased_at is not None:
            continue
        text = json.dumps({"birth_year": birth_year, "sex": sex}, sort_keys=True)
        blob = c.encrypt(
            text.ljust(_DEMOGRAPHICS_WIDTH),
            table="patients",
            column="demographics",
            row_id=patient_id,
        )
        sealed_patients.append({"b": blob, "i": patient_id})
    _update(bind, "UPDATE patients SET demographics_enc = :b WHERE id = :i", sealed_patients)

    sealed_cases = []
    for case_id, flag, key_id, wrapped in cases:
        c = cipher(key_id, wrapped)
        if c is None:
            continue
        blob = c.encrypt(
            (flag or "").ljust(_SCREENING_WIDTH), table="cases", column="screening", row_id=case_id
        )
        sealed_cases.append({"b": blob, "i": case_id})
    _update(bind, "UPDATE cases SET screening_enc = :b WHERE id = :i", sealed_cases)

    sealed_events = []
    for event_id, event, key_id, wrapped in events:
        c = cipher(key_id, wrapped)
        blob = (
            None
            if c is None
            else c.encrypt(event, table="case_events", column="event", row_id=event_id)
        )
        sealed_events.append({"b": blob, "i": event_id, "s": _SEALED_EVENT})
    _update(bind, "UPDATE case_events SET event = :s, event_enc = :b WHERE id = :i", sealed_events)

    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint(op.f("ck_patients_sex_known"), type_="check")
        batch.drop_column("sex")
        batch.drop_column("birth_year")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("screening_flag")


def downgrade() -> None:
    bind = op.get_bind()
    patients = bind.execute(
        sa.text(
            "SELECT p.id, p.data_key_id, k.wrapped, p.demographics_enc FROM patients p "
            "JOIN data_keys k ON k.id = p.data_key_id WHERE p.demographics_enc IS NOT NULL"
        )
    ).all()
    cases = bind.execute(
        sa.text(
            "SELECT c.id, p.data_key_id, k.wrapped, c.screening_enc FROM cases c "
            "JOIN patients p ON p.id = c.patient_id JOIN data_keys k ON k.id = p.data_key_id "
            "WHERE c.screening_enc IS NOT NULL"
        )
    ).all()
    events = bind.execute(
        sa.text(
            "SELECT e.id, p.data_key_id, k.wrapped, e.event_enc FROM case_events e "
            "JOIN cases c ON c.id = e.case_id JOIN patients p ON p.id = c.patient_id "
            "JOIN data_keys k ON k.id = p.data_key_id WHERE e.event = :s"
        ),
        {"s": _SEALED_EVENT},
    ).all()
    _need_ring(len(patients) + len(cases) + len(events), "sealed value(s) must be opened")
    cipher = _Ciphers(_ring())

    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("birth_year", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sex", sa.String(length=6), nullable=True))
        batch.create_check_constraint(
            op.f("ck_patients_sex_known"), "sex IN ('female', 'male') OR sex IS NULL"
        )
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("screening_flag", sa.String(length=10), nullable=True))

    clear_patients = []
    for patient_id, key_id, wrapped, blob in patients:
        c = cipher(key_id, wrapped)
        if c is None:
            continue
        values = json.loads(
            c.decrypt_str(blob, table="patients", column="demographics", row_id=patient_id)
        )
        clear_patients.append({"y": values["birth_year"], "s": values["sex"], "i": patient_id})
    _update(bind, "UPDATE patients SET birth_year = :y, sex = :s WHERE id = :i", clear_patients)
    clear_cases = []
    for case_id, key_id, wrapped, blob in cases:
        c = cipher(key_id, wrapped)
        if c is None:
            continue
        flag = c.decrypt_str(blob, table="cases", column="screening", row_id=case_id).strip()
        clear_cases.append({"f": flag or None, "i": case_id})
    _update(bind, "UPDATE cases SET screening_flag = :f WHERE id = :i", clear_cases)
    clear_events = []
    for event_id, key_id, wrapped, blob in events:
        c = cipher(key_id, wrapped)
        if c is None or blob is None:
            continue  # an erased patient's screening event stays "sealed"
        name = c.decrypt_str(blob, table="case_events", column="event", row_id=event_id)
        clear_events.append({"n": name, "i": event_id})
    _update(bind, "UPDATE case_events SET event = :n WHERE id = :i", clear_events)

    op.drop_column("case_events", "event_enc")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("screening_enc")
    op.drop_column("patients", "demographics_enc")
