"""sessions and totp: server-side web sessions, TOTP columns on users, recovery codes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 05:40:52.349921
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slussen.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_at", slussen.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_web_sessions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_web_sessions_last_seen_at"), ["last_seen_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)

    # add_column needs no table copy on SQLite, so batch mode alters in place.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("totp_last_counter", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("totp_enrolled_at", slussen.db.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    # Not batch mode: on SQLite a batch drop_column copies `users` and drops the original, and
    # with foreign keys on that DROP deletes every row first (cascading to memberships). SQLite
    # 3.35+ drops a plain column in place.
    op.drop_column("users", "totp_enrolled_at")
    op.drop_column("users", "totp_last_counter")
    op.drop_column("users", "totp_secret")

    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_sessions_last_seen_at"))
        batch_op.drop_index(batch_op.f("ix_web_sessions_created_at"))
    op.drop_table("web_sessions")

    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_codes_user_id"))
    op.drop_table("recovery_codes")
