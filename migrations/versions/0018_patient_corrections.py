"""patient corrections and offered details: the sealed history of a patient's corrected name,
address, phone and contact channel, and the contact details a later referral offered to the coach

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 23:45:00.000000

New tables only; nothing existing is sealed, so no key ring is needed. The downgrade drops them
while they are empty and refuses otherwise: it would destroy the history of corrections (the
earlier values, who and why) and offers waiting for a coach.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slussen.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("corrected_by_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("corrected_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason_enc", sa.LargeBinary(), nullable=True),
        sa.Column("earlier_enc", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["corrected_by_id"],
            ["users.id"],
            name=op.f("fk_patient_corrections_corrected_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_patient_corrections_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_patient_corrections_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_corrections")),
    )
    with op.batch_alter_table("patient_corrections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_corrections_patient_id"), ["patient_id"], unique=False
        )
    op.create_table(
        "offered_details",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("offered_at", slussen.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("details_enc", sa.LargeBinary(), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", slussen.db.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined')",
            name=op.f("ck_offered_details_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_offered_details_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_offered_details_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offered_details")),
    )
    with op.batch_alter_table("offered_details", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_offered_details_patient_id"), ["patient_id"], unique=False
        )


def downgrade() -> None:
    bind = op.get_bind()
    counts = {
        table: bind.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
        for table in ("patient_corrections", "offered_details")
    }
    if any(counts.values()):
        raise RuntimeError(
            f"{counts['patient_corrections']} correction(s) and {counts['offered_details']} "
            "offered detail(s) are stored; going below 0018 would destroy the history of "
            "patients' corrected details. Nothing was changed."
        )
    with op.batch_alter_table("offered_details", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offered_details_patient_id"))
    op.drop_table("offered_details")
    with op.batch_alter_table("patient_corrections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_corrections_patient_id"))
    op.drop_table("patient_corrections")
