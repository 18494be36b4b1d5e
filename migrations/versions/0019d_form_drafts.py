"""form drafts: what a coach has typed in a long form (mapping visit, follow-up) and not saved
yet, sealed, one per user, case and form; also the post of a session that timed out on submit

Revision ID: 0019d
Revises: 0019b
Create Date: 2026-12-08 03:30:00.000000

A new table only; nothing existing is sealed, so no key ring is needed. The downgrade drops it
while it is empty and refuses otherwise: it would destroy what coaches typed and have not saved.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slussen.db

revision = "0019d"
down_revision = "0019b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "form_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("form", sa.String(length=20), nullable=False),
        sa.Column("fields_enc", sa.LargeBinary(), nullable=False),
        sa.Column("is_kept_post", sa.Boolean(), nullable=False),
        sa.Column("updated_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "form IN ('mapping', 'follow_up')", name=op.f("ck_form_drafts_form_known")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_form_drafts_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_form_drafts_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_form_drafts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_drafts")),
        sa.UniqueConstraint(
            "user_id", "case_id", "form", name=op.f("uq_form_drafts_user_id_case_id_form")
        ),
    )
    with op.batch_alter_table("form_drafts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_form_drafts_patient_id"), ["patient_id"], unique=False)


def downgrade() -> None:
    bind = op.get_bind()
    count = bind.execute(
        sa.select(sa.func.count()).select_from(sa.table("form_drafts"))
    ).scalar_one()
    if count:
        raise RuntimeError(
            f"{count} form draft(s) are stored; going below 0019 would destroy what coaches "
            "typed and have not saved. Nothing was changed."
        )
    with op.batch_alter_table("form_drafts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_form_drafts_patient_id"))
    op.drop_table("form_drafts")
