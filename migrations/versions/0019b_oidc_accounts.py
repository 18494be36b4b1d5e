"""oidc accounts: a user's OpenID subject and HSA-id for federated login, and a per-user switch
that turns their local password off

Revision ID: 0019b
Revises: 0019_plan_directory
Create Date: 2026-12-08 03:30:00.000000

Three nullable (or defaulted) columns on `users` with unique indexes, added in place (not batch
mode: on SQLite a batch copy of `users` drops the original, which with foreign keys on deletes
every membership). The downgrade drops them while no user is linked or has their password turned
off, and refuses otherwise: it would silently give local passwords back and unlink accounts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019b"
down_revision = "0019_plan_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("oidc_subject", sa.String(length=255), nullable=True))
    op.add_column("users", sa.Column("hsa_id", sa.String(length=31), nullable=True))
    op.add_column(
        "users",
        sa.Column(
            "is_local_password_disabled",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
        ),
    )
    op.create_index(op.f("ix_users_oidc_subject"), "users", ["oidc_subject"], unique=True)
    op.create_index(op.f("ix_users_hsa_id"), "users", ["hsa_id"], unique=True)


def downgrade() -> None:
    linked = op.get_bind().scalar(
        sa.text(
            "SELECT count(*) FROM users WHERE oidc_subject IS NOT NULL OR hsa_id IS NOT NULL "
            "OR is_local_password_disabled"
        )
    )
    if linked:
        raise RuntimeError(
            f"{linked} user(s) are linked to the identity provider or have their local password "
            "turned off; a downgrade would undo that. Unlink them first. Nothing was changed."
        )
    op.drop_index(op.f("ix_users_hsa_id"), table_name="users")
    op.drop_index(op.f("ix_users_oidc_subject"), table_name="users")
    op.drop_column("users", "is_local_password_disabled")
    op.drop_column("users", "hsa_id")
    op.drop_column("users", "oidc_subject")
