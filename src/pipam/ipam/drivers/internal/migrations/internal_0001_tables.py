"""internal driver: its own copy of subnets, pools, allocations and free ranges

Revision ID: internal_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "internal_0001"
down_revision = None
branch_labels = ("internal",)
depends_on = None

TABLES = ("ipam_subnets", "ipam_allocation_pools", "ipam_allocations", "ipam_availability_ranges")


def upgrade() -> None:
    # Databases made before drivers owned their schema got these tables from the core's first revision.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if set(TABLES) <= existing:
        return
    op.create_table(
        "ipam_subnets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ipam_subnets")),
        sa.UniqueConstraint("subnet_id", name=op.f("uq_ipam_subnets_subnet_id")),
    )
    op.create_table(
        "ipam_allocation_pools",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ipam_subnet_id", sa.String(length=36), nullable=False),
        sa.Column("first_ip", sa.String(length=64), nullable=False),
        sa.Column("last_ip", sa.String(length=64), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["ipam_subnet_id"],
            ["ipam_subnets.id"],
            name=op.f("fk_ipam_allocation_pools_ipam_subnet_id_ipam_subnets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ipam_allocation_pools")),
    )
    with op.batch_alter_table("ipam_allocation_pools", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ipam_allocation_pools_ipam_subnet_id"), ["ipam_subnet_id"], unique=False)
    op.create_table(
        "ipam_allocations",
        sa.Column("ipam_subnet_id", sa.String(length=36), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["ipam_subnet_id"],
            ["ipam_subnets.id"],
            name=op.f("fk_ipam_allocations_ipam_subnet_id_ipam_subnets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ipam_subnet_id", "ip_address", name=op.f("pk_ipam_allocations")),
    )
    op.create_table(
        "ipam_availability_ranges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ipam_subnet_id", sa.String(length=36), nullable=False),
        sa.Column("pool_id", sa.String(length=36), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["ipam_subnet_id"],
            ["ipam_subnets.id"],
            name=op.f("fk_ipam_availability_ranges_ipam_subnet_id_ipam_subnets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ipam_availability_ranges")),
    )
    with op.batch_alter_table("ipam_availability_ranges", schema=None) as batch_op:
        batch_op.create_index("ix_ipam_availability_ranges_owner_first", ["ipam_subnet_id", "first_key"], unique=False)
        batch_op.create_index("ix_ipam_availability_ranges_owner_last", ["ipam_subnet_id", "last_key"], unique=False)


def downgrade() -> None:
    op.drop_table("ipam_availability_ranges")
    op.drop_table("ipam_allocations")
    op.drop_table("ipam_allocation_pools")
    op.drop_table("ipam_subnets")
