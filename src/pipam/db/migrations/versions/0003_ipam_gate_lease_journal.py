"""IPAM gate slots, migration lease, change journal for online migrations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GATE_SLOTS = 128  # kept here, not imported, so that this revision keeps working whatever the code becomes


def upgrade() -> None:
    with op.batch_alter_table("ipam_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shadow_backend", sa.String(length=64), nullable=True))
    with op.batch_alter_table("ipam_migrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    gate = op.create_table(
        "ipam_gate",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("touches", sa.BigInteger(), nullable=False),
        sa.Column("active_backend", sa.String(length=64), nullable=False),
        sa.Column("shadow_backend", sa.String(length=64), nullable=True),
        sa.Column("fence_migration_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_ipam_gate")),
    )
    op.create_table(
        "ipam_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ipam_changes")),
    )
    with op.batch_alter_table("ipam_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ipam_changes_subnet_id"), ["subnet_id"], unique=False)
    # A database that already records its backend gets its gate now; a new one at initialisation.
    state = op.get_bind().execute(sa.text("SELECT active_backend, fence_migration_id FROM ipam_state")).first()
    if state is not None:
        op.bulk_insert(
            gate,
            [
                {
                    "slot": i,
                    "touches": 0,
                    "active_backend": state[0],
                    "shadow_backend": None,
                    "fence_migration_id": state[1],
                }
                for i in range(GATE_SLOTS)
            ],
        )


def downgrade() -> None:
    op.drop_table("ipam_changes")
    op.drop_table("ipam_gate")
    with op.batch_alter_table("ipam_migrations", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("owner")
    with op.batch_alter_table("ipam_state", schema=None) as batch_op:
        batch_op.drop_column("shadow_backend")
