"""answer codes and recovery codes stored as a keyed hash: each stored SHA-256 becomes the blind
index (HMAC-SHA256 under the key ring's blind-index key) of that SHA-256

Revision ID: 0016
Revises: 0015
Create Date: 2027-01-20 09:00:00.000000

The new stored form is defined over the old one (`questionnaires.codes.code_hash` and
`accounts.services._recovery_hash` hash the code with SHA-256 and key that), so the upgrade
converts every row without knowing a code. It needs the key ring, which
`slussen.migrate.upgrade(engine, ring=...)` hands over in Alembic's `config.attributes["ring"]`
(`slussen init-db` always does). Without a ring it works on tables with no code and stops on any
code, before changing anything. The schema does not change.

The downgrade cannot turn a keyed hash back into SHA-256 (HMAC is one-way, with or without the
ring), so the codes that still worked stop working, and it says so: it invalidates them
explicitly rather than refuse. An answer code neither used nor expired expires now (the case page
then counts no open code, and a coach makes a new one or the letter is printed again); an unused
recovery code is marked used (the user logs in with the authenticator app, or an administrator
resets the second factor). Every row stays, with its keyed hash, which no SHA-256 the older
version computes can equal. Why not refuse: a refusal would forbid the rollback for as long as any
code works (recovery codes work until used), and a rollback is the operator's deliberate act;
the log names how many codes it invalidated.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

import slussen.db
from slussen import vault

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The blind-index kinds, as slussen.questionnaires.codes.CODE_HASH_KIND and
# slussen.accounts.services.RECOVERY_HASH_KIND have them (a migration must not import the app's
# services, which change after it).
_answer_codes = sa.table(
    "answer_codes",
    sa.column("id", sa.Integer),
    sa.column("code_hash", sa.String),
    sa.column("expires_at", slussen.db.UtcDateTime()),
    sa.column("used_at", slussen.db.UtcDateTime()),
)
_recovery_codes = sa.table(
    "recovery_codes",
    sa.column("id", sa.Integer),
    sa.column("code_hash", sa.String),
    sa.column("used_at", slussen.db.UtcDateTime()),
)
_KINDS = {_answer_codes: "answer-code", _recovery_codes: "recovery-code"}


def _ring() -> vault.KeyRing | None:
    ring = context.config.attributes.get("ring")
    return ring if isinstance(ring, vault.KeyRing) else None


def upgrade() -> None:
    bind = op.get_bind()
    stored = {
        table: bind.execute(sa.select(table.c.id, table.c.code_hash).order_by(table.c.id)).all()
        for table in _KINDS
    }
    ring = _ring()
    if ring is None and any(stored.values()):
        counts = ", ".join(f"{len(rows)} in {table.name}" for table, rows in stored.items())
        raise RuntimeError(
            f"Keying the stored answer and recovery codes ({counts}) needs the key ring: run "
            "`slussen init-db` with the key ring in place (keyring_path). Nothing was changed."
        )
    for table, rows in stored.items():
        if not rows:
            continue
        assert ring is not None
        kind = _KINDS[table]
        bind.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("row_id"))
            .values(code_hash=sa.bindparam("keyed")),
            [{"row_id": i, "keyed": vault.blind_index(ring, kind, old)} for i, old in rows],
        )


def downgrade() -> None:
    bind = op.get_bind()
    now = slussen.db.utcnow()
    answer = bind.execute(
        sa.update(_answer_codes)
        .where(_answer_codes.c.used_at.is_(None), _answer_codes.c.expires_at > now)
        .values(expires_at=now)
    ).rowcount
    recovery = bind.execute(
        sa.update(_recovery_codes).where(_recovery_codes.c.used_at.is_(None)).values(used_at=now)
    ).rowcount
    if answer or recovery:
        logging.getLogger("alembic.runtime.migration").warning(
            "0016 downgrade: %s answer code(s) expired and %s recovery code(s) marked used: "
            "their keyed hashes cannot be turned back into SHA-256.",
            answer,
            recovery,
        )
