"""subnet-pool free blocks: prefix allocation without reading every subnet of the pool

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import netaddr
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _largest_block(first: int, last: int) -> int:
    # Kept here (not imported) so that this revision keeps working whatever the code becomes.
    bits = (last - first + 1).bit_length() - 1
    while bits > 0:
        step = 1 << bits
        if -(-first // step) * step + step - 1 <= last:
            return bits
        bits -= 1
    return 0


def upgrade() -> None:
    blocks = op.create_table(
        "subnetpool_free_blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subnetpool_id", sa.String(length=36), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.Column("max_block", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subnetpool_id"],
            ["subnetpools.id"],
            name=op.f("fk_subnetpool_free_blocks_subnetpool_id_subnetpools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subnetpool_free_blocks")),
    )
    with op.batch_alter_table("subnetpool_free_blocks", schema=None) as batch_op:
        batch_op.create_index("ix_subnetpool_free_blocks_fit", ["subnetpool_id", "max_block", "first_key"])
        batch_op.create_index("ix_subnetpool_free_blocks_first", ["subnetpool_id", "first_key"])
        batch_op.create_index("ix_subnetpool_free_blocks_last", ["subnetpool_id", "last_key"])

    # Existing pools: their prefixes minus the subnets already carved from them.
    conn = op.get_bind()
    prefixes: dict[str, list[str]] = {}
    for pool_id, cidr in conn.execute(sa.text("SELECT subnetpool_id, cidr FROM subnetpoolprefixes")):
        prefixes.setdefault(pool_id, []).append(cidr)
    for pool_id, cidrs in prefixes.items():
        used = [
            r[0] for r in conn.execute(sa.text("SELECT cidr FROM subnets WHERE subnetpool_id = :p"), {"p": pool_id})
        ]
        free = netaddr.IPSet(cidrs) - netaddr.IPSet(used)
        rows = [
            {
                "subnetpool_id": pool_id,
                "first_key": f"{r.first:032x}",
                "last_key": f"{r.last:032x}",
                "max_block": _largest_block(r.first, r.last),
            }
            for r in free.iter_ipranges()
        ]
        if rows:
            op.bulk_insert(blocks, rows)


def downgrade() -> None:
    op.drop_table("subnetpool_free_blocks")
