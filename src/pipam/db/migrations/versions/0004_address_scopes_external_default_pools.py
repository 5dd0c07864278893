"""address scopes, external networks, one default subnet pool per IP version

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Earlier releases stored a subnet pool's ``address_scope_id`` and ``is_default`` without checking
them. This revision keeps what it can: every address scope id a pool names becomes an address scope
(owned by the pool's project, of the pool's IP version; a pool of the other version naming the same
id loses it), and of several default pools of one IP version the oldest stays the default.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Lightweight tables for the data changes: this revision keeps working whatever the models become.
_pools = sa.table(
    "subnetpools",
    sa.column("id", sa.String(36)),
    sa.column("project_id", sa.String(255)),
    sa.column("ip_version", sa.Integer()),
    sa.column("is_default", sa.Boolean()),
    sa.column("address_scope_id", sa.String(36)),
    sa.column("created_at", sa.DateTime()),
)


def upgrade() -> None:
    scopes = op.create_table(
        "address_scopes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_address_scopes")),
    )
    with op.batch_alter_table("address_scopes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_address_scopes_project_id"), ["project_id"], unique=False)

    conn = op.get_bind()
    named: dict[str, tuple[str, int]] = {}
    mismatched: list[str] = []
    order = (_pools.c.created_at, _pools.c.id)
    for pool_id, project, version, scope_id in conn.execute(
        sa.select(_pools.c.id, _pools.c.project_id, _pools.c.ip_version, _pools.c.address_scope_id)
        .where(_pools.c.address_scope_id.is_not(None))
        .order_by(*order)
    ):
        if scope_id not in named:
            named[scope_id] = (project, version)
        elif named[scope_id][1] != version:
            mismatched.append(pool_id)
    if named:
        op.bulk_insert(
            scopes,
            [
                {"id": sid, "project_id": project, "name": "", "shared": False, "ip_version": version}
                for sid, (project, version) in named.items()
            ],
        )
    if mismatched:
        conn.execute(sa.update(_pools).where(_pools.c.id.in_(mismatched)).values(address_scope_id=None))

    seen: set[int] = set()
    demoted: list[str] = []
    for pool_id, version in conn.execute(
        sa.select(_pools.c.id, _pools.c.ip_version).where(_pools.c.is_default.is_(True)).order_by(*order)
    ):
        if version in seen:
            demoted.append(pool_id)
        seen.add(version)
    if demoted:
        conn.execute(sa.update(_pools).where(_pools.c.id.in_(demoted)).values(is_default=False))

    # Plain ALTERs and indexes only: on SQLite a batch "move and copy" of these tables would fail
    # on the rows that reference them (foreign keys are enforced and cannot be switched off inside
    # the migration's transaction). So the scope reference is indexed, not a foreign key; the
    # service keeps it valid (a pool joins a scope, and a scope is deleted, under the scope's lock).
    op.add_column("subnetpools", sa.Column("default_ip_version", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_subnetpools_address_scope_id"), "subnetpools", ["address_scope_id"], unique=False)
    pools = sa.table(
        "subnetpools",
        sa.column("ip_version", sa.Integer()),
        sa.column("is_default", sa.Boolean()),
        sa.column("default_ip_version", sa.Integer()),
    )
    conn.execute(sa.update(pools).where(pools.c.is_default.is_(True)).values(default_ip_version=pools.c.ip_version))
    op.create_index("uq_subnetpools_default_ip_version", "subnetpools", ["default_ip_version"], unique=True)
    op.add_column("networks", sa.Column("router_external", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_column("router_external")
    op.drop_index("uq_subnetpools_default_ip_version", table_name="subnetpools")
    op.drop_index(op.f("ix_subnetpools_address_scope_id"), table_name="subnetpools")
    with op.batch_alter_table("subnetpools", schema=None) as batch_op:
        batch_op.drop_column("default_ip_version")
    with op.batch_alter_table("address_scopes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_address_scopes_project_id"))
    op.drop_table("address_scopes")
