"""sluss 2 for the associations: what a hand-over request shares with the association (sealed),
the association's answer (sealed reason), the activity and the wished first occasion, and the
outcome "will continue"

Revision ID: 0019c
Revises: 0019d
Create Date: 2026-12-08 03:20:00.000000

The brief named this revision 0019c_organisation_members, but the table of who represents which
organisation (`organisation_members`) exists since 0006: an association's user belongs to one or
more organisations through it already. What sluss 2 still needs are these columns of
`handovers`. New nullable columns only; nothing existing is sealed, so no key ring is needed.

The downgrade keeps every hand-over row and drops what only the association's pages use: the
sealed snapshot of what the patient agreed to share (copies of their first name and phone, and
the coach's words on what helps them), the association's sealed reason, the activity and the
wished occasion; an outcome "will continue" becomes "went" (the patient came). Upgrading again
leaves those requests without a shared snapshot: the association sees only the organisation,
and the coach may ask anew.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import slussen.db

revision = "0019c"
down_revision = "0019d"
branch_labels = None
depends_on = None

_OUTCOMES_BEFORE = "(outcome IN ('went', 'did_not_go', 'barrier_found') OR outcome IS NULL)"
_OUTCOMES = (
    "(outcome IN ('went', 'did_not_go', 'will_continue', 'barrier_found') OR outcome IS NULL)"
)


def upgrade() -> None:
    with op.batch_alter_table("handovers") as batch_op:
        batch_op.add_column(sa.Column("activity_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("wished_at", slussen.db.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("shared_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("answer_reason_enc", sa.LargeBinary(), nullable=True))
        batch_op.drop_constraint(op.f("ck_handovers_outcome_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_handovers_outcome_known"), _OUTCOMES)


def downgrade() -> None:
    op.execute(sa.text("UPDATE handovers SET outcome = 'went' WHERE outcome = 'will_continue'"))
    with op.batch_alter_table("handovers") as batch_op:
        batch_op.drop_constraint(op.f("ck_handovers_outcome_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_handovers_outcome_known"), _OUTCOMES_BEFORE)
        batch_op.drop_column("answer_reason_enc")
        batch_op.drop_column("shared_enc")
        batch_op.drop_column("wished_at")
        batch_op.drop_column("activity_id")
