"""audit chains: one access-log chain per unit plus the region chain, each with its own head

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 03:20:00.000000

Every existing row (the one chain before this revision) becomes the region chain's history with
its sequence numbers and MACs unchanged, so the log verifies before and after. The downgrade
works while every row is in the region chain; once a unit chain has rows it refuses, because
merging chains into one would mean signing every row again with the key ring.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # 0002 inserted the one head with an explicit id 1, so the id sequence never moved: the
        # first unit chain's head would collide with it.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('audit_chain_heads', 'id'), "
            "(SELECT coalesce(max(id), 1) FROM audit_chain_heads))"
        )
    # The server default fills the existing rows (on PostgreSQL without firing the append-only
    # row trigger); it is dropped afterwards, because every new row names its chain.
    with op.batch_alter_table("audit_chain_heads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain", sa.String(length=20), nullable=False, server_default="region")
        )
    with op.batch_alter_table("audit_chain_heads", schema=None) as batch_op:
        batch_op.alter_column("chain", server_default=None)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_chain_heads_chain"), ["chain"])
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain", sa.String(length=20), nullable=False, server_default="region")
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("chain", server_default=None)
        batch_op.drop_constraint("uq_audit_events_seq", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_chain_seq"), ["chain", "seq"])


def downgrade() -> None:
    bind = op.get_bind()
    chained = bind.execute(
        sa.text("SELECT count(*) FROM audit_events WHERE chain <> 'region'")
    ).scalar_one()
    heads = bind.execute(
        sa.text("SELECT count(*) FROM audit_chain_heads WHERE chain <> 'region' AND seq > 0")
    ).scalar_one()
    if chained or heads:
        raise RuntimeError(
            f"Refusing to downgrade below 0011: the access log has {chained} rows in per-unit "
            "chains, and revision 0010 keeps one chain. Merging them would mean signing every "
            "row again, which would erase the proof the log gives. Restore the backup taken "
            "before upgrading to 0011 instead."
        )
    op.execute("DELETE FROM audit_chain_heads WHERE chain <> 'region'")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_chain_seq", type_="unique")
        batch_op.create_unique_constraint("uq_audit_events_seq", ["seq"])
        batch_op.drop_column("chain")
    with op.batch_alter_table("audit_chain_heads", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_chain_heads_chain", type_="unique")
        batch_op.drop_column("chain")
