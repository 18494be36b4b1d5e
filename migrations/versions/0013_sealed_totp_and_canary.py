"""sealed TOTP secrets and the key-ring canary: each user with TOTP gets a data key and their
secret sealed with it; `keyring_canaries` holds the text `slussen init-db` seals under the ring

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-12 09:00:00.000000

Sealing needs the key ring, which `slussen.migrate.upgrade(engine, ring=...)` hands over in
Alembic's `config.attributes["ring"]` (`slussen init-db` always does). Without a ring the upgrade
works on a database with no TOTP secret and stops on one that has any, before changing it.

The downgrade opens every sealed secret with the ring when it is given and writes it back in
clear; without a ring it works only while no user has a sealed secret, and stops otherwise. It
destroys the users' and the canary's data keys (the rows stay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import slussen.db
from slussen import vault

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The binding of a sealed TOTP secret, as slussen.accounts.services.TOTP_SECRET_FIELD has it (a
# migration must not import the app's services, which change after it).
_TABLE, _COLUMN = "users", "totp_secret"

_data_keys = sa.table(
    "data_keys",
    sa.column("id", sa.Integer),
    sa.column("wrapped", sa.LargeBinary),
    sa.column("master_key_id", sa.String),
    sa.column("created_at", slussen.db.UtcDateTime()),
    sa.column("destroyed_at", slussen.db.UtcDateTime()),
)


def _ring() -> vault.KeyRing | None:
    ring = context.config.attributes.get("ring")
    return ring if isinstance(ring, vault.KeyRing) else None


def upgrade() -> None:
    op.create_table(
        "keyring_canaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("data_key_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("ring_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_keyring_canaries_one_row")),
        sa.ForeignKeyConstraint(
            ["data_key_id"],
            ["data_keys.id"],
            name=op.f("fk_keyring_canaries_data_key_id_data_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyring_canaries")),
    )
    bind = op.get_bind()
    clear = bind.execute(
        sa.text("SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id")
    ).all()
    ring = _ring()
    if clear and ring is None:
        raise RuntimeError(
            f"{len(clear)} user(s) have a TOTP secret in clear, and sealing them needs the key "
            "ring: run `slussen init-db` with the key ring in place (keyring_path). Nothing "
            "was changed."
        )
    # Not batch mode: on SQLite a batch copy of `users` drops the original, and with foreign keys
    # on that DROP deletes every row first (cascading to memberships). SQLite adds a column with
    # a REFERENCES clause in place.
    if bind.dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE users ADD COLUMN data_key_id INTEGER "
            "CONSTRAINT fk_users_data_key_id_data_keys REFERENCES data_keys (id)"
        )
    else:
        op.add_column("users", sa.Column("data_key_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_users_data_key_id_data_keys"), "users", "data_keys", ["data_key_id"], ["id"]
        )
    op.add_column("users", sa.Column("totp_secret_enc", sa.LargeBinary(), nullable=True))
    # A region has hundreds of users, not millions: one transaction, as every migration.
    for user_id, secret in clear:
        assert ring is not None
        key_id = bind.execute(
            sa.insert(_data_keys).values(created_at=slussen.db.utcnow()).returning(_data_keys.c.id)
        ).scalar_one()
        raw = vault.new_data_key()
        bind.execute(
            sa.update(_data_keys)
            .where(_data_keys.c.id == key_id)
            .values(
                wrapped=vault.wrap_data_key(ring, raw, data_key_id=key_id),
                master_key_id=ring.active_master_id,
            )
        )
        sealed = vault.FieldCipher(raw, key_id).encrypt(
            secret, table=_TABLE, column=_COLUMN, row_id=user_id
        )
        bind.execute(
            sa.text("UPDATE users SET data_key_id = :k, totp_secret_enc = :s WHERE id = :u"),
            {"k": key_id, "s": sealed, "u": user_id},
        )
    op.drop_column("users", "totp_secret")


def downgrade() -> None:
    bind = op.get_bind()
    sealed = bind.execute(
        sa.text(
            "SELECT u.id, u.data_key_id, u.totp_secret_enc, k.wrapped FROM users u "
            "JOIN data_keys k ON k.id = u.data_key_id WHERE u.totp_secret_enc IS NOT NULL "
            "ORDER BY u.id"
        )
    ).all()
    ring = _ring()
    if sealed and ring is None:
        raise RuntimeError(
            f"Cannot unseal the TOTP secrets of {len(sealed)} user(s) without the key ring: "
            "downgrade with the ring (slussen.migrate.downgrade(engine, '0012', ring=...))."
        )
    clear = []
    for user_id, key_id, blob, wrapped in sealed:
        assert ring is not None
        raw = vault.unwrap_data_key(ring, wrapped, data_key_id=key_id)
        secret = vault.FieldCipher(raw, key_id).decrypt_str(
            blob, table=_TABLE, column=_COLUMN, row_id=user_id
        )
        clear.append({"u": user_id, "s": secret})
    op.add_column("users", sa.Column("totp_secret", sa.String(length=64), nullable=True))
    if clear:
        bind.execute(sa.text("UPDATE users SET totp_secret = :s WHERE id = :u"), clear)
    # The users' and the canary's data keys are destroyed with the columns that name them; the
    # rows stay, as an erased patient's do.
    keys = [
        row[0]
        for row in bind.execute(
            sa.text(
                "SELECT data_key_id FROM users WHERE data_key_id IS NOT NULL "
                "UNION SELECT data_key_id FROM keyring_canaries"
            )
        )
    ]
    op.drop_table("keyring_canaries")
    op.drop_column("users", "totp_secret_enc")
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("fk_users_data_key_id_data_keys"), "users", type_="foreignkey")
    op.drop_column("users", "data_key_id")
    if keys:
        bind.execute(
            sa.update(_data_keys)
            .where(_data_keys.c.id.in_(keys))
            .values(wrapped=None, master_key_id=None, destroyed_at=slussen.db.utcnow())
        )
