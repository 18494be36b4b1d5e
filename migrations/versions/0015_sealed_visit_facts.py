"""sealed visit facts: the mapping's interests, barriers and home area, the network entries'
structured fields, the visits' places and the hand-overs' names and places are sealed with the
patient's data key; `case_interests` and `case_barriers` become two sealed JSON lists on
`mapping_records`

Revision ID: 0015
Revises: 0014
Create Date: 2027-01-19 09:00:00.000000

Sealing needs the key ring, which `slussen.migrate.upgrade(engine, ring=...)` hands over in
Alembic's `config.attributes["ring"]` (`slussen init-db` always does). Without a ring the upgrade
works on a database with none of these facts and stops on one that has any, before changing it.
Each value is sealed as `slussen.patients.services.seal` seals it (the case's patient's data key,
bound to table/column/row; structured facts as compact JSON, as slussen.visits.services writes
them). A patient erased before the upgrade has no data key left to seal with: their clear values
are dropped (NULL), as the erasure promised.

The downgrade opens every sealed value with the ring and writes it back in clear (the two tables
again, one row per interest and barrier); without a ring it works only while nothing is sealed,
and stops otherwise. What an erased patient's destroyed key sealed cannot come back: a visit's
place and a hand-over's organisation become "" and their network entries (whose labels were
shredded with the key) are deleted. The whole migration runs in one transaction, so a wrong ring
changes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from slussen import vault

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Rows read per query (keyset by id) and written per UPDATE.
_BATCH = 2000
#: The network entries' fields that become one sealed JSON object, with the key each has in it
#: (slussen.visits.services writes the same keys; a migration must not import the services).
_NETWORK_FACTS = (
    ("relation_type", "relation_type"),
    ("closeness", "closeness"),
    ("contact_frequency", "contact_frequency"),
    ("is_could_deepen", "could_deepen"),
    ("is_could_resume", "could_resume"),
)
_NETWORK_CHECKS = {
    "relation_type_known": "relation_type IN ('family', 'friend', 'neighbour', 'colleague', "
    "'association', 'care', 'other')",
    "contact_frequency_known": "contact_frequency IN ('daily', 'weekly', 'monthly', 'rarely', "
    "'lost')",
    "closeness_range": "closeness BETWEEN 1 AND 3",
}
#: The hand-overs' clear columns and their lengths.
_HANDOVER_TEXTS = (("organisation_name", 200), ("companion_name", 100), ("meeting_place", 200))
#: The ticked lists: (old table, its column, the sealed column on mapping_records).
_LISTS = (("case_interests", "interest", "interests"), ("case_barriers", "barrier", "barriers"))

_mapping_records = sa.table(
    "mapping_records", sa.column("id", sa.Integer), sa.column("case_id", sa.Integer)
)


def _ring() -> vault.KeyRing | None:
    ring = context.config.attributes.get("ring")
    return ring if isinstance(ring, vault.KeyRing) else None


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class _Keys:
    """Each case's patient's data key, unwrapped once; None for an erased patient."""

    def __init__(self, bind: sa.Connection, ring: vault.KeyRing | None) -> None:
        self.ring = ring
        self._of_case: dict[int, tuple[int, bytes | None]] = {}
        self._ciphers: dict[int, vault.FieldCipher | None] = {}
        if ring is None:
            return
        rows = bind.execute(
            sa.text(
                "SELECT c.id, p.data_key_id, k.wrapped FROM cases c "
                "JOIN patients p ON p.id = c.patient_id "
                "LEFT JOIN data_keys k ON k.id = p.data_key_id"
            )
        )
        self._of_case = {case_id: (key_id, wrapped) for case_id, key_id, wrapped in rows}

    def cipher(self, case_id: int) -> vault.FieldCipher | None:
        key_id, wrapped = self._of_case.get(case_id, (0, None))
        if key_id not in self._ciphers:
            if wrapped is None or self.ring is None:
                self._ciphers[key_id] = None
            else:
                raw = vault.unwrap_data_key(self.ring, wrapped, data_key_id=key_id)
                self._ciphers[key_id] = vault.FieldCipher(raw, key_id)
        return self._ciphers[key_id]

    def seal(self, case_id: int, table: str, column: str, row_id: int, text: str) -> bytes | None:
        """The sealed text; None for no text or an erased patient."""
        cipher = self.cipher(case_id) if text else None
        if cipher is None:
            return None
        return cipher.encrypt(text, table=table, column=column, row_id=row_id)

    def open(
        self, case_id: int, table: str, column: str, row_id: int, blob: bytes | None
    ) -> str | None:
        """The clear text; None for no value or an erased patient's."""
        cipher = self.cipher(case_id) if blob is not None else None
        if cipher is None or blob is None:
            return None
        return cipher.decrypt_str(blob, table=table, column=column, row_id=row_id)


def _batches(bind: sa.Connection, table: str, *columns: str) -> Iterator[Sequence[sa.Row[Any]]]:
    """(id, case_id, `columns`…) of every row of `table` in id order, a batch at a time."""
    rows_of = sa.table(table, *(sa.column(name) for name in ("id", "case_id", *columns)))
    last = 0
    while rows := bind.execute(
        sa.select(*rows_of.c).where(rows_of.c.id > last).order_by(rows_of.c.id).limit(_BATCH)
    ).all():
        yield rows
        last = rows[-1][0]


def _update(bind: sa.Connection, sql: str, values: list[dict[str, Any]]) -> None:
    if values:
        bind.execute(sa.text(sql), values)


def _count(bind: sa.Connection, queries: Sequence[str]) -> int:
    return sum(int(bind.execute(sa.text(q)).scalar_one()) for q in queries)


# --- upgrade ------------------------------------------------------------------------------------


def upgrade() -> None:
    bind = op.get_bind()
    ring = _ring()
    waiting = _count(
        bind,
        (
            "SELECT count(*) FROM visits",
            "SELECT count(*) FROM network_entries",
            "SELECT count(*) FROM case_interests",
            "SELECT count(*) FROM case_barriers",
            "SELECT count(*) FROM mapping_records WHERE area IS NOT NULL",
            "SELECT count(*) FROM handovers",
        ),
    )
    if waiting and ring is None:
        raise RuntimeError(
            f"{waiting} row(s) of visits, network entries, interests, barriers, home areas and "
            "hand-overs are in clear, and sealing them needs the key ring: run `slussen init-db` "
            "with the key ring in place (keyring_path). Nothing was changed."
        )
    keys = _Keys(bind, ring)
    op.add_column("visits", sa.Column("place_enc", sa.LargeBinary(), nullable=True))
    op.add_column("network_entries", sa.Column("facts_enc", sa.LargeBinary(), nullable=True))
    for column in ("interests_enc", "barriers_enc", "area_enc"):
        op.add_column("mapping_records", sa.Column(column, sa.LargeBinary(), nullable=True))
    for column, _length in _HANDOVER_TEXTS:
        op.add_column("handovers", sa.Column(f"{column}_enc", sa.LargeBinary(), nullable=True))

    for rows in _batches(bind, "visits", "place"):
        _update(
            bind,
            "UPDATE visits SET place_enc = :s WHERE id = :i",
            [{"i": i, "s": keys.seal(c, "visits", "place", i, place)} for i, c, place in rows],
        )

    for rows in _batches(bind, "network_entries", *(old for old, _key in _NETWORK_FACTS)):
        values = []
        for i, c, relation, closeness, frequency, deepen, resume in rows:
            facts = {
                "relation_type": relation,
                "closeness": int(closeness),
                "contact_frequency": frequency,
                "could_deepen": bool(deepen),
                "could_resume": bool(resume),
            }
            values.append({"i": i, "s": keys.seal(c, "network_entries", "facts", i, _json(facts))})
        _update(bind, "UPDATE network_entries SET facts_enc = :s WHERE id = :i", values)

    _seal_mapping_records(bind, keys)

    for rows in _batches(bind, "handovers", "organisation_name", "companion_name", "meeting_place"):
        _update(
            bind,
            "UPDATE handovers SET organisation_name_enc = :o, companion_name_enc = :c, "
            "meeting_place_enc = :m WHERE id = :i",
            [
                {
                    "i": i,
                    "o": keys.seal(c, "handovers", "organisation_name", i, organisation or ""),
                    "c": keys.seal(c, "handovers", "companion_name", i, companion or ""),
                    "m": keys.seal(c, "handovers", "meeting_place", i, place or ""),
                }
                for i, c, organisation, companion, place in rows
            ],
        )

    # No table refers to these four, so SQLite's batch copy drops nothing else.
    with op.batch_alter_table("visits") as batch_op:
        batch_op.drop_column("place")
    with op.batch_alter_table("network_entries") as batch_op:
        for name in _NETWORK_CHECKS:
            batch_op.drop_constraint(op.f(f"ck_network_entries_{name}"), type_="check")
        for old, _key in _NETWORK_FACTS:
            batch_op.drop_column(old)
    with op.batch_alter_table("mapping_records") as batch_op:
        batch_op.drop_column("area")
    with op.batch_alter_table("handovers") as batch_op:
        for column, _length in _HANDOVER_TEXTS:
            batch_op.drop_column(column)
    for table, _column, _sealed in _LISTS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_case_id"))
        op.drop_table(table)


def _seal_mapping_records(bind: sa.Connection, keys: _Keys) -> None:
    """Seal each case's ticked interests and barriers as one JSON list each (sorted, as the
    service writes them), and the home area, on the case's mapping record (made when a case has
    ticks but no record)."""
    ticked: dict[int, dict[str, list[str]]] = defaultdict(lambda: {"interests": [], "barriers": []})
    for table, column, sealed in _LISTS:
        for rows in _batches(bind, table, column):
            for _i, c, value in rows:
                ticked[c][sealed].append(value)
    records = {
        c: (i, area)
        for i, c, area in bind.execute(sa.text("SELECT id, case_id, area FROM mapping_records"))
    }
    for c in sorted(set(ticked) - set(records)):
        new_id = bind.execute(
            sa.insert(_mapping_records).values(case_id=c).returning(_mapping_records.c.id)
        ).scalar_one()
        records[c] = (new_id, None)
    values = []
    for c, (i, area) in sorted(records.items()):
        lists = ticked.get(c, {"interests": [], "barriers": []})
        row = {"i": i, "a": keys.seal(c, "mapping_records", "area", i, area or "")}
        for _table, _column, sealed in _LISTS:
            items = sorted(set(lists[sealed]))
            row[sealed] = (
                keys.seal(c, "mapping_records", sealed, i, _json(items)) if items else None
            )
        values.append(row)
    for start in range(0, len(values), _BATCH):
        _update(
            bind,
            "UPDATE mapping_records SET interests_enc = :interests, barriers_enc = :barriers, "
            "area_enc = :a WHERE id = :i",
            values[start : start + _BATCH],
        )


# --- downgrade ----------------------------------------------------------------------------------


def downgrade() -> None:
    bind = op.get_bind()
    ring = _ring()
    sealed = _count(
        bind,
        (
            "SELECT count(*) FROM visits WHERE place_enc IS NOT NULL",
            "SELECT count(*) FROM network_entries WHERE facts_enc IS NOT NULL",
            "SELECT count(*) FROM mapping_records WHERE interests_enc IS NOT NULL "
            "OR barriers_enc IS NOT NULL OR area_enc IS NOT NULL",
            "SELECT count(*) FROM handovers WHERE organisation_name_enc IS NOT NULL "
            "OR companion_name_enc IS NOT NULL OR meeting_place_enc IS NOT NULL",
        ),
    )
    if sealed and ring is None:
        raise RuntimeError(
            f"Cannot unseal the visit facts of {sealed} row(s) without the key ring: downgrade "
            f"with the ring (slussen.migrate.downgrade(engine, '{down_revision}', ring=...))."
        )
    keys = _Keys(bind, ring)

    op.add_column("visits", sa.Column("place", sa.String(length=200), nullable=True))
    for rows in _batches(bind, "visits", "place_enc"):
        _update(
            bind,
            "UPDATE visits SET place = :p WHERE id = :i",
            [{"i": i, "p": keys.open(c, "visits", "place", i, blob) or ""} for i, c, blob in rows],
        )
    with op.batch_alter_table("visits") as batch_op:
        batch_op.alter_column("place", existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column("place_enc")

    _open_network_entries(bind, keys)
    _open_mapping_records(bind, keys)

    for column, length in _HANDOVER_TEXTS:
        op.add_column("handovers", sa.Column(column, sa.String(length=length), nullable=True))
    for rows in _batches(
        bind, "handovers", "organisation_name_enc", "companion_name_enc", "meeting_place_enc"
    ):
        _update(
            bind,
            "UPDATE handovers SET organisation_name = :o, companion_name = :c, "
            "meeting_place = :m WHERE id = :i",
            [
                {
                    "i": i,
                    "o": keys.open(c, "handovers", "organisation_name", i, organisation) or "",
                    "c": keys.open(c, "handovers", "companion_name", i, companion),
                    "m": keys.open(c, "handovers", "meeting_place", i, place),
                }
                for i, c, organisation, companion, place in rows
            ],
        )
    with op.batch_alter_table("handovers") as batch_op:
        batch_op.alter_column(
            "organisation_name", existing_type=sa.String(length=200), nullable=False
        )
        for column, _length in _HANDOVER_TEXTS:
            batch_op.drop_column(f"{column}_enc")


def _open_network_entries(bind: sa.Connection, keys: _Keys) -> None:
    """The network entries' clear columns back, with their CHECK constraints; an erased
    patient's entries, whose facts and label are gone, are deleted."""
    op.add_column("network_entries", sa.Column("relation_type", sa.String(20), nullable=True))
    op.add_column("network_entries", sa.Column("closeness", sa.Integer(), nullable=True))
    op.add_column("network_entries", sa.Column("contact_frequency", sa.String(10), nullable=True))
    op.add_column("network_entries", sa.Column("is_could_deepen", sa.Boolean(), nullable=True))
    op.add_column("network_entries", sa.Column("is_could_resume", sa.Boolean(), nullable=True))
    shredded = []
    for rows in _batches(bind, "network_entries", "facts_enc"):
        values = []
        for i, c, blob in rows:
            text = keys.open(c, "network_entries", "facts", i, blob)
            if text is None:
                shredded.append({"i": i})
                continue
            facts = json.loads(text)
            values.append({old: facts[key] for old, key in _NETWORK_FACTS} | {"i": i})
        _update(
            bind,
            "UPDATE network_entries SET relation_type = :relation_type, closeness = :closeness, "
            "contact_frequency = :contact_frequency, is_could_deepen = :is_could_deepen, "
            "is_could_resume = :is_could_resume WHERE id = :i",
            values,
        )
    _update(bind, "DELETE FROM network_entries WHERE id = :i", shredded)
    with op.batch_alter_table("network_entries") as batch_op:
        batch_op.alter_column("relation_type", existing_type=sa.String(20), nullable=False)
        batch_op.alter_column("closeness", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("contact_frequency", existing_type=sa.String(10), nullable=False)
        batch_op.alter_column("is_could_deepen", existing_type=sa.Boolean(), nullable=False)
        batch_op.alter_column("is_could_resume", existing_type=sa.Boolean(), nullable=False)
        for name, condition in _NETWORK_CHECKS.items():
            batch_op.create_check_constraint(op.f(f"ck_network_entries_{name}"), condition)
        batch_op.drop_column("facts_enc")


def _open_mapping_records(bind: sa.Connection, keys: _Keys) -> None:
    """`case_interests` and `case_barriers` again, one row per ticked id, and the clear home
    area."""
    for table, column, _sealed in _LISTS:
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("case_id", sa.Integer(), nullable=False),
            sa.Column(column, sa.String(length=40), nullable=False),
            sa.ForeignKeyConstraint(
                ["case_id"], ["cases.id"], name=op.f(f"fk_{table}_case_id_cases")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("case_id", column, name=op.f(f"uq_{table}_case_id_{column}")),
        )
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_case_id"), ["case_id"], unique=False)
    op.add_column("mapping_records", sa.Column("area", sa.String(length=100), nullable=True))
    for rows in _batches(bind, "mapping_records", "interests_enc", "barriers_enc", "area_enc"):
        areas, ticks = [], {table: [] for table, _c, _s in _LISTS}
        for i, c, interests, barriers, area in rows:
            areas.append({"i": i, "a": keys.open(c, "mapping_records", "area", i, area)})
            for (table, column, sealed), blob in zip(_LISTS, (interests, barriers), strict=True):
                text = keys.open(c, "mapping_records", sealed, i, blob)
                ticks[table] += [{"case_id": c, column: v} for v in json.loads(text or "[]")]
        _update(bind, "UPDATE mapping_records SET area = :a WHERE id = :i", areas)
        for table, column, _sealed in _LISTS:
            if ticks[table]:
                ticked = sa.table(table, sa.column("case_id"), sa.column(column))
                bind.execute(sa.insert(ticked), ticks[table])
    with op.batch_alter_table("mapping_records") as batch_op:
        for _table, _column, sealed in _LISTS:
            batch_op.drop_column(f"{sealed}_enc")
        batch_op.drop_column("area_enc")
