"""opening hours and what to bring: `units.opens_at`/`closes_at`/`open_weekdays` (a visit booked
outside them or on a public holiday warns the coach) and `activity_revisions.bring` (what a newcomer
brings, printed in the action plan letter)

Revision ID: 0019_plan_directory
Revises: 0018
Create Date: 2026-12-08 03:20:00.000000

New columns only, with server defaults: every existing unit is open Monday to Friday 08.00–17.00
until someone says otherwise, and no existing activity names anything to bring. Nothing is sealed
(opening hours and directory content are public). The downgrade drops the columns; it loses only
those settings and texts, which the organisations and the region can type again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_plan_directory"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.add_column(
            sa.Column("opens_at", sa.Time(), nullable=False, server_default="08:00:00")
        )
        batch.add_column(
            sa.Column("closes_at", sa.Time(), nullable=False, server_default="17:00:00")
        )
        batch.add_column(
            sa.Column("open_weekdays", sa.String(7), nullable=False, server_default="12345")
        )
    with op.batch_alter_table("activity_revisions") as batch:
        batch.add_column(sa.Column("bring", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("activity_revisions") as batch:
        batch.drop_column("bring")
    with op.batch_alter_table("units") as batch:
        batch.drop_column("open_weekdays")
        batch.drop_column("closes_at")
        batch.drop_column("opens_at")
