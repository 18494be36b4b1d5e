"""account links: the single-use, expiring link an administrator gives a user to set a new
password (a new account, or a reset one); only the token's keyed hash is stored

Revision ID: 0020e
Revises: 0019c
Create Date: 2026-12-08 04:00:00.000000

A new table only. The downgrade drops it: an unused link is then lost and the administrator
makes a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slussen.db

revision = "0020e"
down_revision = "0019c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", slussen.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_account_links_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_account_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_links_token_hash")),
    )
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_links_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_links_user_id"))
    op.drop_table("account_links")
